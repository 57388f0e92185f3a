//! The embedded metadata store: one SQLite file (`registry.db`), WAL mode, readable by the
//! stock `sqlite3` tool.
//!
//! Concurrency: every write is one `BEGIN IMMEDIATE` transaction, so a writer takes the write
//! lock up front and waits (busy timeout) instead of failing half-way with "database is
//! locked"; checks (duplicates, stage rules) and writes happen inside that transaction, so two
//! racing writers cannot both pass a check.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};

use super::rules;
use super::schema::MIGRATIONS;
use super::{
    Kind, Layout, ListFilter, MetadataStore, MetricPoint, NameSummary, NewRun, NewVersion,
    ObjectUse, Reference, RunRecord, RunStatus, Stage, Stats, Transition, VersionChoice,
    VersionRecord,
};
use crate::db::{db_error, retry_busy, BUSY_TIMEOUT};
use crate::lineage::{LineageRows, NodeRecord, NodeRef, Relation};
use crate::{CoreError, Digest, Result};
use tx::SqliteTx;

#[derive(Debug)]
pub struct SqliteMetaStore {
    path: PathBuf,
    /// Where SQLite opens the file: `path` itself, or its resolved form with links refused.
    open_path: PathBuf,
    nofollow: bool,
    writable: bool,
    /// Why writes are refused, when opened read-only.
    read_only_reason: String,
    conn: Mutex<OpenConnection>,
    /// True when this open created the schema (the database was new or empty).
    created: bool,
    /// Space given up when a write finds the disk full (read-write opens in a registry).
    reserve: Option<SpaceReserve>,
}

/// The locked connection of a [`SqliteMetaStore`].
struct ConnectionGuard<'a>(MutexGuard<'a, OpenConnection>);

impl std::ops::Deref for ConnectionGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0.conn
    }
}

impl std::ops::DerefMut for ConnectionGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0.conn
    }
}

#[derive(Debug)]
struct OpenConnection {
    conn: Connection,
    /// The process that opened it: SQLite connections must not cross a `fork`, so a child
    /// opens its own (see [`SqliteMetaStore::lock`]).
    pid: u32,
}

const VERSION_COLUMNS: &str = "v.id, a.kind, a.name, v.version, v.digest, v.layout, v.size, \
     v.file_count, v.stage, v.description, v.card, v.created_at, v.created_by, v.run_id, v.mode";

fn version_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
    let kind: String = row.get(1)?;
    let digest: String = row.get(4)?;
    let layout: String = row.get(5)?;
    let stage: String = row.get(8)?;
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into())
    };
    Ok(VersionRecord {
        id: row.get(0)?,
        kind: Kind::parse(&kind).map_err(|_| bad("unknown kind"))?,
        name: row.get(2)?,
        version: row.get(3)?,
        digest: Digest::parse(&digest).map_err(|_| bad("malformed digest"))?,
        layout: Layout::parse(&layout),
        size: row.get::<_, i64>(6)?.try_into().unwrap_or(0),
        file_count: row.get::<_, i64>(7)?.try_into().unwrap_or(0),
        stage: Stage::parse(&stage).map_err(|_| bad("unknown stage"))?,
        description: row.get(9)?,
        card: row.get(10)?,
        aliases: Vec::new(),
        tags: Vec::new(),
        created_at: timestamp_cell(row, 11)?,
        created_by: row.get(12)?,
        run_id: row.get(13)?,
        // A damaged cell means "not recorded": the mode is a convenience, never checked.
        mode: row
            .get::<_, Option<i64>>(14)
            .ok()
            .flatten()
            .and_then(|m| u32::try_from(m).ok())
            .filter(|m| *m <= 0o777),
    })
}

#[cfg(test)]
#[test]
fn timestamps_are_checked_without_panicking() {
    for good in ["2026-12-03T10:15:30Z", "2026-12-03T10:15:30.123Z"] {
        assert!(is_timestamp(good), "{good}");
    }
    for bad in [
        "",
        "garbage",
        "-1",
        "2026-13-03T10:15:30Z",
        "2026-12-03T10:15:30.Z",
        "é".repeat(12).as_str(),
        "2026-12-03 10:15:30Z",
    ] {
        assert!(!is_timestamp(bad), "{bad}");
    }
}

