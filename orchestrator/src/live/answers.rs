//! The text each running attempt of a run has streamed so far, so a client that
//! connects mid-answer first gets the text so far, then the rest. Live only: the final
//! text is in the task's stored output.
//!
//! Each attempt's buffer is bounded: past the cap, the oldest text is dropped from the
//! buffer (never from what connected clients were sent) and counted, so a late client
//! gets the latest text and knows how much came before it.

use super::event::{BusEvent, Kind};
use crate::api_types::{AnswerEvent, LiveEvent};
use std::collections::HashMap;

/// What one attempt has streamed so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub attempt: u32,
    /// The latest text, at most the cap.
    pub text: String,
    /// Bytes (UTF-8) of earlier text no longer kept.
    pub dropped_bytes: usize,
}

/// The answers of one run's running attempts, by task id.
#[derive(Debug, Default)]
pub struct Answers {
    by_task: HashMap<Box<str>, Answer>,
    /// Most bytes kept per attempt.
    cap: usize,
}

impl Answers {
    pub fn new(cap: usize) -> Self {
        Self {
            by_task: HashMap::new(),
            cap,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_task.is_empty()
    }

    /// Takes one event of the run into account, in publication order: text is
    /// appended; a task that leaves its running attempt (finished, retried, sent back)
    /// has no answer any more.
    pub fn apply(&mut self, e: &BusEvent) {
        let Some(task) = e.subject.as_deref() else {
            return;
        };
        match e.kind {
            Kind::Text => {
                let Some(delta) = e.text.as_deref() else {
                    return;
                };
                let answer = self.by_task.entry(task.into()).or_insert_with(|| Answer {
                    attempt: e.attempt,
                    text: String::new(),
                    dropped_bytes: 0,
                });
                if e.attempt < answer.attempt {
                    return; // a late report of an attempt already replaced
                }
                if e.attempt > answer.attempt {
                    *answer = Answer {
                        attempt: e.attempt,
                        text: String::new(),
                        dropped_bytes: 0,
                    };
                }
                answer.text.push_str(delta);
                trim(answer, self.cap);
            }
            Kind::Task => {
                let running = e.state.as_deref() == Some("running");
                if let Some(a) = self.by_task.get(task) {
                    if !(running && e.attempt == a.attempt) {
                        self.by_task.remove(task);
                    }
                }
            }
            _ => {}
        }
    }

    /// Every answer as `answer` events (docs/API.md) of run `run_id`, for the tasks
    /// `wanted` accepts.
    pub fn events(&self, run_id: &str, wanted: impl Fn(&str) -> bool) -> Vec<LiveEvent> {
        let mut out: Vec<_> = self
            .by_task
            .iter()
            .filter(|(task, _)| wanted(task))
            .collect();
        // A stable order, for clients and tests.
        out.sort_by(|a, b| a.0.cmp(b.0));
        out.into_iter()
            .map(|(task, a)| {
                LiveEvent::Answer(AnswerEvent {
                    run_id: run_id.to_owned(),
                    task_id: task.to_string(),
                    attempt: a.attempt,
                    text: a.text.clone(),
                    dropped_bytes: a.dropped_bytes as u64,
                })
            })
            .collect()
    }

    #[cfg(test)]
    pub fn get(&self, task: &str) -> Option<&Answer> {
        self.by_task.get(task)
    }
}

/// Drops the oldest text past `cap`, down to three quarters of it at once, so a long
/// answer is not shifted on every delta; cuts on a character boundary.
fn trim(a: &mut Answer, cap: usize) {
    if a.text.len() <= cap {
        return;
    }
    let mut cut = a.text.len() - cap * 3 / 4;
    while !a.text.is_char_boundary(cut) {
        cut += 1;
    }
    a.text.drain(..cut);
    a.dropped_bytes += cut;
}

#[cfg(test)]
mod tests {
    use super::super::event::testing;
    use super::*;

    fn text(attempt: u32, t: &str) -> BusEvent {
        BusEvent::new(Some("r".into()), None, None, testing::text("a", attempt, t))
    }

    fn state(attempt: u32, s: &str) -> BusEvent {
        BusEvent::new(
            Some("r".into()),
            Some(1),
            None,
            testing::task_attempt("a", attempt, s),
        )
    }

    #[test]
    fn text_adds_up_per_attempt_and_goes_when_the_attempt_ends() {
        let mut a = Answers::new(1 << 10);
        a.apply(&state(1, "running"));
        a.apply(&text(1, "The moon "));
        a.apply(&state(1, "running"));
        a.apply(&text(1, "pulls"));
        assert_eq!(a.get("a").unwrap().text, "The moon pulls");
        a.apply(&text(2, "Again"));
        a.apply(&text(1, " late"));
        assert_eq!(
            a.get("a").map(|x| (x.attempt, x.text.as_str())),
            Some((2, "Again"))
        );
        a.apply(&state(2, "succeeded"));
        assert!(a.is_empty());
    }

    #[test]
    fn past_the_cap_the_oldest_text_is_dropped_and_counted_on_a_character_boundary() {
        let mut a = Answers::new(16);
        for _ in 0..10 {
            a.apply(&text(1, "héllo "));
        }
        let got = a.get("a").unwrap();
        assert!(got.text.len() <= 16);
        assert_eq!(got.dropped_bytes + got.text.len(), 70);
        assert!("héllo ".repeat(10).ends_with(&got.text));
        let events = a.events("r", |_| true);
        let LiveEvent::Answer(answer) = &events[0] else {
            panic!("not an answer: {:?}", events[0]);
        };
        assert_eq!(answer.dropped_bytes, got.dropped_bytes as u64);
    }
}
