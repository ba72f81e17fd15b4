//! A store read shared by the clients of one stream: whoever asks while a read is in
//! flight waits for it instead of starting their own (single flight), and a finished
//! read is handed to later askers it is still good for.
//!
//! A thousand dashboards opening a run at once then cost the store a handful of reads,
//! not a thousand; each read is queued behind the last, so they never pile up on the
//! store's connection pool.

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The latest value read, with when its reading began.
#[derive(Debug)]
pub struct SharedRead<T> {
    /// A tokio mutex, held across the read: that is what makes askers wait for a read in
    /// flight instead of starting another.
    last: Mutex<Option<(Instant, T)>>,
}

impl<T> Default for SharedRead<T> {
    fn default() -> Self {
        Self {
            last: Mutex::new(None),
        }
    }
}

impl<T: Clone> SharedRead<T> {
    /// The last value read if `good(began, value)` says it will do (`began`: when its
    /// reading began), else a fresh one from `read`, kept for later askers. A failed
    /// read is not kept: the next asker tries again.
    pub async fn get<E, F, Fut>(&self, good: impl Fn(Instant, &T) -> bool, read: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut last = self.last.lock().await;
        if let Some((_, v)) = last.as_ref().filter(|(began, v)| good(*began, v)) {
            return Ok(v.clone());
        }
        let began = Instant::now();
        let v = read().await?;
        *last = Some((began, v.clone()));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::SharedRead;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::time::Instant;

    #[tokio::test]
    async fn askers_during_a_read_share_it_and_later_askers_get_a_newer_one() {
        let shared = Arc::new(SharedRead::<usize>::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let read = |reads: Arc<AtomicUsize>| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, ()>(reads.fetch_add(1, Ordering::SeqCst) + 1)
        };
        // Every asker wants a read begun after t0; whichever starts first, its read is
        // good for all who come after.
        let t0 = Instant::now();
        let askers: Vec<_> = (0..50)
            .map(|_| {
                let (shared, reads) = (Arc::clone(&shared), Arc::clone(&reads));
                tokio::spawn(async move { shared.get(|b, _| b >= t0, || read(reads)).await })
            })
            .collect();
        for a in askers {
            assert_eq!(a.await.unwrap(), Ok(1));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1, "one read served fifty");
        // Someone asking now needs a read begun after they asked (the last began at
        // least a read's 100 ms ago).
        let now = Instant::now();
        let v = shared
            .get(|b, _| b >= now, || read(Arc::clone(&reads)))
            .await;
        assert_eq!(v, Ok(2));
        // A failed read is not kept.
        let later = Instant::now() + Duration::from_secs(1);
        let failed = shared.get(|b, _| b >= later, || async { Err::<usize, _>("down") });
        assert_eq!(failed.await, Err("down"));
        let v = shared.get(|_, _| true, || read(Arc::clone(&reads))).await;
        assert_eq!(v, Ok(2), "the last good read still serves");
    }
}
