//! Small objects packed into one SQLite file, `objects/packs/small.sqlite`.
//!
//! A directory of 100,000 one-kilobyte files would otherwise be 100,000 object files: a
//! create, write, chmod and rename each, which is what limited dataset ingest (benches/).
//! Here each is a row, and one commit makes thousands of them durable together. SQLite
//! reads and writes blobs of this size faster than separate files ("Internal Versus External
//! BLOBs in SQLite", sqlite.org), and it gives crash-safe transactions for free, so the pack
//! format is SQLite's rather than a hand-written append-only file.
//!
//! Only the local store knows the pack exists: callers see objects by address, wherever
//! their bytes live. See "Packed objects" in `docs/store-format.md`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use super::ObjectInfo;
use crate::db::{db_error, retry_busy, BUSY_TIMEOUT};
use crate::fsutil::{Dir, Sharing};
use crate::{Digest, Result};

/// Objects up to this size, written as part of a batch, are packed.
pub const PACK_MAX: u64 = 64 * 1024;

pub(crate) const PACK_DIR: &str = "packs";
pub(crate) const PACK_FILE: &str = "small.sqlite";
/// The name a damaged pack is kept under, followed by the time it was set aside.
pub(crate) const DAMAGED_PREFIX: &str = "small.damaged-";

/// Larger pages than SQLite's default 4 KiB, so that a 4 KiB object fits in one page with
/// its neighbours instead of spilling into an overflow page of its own.
const PAGE_SIZE: u32 = 16 * 1024;

/// The rollback journal is kept between transactions (PERSIST) but cut back to this size, so
/// that one large deletion by gc does not leave a large journal behind.
const JOURNAL_LIMIT: u64 = 4 << 20;

/// Rows read per transaction when walking the whole pack, so that a long walk (verify) never
/// holds a read lock that would keep writers (and, behind them, readers) waiting.
pub(crate) const WALK_ROWS: i64 = 256;

/// SQLite's page cache for the pack, in KiB: more than one batch flush of dirty pages.
const CACHE_KIB: u32 = 24 * 1024;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS objects (
    digest BLOB PRIMARY KEY NOT NULL CHECK (length(digest) = 32),
    -- When the object was last written or reused (ms since the epoch), for gc's grace period.
    touched_ms INTEGER NOT NULL,
    -- Last, so that reading the other columns never touches the bytes.
    data BLOB NOT NULL
)";

/// One packed object, as [`Pack::for_each`] hands it out.
pub(crate) struct PackedObject<'a> {
    /// `None` when the row's address column is malformed (a damaged pack).
    pub digest: Option<Digest>,
    pub data: &'a [u8],
}

#[derive(Debug)]
pub(crate) struct Pack {
    /// The store's root, from which `packs/` is reached without following links.
    store_root: Dir,
    sharing: Sharing,
    writable: bool,
    path: PathBuf,
    /// Opened on first use; until a pack exists, readers pay one `stat` per lookup, never
    /// an SQLite open.
    conn: Mutex<Option<OpenPack>>,
}