/// Whether `text` has the one timestamp form the registry writes, `YYYY-MM-DDTHH:MM:SS.fffZ`
/// (fraction optional), with plausible field ranges.
fn is_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            .then(|| text[range].parse::<u32>().ok())
            .flatten()
    };
    if b.len() < 20 || !text.is_ascii() {
        return false;
    }
    let shape = b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[b.len() - 1] == b'Z';
    let fraction = match &b[19..b.len() - 1] {
        [] => true,
        [b'.', rest @ ..] => !rest.is_empty() && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    shape
        && fraction
        && digits(0..4).is_some()
        && digits(5..7).is_some_and(|m| (1..=12).contains(&m))
        && digits(8..10).is_some_and(|d| (1..=31).contains(&d))
        && digits(11..13).is_some_and(|h| h < 24)
        && digits(14..16).is_some_and(|m| m < 60)
        && digits(17..19).is_some_and(|s| s < 61)
}

/// A timestamp cell, refused as damaged unless it has the form the registry writes.
pub(super) fn timestamp_cell(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<String> {
    let text: String = row.get(index)?;
    if is_timestamp(&text) {
        Ok(text)
    } else {
        Err(rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("{text:?} is not a timestamp").into(),
        ))
    }
}

/// [`timestamp_cell`] for a cell that may be NULL.
pub(super) fn optional_timestamp_cell(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> rusqlite::Result<Option<String>> {
    match row.get_ref(index)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => timestamp_cell(row, index).map(Some),
    }
}

/// SQLite stores integers as i64; sizes beyond that are refused rather than wrapped.
fn to_sql_int(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| CoreError::InvalidInput {
        message: format!("{n} is too large to record"),
    })
}

/// `path` as an SQLite URI (`file:` with `%`, `?` and `#` escaped) with `query` appended.
fn sqlite_uri(path: &Path, query: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        match b {
            b'%' | b'?' | b'#' | 0x80..=0xff | 0..=0x1f => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(char::from(b)),
        }
    }
    uri.push('?');
    uri.push_str(query);
    uri
}

/// The most the write-ahead log keeps allocated between transactions.
const WAL_KEEP: i64 = 8 << 20;

/// Keep the write-ahead log and its shared-memory index when the last connection closes
/// (`SQLITE_FCNTL_PERSIST_WAL`), truncated to [`WAL_KEEP`] bytes. Without this, SQLite
/// deletes both on close, and the next process must create them again: on a full disk that
/// fails, and not even `list` could read the registry; nor could a teammate with read-only
/// access, who may not create files in it. The log's kept space also lets a small write
/// (a delete, the bookkeeping of gc) go through on a full disk, so space can be freed.
fn keep_wal_files(conn: &Connection) {
    let mut persist: std::ffi::c_int = 1;
    // SAFETY: `conn.handle()` is the open connection's own handle, valid for the duration of
    // the call; "main" is a NUL-terminated name of its main database; the opcode
    // SQLITE_FCNTL_PERSIST_WAL reads and writes exactly one `int` through the pointer, which
    // points at a live local.
    unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut persist).cast(),
        );
    }
    // A hint like the above: a failure only costs the benefits described there.
    let _ = conn.pragma_update(None, "journal_size_limit", WAL_KEEP);
}

/// A file of [`SpaceReserve::SIZE`] bytes kept in the registry directory so that, on a
/// full disk, the transactions that free space (deleting a version, gc's bookkeeping) can
/// still be written: when a write finds the disk full, the reserve is deleted and the write
/// tried once more. It is made again by the next process that opens the registry for
/// writing while there is room. A hint: where it cannot be made, there is none.
#[derive(Debug)]
struct SpaceReserve {
    dir: crate::fsutil::Dir,
}

impl SpaceReserve {
    const FILE: &'static str = "space.reserve";
    const SIZE: u64 = 4 << 20;

