//! Size limits on submitted DAGs. Each has a default that fits agent swarms of 100,000
//! tasks; all are checked before anything is stored.

/// The limits a submission must respect.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Tasks in one run.
    pub max_tasks: usize,
    /// Dependencies of one task.
    pub max_dependencies: usize,
    /// Characters in a task id, handler or queue name.
    pub max_id_len: usize,
    /// Bytes of one task's `input`, encoded as JSON.
    pub max_input_bytes: usize,
    /// Nesting depth of one task's `input`.
    pub max_json_depth: usize,
    /// `retries` of one task.
    pub max_retries: u32,
    /// Providers the operator declared; an agent must name one of them.
    pub providers: crate::providers::ProviderNames,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_tasks: 100_000,
            max_dependencies: 1_000,
            max_id_len: 128,
            max_input_bytes: 1 << 20,
            max_json_depth: 64,
            max_retries: 100,
            providers: crate::providers::built_in(),
        }
    }
}
