//! The store's one error type. It answers the question the daemon asks of every failure: try
//! again later (`is_transient`), or stop and report (corruption, a newer schema, a bug).

use rusqlite::ErrorCode;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("not a SHA-256 hex digest: {0:?}")]
    BadHash(String),

    #[error("blob {0} is missing")]
    BlobMissing(String),

    #[error("blob {hash} is corrupt: its content hashes to {actual}")]
    BlobCorrupt { hash: String, actual: String },

    #[error("the database is at schema version {found}, newer than this program knows ({known}); upgrade iapt-intake")]
    SchemaTooNew { found: i64, known: i64 },

    #[error("stored JSON is unreadable: {0}")]
    Json(#[from] serde_json::Error),

    #[error("stored data is unreadable: {0}")]
    Data(String),

    #[error("cannot file this: {0}")]
    InvalidFiling(String),

    #[error("no queued reply with id {0}")]
    UnknownReply(i64),

    #[error("the store's lock was poisoned by a panic in another thread")]
    Poisoned,
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io { op, path: path.into(), source }
    }

    /// Worth retrying later: the database is busy or locked by another process, or the disk
    /// failed or filled up. Corruption, constraint violations, a newer schema and bugs are not:
    /// retrying them would only repeat the failure.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DiskFull
                    | ErrorCode::OutOfMemory
                    | ErrorCode::FileLockingProtocolFailed
            ),
            StoreError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::ffi::c_int) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None))
    }

    #[test]
    fn busy_locked_and_disk_failures_are_transient() {
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_FULL,
        ] {
            assert!(sqlite(code).is_transient(), "code {code}");
        }
        let disk = StoreError::io("write", "/x", std::io::Error::other("EIO"));
        assert!(disk.is_transient());
    }

    #[test]
    fn corruption_constraints_and_bad_blobs_are_not_transient() {
        for code in [rusqlite::ffi::SQLITE_CORRUPT, rusqlite::ffi::SQLITE_CONSTRAINT] {
            assert!(!sqlite(code).is_transient(), "code {code}");
        }
        let corrupt = StoreError::BlobCorrupt { hash: "a".into(), actual: "b".into() };
        assert!(!corrupt.is_transient());
        assert!(!StoreError::SchemaTooNew { found: 9, known: 3 }.is_transient());
    }
}
