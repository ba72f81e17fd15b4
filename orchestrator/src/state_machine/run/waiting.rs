//! Ready tasks waiting to be admitted, grouped by the shared limits they need.
//!
//! Tasks that name the same agent and concurrency key ask the [`Gate`](super::Gate)
//! for the same slots, so once the best of them is turned away, the rest would be
//! too. Admission therefore walks the groups' best tasks, not every waiting task:
//! a group whose head the gate refused is set aside for the rest of the pass. Ten
//! thousand tasks blocked on one key cost one refusal per pass, not ten thousand.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

/// Order of admission: highest priority first, then by task index.
pub(super) type Key = (Reverse<i32>, u32);

/// The shared limits a task needs: its agent and its concurrency key.
pub(super) type Class<'a> = (Option<&'a str>, Option<&'a str>);

/// One group of waiting tasks that need the same shared limits.
#[derive(Debug, Clone, Default)]
struct Group {
    tasks: BTreeSet<Key>,
    /// Set aside for the current admission pass: its head was refused.
    held: bool,
}

/// Waiting tasks, by group, with each group's best task in one ordered set.
#[derive(Debug, Clone, Default)]
pub(super) struct Waiting {
    ids: HashMap<(Option<String>, Option<String>), usize>,
    groups: Vec<Group>,
    /// The group of each waiting task.
    group_of: HashMap<u32, usize>,
    /// The best task of every group not held, and its group.
    heads: BTreeSet<(Key, usize)>,
}

impl Waiting {
    /// Adds a task (no effect if it already waits).
    pub fn insert(&mut self, key: Key, class: Class<'_>) {
        if self.group_of.contains_key(&key.1) {
            return;
        }
        let owned = (class.0.map(str::to_owned), class.1.map(str::to_owned));
        let next = self.groups.len();
        let g = *self.ids.entry(owned).or_insert(next);
        if g == next {
            self.groups.push(Group::default());
        }
        self.group_of.insert(key.1, g);
        let group = &mut self.groups[g];
        let old_head = group.tasks.first().copied();
        group.tasks.insert(key);
        if !group.held && old_head.is_none_or(|h| key < h) {
            if let Some(h) = old_head {
                self.heads.remove(&(h, g));
            }
            self.heads.insert((key, g));
        }
    }

    /// Removes a task; false if it was not waiting.
    pub fn remove(&mut self, key: Key) -> bool {
        let Some(g) = self.group_of.remove(&key.1) else {
            return false;
        };
        let group = &mut self.groups[g];
        let was_head = group.tasks.first() == Some(&key);
        group.tasks.remove(&key);
        if was_head && !group.held {
            self.heads.remove(&(key, g));
            if let Some(&next) = group.tasks.first() {
                self.heads.insert((next, g));
            }
        }
        true
    }

    /// True when the task waits.
    pub fn contains(&self, task: u32) -> bool {
        self.group_of.contains_key(&task)
    }

    pub fn len(&self) -> usize {
        self.group_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.group_of.is_empty()
    }

    /// The best waiting task of the groups not held, and its group.
    pub fn first(&self) -> Option<(Key, usize)> {
        self.heads.first().copied()
    }

    /// Sets group `g` aside until [`Waiting::unhold_all`]: its head was refused.
    pub fn hold(&mut self, g: usize) {
        let group = &mut self.groups[g];
        if group.held {
            return;
        }
        group.held = true;
        if let Some(&h) = group.tasks.first() {
            self.heads.remove(&(h, g));
        }
    }

    /// Ends a pass: every held group is considered again.
    pub fn unhold_all(&mut self, held: &[usize]) {
        for &g in held {
            let group = &mut self.groups[g];
            if !std::mem::replace(&mut group.held, false) {
                continue;
            }
            if let Some(&h) = group.tasks.first() {
                self.heads.insert((h, g));
            }
        }
    }

    /// Empties the set, returning the tasks best first.
    pub fn take_all(&mut self) -> Vec<u32> {
        let mut all: Vec<Key> = self
            .groups
            .iter_mut()
            .flat_map(|g| std::mem::take(&mut g.tasks))
            .collect();
        all.sort_unstable();
        self.clear();
        all.into_iter().map(|(_, i)| i).collect()
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(priority: i32, i: u32) -> Key {
        (Reverse(priority), i)
    }

    #[test]
    fn heads_follow_priority_within_and_across_groups() {
        let mut w = Waiting::default();
        w.insert(key(0, 3), (None, Some("k")));
        w.insert(key(0, 1), (None, Some("k")));
        w.insert(key(5, 7), (Some("a"), None));
        w.insert(key(0, 1), (None, Some("k"))); // already waiting
        assert_eq!(w.first(), Some((key(5, 7), 1)));
        assert!(w.remove(key(5, 7)));
        assert_eq!(w.first(), Some((key(0, 1), 0)));
        w.hold(0);
        assert_eq!(w.first(), None, "the only other group is held");
        w.insert(key(9, 2), (None, Some("k")));
        assert_eq!(w.first(), None, "a held group stays aside");
        w.unhold_all(&[0]);
        assert_eq!(w.first(), Some((key(9, 2), 0)));
        assert!(w.contains(3) && !w.contains(7));
        assert_eq!(w.take_all(), vec![2, 1, 3]);
        assert!(w.is_empty() && w.first().is_none());
    }
}
