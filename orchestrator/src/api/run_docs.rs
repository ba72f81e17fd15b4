//! `GET /api/v1/runs/{id}` answered from memory while nothing has been stored since.
//!
//! Dashboards and scripts poll a run's document, often hundreds of times a second across
//! clients, and each read cost three queries on the database the writer is busy with
//! (p95 ~80 ms at 1,000 reads/s during a 20,000-task run on two cores). An answer is kept
//! as its encoded bytes, tagged with the store generation taken *before* its queries, so it
//! is never older than what was stored when it was read; it is served only while the
//! generation has not moved. Every commit moves it, so under load most commits cost one
//! read per polled document instead of every poll costing one.

use axum::body::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;

/// Most documents kept; past it, those of older generations go, then all.
const MAX_ENTRIES: usize = 1_024;
/// Most bytes kept, whoever asks for however many runs; past it, as above.
const MAX_TOTAL_BYTES: usize = 16 * 1024 * 1024;
/// Larger documents (runs with many inline tasks) are not kept: they change with almost
/// every commit while they run, and would crowd out the small ones.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Which document of a run: with its inline tasks, or its summary and history only.
type Key = (String, bool);

/// Encoded run documents by run and shape, each with the generation it was read at.
#[derive(Default)]
pub struct RunDocs {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    docs: HashMap<Key, (u64, Bytes)>,
    /// The bytes of every document in `docs`.
    bytes: usize,
}

impl Entries {
    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.docs.retain(|_, (g, _)| keep(*g));
        self.bytes = self.docs.values().map(|(_, b)| b.len()).sum();
    }

    fn full(&self, adding: usize) -> bool {
        self.docs.len() >= MAX_ENTRIES || self.bytes + adding > MAX_TOTAL_BYTES
    }
}

impl RunDocs {
    /// The document read at `generation`, if that is the one kept.
    pub fn get(&self, id: &str, with_tasks: bool, generation: u64) -> Option<Bytes> {
        let entries = self.entries.lock();
        match entries.docs.get(&(id.to_owned(), with_tasks)) {
            Some((g, body)) if *g == generation => {
                metrics::counter!("apex_run_docs_total", "answer" => "memory").increment(1);
                Some(body.clone())
            }
            _ => {
                metrics::counter!("apex_run_docs_total", "answer" => "store").increment(1);
                None
            }
        }
    }

    /// Keeps a document read from the store after `generation` was taken.
    pub fn put(&self, id: &str, with_tasks: bool, generation: u64, body: Bytes) {
        if body.len() > MAX_BODY_BYTES {
            return;
        }
        let mut entries = self.entries.lock();
        let key = (id.to_owned(), with_tasks);
        // Two reads racing: keep the one taken at the later generation.
        if entries.docs.get(&key).is_some_and(|(g, _)| *g > generation) {
            return;
        }
        if let Some((_, old)) = entries.docs.remove(&key) {
            entries.bytes -= old.len();
        }
        if entries.full(body.len()) {
            entries.retain(|g| g >= generation);
            if entries.full(body.len()) {
                entries.retain(|_| false);
            }
        }
        entries.bytes += body.len();
        entries.docs.insert(key, (generation, body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_served_only_at_its_generation() {
        let docs = RunDocs::default();
        docs.put("r", true, 7, Bytes::from_static(b"{}"));
        assert!(docs.get("r", true, 7).is_some());
        assert!(
            docs.get("r", true, 8).is_none(),
            "a commit since: read again"
        );
        assert!(
            docs.get("r", false, 7).is_none(),
            "the other shape is its own"
        );
        assert!(docs.get("other", true, 7).is_none());
    }

    #[test]
    fn an_older_read_does_not_replace_a_newer_one() {
        let docs = RunDocs::default();
        docs.put("r", true, 9, Bytes::from_static(b"new"));
        docs.put("r", true, 8, Bytes::from_static(b"old"));
        assert_eq!(docs.get("r", true, 9).as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn it_stays_bounded() {
        let docs = RunDocs::default();
        for i in 0..(MAX_ENTRIES * 3) {
            docs.put(&format!("r{i}"), true, 1, Bytes::from_static(b"{}"));
        }
        assert!(docs.entries.lock().docs.len() <= MAX_ENTRIES);
        docs.put("big", true, 1, Bytes::from(vec![b' '; MAX_BODY_BYTES + 1]));
        assert!(docs.get("big", true, 1).is_none());
        // As many of the largest kept documents as fit, and more: the bytes stay bounded.
        for i in 0..(MAX_TOTAL_BYTES / MAX_BODY_BYTES * 2) {
            docs.put(
                &format!("large{i}"),
                true,
                2,
                Bytes::from(vec![b' '; MAX_BODY_BYTES]),
            );
        }
        let entries = docs.entries.lock();
        assert!(entries.bytes <= MAX_TOTAL_BYTES);
        assert_eq!(
            entries.bytes,
            entries.docs.values().map(|(_, b)| b.len()).sum::<usize>()
        );
    }
}
