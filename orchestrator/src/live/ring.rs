//! The fleet stream's recent events, for exact `since` resumption, bounded by count and
//! by bytes (issue #13: a few huge events must not hold the memory of thousands).
//! A run's stream resumes from the store instead, so its events are not kept here.

use super::event::BusEvent;
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug)]
pub struct Ring {
    events: VecDeque<Arc<BusEvent>>,
    /// Encoded bytes of `events`.
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
    /// The sequence number of the last event ever pushed (0: none yet).
    last_seq: u64,
}

impl Ring {
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            max_events: max_events.max(1),
            max_bytes,
            last_seq: 0,
        }
    }

    /// Keeps `e` (a fleet event, numbered), dropping the oldest past either bound.
    pub fn push(&mut self, e: Arc<BusEvent>) {
        self.last_seq = e.seq.unwrap_or(self.last_seq);
        self.bytes += e.json.len();
        self.events.push_back(e);
        while self.events.len() > self.max_events
            || (self.bytes > self.max_bytes && self.events.len() > 1)
        {
            if let Some(old) = self.events.pop_front() {
                self.bytes -= old.json.len();
            }
        }
    }

    /// The events after `since`, or `None` when some of them are no longer kept.
    pub fn after(&self, since: u64) -> Option<Vec<Arc<BusEvent>>> {
        let oldest = self
            .events
            .front()
            .and_then(|e| e.seq)
            .unwrap_or(self.last_seq + 1);
        (since + 1 >= oldest && since <= self.last_seq).then(|| {
            self.events
                .iter()
                .filter(|e| e.seq.is_some_and(|s| s > since))
                .cloned()
                .collect()
        })
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_types::{DeadLetterEvent, LiveEvent};
    use serde_json::json;

    /// A fleet event of about `pad` + 60 bytes.
    fn fleet(seq: u64, pad: usize) -> Arc<BusEvent> {
        let letter = LiveEvent::DeadLetter(DeadLetterEvent {
            letter: json!({"pad": "x".repeat(pad)}),
            at_ms: 1,
            seq: 0,
            stored_at_ms: None,
        });
        Arc::new(BusEvent::new(None, None, Some(seq), letter))
    }

    #[test]
    fn the_ring_is_bounded_by_bytes_as_well_as_by_count() {
        let mut ring = Ring::new(1_000, 1_000);
        for seq in 1..=10 {
            ring.push(fleet(seq, 250));
        }
        assert!(ring.bytes() <= 1_000, "{}", ring.bytes());
        let kept = ring.after(7).expect("the latest are kept");
        assert_eq!(
            kept.iter().map(|e| e.seq.unwrap()).collect::<Vec<_>>(),
            [8, 9, 10]
        );
        assert!(ring.after(2).is_none(), "older ones are gone: resync");
        assert_eq!(ring.after(10).map(|v| v.len()), Some(0));
        assert!(ring.after(11).is_none(), "a sequence from the future");

        let mut by_count = Ring::new(3, usize::MAX);
        for seq in 1..=5 {
            by_count.push(fleet(seq, 1));
        }
        assert!(by_count.after(1).is_none());
        assert_eq!(by_count.after(2).map(|v| v.len()), Some(3));
    }

    #[test]
    fn one_event_larger_than_the_bound_is_still_kept_until_the_next() {
        let mut ring = Ring::new(10, 100);
        ring.push(fleet(1, 500));
        assert_eq!(ring.after(0).map(|v| v.len()), Some(1));
    }
}
