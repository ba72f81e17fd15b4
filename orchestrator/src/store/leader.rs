//! One active orchestrator per database: a Postgres advisory lock held on a connection
//! of its own. Postgres releases it the moment that connection ends, so when a leader
//! dies (even by SIGKILL) a standby's next try succeeds.

use super::StoreError;
use sqlx::{Connection, PgConnection};
use std::time::Duration;
use tokio::sync::watch;

/// Advisory lock key shared by every Apex orchestrator on a database ("APEX").
const LOCK_KEY: i64 = 0x4150_4558;
/// How often a standby tries to take the lock, and a leader checks it still holds it.
const PERIOD: Duration = Duration::from_secs(1);

/// Proof of leadership; leadership ends when it is dropped.
pub struct Leadership {
    /// Turns true if leadership was lost to another orchestrator.
    lost: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Waits until this process holds the lock. `standby` is called once if another
    /// orchestrator holds it first.
    pub async fn acquire(url: &str, standby: impl FnOnce()) -> Result<Self, StoreError> {
        let mut standby = Some(standby);
        let conn = loop {
            match try_lock(url).await {
                Ok(Some(conn)) => break conn,
                Ok(None) => {
                    if let Some(f) = standby.take() {
                        f();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the store to take the leader lock; retrying")
                }
            }
            tokio::time::sleep(PERIOD).await;
        };
        let (tx, lost) = watch::channel(false);
        let url = url.to_owned();
        let task = tokio::spawn(keep(url, conn, tx));
        Ok(Self { lost, task })
    }

    /// Resolves if another orchestrator took over (this one must stop).
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|l| *l).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // Ending the task closes the connection, which releases the lock.
        self.task.abort();
    }
}

/// A connection holding the lock, or `None` when another session holds it.
async fn try_lock(url: &str) -> Result<Option<PgConnection>, StoreError> {
    let mut conn = PgConnection::connect(url).await?;
    let (held,): (bool,) = sqlx::query_as("select pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut conn)
        .await?;
    Ok(held.then_some(conn))
}

/// Watches the lock's connection. If it breaks (Postgres restarted or unreachable),
/// takes the lock again on a new one: while Postgres was down nobody else could have
/// taken it, but if someone did, leadership is lost.
async fn keep(url: String, mut conn: PgConnection, lost: watch::Sender<bool>) {
    loop {
        tokio::time::sleep(PERIOD).await;
        if conn.ping().await.is_ok() {
            continue;
        }
        tracing::warn!("lost the connection holding the leader lock; taking it again");
        conn = loop {
            match try_lock(&url).await {
                Ok(Some(c)) => {
                    tracing::info!("leader lock taken again");
                    break c;
                }
                Ok(None) => {
                    tracing::error!("another orchestrator took the leader lock; stepping down");
                    let _ = lost.send(true);
                    return;
                }
                Err(_) => tokio::time::sleep(PERIOD).await,
            }
        };
    }
}
