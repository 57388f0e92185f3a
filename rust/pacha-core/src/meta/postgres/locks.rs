//! The garbage collector's lock for a registry several machines share: a PostgreSQL advisory
//! lock, held by registrations shared and by the collector exclusively (see
//! `registry::gc`). The database is the one thing every client of a shared registry reaches,
//! so the lock lives there rather than in a file.
//!
//! An advisory lock belongs to a session, so it is held on a connection of its own: the
//! store's connection is reconnected when it breaks, which would drop the lock unnoticed in
//! the middle of a registration. Registrations of one process share one lock connection and
//! one shared hold (taken by the first, released by the last); the collector opens a
//! connection for its exclusive hold and closes it when done. PostgreSQL queues a lock
//! request behind a conflicting waiter, so a waiting collector is not starved by a stream of
//! registrations.

use std::sync::{Arc, Mutex, PoisonError};

use super::{pg_error, PostgresMetaStore, Session};
use std::path::PathBuf;

use crate::{CoreError, Result};

/// The advisory lock's key: "pacha_gc".
const GC_LOCK: i64 = 0x7061_6368_615f_6763;

/// The shared hold of one process, and the connection that holds it.
#[derive(Default)]
pub(super) struct SharedHold {
    slot: Mutex<HoldSlot>,
}

#[derive(Default)]
struct HoldSlot {
    session: Option<Session>,
    /// Registrations holding the lock through this session.
    holders: usize,
    pid: u32,
    /// Counts the sessions that held the lock: a guard of an earlier one knows its lock
    /// went with its connection, even after a new session holds it again for others.
    generation: u64,
}

/// Held while a registration may write objects that nothing references yet.
pub(super) struct SharedGuard {
    hold: Arc<SharedHold>,
    shown: String,
    config: tokio_postgres::Config,
    tls: super::Connector,
    generation: u64,
}

/// Held while the collector marks and sweeps; the lock goes with its connection.
pub(super) struct ExclusiveGuard {
    session: Option<Session>,
}

impl crate::meta::CollectorLock for SharedGuard {
    fn lost(&self) -> Option<CoreError> {
        let slot = self
            .hold
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let same = slot.generation == self.generation && slot.pid == std::process::id();
        if same && !slot.session.as_ref().is_none_or(connection_gone) {
            return None;
        }
        drop(slot);
        // The server down is the better message; else the lock is what was lost.
        Some(match Session::open(&self.config, &self.tls, &self.shown) {
            Err(unreachable) => unreachable,
            Ok(session) => {
                session.close();
                CoreError::Database {
                    path: PathBuf::from(&self.shown),
                    message: "the connection that held the collector's lock broke during \
                              the registration; nothing was recorded — run it again"
                        .into(),
                }
            }
        })
    }
}

impl crate::meta::CollectorLock for ExclusiveGuard {
    fn lost(&self) -> Option<CoreError> {
        // The collector's own hold: what it writes only removes what nothing references.
        None
    }
}

/// Whether the connection holding a lock has ended. Its runtime runs only while a call
/// waits on it, so it is given a few turns first: the connection task then reads what
/// the server sent meanwhile (a termination, an end of stream) and closes the client. No
/// round trip: this costs a registration nothing.
fn connection_gone(session: &Session) -> bool {
    if session.broken {
        return true;
    }
    session.runtime.block_on(async {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    });
    session.client.is_closed()
}

impl Drop for ExclusiveGuard {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.close();
        }
    }
}

impl Drop for SharedGuard {
    fn drop(&mut self) {
        let mut slot = self
            .hold
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.pid != std::process::id() || slot.generation != self.generation {
            // Another process's, or an earlier session's: that lock is gone already.
            return;
        }
        slot.holders = slot.holders.saturating_sub(1);
        if slot.holders > 0 {
            return;
        }
        let released = slot
            .session
            .as_mut()
            .map(|session| call(session, "SELECT pg_advisory_unlock_shared($1)", &self.shown));
        if !matches!(released, Some(Ok(_))) {
            // The lock could not be released in place: closing the connection releases it.
            if let Some(session) = slot.session.take() {
                session.close();
            }
        }
    }
}

/// A connection for the lock: no statement timeout on it, as a registration waits for a
/// collector to finish, and a collector for registrations in flight.
fn open_lock_session(store: &PostgresMetaStore) -> Result<Session> {
    let session = Session::open(&store.config, &store.tls, &store.shown)?;
    let set = session
        .runtime
        .block_on(session.client.batch_execute("SET statement_timeout = 0"));
    match set {
        Ok(()) => Ok(session),
        Err(e) => {
            session.close();
            Err(pg_error(&store.shown, &e))
        }
    }
}

/// Run one of the lock functions on `session`, prepared once per connection (a
/// registration takes and releases the shared lock: one round trip each).
fn call(session: &mut Session, sql: &str, shown: &str) -> Result<()> {
    let statement = match session.statements.get(sql) {
        Some(statement) => statement.clone(),
        None => {
            let prepared = session.runtime.block_on(session.client.prepare(sql));
            let statement = prepared.map_err(|e| pg_error(shown, &e))?;
            session
                .statements
                .insert(sql.to_string(), statement.clone());
            statement
        }
    };
    session
        .runtime
        .block_on(session.client.query(&statement, &[&GC_LOCK]))
        .map(drop)
        .map_err(|e| pg_error(shown, &e))
}

impl PostgresMetaStore {
    /// The shared side of the collector's lock, for a registration.
    pub(super) fn hold_shared(&self) -> Result<SharedGuard> {
        let mut slot = self
            .hold
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let pid = std::process::id();
        if slot.pid != pid {
            // A forked child: the parent's connection is not ours to use or close.
            std::mem::forget(slot.session.take());
            slot.holders = 0;
            slot.pid = pid;
        }
        if slot.holders > 0 && slot.session.as_ref().is_none_or(connection_gone) {
            // The connection broke under registrations still running: they will find their
            // lock lost (see `lost`); this one takes the lock anew on a new connection.
            if let Some(broken) = slot.session.take() {
                broken.close();
            }
            slot.holders = 0;
            slot.generation += 1;
        }
        if slot.holders == 0 {
            let session = match slot.session.take() {
                Some(session) if !session.broken && !session.client.is_closed() => session,
                Some(broken) => {
                    broken.close();
                    open_lock_session(self)?
                }
                None => open_lock_session(self)?,
            };
            let session = slot.session.insert(session);
            if let Err(e) = call(session, "SELECT pg_advisory_lock_shared($1)", &self.shown) {
                if let Some(session) = slot.session.take() {
                    session.close();
                }
                return Err(e);
            }
        }
        slot.holders += 1;
        Ok(SharedGuard {
            hold: Arc::clone(&self.hold),
            shown: self.shown.clone(),
            config: self.config.clone(),
            tls: self.tls.clone(),
            generation: slot.generation,
        })
    }

    /// The exclusive side, for the collector: waits until no registration is in flight.
    pub(super) fn hold_exclusive(&self) -> Result<ExclusiveGuard> {
        let mut session = open_lock_session(self)?;
        match call(&mut session, "SELECT pg_advisory_lock($1)", &self.shown) {
            Ok(()) => Ok(ExclusiveGuard {
                session: Some(session),
            }),
            Err(e) => {
                session.close();
                Err(e)
            }
        }
    }
}