#[derive(Debug)]
struct OpenPack {
    conn: Connection,
    /// The process that opened it: a connection must not cross a `fork` (SQLite's rule).
    pid: u32,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Pack {
    pub(crate) fn new(store_root: &Dir, sharing: Sharing, writable: bool) -> Result<Self> {
        Ok(Pack {
            path: store_root.join(PACK_DIR).join(PACK_FILE),
            store_root: store_root.try_clone()?,
            sharing,
            writable,
            conn: Mutex::new(None),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> crate::CoreError {
        db_error(&self.path, e)
    }

    /// The open connection, or `None` when there is no pack yet and `create` is false.
    fn connection(&self, create: bool) -> Result<Option<MutexGuard<'_, Option<OpenPack>>>> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        match guard.take() {
            Some(open) if open.pid == pid => {
                *guard = Some(open);
                return Ok(Some(guard));
            }
            // Inherited across a fork: never used or closed here (closing would drop the
            // parent's file locks on this process's behalf); a fresh connection is opened.
            Some(inherited) => std::mem::forget(inherited),
            None => {}
        }
        let create = create && self.writable;
        let packs = match self.store_root.open_dir(PACK_DIR)? {
            Some(dir) => dir,
            None if create => {
                let (dir, _) = self
                    .store_root
                    .ensure_dir(PACK_DIR, self.sharing.dir_mode())?;
                self.store_root.sync()?;
                dir
            }
            None => return Ok(None),
        };
        if packs.kind_of(PACK_FILE)? == Some(crate::fsutil::EntryKind::Symlink) {
            return Err(crate::fsutil::foreign_entry(&self.path, "a symbolic link"));
        }
        if packs.stat(PACK_FILE)?.is_none() {
            if !create {
                return Ok(None);
            }
            // Created with the registry's mode before SQLite opens it (SQLite gives its
            // journal the same mode), and its directory entry made durable here: SQLite
            // syncs the file and its journal's entry, not the file's own.
            if packs
                .create_new(PACK_FILE, self.sharing.file_mode())?
                .is_some()
            {
                packs.sync()?;
            }
        }
        let conn =
            crate::db::open_beneath(&packs, PACK_FILE, self.writable).map_err(|e| self.err(e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| self.err(e))?;
        if self.writable {
            retry_busy(|| {
                // page_size and auto_vacuum take effect only before the first table exists,
                // and are harmless no-ops afterwards. FULL: a commit is durable when it
                // returns. The page cache holds a whole flush's dirty pages, so that a
                // batch's transaction does not spill pages to disk before its commit.
                conn.execute_batch(&format!(
                    "PRAGMA page_size = {PAGE_SIZE};
                     PRAGMA auto_vacuum = INCREMENTAL;
                     PRAGMA journal_mode = PERSIST;
                     PRAGMA journal_size_limit = {JOURNAL_LIMIT};
                     PRAGMA synchronous = FULL;
                     PRAGMA cache_size = -{CACHE_KIB};
                     {SCHEMA};"
                ))
                .map_err(|e| self.err(e))
            })?;
        }
        *guard = Some(OpenPack { conn, pid });
        Ok(Some(guard))
    }

    /// Run `f` on the pack's connection; `None` when there is no pack (and `create` is false).
    fn with<R>(
        &self,
        create: bool,
        mut f: impl FnMut(&mut Connection) -> rusqlite::Result<R>,
    ) -> Result<Option<R>> {
        let Some(mut guard) = self.connection(create)? else {
            return Ok(None);
        };
        let Some(OpenPack { conn, .. }) = guard.as_mut() else {
            return Ok(None);
        };
        retry_busy(|| f(conn).map_err(|e| self.err(e))).map(Some)
    }

    /// The bytes of a packed object, if packed.
    pub(crate) fn get(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        Ok(self
            .with(false, |conn| {
                conn.prepare_cached("SELECT data FROM objects WHERE digest = ?1")?
                    .query_row([digest.as_bytes().as_slice()], |r| r.get::<_, Vec<u8>>(0))
                    .optional()
            })?
            .flatten())
    }

    /// The size of a packed object, if packed.
    pub(crate) fn size_of(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self
            .with(false, |conn| {
                conn.prepare_cached("SELECT length(data) FROM objects WHERE digest = ?1")?
                    .query_row([digest.as_bytes().as_slice()], |r| r.get::<_, i64>(0))
                    .optional()
            })?
            .flatten()
            .map(|n| n.max(0) as u64))
    }

    /// Store `rows` in one durable transaction and return the addresses it really wrote.
    /// A row whose address is already packed with exactly these bytes only has its time
    /// refreshed (for gc's grace period); one packed with other bytes (damaged) is replaced.
    /// The lookups happen here, in address order inside the write transaction, rather than
    /// one by one as files are read: that costs one insert into neighbouring pages instead
    /// of a lock round trip and a random search per file.
    ///
    /// A pack found damaged (its header overwritten, pages corrupt) would block every
    /// directory registration and could never be healed by writing to it, so it is set aside
    /// ([`Self::set_aside`]) and the rows go into a new pack: the objects it held are then
    /// missing, which `verify` reports and `pacha repair` (or registering the bytes again)
    /// heals.
    pub(crate) fn write(&self, rows: &mut [(Digest, Vec<u8>)]) -> Result<Vec<Digest>> {
        match self.write_once(rows) {
            Err(e) if self.is_damaged() => {
                self.set_aside().map_err(|_| e)?;
                self.write_once(rows)
            }
            other => other,
        }
    }

    /// Whether the pack file is damaged: not an SQLite database, or failing SQLite's quick
    /// check. (Asked only after a write failed.)
    fn is_damaged(&self) -> bool {
        use std::io::Read;
        let Ok(Some(packs)) = self.store_root.open_dir(PACK_DIR) else {
            return false;
        };
        let Ok(Some(mut file)) = packs.open_read(PACK_FILE) else {
            return false;
        };
        let mut header = [0u8; 16];
        if file.read_exact(&mut header).is_err() || &header != b"SQLite format 3\0" {
            return true;
        }
        let Ok(conn) = crate::db::open_beneath(&packs, PACK_FILE, false) else {
            return true;
        };
        !matches!(
            conn.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0)),
            Ok(ref verdict) if verdict == "ok"
        )
    }

