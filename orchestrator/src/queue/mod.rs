//! Redis Streams transport (see `worker-protocol/PROTOCOL.md`).
//!
//! Redis only carries work: the store is the source of truth. Every write is pipelined
//! in batches: one flush of the engine becomes one pipeline of `XADD`s (tasks, control
//! messages) and `XACK` + `XDEL`s (task and result entries whose outcome is stored, so
//! streams hold only work in flight).

mod reader;

pub use reader::{ResultsReader, WorkerEntry};

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, RedisError};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use worker_protocol::keys::{ORCHESTRATOR_GROUP, WORKER_GROUP};
use worker_protocol::{Keys, MESSAGE_FIELD};

/// A Redis failure.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct QueueError(#[from] pub RedisError);

impl QueueError {
    /// Whether trying again may succeed: the connection failed, or Redis is busy or
    /// loading; not a command Redis refuses.
    pub fn is_transient(&self) -> bool {
        let e = &self.0;
        e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || matches!(
                e.code(),
                Some("LOADING" | "TRYAGAIN" | "BUSY" | "MASTERDOWN" | "OOM")
            )
    }
}

/// One attempt of one task of one run, as the engine keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    pub run: std::sync::Arc<str>,
    /// The task's index in its run's DAG.
    pub task: u32,
    pub attempt: u32,
}

/// An entry of a queue stream: which queue, and the id Redis gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub queue: String,
    pub id: String,
}

/// A task message to add to a queue, and which attempt it carries.
#[derive(Debug, Clone)]
pub struct OutTask {
    pub queue: String,
    pub json: String,
    /// The attempt it carries, to learn the entry id the message gets.
    pub attempt: AttemptKey,
}

/// Writes one engine flush produces, sent in a single pipeline.
#[derive(Debug, Default)]
pub struct Outgoing {
    pub tasks: Vec<OutTask>,
    /// Task entries whose attempt's outcome is stored.
    pub task_acks: Vec<QueueEntry>,
    /// Entries of the results stream that have been processed.
    pub result_acks: Vec<String>,
    /// Control messages (JSON).
    pub controls: Vec<String>,
    /// Messages nobody could parse (JSON of `{reason, raw, at_ms}`).
    pub dead: Vec<String>,
    /// Idle queues whose stream and group are removed if they are empty.
    pub reap_queues: Vec<String>,
}

impl Outgoing {
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.task_acks.is_empty()
            && self.result_acks.is_empty()
            && self.controls.is_empty()
            && self.dead.is_empty()
            && self.reap_queues.is_empty()
    }

    /// Appends a later flush's writes, keeping their order.
    pub fn merge(&mut self, later: Outgoing) {
        self.tasks.extend(later.tasks);
        self.task_acks.extend(later.task_acks);
        self.result_acks.extend(later.result_acks);
        self.controls.extend(later.controls);
        self.dead.extend(later.dead);
        self.reap_queues.extend(later.reap_queues);
    }
}

/// Depth of one queue stream as Redis sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamDepth {
    /// Entries not yet delivered to any worker.
    pub waiting: u64,
    /// Entries delivered and not yet acknowledged (in flight).
    pub pending: u64,
}

/// The orchestrator's side of the Redis transport.
pub struct RedisQueue {
    client: Client,
    conn: ConnectionManager,
    keys: Keys,
    /// Queue streams whose worker group exists; a mutex because it is touched once per
    /// flush, briefly, and never across an await.
    groups: Mutex<HashSet<String>>,
}

/// Consumer name under which the orchestrator takes over entries of dead workers.
const RECLAIMER: &str = "apex-reclaimer";

/// Longest a control stream grows before old entries are trimmed; workers only follow
/// it live, so old entries have no reader.
const CONTROL_MAXLEN: usize = 10_000;
/// Dead letters kept (about): enough to investigate, bounded so a flood cannot fill Redis.
const DEAD_LETTER_MAXLEN: usize = 10_000;
/// Bytes of task messages per pipeline: large enough for any normal flush in one round
/// trip (~8,000 small messages), small enough that a huge flush never becomes one huge
/// write. The pipeline holds its commands twice (arguments, then the packed request),
/// so 32 MB here cost ~90 MB at the peak of a 100,000-task submission.
const PIPELINE_BYTES: usize = 4 << 20;

