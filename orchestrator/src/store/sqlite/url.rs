//! Which database file a `sqlite:` URL names, and how it is opened.

use crate::store::StoreError;
use sqlx::sqlite::SqliteConnectOptions;
use std::path::PathBuf;
use std::str::FromStr;

/// Connect options for a `sqlite:` URL: `sqlite://relative/path.db`,
/// `sqlite:///absolute/path.db` or `sqlite:path.db`, with sqlx's query parameters.
/// In-memory databases are refused: they vanish with their last connection and no
/// standby can share them.
pub(super) fn options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| StoreError::InvalidUrl(format!("{url:?} is not a sqlite: URL")))?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    if path == ":memory:" || params.split('&').any(|p| p == "mode=memory") {
        return Err(StoreError::InvalidUrl(format!(
            "{url:?} is an in-memory SQLite database, which is lost when its last \
             connection closes and cannot be shared with a standby; name a file instead, \
             e.g. sqlite://.apex/apex.db"
        )));
    }
    if path.is_empty() {
        return Err(StoreError::InvalidUrl(format!(
            "{url:?} names no database file; e.g. sqlite://.apex/apex.db"
        )));
    }
    SqliteConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl(format!("{url:?}: {e}")))
}

/// The database file a `sqlite:` URL names.
pub fn database_path(url: &str) -> Result<PathBuf, StoreError> {
    Ok(options(url)?.get_filename().to_owned())
}

/// Creates the directory a database (or lock) file goes in, if missing.
pub(in crate::store) fn create_parent_dir(file: &std::path::Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))
        }
        _ => Ok(()),
    }
}
