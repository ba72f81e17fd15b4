//! The results stream reader: a blocking `XREADGROUP` loop on a connection of its own.

use super::QueueError;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};
use worker_protocol::keys::ORCHESTRATOR_GROUP;
use worker_protocol::{Keys, MESSAGE_FIELD};

/// One entry read from the results stream: its id and the raw message text.
#[derive(Debug, Clone)]
pub struct WorkerEntry {
    pub id: String,
    /// The `m` field, or `None` when the entry has none.
    pub body: Option<Vec<u8>>,
}

/// Reads the results stream through the orchestrator's consumer group.
pub struct ResultsReader {
    client: Client,
    /// `None` after a connection error, until reconnected: this connection does not
    /// reconnect by itself (a restarted Redis would otherwise leave it dead for good).
    conn: Option<MultiplexedConnection>,
    keys: Keys,
    consumer: String,
    /// First the entries this consumer was given before a restart and never
    /// acknowledged (`0`), then new ones (`>`).
    backlog_done: bool,
}

impl ResultsReader {
    pub(super) async fn new(
        client: &Client,
        keys: Keys,
        consumer: &str,
    ) -> Result<Self, QueueError> {
        let conn = Self::connect(client).await?;
        Ok(Self {
            client: client.clone(),
            conn: Some(conn),
            keys,
            consumer: consumer.to_owned(),
            backlog_done: false,
        })
    }

    async fn connect(client: &Client) -> Result<MultiplexedConnection, QueueError> {
        // Blocking reads must not be cut short by a response timeout.
        let config = AsyncConnectionConfig::new().set_response_timeout(None);
        Ok(client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// Up to `count` entries, waiting at most `block_ms` for the first one.
    pub async fn read(
        &mut self,
        count: usize,
        block_ms: u64,
    ) -> Result<Vec<WorkerEntry>, QueueError> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => Self::connect(&self.client).await?,
        };
        let result = self.read_on(&mut conn, count, block_ms).await;
        match &result {
            Err(QueueError(e))
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() => {}
            _ => self.conn = Some(conn),
        }
        result
    }

    async fn read_on(
        &mut self,
        conn: &mut MultiplexedConnection,
        count: usize,
        block_ms: u64,
    ) -> Result<Vec<WorkerEntry>, QueueError> {
        let from = if self.backlog_done { ">" } else { "0" };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(ORCHESTRATOR_GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if self.backlog_done {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(self.keys.results()).arg(from);
        let reply: Value = match cmd.query_async(conn).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis lost the stream (restarted empty): recreate the group and go on.
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(self.keys.results())
                    .arg(ORCHESTRATOR_GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async::<()>(conn)
                    .await
                    .or_else(|e| {
                        if e.code() == Some("BUSYGROUP") {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })?;
                return Ok(vec![]);
            }
            Err(e) => return Err(e.into()),
        };
        let entries = parse_entries(reply);
        if !self.backlog_done && entries.is_empty() {
            self.backlog_done = true;
        }
        Ok(entries)
    }
}

impl ResultsReader {
    /// Entries delivered at least `min_idle_ms` ago and never acknowledged: a reader
    /// that stopped (an orchestrator that crashed or lost leadership after reading)
    /// left them, and nothing else would ever read them again. Taken over by this
    /// consumer, at most `count`.
    pub async fn reclaim_stale(
        &mut self,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<Vec<WorkerEntry>, QueueError> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => Self::connect(&self.client).await?,
        };
        let reply: Result<Value, redis::RedisError> = redis::cmd("XAUTOCLAIM")
            .arg(self.keys.results())
            .arg(ORCHESTRATOR_GROUP)
            .arg(&self.consumer)
            .arg(min_idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await;
        self.conn = Some(conn);
        match reply {
            Ok(v) => Ok(parse_autoclaim(v).1),
            Err(e) if e.code() == Some("NOGROUP") => Ok(vec![]),
            Err(e) => Err(e.into()),
        }
    }
}

/// Parses an `XAUTOCLAIM` reply: `[next cursor, [[id, fields], …], [deleted ids]]`.
pub(super) fn parse_autoclaim(reply: Value) -> (String, Vec<WorkerEntry>) {
    let Value::Array(mut parts) = reply else {
        return ("0-0".into(), vec![]);
    };
    if parts.len() < 2 {
        return ("0-0".into(), vec![]);
    }
    let entries = parse_entry_list(parts.remove(1));
    let next = match parts.remove(0) {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::SimpleString(s) => s,
        _ => "0-0".into(),
    };
    (next, entries)
}

/// Parses `[[id, [field, value, …]], …]`.
pub(super) fn parse_entry_list(reply: Value) -> Vec<WorkerEntry> {
    parse_entries(Value::Array(vec![Value::Array(vec![Value::Nil, reply])]))
}

/// Parses `[[stream, [[id, [field, value, …]], …]]]` without a map per entry.
fn parse_entries(reply: Value) -> Vec<WorkerEntry> {
    let mut out = Vec::new();
    let streams = match reply {
        Value::Array(s) => s,
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return out,
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let Value::Array(entries) = parts.pop().unwrap_or(Value::Nil) else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut e) = entry else { continue };
            if e.len() != 2 {
                continue;
            }
            let fields = e.pop().unwrap_or(Value::Nil);
            let id = match e.pop() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                Some(Value::SimpleString(s)) => s,
                _ => continue,
            };
            let body = match fields {
                Value::Array(kv) => {
                    let mut body = None;
                    let mut it = kv.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        if matches!(&k, Value::BulkString(b) if b == MESSAGE_FIELD.as_bytes()) {
                            if let Value::BulkString(b) = v {
                                body = Some(b);
                            }
                        }
                    }
                    body
                }
                // A pending entry that was deleted meanwhile comes back with nil fields.
                _ => None,
            };
            out.push(WorkerEntry { id, body });
        }
    }
    out
}