    /// Rename the damaged pack (and its journal) to `small.damaged-<seconds>.sqlite` beside
    /// it, kept for inspection (`verify` lists it), so that a new pack can be started.
    fn set_aside(&self) -> Result<()> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        *guard = None;
        let packs = self
            .store_root
            .open_dir(PACK_DIR)?
            .ok_or_else(|| crate::CoreError::io(&self.path, std::io::ErrorKind::NotFound.into()))?;
        let stamp = now_ms() / 1000;
        for (from, to) in [
            (
                PACK_FILE.to_string(),
                format!("{DAMAGED_PREFIX}{stamp}.sqlite"),
            ),
            (
                format!("{PACK_FILE}-journal"),
                format!("{DAMAGED_PREFIX}{stamp}.sqlite-journal"),
            ),
        ] {
            match packs.rename(&from, &packs, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::CoreError::io(packs.join(&from), e)),
            }
        }
        packs.sync()
    }

    fn write_once(&self, rows: &mut [(Digest, Vec<u8>)]) -> Result<Vec<Digest>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        rows.sort_unstable_by_key(|row| row.0);
        let written = self.with(true, |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut written = Vec::new();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO objects (digest, touched_ms, data) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (digest) DO NOTHING",
                )?;
                let mut lookup = tx.prepare_cached("SELECT data FROM objects WHERE digest = ?1")?;
                let mut touch =
                    tx.prepare_cached("UPDATE objects SET touched_ms = ?2 WHERE digest = ?1")?;
                let mut repair = tx.prepare_cached(
                    "UPDATE objects SET touched_ms = ?2, data = ?3 WHERE digest = ?1",
                )?;
                for (digest, data) in rows.iter() {
                    let key = digest.as_bytes().as_slice();
                    // New objects, the common case, cost one insert; only an address that is
                    // already packed is read back and compared.
                    if insert.execute(params![key, now, data])? == 1 {
                        written.push(*digest);
                        continue;
                    }
                    let stored: Option<Vec<u8>> =
                        lookup.query_row([key], |r| r.get(0)).optional()?;
                    if stored.as_deref() == Some(data.as_slice()) {
                        touch.execute(params![key, now])?;
                    } else {
                        repair.execute(params![key, now, data])?;
                        written.push(*digest);
                    }
                }
            }
            tx.commit()?;
            Ok(written)
        })?;
        Ok(written.unwrap_or_default())
    }

    /// Every packed object with a well-formed address (sizes are the stored bytes' length).
    pub(crate) fn list(&self) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .with(false, |conn| {
                let mut stmt =
                    conn.prepare("SELECT digest, length(data), touched_ms FROM objects")?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?;
                let mut objects = Vec::new();
                for row in rows {
                    let (digest, size, touched) = row?;
                    let Ok(digest) = <[u8; 32]>::try_from(digest.as_slice()) else {
                        continue;
                    };
                    objects.push(ObjectInfo {
                        digest: Digest::from_bytes(digest),
                        size: size.max(0) as u64,
                        modified: Some(UNIX_EPOCH + Duration::from_millis(touched.max(0) as u64)),
                    });
                }
                Ok(objects)
            })?
            .unwrap_or_default())
    }

    /// Visit every packed object, in address order, a few hundred rows per read transaction
    /// (at most [`WALK_ROWS`] objects of at most [`PACK_MAX`] bytes in memory). Rows added or
    /// removed meanwhile may or may not be visited.
    pub(crate) fn for_each(
        &self,
        mut visit: impl FnMut(PackedObject<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut after: Vec<u8> = Vec::new();
        loop {
            let page = self.with(false, |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT digest, data FROM objects WHERE digest > ?1 ORDER BY digest LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after, WALK_ROWS], |r| {
                    let digest = match r.get_ref(0)? {
                        rusqlite::types::ValueRef::Blob(b) => b.to_vec(),
                        other => other.as_bytes().map(<[u8]>::to_vec).unwrap_or_default(),
                    };
                    let data = r
                        .get_ref(1)?
                        .as_blob()
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default();
                    Ok((digest, data))
                })?;
                rows.collect::<rusqlite::Result<Vec<(Vec<u8>, Vec<u8>)>>>()
            })?;
            let Some(page) = page else {
                return Ok(());
            };
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            let next = last.clone();
            for (digest, data) in &page {
                let digest = <[u8; 32]>::try_from(digest.as_slice())
                    .ok()
                    .map(Digest::from_bytes);
                visit(PackedObject { digest, data })?;
            }
            if next <= after {
                // A row whose address is not a blob sorts apart; never loop on it.
                return Ok(());
            }
            after = next;
        }
    }

    /// Delete the packed copies of `digests`; returns the bytes freed. The file's free pages
    /// are returned to the filesystem afterwards.
    pub(crate) fn remove(&self, digests: &[Digest]) -> Result<u64> {
        match self.remove_once(digests) {
            // A damaged pack frees nothing; gc still frees the loose objects, and the next
            // write sets the pack aside.
            Err(_) if self.is_damaged() => Ok(0),
            other => other,
        }
    }

    fn remove_once(&self, digests: &[Digest]) -> Result<u64> {
        if digests.is_empty() {
            return Ok(0);
        }
        let freed = self.with(false, |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut freed = 0u64;
            {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM objects WHERE digest = ?1 RETURNING length(data)",
                )?;
                for digest in digests {
                    let size: Option<i64> = delete
                        .query_row([digest.as_bytes().as_slice()], |r| r.get(0))
                        .optional()?;
                    freed += size.unwrap_or(0).max(0) as u64;
                }
            }
            tx.commit()?;
            Ok(freed)
        })?;
        // Space reclamation is housekeeping: the deletion above already committed. SQLite
        // frees one page per step of this statement, so it is stepped to the end.
        let _ = self.with(false, |conn| {
            let mut vacuum = conn.prepare("PRAGMA incremental_vacuum")?;
            let mut steps = vacuum.query([])?;
            while steps.next()?.is_some() {}
            Ok(())
        });
        Ok(freed.unwrap_or(0))
    }
}