    /// The reserve in `dir`, made now if it is missing and there is room.
    fn keep(dir: &crate::fsutil::Dir, mode: u32) -> Option<Self> {
        let dir = dir.try_clone().ok()?;
        if dir.stat(Self::FILE).ok()?.is_none() {
            let file = dir.create_new(Self::FILE, mode).ok()??;
            if !allocate(&file, Self::SIZE) {
                let _ = dir.remove_file(Self::FILE);
                return None;
            }
        }
        Some(SpaceReserve { dir })
    }

    /// Give the reserve's space back; false when there was none.
    fn release(&self) -> bool {
        self.dir.remove_file(Self::FILE).unwrap_or(false)
    }
}

/// Give `file` `len` bytes of real disk space (not a sparse file).
fn allocate(file: &std::fs::File, len: u64) -> bool {
    #[cfg(target_os = "linux")]
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => return file.sync_all().is_ok(),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {}
        Err(_) => return false,
    }
    use std::io::Write;
    let chunk = vec![0u8; 64 << 10];
    let mut out = file;
    let mut written = 0;
    while written < len {
        let n = chunk
            .len()
            .min(usize::try_from(len - written).unwrap_or(chunk.len()));
        if out.write_all(&chunk[..n]).is_err() {
            return false;
        }
        written += n as u64;
    }
    file.sync_all().is_ok()
}