impl RedisQueue {
    /// Connects to Redis at `url`, with keys under `keys`.
    pub async fn connect(url: &str, keys: Keys) -> Result<Self, QueueError> {
        let client = Client::open(url)?;
        // Large pipelines (tens of thousands of XADDs) take longer than the default 500 ms.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        let q = Self {
            client,
            conn,
            keys,
            groups: Mutex::new(HashSet::new()),
        };
        q.create_group(&q.keys.results(), ORCHESTRATOR_GROUP)
            .await?;
        Ok(q)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A reader of the results stream on its own connection (its reads block).
    pub async fn results_reader(&self, consumer: &str) -> Result<ResultsReader, QueueError> {
        ResultsReader::new(&self.client, self.keys.clone(), consumer).await
    }

    async fn create_group(&self, stream: &str, group: &str) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        // From 0, not $: entries added before the group existed must not be skipped.
        let r: Result<(), RedisError> = conn.xgroup_create_mkstream(stream, group, "0").await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes sure the worker group of each queue exists before tasks are added to it.
    /// Answers the queues Redis refused to set up (e.g. its key holds another type),
    /// with why; a failed connection is an error.
    async fn ensure_queues<'a>(
        &self,
        queues: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, String>, QueueError> {
        let missing: Vec<String> = {
            let known = self.groups.lock();
            queues
                .filter(|q| !known.contains(*q))
                .map(str::to_owned)
                .collect::<HashSet<_>>()
                .into_iter()
                .collect()
        };
        let mut refused = HashMap::new();
        for q in missing {
            match self.create_group(&self.keys.queue(&q), WORKER_GROUP).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    refused.insert(q, e.to_string());
                    continue;
                }
            }
            let mut conn = self.conn.clone();
            conn.sadd::<_, _, ()>(self.keys.queue_names(), &q).await?;
            self.groups.lock().insert(q);
        }
        Ok(refused)
    }

    /// Removes an idle queue's stream (with its group) if it holds no entry, and its
    /// name; a queue that got entries meanwhile is kept.
    async fn reap(&self, queue: &str) -> Result<(), QueueError> {
        let script = redis::Script::new(
            r"if redis.call('XLEN', KEYS[1]) == 0 then
                  redis.call('DEL', KEYS[1])
                  redis.call('SREM', KEYS[2], ARGV[1])
                  return 1
              end
              return 0",
        );
        let mut conn = self.conn.clone();
        let removed: i64 = script
            .key(self.keys.queue(queue))
            .key(self.keys.queue_names())
            .arg(queue)
            .invoke_async(&mut conn)
            .await?;
        if removed == 1 {
            self.groups.lock().remove(queue);
        }
        Ok(())
    }

    /// Removes consumers of `queue`'s worker group that hold nothing and have not read
    /// for `min_idle_ms`: workers that are gone. A live one is added again by its next
    /// read. Answers how many were removed.
    pub async fn remove_idle_consumers(
        &self,
        queue: &str,
        min_idle_ms: u64,
    ) -> Result<usize, QueueError> {
        let stream = self.keys.queue(queue);
        let mut conn = self.conn.clone();
        let reply: Result<Vec<HashMap<String, redis::Value>>, RedisError> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&stream)
            .arg(WORKER_GROUP)
            .query_async(&mut conn)
            .await;
        let consumers = match reply {
            Ok(c) => c,
            Err(e) if e.code() == Some("NOGROUP") => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let int = |v: Option<&redis::Value>| match v {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        };
        let mut removed = 0;
        for c in consumers {
            let name = match c.get("name") {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(redis::Value::SimpleString(s)) => s.clone(),
                _ => continue,
            };
            if int(c.get("pending")) == 0 && int(c.get("idle")) >= min_idle_ms {
                let _: i64 = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&stream)
                    .arg(WORKER_GROUP)
                    .arg(&name)
                    .query_async(&mut conn)
                    .await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Forgets which groups exist, so they are created again (after Redis lost its data).
    pub fn forget_groups(&self) {
        self.groups.lock().clear();
    }

    /// Sends one flush's writes, pipelined: task messages in pipelines of at most
    /// [`PIPELINE_BYTES`] (so one huge flush is never one huge write), then the acks,
    /// controls and dead letters. Answers, for each task message in order, its entry id
    /// or why Redis refused it; an error means the connection failed (try again).
    pub async fn send(&self, out: &Outgoing) -> Result<Vec<Result<String, String>>, QueueError> {
        if out.is_empty() {
            return Ok(vec![]);
        }
        let refused = self
            .ensure_queues(out.tasks.iter().map(|t| t.queue.as_str()))
            .await?;
        let mut conn = self.conn.clone();
        let mut landed = Vec::with_capacity(out.tasks.len());
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut bytes = 0;
        // Answers keep the tasks' order: a refused queue's tasks are answered in place.
        let mut pending_refusals: Vec<(usize, String)> = Vec::new();
        for (i, t) in out.tasks.iter().enumerate() {
            if let Some(why) = refused.get(&t.queue) {
                pending_refusals.push((i, format!("queue {:?}: {why}", t.queue)));
                continue;
            }
            if bytes > 0 && bytes + t.json.len() > PIPELINE_BYTES {
                landed.extend(Self::run_adds(&mut pipe, &mut conn).await?);
                pipe = redis::pipe();
                pipe.ignore_errors();
                bytes = 0;
            }
            bytes += t.json.len();
            pipe.cmd("XADD")
                .arg(self.keys.queue(&t.queue))
                .arg("*")
                .arg(MESSAGE_FIELD)
                .arg(&t.json);
        }
        for (queue, ids) in group_by_queue(&out.task_acks) {
            let stream = self.keys.queue(queue);
            pipe.cmd("XACK")
                .arg(&stream)
                .arg(WORKER_GROUP)
                .arg(&ids)
                .ignore();
            pipe.cmd("XDEL").arg(&stream).arg(&ids).ignore();
        }
        if !out.result_acks.is_empty() {
            let stream = self.keys.results();
            pipe.cmd("XACK")
                .arg(&stream)
                .arg(ORCHESTRATOR_GROUP)
                .arg(&out.result_acks)
                .ignore();
            pipe.cmd("XDEL").arg(&stream).arg(&out.result_acks).ignore();
        }
        for msg in &out.controls {
            pipe.cmd("XADD")
                .arg(self.keys.control())
                .arg("MAXLEN")
                .arg("~")
                .arg(CONTROL_MAXLEN)
                .arg("*")
                .arg(MESSAGE_FIELD)
                .arg(msg)
                .ignore();
        }
        for msg in &out.dead {
            pipe.cmd("XADD")
                .arg(self.keys.dead_letter())
                .arg("MAXLEN")
                .arg("~")
                .arg(DEAD_LETTER_MAXLEN)
                .arg("*")
                .arg(MESSAGE_FIELD)
                .arg(msg)
                .ignore();
        }
        landed.extend(Self::run_adds(&mut pipe, &mut conn).await?);
        for q in &out.reap_queues {
            self.reap(q).await?;
        }
        for (i, why) in pending_refusals {
            landed.insert(i, Err(why));
        }
        Ok(landed)
    }

    /// Runs a pipeline whose answered commands are task XADDs.
    async fn run_adds(
        pipe: &mut redis::Pipeline,
        conn: &mut redis::aio::ConnectionManager,
    ) -> Result<Vec<Result<String, String>>, QueueError> {
        // An empty pipeline would wait for answers that never come.
        if pipe.is_empty() {
            return Ok(Vec::new());
        }
        let results: Vec<redis::RedisResult<String>> = pipe.query_async(conn).await?;
        Ok(results
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect())
    }

    /// Names of every queue that has had tasks, as registered in Redis.
    pub async fn queues(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        Ok(conn.smembers(self.keys.queue_names()).await?)
    }

    /// Takes over entries of `queue` that no worker has renewed for `min_idle_ms`: their
    /// worker is gone. Returns each entry's id and message text.
    pub async fn reclaim(
        &self,
        queue: &str,
        min_idle_ms: u64,
    ) -> Result<Vec<WorkerEntry>, QueueError> {
        let stream = self.keys.queue(queue);
        let mut conn = self.conn.clone();
        let mut cursor = "0-0".to_owned();
        let mut out = Vec::new();
        loop {
            let reply: Result<redis::Value, RedisError> = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(WORKER_GROUP)
                .arg(RECLAIMER)
                .arg(min_idle_ms)
                .arg(&cursor)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await;
            let reply = match reply {
                Ok(r) => r,
                Err(e) if e.code() == Some("NOGROUP") => return Ok(out),
                Err(e) => return Err(e.into()),
            };
            let (next, entries) = reader::parse_autoclaim(reply);
            out.extend(entries);
            if next == "0-0" || out.len() >= 5_000 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Every entry still in a queue stream (queued or in flight), oldest first.
    pub async fn scan(&self, queue: &str) -> Result<Vec<WorkerEntry>, QueueError> {
        let stream = self.keys.queue(queue);
        let mut conn = self.conn.clone();
        let mut start = "-".to_owned();
        let mut out = Vec::new();
        loop {
            let reply: redis::Value = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await?;
            let page = reader::parse_entry_list(reply);
            let Some(last) = page.last() else {
                return Ok(out);
            };
            start = format!("({}", last.id);
            let full = page.len() == 1_000;
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// Returns the epoch this Redis carried, then marks it with `epoch` if it carried
    /// none. A Redis that restarted empty carries none, which tells that everything in
    /// it was lost.
    pub async fn epoch(&self, epoch: &str) -> Result<Option<String>, QueueError> {
        let mut conn = self.conn.clone();
        let key = self.keys.epoch();
        let (before,): (Option<String>,) = redis::pipe()
            .cmd("GET")
            .arg(&key)
            .cmd("SET")
            .arg(&key)
            .arg(epoch)
            .arg("NX")
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(before)
    }

    /// Dead letters added after entry `after` (`0` for all).
    pub async fn dead_letters_after(&self, after: &str) -> Result<Vec<WorkerEntry>, QueueError> {
        let mut conn = self.conn.clone();
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(self.keys.dead_letter())
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await?;
        Ok(reader::parse_entry_list(reply))
    }

    /// Waiting and in-flight entries of a queue stream.
    pub async fn depth(&self, queue: &str) -> Result<StreamDepth, QueueError> {
        let stream = self.keys.queue(queue);
        let mut conn = self.conn.clone();
        let (len, pending): (u64, redis::Value) = redis::pipe()
            .cmd("XLEN")
            .arg(&stream)
            .cmd("XPENDING")
            .arg(&stream)
            .arg(WORKER_GROUP)
            .query_async(&mut conn)
            .await
            .or_else(|e| {
                if e.code() == Some("NOGROUP") {
                    Ok((0, redis::Value::Nil))
                } else {
                    Err(e)
                }
            })?;
        let pending = match pending {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => *n as u64,
                _ => 0,
            },
            _ => 0,
        };
        Ok(StreamDepth {
            waiting: len.saturating_sub(pending),
            pending,
        })
    }

    /// Round trip to Redis, for readiness.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }
}

fn group_by_queue(acks: &[QueueEntry]) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for QueueEntry { queue: q, id } in acks {
        match out.iter_mut().find(|(name, _)| *name == q.as_str()) {
            Some((_, ids)) => ids.push(id),
            None => out.push((q, vec![id])),
        }
    }
    out
}
