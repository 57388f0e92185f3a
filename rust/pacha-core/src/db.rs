//! SQLite helpers shared by the metadata database and the object store's pack of small
//! objects: one busy policy and one error mapping for both.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::fsutil::Dir;
use crate::{CoreError, Result};

/// Open the existing SQLite file `name` in `dir` by its resolved path, refusing any symbolic
/// link in it (`SQLITE_OPEN_NOFOLLOW`): the files SQLite opens beside it (journal, WAL,
/// shared memory) are then in the same, checked directory. Never creates the file.
pub(crate) fn open_beneath(dir: &Dir, name: &str, writable: bool) -> rusqlite::Result<Connection> {
    let path = dir
        .canonical_path()
        .map_err(|e| rusqlite::Error::InvalidPath(e.to_string().into()))?
        .join(name);
    let access = if writable {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    };
    Connection::open_with_flags(
        path,
        access | OpenFlags::SQLITE_OPEN_NOFOLLOW | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// How long a writer waits for another process's transaction before giving up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn db_error(path: &Path, e: rusqlite::Error) -> CoreError {
    if let rusqlite::Error::SqliteFailure(ref failure, _) = e {
        if failure.code == rusqlite::ErrorCode::DiskFull
            || (failure.code == rusqlite::ErrorCode::SystemIoFailure && disk_is_full(path))
        {
            return CoreError::io(path, std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if matches!(
            failure.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        ) {
            return CoreError::Busy {
                path: path.into(),
                waited: BUSY_TIMEOUT,
            };
        }
    }
    let message = match &e {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => format!(
            "a value in the database is damaged ({e}); restore the database from a backup \
             (`pacha recover` rebuilds what the objects still tell)"
        ),
        _ => e.to_string(),
    };
    CoreError::Database {
        path: path.into(),
        message,
    }
}

/// Whether the file system holding `path` has no space left for an ordinary user (an I/O
/// error from SQLite then most likely means that).
fn disk_is_full(path: &Path) -> bool {
    let dir = path.parent().unwrap_or(path);
    rustix::fs::statvfs(dir).is_ok_and(|s| s.f_bavail == 0)
}

/// Run `attempt` again while SQLite reports the database busy, up to `BUSY_TIMEOUT`.
///
/// The busy timeout covers most waits, but SQLite returns SQLITE_BUSY at once in a few
/// cases (a connection opening while another switches the file to WAL or migrates it, a
/// snapshot that went stale); those must wait too, never reach a user as "locked". Every
/// attempt is a whole transaction, so a retry starts from scratch.
pub(crate) fn retry_busy<T>(mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match attempt() {
            Err(CoreError::Busy { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}
