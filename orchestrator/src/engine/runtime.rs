//! The engine's own threads, apart from the ones that answer HTTP and WebSockets.
//!
//! The engine does long stretches of CPU work between awaits: folding a big batch of
//! results, encoding a commit's events for the bus, building tens of thousands of task
//! messages. On the threads that also serve requests, a `GET` or a frame write that
//! arrives meanwhile waits in that thread's queue until the stretch ends. On threads of
//! its own, that work competes with requests only for the CPU, where the kernel lets a
//! request's thread (asleep until the request arrived) run soon.

use std::future::Future;

/// Threads of the engine's runtime: the core loop, the writer and the bus publisher each
/// keep one busy under load.
const THREADS: usize = 2;

/// A runtime for the engine's tasks, shut down without blocking when dropped (it may be
/// dropped inside the server's own runtime, where blocking is not allowed).
pub struct EngineRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl EngineRuntime {
    /// Starts the engine's threads.
    pub fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(THREADS)
            .thread_name("apex-engine")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `future` on the engine's threads: whatever it spawns runs there too.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("the engine runtime is only taken on drop")
            .spawn(future)
    }
}

impl Drop for EngineRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
