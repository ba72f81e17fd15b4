//! One active orchestrator per database. On Postgres: an advisory lock held on a
//! connection of its own, which Postgres releases the moment that connection ends. On
//! SQLite: an exclusive lock on a file beside the database (`<db>.leader`), which the
//! OS releases the moment the file is closed. Either way, when a leader dies (even by
//! SIGKILL) a standby's next try succeeds.

use super::{sqlite, Store, StoreError};
use sqlx::{Connection, PgConnection};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
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
    /// The store whose epoch proves leadership, once opened: a lock taken again after
    /// its connection broke leads on only if nobody took over meanwhile.
    store: Arc<OnceLock<Arc<dyn Store>>>,
    /// Owns what holds the lock (connection or file) and watches it.
    task: tokio::task::JoinHandle<()>,
}

/// Where the lock lives, by database kind.
enum Lock {
    Postgres(String),
    /// The lock file of a SQLite database.
    File(PathBuf),
}

impl Lock {
    fn for_url(url: &str) -> Result<Self, StoreError> {
        match url.split_once(':').map(|(scheme, _)| scheme) {
            Some("postgres" | "postgresql") => Ok(Lock::Postgres(url.to_owned())),
            Some("sqlite") => {
                let mut path = sqlite::database_path(url)?.into_os_string();
                path.push(".leader");
                Ok(Lock::File(path.into()))
            }
            _ => Err(StoreError::UnsupportedUrl(
                url.split(':').next().unwrap_or(url).to_owned(),
            )),
        }
    }
}

/// What holds a taken lock; dropping it releases the lock.
enum Held {
    Connection(PgConnection),
    /// The lock file, and the path it was opened at.
    File(File, PathBuf),
}

impl Leadership {
    /// Waits until this process holds the lock. `standby` is called once if another
    /// orchestrator holds it first.
    pub async fn acquire(url: &str, standby: impl FnOnce()) -> Result<Self, StoreError> {
        let lock = Lock::for_url(url)?;
        let mut standby = Some(standby);
        let held = loop {
            match try_lock(&lock).await {
                Ok(Some(held)) => break held,
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
        let store = Arc::new(OnceLock::new());
        let task = tokio::spawn(keep(lock, held, tx, Arc::clone(&store)));
        Ok(Self { lost, store, task })
    }

    /// From now on, a lock taken again is checked against `store`'s epoch.
    pub fn guard(&mut self, store: Arc<dyn Store>) {
        let _ = self.store.set(store);
    }

    /// Resolves if another orchestrator took over (this one must stop).
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|l| *l).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // Ending the task closes the connection or file, which releases the lock.
        self.task.abort();
    }
}

/// The lock, or `None` when another orchestrator holds it.
async fn try_lock(lock: &Lock) -> Result<Option<Held>, StoreError> {
    match lock {
        Lock::Postgres(url) => {
            // Named, so an operator (or a fault test) can find the lock's session.
            let options: sqlx::postgres::PgConnectOptions = url
                .parse()
                .map_err(|e: sqlx::Error| StoreError::InvalidUrl(e.to_string()))?;
            let options =
                options.application_name(&format!("apex-leader-lock-{}", std::process::id()));
            let mut conn = PgConnection::connect_with(&options).await?;
            let (held,): (bool,) = sqlx::query_as("select pg_try_advisory_lock($1)")
                .bind(LOCK_KEY)
                .fetch_one(&mut conn)
                .await?;
            Ok(held.then_some(Held::Connection(conn)))
        }
        Lock::File(path) => Ok(try_lock_file(path)?.map(|f| Held::File(f, path.clone()))),
    }
}

/// The lock file, locked; `None` when another process (or another open of the same
/// file in this one) holds it.
fn try_lock_file(path: &Path) -> Result<Option<File>, StoreError> {
    let io = |e| StoreError::Unavailable(sqlx::Error::Io(e));
    sqlite::create_parent_dir(path)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Watches what holds the lock. If it breaks, takes the lock again; if someone else has
/// it by then, leadership is lost.
async fn keep(
    lock: Lock,
    mut held: Held,
    lost: watch::Sender<bool>,
    store: Arc<OnceLock<Arc<dyn Store>>>,
) {
    loop {
        tokio::time::sleep(PERIOD).await;
        if still_held(&mut held).await {
            continue;
        }
        tracing::warn!("lost what held the leader lock; taking it again");
        held = loop {
            match try_lock(&lock).await {
                Ok(Some(h)) => {
                    // Another orchestrator may have led (and died) while the lock was
                    // free: its takeover moved the epoch on, and this one's memory is
                    // stale.
                    let taken_over = match store.get() {
                        Some(s) => !matches!(s.holds_epoch().await, Ok(true)),
                        None => false,
                    };
                    if taken_over {
                        tracing::error!(
                            "another orchestrator led while the lock was lost; stepping down"
                        );
                        let _ = lost.send(true);
                        return;
                    }
                    tracing::info!("leader lock taken again");
                    break h;
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

/// False when the lock may have been released behind our back: the connection broke
/// (Postgres restarted or unreachable; nobody else could take the lock meanwhile), or
/// the lock file was removed or replaced (another process could lock the new one).
async fn still_held(held: &mut Held) -> bool {
    match held {
        Held::Connection(conn) => conn.ping().await.is_ok(),
        Held::File(file, path) => !replaced(path, file),
    }
}

/// True when `path` no longer names the file we hold locked. An error reading the path
/// other than its absence proves nothing, and taking the lock again would then fail
/// against our own lock, so it counts as not replaced.
fn replaced(path: &Path, file: &File) -> bool {
    match std::fs::metadata(path) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        Ok(now) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                file.metadata()
                    .is_ok_and(|ours| (ours.dev(), ours.ino()) != (now.dev(), now.ino()))
            }
            #[cfg(not(unix))]
            {
                let _ = (file, now);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("apex-leader-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_second_orchestrator_on_the_same_sqlite_file_waits_until_the_first_is_dropped() {
        let dir = temp_dir();
        let url = format!("sqlite://{}/apex.db", dir.display());
        let first = Leadership::acquire(&url, || panic!("the first one leads at once"))
            .await
            .unwrap();
        assert!(dir.join("apex.db.leader").exists());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let second = tokio::spawn(async move {
            Leadership::acquire(&url, move || tx.send(()).unwrap())
                .await
                .unwrap()
        });
        rx.await.expect("the second one is told it stands by");
        assert!(!second.is_finished());
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second one leads once the first is gone")
            .unwrap();
        drop(second);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_removed_lock_file_is_locked_again_and_leadership_kept() {
        let dir = temp_dir();
        let url = format!("sqlite://{}/apex.db", dir.display());
        let mut leader = Leadership::acquire(&url, || {}).await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !dir.join("apex.db.leader").exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "lock file not taken again"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Nobody else took it meanwhile, so this orchestrator still leads.
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), leader.lost())
                .await
                .is_err()
        );
        // And it is really held: another open of the file cannot lock it.
        assert!(try_lock_file(&dir.join("apex.db.leader"))
            .unwrap()
            .is_none());
        drop(leader);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_unknown_database_url_is_refused_rather_than_retried_forever() {
        let err = Leadership::acquire("mysql://localhost/apex", || {})
            .await
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::UnsupportedUrl(s) if s == "mysql"));
    }
}
