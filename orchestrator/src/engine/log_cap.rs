//! How much log one attempt may store. A handler (or a forged message) could otherwise
//! grow the store and every task view without bound; workers cap their own logs too,
//! but Redis is not trusted, so the engine counts again.

use std::collections::HashMap;

/// Longest log line stored; longer ones are cut (on a character boundary).
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// The caps of one attempt.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    pub lines: u32,
    pub bytes: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            lines: 1_000,
            bytes: 1 << 20,
        }
    }
}

/// What to do with one log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Store it, cut to this many bytes.
    Keep(usize),
    /// Store this notice instead: the cap was just reached.
    Notice(String),
    /// Drop it: the cap was reached before.
    Drop,
}

/// Lines and bytes stored so far, per task of one run (for its current attempt).
#[derive(Debug, Default)]
pub struct LogTally {
    /// task → (attempt, lines, bytes, capped)
    seen: HashMap<u32, (u32, u32, usize, bool)>,
}

impl LogTally {
    /// Counts a line of `len` bytes of `attempt` of `task` against `limits`.
    pub fn admit(&mut self, task: u32, attempt: u32, len: usize, limits: LogLimits) -> Verdict {
        let entry = self.seen.entry(task).or_insert((attempt, 0, 0, false));
        if entry.0 != attempt {
            *entry = (attempt, 0, 0, false);
        }
        let (_, lines, bytes, capped) = entry;
        if *capped {
            return Verdict::Drop;
        }
        let keep = len.min(MAX_LINE_BYTES);
        if *lines + 1 > limits.lines || *bytes + keep > limits.bytes {
            *capped = true;
            return Verdict::Notice(format!(
                "log cap reached ({} lines, {} bytes per attempt): this attempt's further log lines are not stored",
                limits.lines, limits.bytes
            ));
        }
        *lines += 1;
        *bytes += keep;
        Verdict::Keep(keep)
    }

    /// Forgets a task (its attempt ended and was replaced, or the run left memory).
    pub fn forget(&mut self, task: u32) {
        self.seen.remove(&task);
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_stores_up_to_its_caps_then_one_notice_then_nothing() {
        let limits = LogLimits {
            lines: 3,
            bytes: 100,
        };
        let mut t = LogTally::default();
        assert_eq!(t.admit(0, 1, 10, limits), Verdict::Keep(10));
        assert_eq!(t.admit(0, 1, 10, limits), Verdict::Keep(10));
        assert_eq!(t.admit(0, 1, 10, limits), Verdict::Keep(10));
        assert!(matches!(t.admit(0, 1, 10, limits), Verdict::Notice(_)));
        assert_eq!(t.admit(0, 1, 10, limits), Verdict::Drop);
        // Another task and the next attempt start afresh.
        assert_eq!(t.admit(1, 1, 10, limits), Verdict::Keep(10));
        assert_eq!(t.admit(0, 2, 10, limits), Verdict::Keep(10));
        // Bytes cap too.
        assert!(matches!(t.admit(2, 1, 101, limits), Verdict::Notice(_)));
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let mut t = LogTally::default();
        let limits = LogLimits::default();
        assert_eq!(
            t.admit(0, 1, 1 << 20, limits),
            Verdict::Keep(MAX_LINE_BYTES)
        );
        assert_eq!(cut("héllo".into(), 2), "h");
        assert_eq!(cut("héllo".into(), 3), "hé");
    }
}
