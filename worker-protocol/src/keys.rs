//! Redis key names. Every key Apex touches is built here, under one prefix, so that
//! deployments and test runs can share a Redis without seeing each other.

/// Consumer group of the workers on every queue stream.
pub const WORKER_GROUP: &str = "workers";
/// Consumer group of the orchestrator on the results stream.
pub const ORCHESTRATOR_GROUP: &str = "orchestrator";

/// Builds the names of Apex's Redis keys under a prefix (default `apex`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`; an empty prefix is replaced by `apex`.
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let prefix = if prefix.is_empty() {
            "apex".to_owned()
        } else {
            prefix
        };
        Self { prefix }
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Stream of task messages for one queue; workers read it through [`WORKER_GROUP`].
    pub fn queue(&self, queue: &str) -> String {
        format!("{}:queue:{}", self.prefix, queue)
    }

    /// Stream of worker messages (started, result, progress, log, heartbeat, …) that the
    /// orchestrator reads through [`ORCHESTRATOR_GROUP`].
    pub fn results(&self) -> String {
        format!("{}:results", self.prefix)
    }

    /// Stream of control messages (cancel, drain) that every worker follows.
    pub fn control(&self) -> String {
        format!("{}:control", self.prefix)
    }

    /// Set of every queue name that has had tasks, so the orchestrator can find their
    /// streams without scanning the keyspace.
    pub fn queue_names(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    /// Random value the orchestrator sets once; if it vanishes, Redis lost its data.
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// Stream where messages that cannot be parsed or have an unknown version are kept.
    pub fn dead_letter(&self) -> String {
        format!("{}:dead", self.prefix)
    }
}

impl Default for Keys {
    fn default() -> Self {
        Self::new("apex")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_their_prefix() {
        let k = Keys::new("t1");
        assert_eq!(k.queue("default"), "t1:queue:default");
        assert_eq!(k.results(), "t1:results");
        assert_eq!(k.control(), "t1:control");
        assert_eq!(k.dead_letter(), "t1:dead");
        assert_eq!(k.queue_names(), "t1:queues");
        assert_eq!(k.epoch(), "t1:epoch");
        assert_eq!(Keys::new("").prefix(), "apex");
    }
}
