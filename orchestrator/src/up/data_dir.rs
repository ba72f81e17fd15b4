//! What `apex up` keeps in its data directory besides the database: the lock that keeps
//! two `apex up`s off one directory, the API token (reused on the next start), and the
//! URL it serves at. The CLI reads the last two, so `apex runs` in the same directory
//! (or with `--data-dir`) needs no flags.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File holding the API token of `apex up` (owner-only permissions).
pub const TOKEN_FILE: &str = "api-token";
/// File holding the URL `apex up` serves at.
pub const SERVER_FILE: &str = "server-url";
const LOCK_FILE: &str = "up.lock";
use crate::config::MIN_TOKEN_LEN;

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot use the data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another `apex up` is already running on the data directory {0} (see its server-url file); stop it, or pass a different --data-dir")]
    InUse(PathBuf),
    #[error("the API token in {0} is shorter than {MIN_TOKEN_LEN} characters; delete the file to get a new one")]
    WeakToken(PathBuf),
}

/// The data directory of one `apex up`, absolute, created, and locked for as long as
/// this value lives.
pub struct DataDir {
    path: PathBuf,
    /// The OS releases the lock when this file is closed, even on SIGKILL.
    _lock: File,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

impl DataDir {
    /// Makes `dir` absolute (redis-server changes into its own directory, so a relative
    /// path would point elsewhere for it), creates it and takes its lock.
    pub fn open(dir: &Path) -> Result<Self, DataDirError> {
        let path = std::path::absolute(dir).map_err(io_error(dir))?;
        std::fs::create_dir_all(&path).map_err(io_error(&path))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(DataDirError::InUse(path)),
            Err(TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
        }
        Ok(Self { path, _lock: lock })
    }

    /// The absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token kept here, or a new random one written with owner-only permissions.
    pub fn token(&self) -> Result<String, DataDirError> {
        let file = self.path.join(TOKEN_FILE);
        match std::fs::read_to_string(&file) {
            Ok(t) => {
                let t = t.trim().to_owned();
                if t.len() < MIN_TOKEN_LEN {
                    return Err(DataDirError::WeakToken(file));
                }
                return Ok(t);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&file)(e)),
        }
        let token = new_token();
        write_private(&file, &token).map_err(io_error(&file))?;
        Ok(token)
    }

    /// Records the URL this `apex up` serves at, for the CLI.
    pub fn record_server(&self, url: &str) -> Result<(), DataDirError> {
        let file = self.path.join(SERVER_FILE);
        std::fs::write(&file, format!("{url}\n")).map_err(io_error(&file))
    }
}

/// 32 random bytes as hex: 256 bits, safe in a URL.
pub(super) fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")
}

/// What the CLI finds in a data directory: the server `apex up` recorded and its token.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub server: Option<String>,
    pub token: Option<String>,
}

/// Reads what `apex up` recorded in `dir`; missing files are simply absent.
pub fn recorded(dir: &Path) -> Recorded {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    Recorded {
        server: read(SERVER_FILE),
        token: read(TOKEN_FILE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> PathBuf {
        std::env::temp_dir().join(format!("apex-datadir-{}", uuid::Uuid::now_v7()))
    }

    #[test]
    fn a_relative_dir_with_spaces_is_made_absolute_and_its_token_is_kept() {
        let base = temp();
        std::fs::create_dir_all(&base).unwrap();
        let rel = PathBuf::from(format!("{}/my data dir", pathdiff(&base).display()));
        let dir = DataDir::open(&rel).unwrap();
        assert!(dir.path().is_absolute());
        assert!(dir.path().ends_with("my data dir"));
        let token = dir.token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(dir.token().unwrap(), token, "reused on the next start");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the token file is the owner's only");
        }
        dir.record_server("http://127.0.0.1:1234").unwrap();
        let found = recorded(dir.path());
        assert_eq!(found.server.as_deref(), Some("http://127.0.0.1:1234"));
        assert_eq!(found.token.as_deref(), Some(token.as_str()));
        drop(dir);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_second_apex_up_on_the_same_dir_is_refused() {
        let base = temp();
        let first = DataDir::open(&base).unwrap();
        assert!(matches!(DataDir::open(&base), Err(DataDirError::InUse(_))));
        drop(first);
        assert!(
            DataDir::open(&base).is_ok(),
            "the lock goes with the process"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_short_token_file_is_refused() {
        let base = temp();
        let dir = DataDir::open(&base).unwrap();
        std::fs::write(base.join(TOKEN_FILE), "short\n").unwrap();
        assert!(matches!(dir.token(), Err(DataDirError::WeakToken(_))));
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// `path` relative to the current directory, so the test exercises a relative path.
    fn pathdiff(path: &Path) -> PathBuf {
        let cwd = std::env::current_dir().unwrap();
        let up = cwd.components().count() - 1;
        let mut rel = PathBuf::new();
        for _ in 0..up {
            rel.push("..");
        }
        rel.join(path.strip_prefix("/").unwrap())
    }
}