fn is_disk_full(e: &CoreError) -> bool {
    matches!(e, CoreError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
}

impl SqliteMetaStore {
    /// Open (creating and migrating as needed) the database at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        Self::open_at(path.clone(), path, false, true)
    }

    /// Open the registry database `name` in the registry directory `dir`: by its resolved
    /// path with links refused, read-write (migrating it) or read-only. A read-write open
    /// creates the file with `mode` if it is missing.
    pub(crate) fn open_in(
        dir: &crate::fsutil::Dir,
        name: &str,
        mode: u32,
        read_only: Option<&str>,
    ) -> Result<Self> {
        let path = dir.join(name);
        let writable = read_only.is_none();
        if writable && dir.create_new(name, mode)?.is_some() {
            dir.sync()?;
        }
        let open_path = dir.canonical_path()?.join(name);
        let mut store = Self::open_at(path, open_path, true, writable)?;
        if let Some(reason) = read_only {
            store.read_only_reason = reason.to_string();
        } else {
            store.reserve = SpaceReserve::keep(dir, mode);
        }
        Ok(store)
    }

    fn open_at(path: PathBuf, open_path: PathBuf, nofollow: bool, writable: bool) -> Result<Self> {
        let conn = Self::connect(&path, &open_path, nofollow, writable)?;
        let mut store = SqliteMetaStore {
            conn: Mutex::new(OpenConnection {
                conn,
                pid: std::process::id(),
            }),
            path,
            open_path,
            nofollow,
            writable,
            read_only_reason: "it was opened read-only".into(),
            created: false,
            reserve: None,
        };
        if writable {
            retry_busy(|| store.configure())?;
            store.created = retry_busy(|| store.migrate())?;
        } else {
            store.check_schema()?;
        }
        Ok(store)
    }

    /// A new connection (its per-connection settings applied).
    fn connect(
        path: &Path,
        open_path: &Path,
        nofollow: bool,
        writable: bool,
    ) -> Result<Connection> {
        let err = |e| db_error(path, e);
        let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        if nofollow {
            flags |= OpenFlags::SQLITE_OPEN_NOFOLLOW;
        }
        let conn = if writable {
            Connection::open_with_flags(
                open_path,
                flags | OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            )
            .map_err(err)?
        } else {
            let flags = flags | OpenFlags::SQLITE_OPEN_READ_ONLY;
            let conn = Connection::open_with_flags(open_path, flags).map_err(err)?;
            // A WAL database needs its shared-memory file, which a read-only directory may
            // not let SQLite create; nobody can be writing it then, so it is read as
            // immutable instead.
            match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            }) {
                Ok(_) => conn,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if matches!(
                        f.code,
                        rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly
                    ) =>
                {
                    drop(conn);
                    Connection::open_with_flags(sqlite_uri(open_path, "immutable=1"), flags)
                        .map_err(err)?
                }
                Err(e) => return Err(err(e)),
            }
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        if writable {
            keep_wal_files(&conn);
        }
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        // A directory of 100,000 files touches tens of MiB of index pages in one transaction;
        // SQLite's 2 MiB default would spill them to disk mid-transaction. The cache grows
        // only as pages are used.
        conn.pragma_update(None, "cache_size", -32 * 1024)
            .map_err(err)?;
        Ok(conn)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when this open created the schema: the database file was new or empty.
    pub fn created(&self) -> bool {
        self.created
    }

    fn lock(&self) -> ConnectionGuard<'_> {
        // A panic in another thread mid-call leaves SQLite itself consistent (it rolls back
        // an unfinished transaction when the Transaction is dropped).
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if guard.pid != pid {
            // A forked child: the inherited connection is never used or closed here (closing
            // it would release the parent's locks on this file); this process opens its own.
            if let Ok(conn) =
                Self::connect(&self.path, &self.open_path, self.nofollow, self.writable)
            {
                let inherited = std::mem::replace(&mut guard.conn, conn);
                std::mem::forget(inherited);
                guard.pid = pid;
            }
        }
        ConnectionGuard(guard)
    }

    fn err(&self, e: rusqlite::Error) -> CoreError {
        db_error(&self.path, e)
    }

    fn read_only_error(&self) -> CoreError {
        CoreError::ReadOnly {
            path: self.path.parent().unwrap_or(&self.path).to_path_buf(),
            reason: self.read_only_reason.clone(),
        }
    }

    fn configure(&self) -> Result<()> {
        let conn = self.lock();
        // WAL lets readers proceed while one process writes; FULL makes a commit durable
        // before it returns (the object bytes were fsync'd before the transaction began).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| self.err(e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A read-only open needs the schema this pacha writes: it cannot migrate.
    fn check_schema(&self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let current = {
            let conn = self.lock();
            self.schema_version(&conn)?
        };
        if current == known {
            return Ok(());
        }
        let message = if current == 0 {
            "it holds no registry (no schema); create one with `pacha init`".to_string()
        } else if current > known {
            format!(
                "the registry's schema is version {current}, newer than this pacha \
                 understands ({known}); upgrade pacha"
            )
        } else {
            format!(
                "the registry's schema is version {current} and needs an upgrade to {known}, \
                 which a read-only open cannot do; run `pacha init` with write access once"
            )
        };
        Err(CoreError::Database {
            path: self.path.clone(),
            message,
        })
    }

    /// The schema version recorded in the database (0 for a new, empty database).
    fn schema_version(&self, conn: &Connection) -> Result<i64> {
        let has_table: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if !has_table {
            return Ok(0);
        }
        conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(|e| self.err(e))
    }

    /// Bring the schema up to date; true when it was created from nothing.
    fn migrate(&self) -> Result<bool> {
        let known = MIGRATIONS.len() as i64;
        let mut conn = self.lock();
        // The common case, an up-to-date database, costs one read and no write.
        let current = self.schema_version(&conn)?;
        if current > known {
            return Err(CoreError::Database {
                path: self.path.clone(),
                message: format!(
                    "the registry's schema is version {current}, newer than this pacha \
                     understands ({known}); upgrade pacha"
                ),
            });
        }
        if current == known {
            return Ok(false);
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(|e| self.err(e))?;
        // Another process may have migrated while we waited for the write lock.
        let current = self.schema_version(&tx)?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql).map_err(|e| self.err(e))?;
            tx.execute("DELETE FROM schema_version", [])
                .map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [index as i64 + 1],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(current == 0)
    }

    fn write<T>(&self, f: impl Fn(&Transaction<'_>) -> Result<T>) -> Result<T> {
        if !self.writable {
            return Err(self.read_only_error());
        }
        self.write_once(&f)
    }

    /// [`Self::write`] for a transaction that frees space (a deletion, gc's bookkeeping): on
    /// a full disk it may use the [`SpaceReserve`].
    fn write_freeing<T>(&self, f: impl Fn(&Transaction<'_>) -> Result<T>) -> Result<T> {
        match self.write(&f) {
            Err(e)
                if is_disk_full(&e) && self.reserve.as_ref().is_some_and(SpaceReserve::release) =>
            {
                self.write(&f)
            }
            other => other,
        }
    }

    fn write_once<T>(&self, f: &impl Fn(&Transaction<'_>) -> Result<T>) -> Result<T> {
        retry_busy(|| {
            let mut conn = self.lock();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.err(e))?;
            let value = f(&tx)?;
            tx.commit().map_err(|e| self.err(e))?;
            Ok(value)
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&conn)
    }
}

// ---- queries shared by reads and writes (a `Transaction` derefs to a `Connection`) ----

fn artifact_id(
    store: &SqliteMetaStore,
    conn: &Connection,
    kind: Kind,
    name: &str,
) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT id FROM artifacts WHERE kind = ?1 AND name = ?2",
        params![kind.as_str(), name],
        |r| r.get(0),
    )
    .optional()
    .map_err(|e| store.err(e))
}

fn versions_where(
    store: &SqliteMetaStore,
    conn: &Connection,
    condition: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<VersionRecord>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM versions v JOIN artifacts a ON a.id = v.artifact_id \
         WHERE {condition}"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(|e| store.err(e))?;
    let rows = stmt
        .query_map(args, version_from_row)
        .map_err(|e| store.err(e))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| store.err(e))
}

