//! SQLite's result codes, classed as the store's errors.

use crate::store::StoreError;

/// Primary result codes (<https://www.sqlite.org/rescode.html>) that say the database
/// cannot be used right now rather than that the statement is wrong.
const TRANSIENT_CODES: [i32; 6] = [
    5,  // SQLITE_BUSY: another connection holds the lock past the busy timeout
    6,  // SQLITE_LOCKED
    10, // SQLITE_IOERR
    13, // SQLITE_FULL: the disk is full
    14, // SQLITE_CANTOPEN: the file or its directory is gone or unreadable
    15, // SQLITE_PROTOCOL: WAL locking raced
];
/// Primary result codes of a damaged database file.
const CORRUPT_CODES: [i32; 2] = [
    11, // SQLITE_CORRUPT
    26, // SQLITE_NOTADB
];

/// Classifies a sqlx error as [`StoreError::from`] does, plus what only SQLite says
/// through its result codes.
pub(in crate::store) fn classify(e: sqlx::Error) -> StoreError {
    let primary = match &e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            // Extended result codes carry the primary one in their low byte.
            .map(|c| c & 0xff),
        _ => None,
    };
    match primary {
        Some(c) if TRANSIENT_CODES.contains(&c) => StoreError::Unavailable(e),
        Some(c) if CORRUPT_CODES.contains(&c) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::from(e),
    }
}
