//! A run stream's recent stored events, as its frames carried them (coalesced), so a
//! client that joins or resumes with a cursor they cover is served from memory: one
//! copy for every joiner instead of one store read each (issue #15). Pure.
//!
//! Exactness rests on two facts of the engine: a run's stored events are numbered
//! without gaps, and published in that order by the one writer. So when the kept
//! events are contiguous, a cursor at or after the first one's predecessor gets every
//! event after it from here, and whatever is newer than the last kept one has not
//! been framed yet: it comes in the frames a subscriber receives after it joined.
//!
//! Frames drop events a later one in the same frame supersedes; re-coalescing what is
//! kept here yields what coalescing the raw events would (the latest of every key,
//! every pinned event), so a replay from here equals one from the store.

use super::event::BusEvent;
use std::collections::VecDeque;
use std::sync::Arc;

/// The kept events, oldest first.
#[derive(Debug)]
pub struct Recent {
    events: VecDeque<Arc<BusEvent>>,
    /// Encoded bytes of `events`.
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
    /// The sequence number before the oldest event that is known to be complete from
    /// here: every stored event after it, up to `last`, passed through `keep`. `None`
    /// when nothing is known (nothing kept since the stream began framing, or a gap).
    from: Option<u64>,
    /// The last sequence number kept.
    last: u64,
}

impl Recent {
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            max_events,
            max_bytes,
            from: None,
            last: 0,
        }
    }

    /// Keeps the stored events of one frame (`seq_from..=seq_to`, coalesced), in order.
    pub fn keep(&mut self, seq_from: u64, seq_to: u64, events: &[Arc<BusEvent>]) {
        if self.max_events == 0 {
            return;
        }
        if self.from.is_none() || seq_from != self.last + 1 {
            // The first frame seen, or one not following the last: start over from it.
            self.forget();
            self.from = Some(seq_from.saturating_sub(1));
        }
        for e in events.iter().filter(|e| e.cursor().is_some()) {
            self.bytes += e.json.len();
            self.events.push_back(Arc::clone(e));
        }
        self.last = seq_to;
        while self.events.len() > self.max_events || self.bytes > self.max_bytes {
            let Some(old) = self.events.pop_front() else {
                break;
            };
            self.bytes -= old.json.len();
            // Whatever the oldest event was the latest of is now gone with it.
            self.from = old.cursor();
        }
    }

    /// Drops everything: events reached the stream without being framed (nobody was
    /// subscribed), so what is kept no longer runs up to the latest.
    pub fn forget(&mut self) {
        self.events.clear();
        self.bytes = 0;
        self.from = None;
        self.last = 0;
    }

    /// The last sequence number [`Recent::after`] would account for, without copying
    /// anything; `None` when it would answer `None`.
    pub fn end_after(&self, since: u64) -> Option<u64> {
        self.from
            .filter(|&from| since >= from)
            .map(|_| self.last.max(since))
    }

    /// The kept events after `since`, and the last sequence number they account for;
    /// `None` when some event after `since` is not kept (a store read must serve it).
    pub fn after(&self, since: u64) -> Option<(Vec<Arc<BusEvent>>, u64)> {
        self.end_after(since)?;
        let events = self
            .events
            .iter()
            .filter(|e| e.cursor().is_some_and(|s| s > since))
            .cloned()
            .collect();
        Some((events, self.last.max(since)))
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::testing;
    use super::*;
    use crate::api_types::{Event, LiveEvent};

    fn task(seq: u64, id: &str, state: &str) -> Arc<BusEvent> {
        let e = Event {
            seq,
            ..testing::stored("task", Some(id), Some(state), 1)
        };
        Arc::new(BusEvent::new(
            Some("r".into()),
            Some(seq),
            None,
            LiveEvent::Stored(e),
        ))
    }

    fn seqs(v: &[Arc<BusEvent>]) -> Vec<u64> {
        v.iter().filter_map(|e| e.cursor()).collect()
    }

    #[test]
    fn a_cursor_inside_the_kept_range_gets_every_later_event_and_nothing_before() {
        let mut r = Recent::new(100, usize::MAX);
        assert!(r.after(0).is_none(), "nothing known yet");
        // A frame 5..=7 whose 5 and 6 were superseded by 7.
        r.keep(5, 7, &[task(7, "a", "succeeded")]);
        r.keep(8, 9, &[task(8, "b", "queued"), task(9, "c", "queued")]);
        assert!(r.after(3).is_none(), "4 was never seen here");
        let (ev, last) = r.after(4).unwrap();
        assert_eq!((seqs(&ev), last), (vec![7, 8, 9], 9));
        let (ev, last) = r.after(8).unwrap();
        assert_eq!((seqs(&ev), last), (vec![9], 9));
        let (ev, last) = r.after(12).unwrap();
        assert_eq!(
            (ev.len(), last),
            (0, 12),
            "newer than kept: the frames bring it"
        );
    }

    #[test]
    fn a_gap_or_forgetting_starts_over_and_eviction_moves_the_start() {
        let mut r = Recent::new(2, usize::MAX);
        r.keep(1, 1, &[task(1, "a", "queued")]);
        r.keep(3, 3, &[task(3, "a", "running")]);
        assert!(r.after(1).is_none(), "2 never passed through");
        assert_eq!(r.after(2).map(|(e, _)| seqs(&e)), Some(vec![3]));
        r.keep(4, 4, &[task(4, "b", "queued")]);
        r.keep(5, 5, &[task(5, "c", "queued")]);
        assert!(r.after(2).is_none(), "3 was evicted");
        assert_eq!(r.after(3).map(|(e, _)| seqs(&e)), Some(vec![4, 5]));
        r.forget();
        assert!(r.after(5).is_none() && r.end_after(9).is_none());
    }

    #[test]
    fn the_bytes_bound_holds() {
        let mut r = Recent::new(1_000, 300);
        for s in 1..=10 {
            r.keep(s, s, &[task(s, "a", "running")]);
        }
        assert!(r.bytes() <= 300, "{}", r.bytes());
        assert!(r.after(9).is_some() && r.after(1).is_none());
    }
}