/// Fill in aliases and tags for the given records (two queries, whatever their number).
fn attach_labels(
    store: &SqliteMetaStore,
    conn: &Connection,
    records: &mut [VersionRecord],
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    if let [record] = records {
        // One record (every get and write): cached statements, no IN list to prepare.
        let mut stmt = conn
            .prepare_cached("SELECT alias FROM aliases WHERE version_id = ?1 ORDER BY alias")
            .map_err(|e| store.err(e))?;
        record.aliases = stmt
            .query_map([record.id], |r| r.get(0))
            .map_err(|e| store.err(e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| store.err(e))?;
        let mut stmt = conn
            .prepare_cached("SELECT key, value FROM tags WHERE version_id = ?1 ORDER BY key")
            .map_err(|e| store.err(e))?;
        record.tags = stmt
            .query_map([record.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| store.err(e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| store.err(e))?;
        return Ok(());
    }
    let index: HashMap<i64, usize> = records.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let ids: Vec<String> = records.iter().map(|r| r.id.to_string()).collect();
    let id_list = ids.join(",");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT version_id, alias FROM aliases WHERE version_id IN ({id_list}) ORDER BY alias"
        ))
        .map_err(|e| store.err(e))?;
    let aliases = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .map_err(|e| store.err(e))?;
    for row in aliases {
        let (id, alias) = row.map_err(|e| store.err(e))?;
        if let Some(&i) = index.get(&id) {
            records[i].aliases.push(alias);
        }
    }
    let mut stmt = conn
        .prepare(&format!(
            "SELECT version_id, key, value FROM tags WHERE version_id IN ({id_list}) ORDER BY key"
        ))
        .map_err(|e| store.err(e))?;
    let tags = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(|e| store.err(e))?;
    for row in tags {
        let (id, key, value) = row.map_err(|e| store.err(e))?;
        if let Some(&i) = index.get(&id) {
            records[i].tags.push((key, value));
        }
    }
    Ok(())
}

/// The version a reference names (the rule in [`rules::resolve`], on this connection).
fn resolve_in(
    store: &SqliteMetaStore,
    conn: &Connection,
    kind: Kind,
    reference: &Reference,
) -> Result<VersionRecord> {
    rules::resolve(&mut SqliteTx { store, conn }, kind, reference)
}

impl MetadataStore for SqliteMetaStore {
    fn precheck(&self, kind: Kind, name: &str, choice: &VersionChoice) -> Result<()> {
        self.read(|conn| {
            rules::choose_version(&mut SqliteTx { store: self, conn }, kind, name, choice).map(drop)
        })
    }

    fn insert_version(&self, new: &NewVersion) -> Result<VersionRecord> {
        self.write(|tx| {
            rules::insert_version(
                &mut SqliteTx {
                    store: self,
                    conn: tx,
                },
                new,
            )
        })
    }

    fn resolve(&self, kind: Kind, reference: &Reference) -> Result<VersionRecord> {
        self.read(|conn| resolve_in(self, conn, kind, reference))
    }

    fn list_names(&self, kind: Kind) -> Result<Vec<NameSummary>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT a.name, v.version, v.prerelease FROM artifacts a \
                     JOIN versions v ON v.artifact_id = a.id WHERE a.kind = ?1",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([kind.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, bool>(2)?,
                    ))
                })
                .map_err(|e| self.err(e))?;
            let rows = rows
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| self.err(e))?;
            Ok(rules::name_summaries(rows))
        })
    }

    fn list_versions(
        &self,
        kind: Kind,
        name: Option<&str>,
        filter: &ListFilter,
    ) -> Result<Vec<VersionRecord>> {
        self.read(|conn| {
            rules::list_versions(&mut SqliteTx { store: self, conn }, kind, name, filter)
        })
    }

    fn transition(
        &self,
        kind: Kind,
        reference: &Reference,
        to: Stage,
        archive_existing: bool,
        actor: &str,
    ) -> Result<VersionRecord> {
        self.write(|tx| {
            let mut tx = SqliteTx {
                store: self,
                conn: tx,
            };
            rules::transition(&mut tx, kind, reference, to, archive_existing, actor)
        })
    }

    fn history(&self, version_id: i64) -> Result<Vec<Transition>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT from_stage, to_stage, at, by FROM stage_history WHERE version_id = ?1 ORDER BY id",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([version_id], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, String>(1)?,
                        timestamp_cell(r, 2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .map_err(|e| self.err(e))?;
            let mut history = Vec::new();
            for row in rows {
                let (from, to, at, by) = row.map_err(|e| self.err(e))?;
                history.push(Transition {
                    from: from.as_deref().map(Stage::parse).transpose()?,
                    to: Stage::parse(&to)?,
                    at,
                    by,
                });
            }
            Ok(history)
        })
    }

    fn set_alias(&self, kind: Kind, reference: &Reference, alias: &str) -> Result<VersionRecord> {
        self.write(|tx| {
            rules::set_alias(
                &mut SqliteTx {
                    store: self,
                    conn: tx,
                },
                kind,
                reference,
                alias,
            )
        })
    }

    fn delete_alias(&self, kind: Kind, name: &str, alias: &str) -> Result<()> {
        self.write(|tx| {
            rules::delete_alias(
                &mut SqliteTx {
                    store: self,
                    conn: tx,
                },
                kind,
                name,
                alias,
            )
        })
    }

    fn set_tags(
        &self,
        kind: Kind,
        reference: &Reference,
        tags: &[(String, String)],
    ) -> Result<VersionRecord> {
        self.write(|tx| {
            rules::set_tags(
                &mut SqliteTx {
                    store: self,
                    conn: tx,
                },
                kind,
                reference,
                tags,
            )
        })
    }

    fn stats(&self) -> Result<Stats> {
        self.read(|conn| {
            let count = |kind: &str| -> Result<u64> {
                conn.query_row(
                    "SELECT COUNT(*) FROM artifacts WHERE kind = ?1",
                    [kind],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n.try_into().unwrap_or(0))
                .map_err(|e| self.err(e))
            };
            let (versions, logical): (i64, i64) = conn
                .query_row(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM versions",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| self.err(e))?;
            let (objects, stored): (i64, i64) = conn
                .query_row(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| self.err(e))?;
            let runs: i64 = conn
                .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            Ok(Stats {
                runs: runs.try_into().unwrap_or(0),
                models: count("model")?,
                datasets: count("dataset")?,
                recipes: count("recipe")?,
                versions: versions.try_into().unwrap_or(0),
                objects: objects.try_into().unwrap_or(0),
                stored_bytes: stored.try_into().unwrap_or(0),
                logical_bytes: logical.try_into().unwrap_or(0),
            })
        })
    }

    fn create_run(&self, new: &NewRun) -> Result<RunRecord> {
        runs::create_run(self, new)
    }

    fn resolve_run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        self.read(|conn| runs::resolve_run(self, conn, id_or_prefix))
    }

    fn set_run_params(&self, run_id: &str, params: &str) -> Result<()> {
        runs::set_params(self, run_id, params)
    }

    fn log_metrics(&self, run_id: &str, points: &[MetricPoint]) -> Result<()> {
        runs::log_metrics(self, run_id, points)
    }

    fn log_at_next_step(&self, run_id: &str, values: &[(String, f64)], at: f64) -> Result<i64> {
        runs::log_at_next_step(self, run_id, values, at)
    }

    fn heartbeat_run(&self, run_id: &str) -> Result<()> {
        runs::heartbeat(self, run_id)
    }

    fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<RunRecord> {
        runs::finish_run(self, run_id, status, error)
    }

    fn list_runs(
        &self,
        recipe: Option<&Reference>,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunRecord>> {
        runs::list_runs(self, recipe, status)
    }

    fn run_metrics(&self, run_id: &str) -> Result<Vec<MetricPoint>> {
        runs::run_metrics(self, run_id)
    }

    fn final_metrics(&self, run_ids: &[String]) -> Result<Vec<(String, MetricPoint)>> {
        runs::final_metrics(self, run_ids)
    }

    fn best_run(
        &self,
        recipe: &Reference,
        metric: &str,
        minimize: bool,
    ) -> Result<Option<(RunRecord, MetricPoint)>> {
        runs::best_run(self, recipe, metric, minimize)
    }

    fn add_run_artifact(&self, run_id: &str, name: &str, digest: &Digest, size: u64) -> Result<()> {
        runs::add_artifact(self, run_id, name, digest, size)
    }

    fn run_artifacts(&self, run_id: &str) -> Result<Vec<(String, Digest, u64)>> {
        runs::artifacts(self, run_id)
    }

    fn find_node(&self, node: &NodeRef) -> Result<NodeRecord> {
        self.read(|conn| rules::lineage::find_node(&mut SqliteTx { store: self, conn }, node))
    }

    fn add_edge(
        &self,
        from: &NodeRef,
        to: &NodeRef,
        relation: Relation,
        params: &serde_json::Map<String, serde_json::Value>,
        actor: &str,
    ) -> Result<bool> {
        self.write(|tx| {
            let tx = &mut SqliteTx {
                store: self,
                conn: tx,
            };
            let from = rules::lineage::find_node(tx, from)?;
            let to = rules::lineage::find_node(tx, to)?;
            rules::lineage::add_edge(tx, &from, &to, relation, params, actor, false)
        })
    }

    fn lineage_token(&self) -> Result<String> {
        self.read(|conn| lineage::token(self, conn))
    }

    fn lineage_rows(&self) -> Result<LineageRows> {
        self.read(|conn| lineage::rows(self, conn))
    }

    fn versions_of_nodes(&self, node_ids: &[i64]) -> Result<Vec<(i64, VersionRecord)>> {
        self.read(|conn| lineage::versions_of_nodes(self, conn, node_ids))
    }

    fn referenced_objects(&self) -> Result<Vec<Digest>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT digest FROM version_objects UNION SELECT digest FROM run_artifacts",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| self.err(e))?;
            let mut digests = Vec::new();
            for row in rows {
                digests.push(Digest::parse(&row.map_err(|e| self.err(e))?)?);
            }
            Ok(digests)
        })
    }

    fn forget_objects(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::Value::from(digests.iter().map(Digest::to_hex).collect::<Vec<_>>())
            .to_string();
        self.write_freeing(|tx| {
            let referenced: std::collections::HashSet<String> = tx
                .prepare(
                    "SELECT value FROM json_each(?1) WHERE \
                     EXISTS (SELECT 1 FROM version_objects v WHERE v.digest = value) \
                     OR EXISTS (SELECT 1 FROM run_artifacts r WHERE r.digest = value)",
                )
                .and_then(|mut stmt| {
                    stmt.query_map([&list], |row| row.get::<_, String>(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(|e| self.err(e))?;
            tx.execute(
                "DELETE FROM objects WHERE digest IN (SELECT value FROM json_each(?1)) \
                 AND NOT EXISTS (SELECT 1 FROM version_objects v WHERE v.digest = objects.digest) \
                 AND NOT EXISTS (SELECT 1 FROM run_artifacts r WHERE r.digest = objects.digest)",
                [&list],
            )
            .map_err(|e| self.err(e))?;
            Ok(digests
                .iter()
                .filter(|d| !referenced.contains(&d.to_hex()))
                .copied()
                .collect())
        })
    }

    fn delete_version(
        &self,
        kind: Kind,
        reference: &Reference,
        force: bool,
    ) -> Result<VersionRecord> {
        self.write_freeing(|tx| {
            rules::delete_version(
                &mut SqliteTx {
                    store: self,
                    conn: tx,
                },
                kind,
                reference,
                force,
            )
        })
    }

    fn version_contents(&self, version_ids: Option<&[i64]>) -> Result<Vec<super::VersionContents>> {
        self.read(|conn| {
            let condition = match version_ids {
                Some(ids) => {
                    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                    format!("v.id IN ({})", ids.join(","))
                }
                None => "1".to_string(),
            };
            let records = versions_where(self, conn, &condition, &[])?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT vo.digest, o.size FROM version_objects vo \
                     JOIN objects o ON o.digest = vo.digest WHERE vo.version_id = ?1",
                )
                .map_err(|e| self.err(e))?;
            let mut contents = Vec::with_capacity(records.len());
            for record in records {
                let rows = stmt
                    .query_map([record.id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })
                    .map_err(|e| self.err(e))?;
                let mut objects = Vec::new();
                for row in rows {
                    let (digest, size) = row.map_err(|e| self.err(e))?;
                    objects.push((Digest::parse(&digest)?, u64::try_from(size).unwrap_or(0)));
                }
                contents.push((record, objects));
            }
            Ok(contents)
        })
    }

    fn object_uses(&self, version_ids: Option<&[i64]>) -> Result<Vec<ObjectUse>> {
        self.read(|conn| {
            let filter = match version_ids {
                Some(ids) => {
                    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                    format!("WHERE vo.version_id IN ({})", ids.join(","))
                }
                None => String::new(),
            };
            // Users are `name:version`; run artifacts (only when checking everything) are
            // named `run:<id>`.
            let runs = if version_ids.is_none() {
                "UNION ALL SELECT o.digest, o.size, 'run', ra.run_id FROM run_artifacts ra \
                 JOIN objects o ON o.digest = ra.digest"
            } else {
                ""
            };
            let sql = format!(
                "SELECT digest, size, name, version FROM (\
                 SELECT o.digest, o.size, a.name, v.version FROM version_objects vo \
                 JOIN objects o ON o.digest = vo.digest JOIN versions v ON v.id = vo.version_id \
                 JOIN artifacts a ON a.id = v.artifact_id {filter} {runs}) \
                 ORDER BY digest, name, version"
            );
            let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .map_err(|e| self.err(e))?;
            let mut uses: Vec<ObjectUse> = Vec::new();
            for row in rows {
                let (digest, size, name, version) = row.map_err(|e| self.err(e))?;
                let digest = Digest::parse(&digest)?;
                let user = format!("{name}:{version}");
                match uses.last_mut() {
                    Some(last) if last.digest == digest => last.users.push(user),
                    _ => uses.push(ObjectUse {
                        digest,
                        size: size.try_into().unwrap_or(0),
                        users: vec![user],
                    }),
                }
            }
            Ok(uses)
        })
    }
}

mod lineage;
mod runs;
mod tx;

#[cfg(test)]
mod tests;
