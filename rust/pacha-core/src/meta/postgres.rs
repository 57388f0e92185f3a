//! The shared metadata store on PostgreSQL (13 or newer): the tables of the SQLite store, on
//! a server a team shares. Give it a database (or a schema) of its own: its table names are
//! plain (`artifacts`, `versions`, `runs`...).
//!
//! Only SQL lives here. Every write runs the registry's rules (`meta::rules`) over a
//! [`PgTx`] inside one `SERIALIZABLE` transaction, run again from the start when PostgreSQL
//! reports a serialization failure or a deadlock (until [`BUSY_TIMEOUT`]), or a unique key a
//! concurrent writer took (a few times). The rules are generic read-then-write code (read
//! the numbers used, then insert the next one) that cannot say which rows to lock; under
//! `SERIALIZABLE` the committed transactions equal some serial order, so two processes
//! bumping the same name never get the same number and no update is lost, and the loser of
//! a conflict simply runs again against the new state. (`READ COMMITTED` with one advisory
//! lock per write would work too, but would queue every write of the database behind every
//! other, metrics of unrelated runs included.)
//!
//! The client is async (tokio-postgres); the store owns a current-thread tokio runtime and
//! drives every call with `block_on`, which also runs the connection's task: no thread of
//! its own. One connection per store, used by one call at a time (like the SQLite store's
//! connection). A connection found gone is replaced, and the call run again when that is
//! safe (a read, or a write whose COMMIT was not sent); a forked child connects on its own.
//! TLS and passwords as libpq takes them: `tls` (`sslmode`, `sslrootcert`) and `passfile`
//! (`PGPASSWORD`, `~/.pgpass`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tls::Connector;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::rules;
use super::{
    Kind, ListFilter, MetadataStore, MetricPoint, NameSummary, NewRun, NewVersion, ObjectUse,
    Reference, RunRecord, RunStatus, Stage, Stats, Transition, VersionChoice, VersionContents,
    VersionRecord,
};
use crate::db::BUSY_TIMEOUT;
use crate::lineage::{LineageRows, NodeRecord, NodeRef, Relation};
use crate::{CoreError, Digest, Result};
use tx::{Failure, PgTx, Stamp};

/// How long opening a connection (TCP, TLS negotiation, authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest one statement may run before the server cancels it. Metadata statements take
/// milliseconds; this bounds a wait behind a lock held by a stuck client.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A session left idle inside a transaction (a client stopped mid-write) is ended by the
/// server after this, so that its locks do not block every other writer forever.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest pause between two attempts of a write that lost a conflict.
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How often a write that met a unique key taken by a concurrent writer is run again. Each
/// run sees the key (and chooses another number or refuses properly); a key that stays
/// taken after this many is a lasting error, reported as it is.
const MAX_DUPLICATE_RETRIES: u32 = 20;

/// At most this many prepared statements are kept per connection (the SQL of listings with
/// tag filters varies with the number of tags).
const STATEMENT_CACHE: usize = 256;

/// The metadata database on a PostgreSQL server.
pub struct PostgresMetaStore {
    config: Config,
    /// Plain or TLS, as the URL's `sslmode` says.
    tls: Connector,
    /// The URL as every message shows it: rebuilt from the parsed settings, the password
    /// replaced by `***`.
    shown: String,
    slot: Mutex<Slot>,
    /// True when this connect created the schema.
    created: bool,
    /// Why writes are refused, for a store opened read-only.
    read_only: Option<String>,
    /// This process's shared hold of the collector's lock (see `locks`).
    hold: std::sync::Arc<locks::SharedHold>,
}

impl std::fmt::Debug for PostgresMetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresMetaStore")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

/// The connection of a store and the process it belongs to.
struct Slot {
    session: Option<Session>,
    pid: u32,
}

/// One open connection: the runtime that drives it, the client, the task that runs the
/// connection, and the statements prepared on it.
struct Session {
    runtime: tokio::runtime::Runtime,
    client: Client,
    connection: tokio::task::JoinHandle<()>,
    statements: HashMap<String, Statement>,
    /// True between BEGIN and COMMIT/ROLLBACK: still true when a caller panicked mid-write,
    /// so that the next use rolls that transaction back first.
    in_transaction: bool,
    /// A statement found the connection gone: the next call connects anew.
    broken: bool,
}

impl Session {
    fn open(config: &Config, tls: &Connector, shown: &str) -> Result<Session> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CoreError::Database {
                path: PathBuf::from(shown),
                message: format!("cannot start the PostgreSQL client ({e})"),
            })?;
        // The connect timeout in the settings bounds each TCP connect; this bounds the
        // whole handshake, including a server that accepts and then says nothing.
        let attempt = runtime.block_on(async {
            tokio::time::timeout(CONNECT_TIMEOUT, async {
                // The connection's type differs by TLS; the task it becomes does not. The
                // task ends when the client is dropped or the connection fails; a failure
                // reaches the caller through the client's next request.
                let (client, task): (Client, futures::future::BoxFuture<'static, ()>) = match tls {
                    Connector::Plain => {
                        let (client, connection) = config.connect(NoTls).await?;
                        (client, Box::pin(async move { drop(connection.await) }))
                    }
                    Connector::Tls(tls) => {
                        let (client, connection) = config.connect(tls.clone()).await?;
                        (client, Box::pin(async move { drop(connection.await) }))
                    }
                };
                Ok::<_, tokio_postgres::Error>((client, task))
            })
            .await
        });
        let failed = match attempt {
            Ok(Ok((client, connection))) => Ok((client, connection)),
            Err(_) => Err(unreachable(
                shown,
                &format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            )),
            Ok(Err(e)) => Err(connect_error(config, shown, &e)),
        };
        let (client, connection) = match failed {
            Ok(pair) => pair,
            Err(e) => {
                // Not `drop`: that would wait for a host name lookup still running on the
                // runtime's blocking pool.
                runtime.shutdown_background();
                return Err(e);
            }
        };
        let connection = runtime.spawn(connection);
        let mut session = Session {
            runtime,
            client,
            connection,
            statements: HashMap::new(),
            in_transaction: false,
            broken: false,
        };
        session.configure(config, shown)?;
        Ok(session)
    }

    /// Per-connection settings, unless the URL's `options` set them.
    fn configure(&mut self, config: &Config, shown: &str) -> Result<()> {
        let given = config.get_options().unwrap_or("");
        let mut sql = String::new();
        if !given.contains("statement_timeout") {
            sql.push_str(&format!(
                "SET statement_timeout = {};",
                STATEMENT_TIMEOUT.as_millis()
            ));
        }
        if !given.contains("idle_in_transaction_session_timeout") {
            sql.push_str(&format!(
                "SET idle_in_transaction_session_timeout = {};",
                IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
            ));
        }
        if sql.is_empty() {
            return Ok(());
        }
        self.runtime
            .block_on(self.client.batch_execute(&sql))
            .map_err(|e| pg_error(shown, &e))
    }

    /// Roll back a transaction a panic left open (a no-op warning if there is none).
    fn abandon_transaction(&mut self) {
        let _ = self.runtime.block_on(self.client.batch_execute("ROLLBACK"));
        self.in_transaction = false;
    }

    /// Close the connection politely: the server then logs no broken connection.
    fn close(self) {
        let Session {
            runtime,
            client,
            connection,
            statements,
            ..
        } = self;
        drop(statements);
        // Without a client the connection task sends Terminate and ends.
        drop(client);
        let _ = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(1), connection).await });
        runtime.shutdown_background();
    }
}

impl Slot {
    /// The connection, opened anew in a forked child or after the old one broke.
    fn ready(&mut self, config: &Config, tls: &Connector, shown: &str) -> Result<&mut Session> {
        let pid = std::process::id();
        if self.pid != pid {
            // A forked child: the inherited runtime's epoll instance and the socket are
            // shared with the parent, so using or even dropping them here would disturb the
            // parent's connection. They are left alone (leaked, once per fork) and this
            // process connects on its own.
            std::mem::forget(self.session.take());
            self.pid = pid;
        }
        let session = match self.session.take() {
            Some(session) if !session.broken && !session.client.is_closed() => session,
            // The server restarted or the network dropped the connection: connect again.
            Some(broken) => {
                broken.close();
                Session::open(config, tls, shown)?
            }
            None => Session::open(config, tls, shown)?,
        };
        let session = self.session.insert(session);
        if session.in_transaction {
            session.abandon_transaction();
        }
        Ok(session)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if self.pid == std::process::id() {
                session.close();
            } else {
                // See `Slot::ready`: a child must not touch what it inherited.
                std::mem::forget(session);
            }
        }
    }
}

/// The URL as messages show it, rebuilt from the parsed settings so that a password never
/// appears, wherever the URL carried it (`user:password@` or `?password=`).
fn shown_url(config: &Config) -> String {
    let mut url = String::from("postgresql://");
    let secret = if config.get_password().is_some() {
        ":***"
    } else {
        ""
    };
    match config.get_user() {
        Some(user) => url.push_str(&format!("{user}{secret}@")),
        None if !secret.is_empty() => url.push_str(&format!("{secret}@")),
        None => {}
    }
    let ports = config.get_ports();
    let mut hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => {
                    format!("{}:{port}", dir.display().to_string().replace('/', "%2F"))
                }
            }
        })
        .collect();
    if hosts.is_empty() {
        // Only `hostaddr` given.
        hosts = config
            .get_hostaddrs()
            .iter()
            .map(|ip| match ip {
                std::net::IpAddr::V4(v4) => format!("{v4}:{}", ports.first().unwrap_or(&5432)),
                std::net::IpAddr::V6(v6) => format!("[{v6}]:{}", ports.first().unwrap_or(&5432)),
            })
            .collect();
    }
    url.push_str(&hosts.join(","));
    url.push('/');
    if let Some(db) = config.get_dbname().or(config.get_user()) {
        url.push_str(db);
    }
    url
}

/// Make one line of a server's or library's words.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error with its causes, as one line.
fn reason(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(db) = e
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
    {
        return one_line(db.message());
    }
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    one_line(&text)
}

/// A failure of the service itself (unreachable, refused credentials, lost connection): a
/// `backend` error, as for the object store, not damage to the database.
fn service_error(shown: &str, message: String) -> CoreError {
    CoreError::Backend {
        service: "PostgreSQL",
        location: shown.to_string(),
        message,
    }
}

fn unreachable(shown: &str, why: &str) -> CoreError {
    service_error(
        shown,
        format!(
            "cannot reach the server: {why}; check that the server runs and the URL (host and \
             port)"
        ),
    )
}

/// What a failed connect means, in words that say what to check.
fn connect_error(config: &Config, shown: &str, e: &tokio_postgres::Error) -> CoreError {
    let user = config.get_user().unwrap_or("(your login name)");
    let message = match e.as_db_error() {
        Some(db) => {
            let said = one_line(db.message());
            match db.code() {
                c if *c == SqlState::INVALID_PASSWORD => format!(
                    "PostgreSQL refused the password of user {user:?}; check the user and \
                     password in the URL"
                ),
                c if *c == SqlState::INVALID_CATALOG_NAME => format!(
                    "{said}; create the database (for example with `createdb`) or fix its name \
                     in the URL"
                ),
                c if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                    && said.ends_with("no encryption") =>
                {
                    format!(
                        "PostgreSQL admits this connection only over TLS ({said}); use \
                         sslmode=require or verify-full instead of sslmode=disable"
                    )
                }
                c if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => format!(
                    "PostgreSQL refused the connection ({said}); check the user in the URL and \
                     that the server's pg_hba.conf admits it"
                ),
                c if *c == SqlState::TOO_MANY_CONNECTIONS || *c == SqlState::CANNOT_CONNECT_NOW => {
                    format!("PostgreSQL cannot take the connection now ({said}); try again later")
                }
                c => format!(
                    "PostgreSQL refused the connection ({said}, SQLSTATE {})",
                    c.code()
                ),
            }
        }
        None => {
            let why = reason(e);
            if why.ends_with("password missing") {
                "PostgreSQL asks for a password and none was given; put it in the URL \
                 (postgresql://user:password@host:port/database), in PGPASSWORD, or in \
                 ~/.pgpass (readable by you alone)"
                    .to_string()
            } else if why.contains("server does not support TLS") {
                "the server does not accept TLS, which the URL requires (sslmode); turn on ssl \
                 in the server, or use sslmode=prefer or disable on a network you trust"
                    .to_string()
            } else if why.starts_with("error performing TLS handshake") {
                format!(
                    "the TLS handshake with PostgreSQL failed ({}); check sslrootcert (the CA \
                     that signed the server's certificate) and, for sslmode=verify-full, that \
                     the URL's host is a name the certificate lists",
                    why.trim_start_matches("error performing TLS handshake: ")
                )
            } else if why.contains("host and hostaddr are missing") {
                "the URL names no server; write it as postgresql://user:password@host:port/database"
                    .to_string()
            } else if why.starts_with("authentication error") {
                format!(
                    "PostgreSQL authentication failed ({why}); check the user and password in the \
                     URL"
                )
            } else if why.starts_with("error connecting to server")
                || why.starts_with("error communicating with the server")
                || why.starts_with("timeout")
            {
                let why = why
                    .trim_start_matches("error connecting to server: ")
                    .to_string();
                return unreachable(shown, &why);
            } else {
                format!("cannot connect to PostgreSQL ({why}); check the URL")
            }
        }
    };
    service_error(shown, message)
}

/// A statement's failure as the registry's error.
fn pg_error(shown: &str, e: &tokio_postgres::Error) -> CoreError {
    let path = PathBuf::from(shown);
    let Some(db) = e.as_db_error() else {
        if e.is_closed() || reason(e).starts_with("error communicating") {
            return service_error(
                shown,
                format!(
                    "the connection was lost ({}); try again (the next call connects anew)",
                    reason(e)
                ),
            );
        }
        return CoreError::Database {
            path,
            message: reason(e),
        };
    };
    let said = one_line(db.message());
    let code = db.code();
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        return CoreError::ReadOnly {
            path,
            reason: format!("the PostgreSQL user may not change it ({said})"),
        };
    }
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return CoreError::ReadOnly {
            path,
            reason: format!("the server accepts no writes ({said})"),
        };
    }
    let message = if *code == SqlState::DUPLICATE_TABLE || *code == SqlState::DUPLICATE_FUNCTION {
        format!(
            "{said}: the database holds tables pacha did not make; give pacha a database of \
             its own (or a schema, with options=-c search_path=NAME in the URL)"
        )
    } else if *code == SqlState::QUERY_CANCELED {
        format!(
            "a statement was cancelled ({said}); it waited or ran longer than {} s — try again, \
             and ask the server's administrator if it persists",
            STATEMENT_TIMEOUT.as_secs()
        )
    } else if *code == SqlState::DISK_FULL {
        format!("the PostgreSQL server's disk is full ({said}); free space on the server")
    } else if *code == SqlState::ADMIN_SHUTDOWN || *code == SqlState::CRASH_SHUTDOWN {
        format!("the PostgreSQL server closed the connection ({said}); try again")
    } else {
        format!("{said} (SQLSTATE {})", code.code())
    };
    CoreError::Database { path, message }
}

/// What a statement's failure means for running the transaction again.
fn classify(e: &tokio_postgres::Error) -> Failure {
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            Failure::Conflict
        }
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => Failure::Duplicate,
        Some(c) if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CRASH_SHUTDOWN => {
            Failure::Lost
        }
        Some(_) => Failure::Other,
        None if e.is_closed()
            || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()) =>
        {
            Failure::Lost
        }
        None => Failure::Other,
    }
}

/// A value the registry cannot have written.
fn damaged(shown: &str, what: &str) -> CoreError {
    CoreError::Database {
        path: PathBuf::from(shown),
        message: format!(
            "a value in the database is damaged ({what}); restore the database from a backup \
             (`pacha recover` rebuilds what the objects still tell)"
        ),
    }
}

/// PostgreSQL integers are signed; sizes beyond that are refused rather than wrapped.
fn to_bigint(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| CoreError::InvalidInput {
        message: format!("{n} is too large to record"),
    })
}

impl PostgresMetaStore {
    /// Connect to the database a `postgresql://user:password@host:port/database` URL names
    /// (or libpq's `key=value` form), creating or migrating the registry's tables as needed.
    /// Errors name the URL with its password masked.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, None)
    }

    /// [`Self::connect`]; with a `read_only` reason, every write is refused with it and the
    /// schema must exist and be current (nothing is created or migrated).
    pub fn connect_with(url: &str, read_only: Option<&str>) -> Result<Self> {
        let malformed = |why: String| CoreError::InvalidInput {
            message: format!(
                "the PostgreSQL URL is malformed{why}; write it as \
                 postgresql://user:password@host:port/database"
            ),
        };
        let (url, requested) =
            tls::take_options(url).map_err(|why| malformed(format!(" ({why})")))?;
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
            // The key=value parser quotes the character it stumbled on, which may belong
            // to a password: only the URL parser's reasons are shown.
            malformed(if url.contains("://") {
                format!(" ({})", reason(&e))
            } else {
                String::new()
            })
        })?;
        let shown = shown_url(&config);
        passfile::fill_password(&mut config);
        let tls =
            tls::connector(&requested, &mut config).map_err(|message| CoreError::Database {
                path: PathBuf::from(&shown),
                message,
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("pacha");
        }
        let session = Session::open(&config, &tls, &shown)?;
        let mut store = PostgresMetaStore {
            config,
            tls,
            shown,
            slot: Mutex::new(Slot {
                session: Some(session),
                pid: std::process::id(),
            }),
            created: false,
            read_only: read_only.map(str::to_string),
            hold: std::sync::Arc::default(),
        };
        store.created = store.with_session(|s| schema::migrate(&store, s))??;
        Ok(store)
    }

    /// The server's URL with the password masked.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// True when this connect created the schema (the database held no registry).
    pub fn created(&self) -> bool {
        self.created
    }

    fn with_session<T>(&self, f: impl FnOnce(&mut Session) -> T) -> Result<T> {
        if tokio::runtime::Handle::try_current().is_ok() {
            // `block_on` inside a runtime would panic.
            return Err(CoreError::Internal {
                message: "the PostgreSQL metadata store was called from inside an async \
                          runtime; call it from a plain thread (e.g. spawn_blocking)"
                    .into(),
            });
        }
        // A panic in another thread mid-call leaves the session usable: its open
        // transaction, if any, is rolled back by `Slot::ready`.
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let session = slot.ready(&self.config, &self.tls, &self.shown)?;
        Ok(f(session))
    }

    /// Run `f` outside any transaction: each statement sees the latest committed state.
    /// A connection found gone (a server restart) is replaced and `f` run once more: a read
    /// changes nothing.
    fn read<T>(&self, f: impl Fn(&mut PgTx<'_>) -> Result<T>) -> Result<T> {
        let mut reconnected = false;
        loop {
            let (outcome, retry) = self.with_session(|session| {
                let mut tx = PgTx::new(self, session);
                // A write held back by a read (none should be) is still sent.
                let outcome = f(&mut tx).and_then(|value| tx.flush().map(|()| value));
                (outcome, tx.retry())
            })?;
            match retry {
                Some(Failure::Lost) if outcome.is_err() && !reconnected => reconnected = true,
                _ => return outcome,
            }
        }
    }

    /// Run `f` in one read-only snapshot, for reads whose parts must agree.
    fn snapshot<T>(&self, f: impl Fn(&mut PgTx<'_>) -> Result<T>) -> Result<T> {
        self.transact("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", f)
    }

    /// Run `f` in a SERIALIZABLE transaction (see the module's comment).
    fn write<T>(&self, f: impl Fn(&mut PgTx<'_>) -> Result<T>) -> Result<T> {
        if let Some(reason) = &self.read_only {
            return Err(CoreError::ReadOnly {
                path: PathBuf::from(&self.shown),
                reason: reason.clone(),
            });
        }
        self.transact("BEGIN ISOLATION LEVEL SERIALIZABLE", f)
    }

    /// Run `f` in a transaction, again from the start while it loses conflicts with
    /// concurrent writers (up to [`BUSY_TIMEOUT`]), so that a caller never sees one; also
    /// once more on a new connection when the old one was found gone before COMMIT (the
    /// server then rolled the transaction back).
    fn transact<T>(&self, begin: &str, f: impl Fn(&mut PgTx<'_>) -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        let (mut duplicates, mut reconnected) = (0, false);
        loop {
            let (outcome, retry) = self.with_session(|session| {
                let mut tx = PgTx::new(self, session);
                let outcome = tx.transaction(begin, &f);
                (outcome, tx.retry())
            })?;
            if outcome.is_ok() {
                return outcome;
            }
            match retry {
                Some(Failure::Conflict) if started.elapsed() >= BUSY_TIMEOUT => {
                    return Err(CoreError::Busy {
                        path: PathBuf::from(&self.shown),
                        waited: BUSY_TIMEOUT,
                    })
                }
                Some(Failure::Conflict) => {}
                Some(Failure::Duplicate) if duplicates < MAX_DUPLICATE_RETRIES => duplicates += 1,
                Some(Failure::Lost) if !reconnected => {
                    reconnected = true;
                    continue;
                }
                _ => return outcome,
            }
            // Random pauses keep the writers that collided from colliding again in step.
            let micros = u64::try_from(pause.as_micros()).unwrap_or(u64::MAX);
            std::thread::sleep(Duration::from_micros(fastrand::u64(micros / 2..=micros)));
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }
}

impl MetadataStore for PostgresMetaStore {
    fn collector_lock(&self, exclusive: bool) -> Result<Option<super::HeldLock>> {
        if exclusive {
            Ok(Some(Box::new(self.hold_exclusive()?)))
        } else {
            Ok(Some(Box::new(self.hold_shared()?)))
        }
    }

    fn precheck(&self, kind: Kind, name: &str, choice: &VersionChoice) -> Result<()> {
        self.read(|tx| rules::choose_version(tx, kind, name, choice).map(drop))
    }

    fn insert_version(&self, new: &NewVersion) -> Result<VersionRecord> {
        self.write(|tx| rules::insert_version(tx, new))
    }

    fn resolve(&self, kind: Kind, reference: &Reference) -> Result<VersionRecord> {
        self.read(|tx| rules::resolve(tx, kind, reference))
    }

    fn list_names(&self, kind: Kind) -> Result<Vec<NameSummary>> {
        self.read(|tx| {
            let rows = tx.query(
                "SELECT a.name, v.version, v.prerelease FROM artifacts a \
                 JOIN versions v ON v.artifact_id = a.id WHERE a.kind = $1",
                &[&kind.as_str()],
            )?;
            let mut named = Vec::with_capacity(rows.len());
            for row in &rows {
                named.push((tx.get(row, 0)?, tx.get(row, 1)?, tx.get::<bool>(row, 2)?));
            }
            Ok(rules::name_summaries(named))
        })
    }

    fn list_versions(
        &self,
        kind: Kind,
        name: Option<&str>,
        filter: &ListFilter,
    ) -> Result<Vec<VersionRecord>> {
        self.read(|tx| rules::list_versions(tx, kind, name, filter))
    }

    fn transition(
        &self,
        kind: Kind,
        reference: &Reference,
        to: Stage,
        archive_existing: bool,
        actor: &str,
    ) -> Result<VersionRecord> {
        self.write(|tx| rules::transition(tx, kind, reference, to, archive_existing, actor))
    }

    fn history(&self, version_id: i64) -> Result<Vec<Transition>> {
        self.read(|tx| {
            let rows = tx.query(
                "SELECT from_stage, to_stage, at, \"by\" FROM stage_history \
                 WHERE version_id = $1 ORDER BY id",
                &[&version_id],
            )?;
            let mut history = Vec::with_capacity(rows.len());
            for row in &rows {
                let from: Option<String> = tx.get(row, 0)?;
                let to: String = tx.get(row, 1)?;
                history.push(Transition {
                    from: from.as_deref().map(Stage::parse).transpose()?,
                    to: Stage::parse(&to)?,
                    at: tx.get::<Stamp>(row, 2)?.0,
                    by: tx.get(row, 3)?,
                });
            }
            Ok(history)
        })
    }

    fn set_alias(&self, kind: Kind, reference: &Reference, alias: &str) -> Result<VersionRecord> {
        self.write(|tx| rules::set_alias(tx, kind, reference, alias))
    }

    fn delete_alias(&self, kind: Kind, name: &str, alias: &str) -> Result<()> {
        self.write(|tx| rules::delete_alias(tx, kind, name, alias))
    }

    fn set_tags(
        &self,
        kind: Kind,
        reference: &Reference,
        tags: &[(String, String)],
    ) -> Result<VersionRecord> {
        self.write(|tx| rules::set_tags(tx, kind, reference, tags))
    }

    fn stats(&self) -> Result<Stats> {
        self.read(|tx| {
            // SUM over BIGINT is NUMERIC in PostgreSQL: cast back (a total beyond i64 is an
            // error, as in SQLite).
            let row = tx.query_one(
                "SELECT (SELECT COUNT(*) FROM artifacts WHERE kind = 'model'), \
                 (SELECT COUNT(*) FROM artifacts WHERE kind = 'dataset'), \
                 (SELECT COUNT(*) FROM artifacts WHERE kind = 'recipe'), \
                 (SELECT COUNT(*) FROM versions), \
                 (SELECT COALESCE(SUM(size), 0)::bigint FROM versions), \
                 (SELECT COUNT(*) FROM objects), \
                 (SELECT COALESCE(SUM(size), 0)::bigint FROM objects), \
                 (SELECT COUNT(*) FROM runs)",
                &[],
            )?;
            let n = |i: usize| -> Result<u64> {
                Ok(u64::try_from(tx.get::<i64>(&row, i)?).unwrap_or(0))
            };
            Ok(Stats {
                models: n(0)?,
                datasets: n(1)?,
                recipes: n(2)?,
                versions: n(3)?,
                logical_bytes: n(4)?,
                objects: n(5)?,
                stored_bytes: n(6)?,
                runs: n(7)?,
            })
        })
    }

    fn object_uses(&self, version_ids: Option<&[i64]>) -> Result<Vec<ObjectUse>> {
        self.read(|tx| {
            // Users are `name:version`; run artifacts (only when checking everything) are
            // named `run:<id>`.
            let (filter, runs) = match version_ids {
                Some(_) => ("WHERE vo.version_id = ANY($1)", ""),
                None => (
                    "",
                    "UNION ALL SELECT o.digest, o.size, 'run', ra.run_id FROM run_artifacts ra \
                     JOIN objects o ON o.digest = ra.digest",
                ),
            };
            let sql = format!(
                "SELECT digest, size, name, version FROM (\
                 SELECT o.digest, o.size, a.name, v.version FROM version_objects vo \
                 JOIN objects o ON o.digest = vo.digest JOIN versions v ON v.id = vo.version_id \
                 JOIN artifacts a ON a.id = v.artifact_id {filter} {runs}) AS uses \
                 ORDER BY digest, name, version"
            );
            let rows = match version_ids {
                Some(ids) => tx.query(&sql, &[&ids])?,
                None => tx.query(&sql, &[])?,
            };
            let mut uses: Vec<ObjectUse> = Vec::new();
            for row in &rows {
                let digest = tx.digest(row, 0)?;
                let size: i64 = tx.get(row, 1)?;
                let name: String = tx.get(row, 2)?;
                let version: String = tx.get(row, 3)?;
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

    fn version_contents(&self, version_ids: Option<&[i64]>) -> Result<Vec<VersionContents>> {
        self.snapshot(|tx| {
            let (records, rows) = match version_ids {
                Some(ids) => (
                    tx.versions_where("v.id = ANY($1)", &[&ids])?,
                    tx.query(
                        "SELECT vo.version_id, vo.digest, o.size FROM version_objects vo \
                         JOIN objects o ON o.digest = vo.digest WHERE vo.version_id = ANY($1) \
                         ORDER BY vo.version_id, vo.digest",
                        &[&ids],
                    )?,
                ),
                None => (
                    tx.versions_where("true", &[])?,
                    tx.query(
                        "SELECT vo.version_id, vo.digest, o.size FROM version_objects vo \
                         JOIN objects o ON o.digest = vo.digest \
                         ORDER BY vo.version_id, vo.digest",
                        &[],
                    )?,
                ),
            };
            let mut objects: HashMap<i64, Vec<(Digest, u64)>> = HashMap::new();
            for row in &rows {
                let size: i64 = tx.get(row, 2)?;
                objects
                    .entry(tx.get(row, 0)?)
                    .or_default()
                    .push((tx.digest(row, 1)?, u64::try_from(size).unwrap_or(0)));
            }
            Ok(records
                .into_iter()
                .map(|record| {
                    let own = objects.remove(&record.id).unwrap_or_default();
                    (record, own)
                })
                .collect())
        })
    }

    // ---- experiment runs ----

    fn create_run(&self, new: &NewRun) -> Result<RunRecord> {
        self.write(|tx| rules::runs::create_run(tx, new))
    }

    fn resolve_run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        self.read(|tx| rules::runs::resolve_run(tx, id_or_prefix))
    }

    fn set_run_params(&self, run_id: &str, params: &str) -> Result<()> {
        self.write(|tx| rules::runs::set_params(tx, run_id, params))
    }

    fn log_metrics(&self, run_id: &str, points: &[MetricPoint]) -> Result<()> {
        self.write(|tx| rules::runs::log_metrics(tx, run_id, points))
    }

    fn log_at_next_step(&self, run_id: &str, values: &[(String, f64)], at: f64) -> Result<i64> {
        self.write(|tx| rules::runs::log_at_next_step(tx, run_id, values, at))
    }

    fn heartbeat_run(&self, run_id: &str) -> Result<()> {
        self.write(|tx| rules::runs::running(tx, run_id).map(drop))
    }

    fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<RunRecord> {
        self.write(|tx| rules::runs::finish_run(tx, run_id, status, error))
    }

    fn list_runs(
        &self,
        recipe: Option<&Reference>,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunRecord>> {
        self.read(|tx| runs::list_runs(tx, recipe, status))
    }

    fn run_metrics(&self, run_id: &str) -> Result<Vec<MetricPoint>> {
        self.read(|tx| runs::run_metrics(tx, run_id))
    }

    fn final_metrics(&self, run_ids: &[String]) -> Result<Vec<(String, MetricPoint)>> {
        self.read(|tx| runs::final_metrics(tx, run_ids))
    }

    fn best_run(
        &self,
        recipe: &Reference,
        metric: &str,
        minimize: bool,
    ) -> Result<Option<(RunRecord, MetricPoint)>> {
        self.read(|tx| runs::best_run(tx, recipe, metric, minimize))
    }

    fn add_run_artifact(&self, run_id: &str, name: &str, digest: &Digest, size: u64) -> Result<()> {
        self.write(|tx| rules::runs::add_artifact(tx, run_id, name, digest, size))
    }

    fn run_artifacts(&self, run_id: &str) -> Result<Vec<(String, Digest, u64)>> {
        self.read(|tx| runs::artifacts(tx, run_id))
    }

    // ---- lineage ----

    fn find_node(&self, node: &NodeRef) -> Result<NodeRecord> {
        self.read(|tx| rules::lineage::find_node(tx, node))
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
            let from = rules::lineage::find_node(tx, from)?;
            let to = rules::lineage::find_node(tx, to)?;
            rules::lineage::add_edge(tx, &from, &to, relation, params, actor, false)
        })
    }

    fn lineage_token(&self) -> Result<String> {
        self.read(lineage::token)
    }

    fn lineage_rows(&self) -> Result<LineageRows> {
        self.snapshot(lineage::rows)
    }

    fn versions_of_nodes(&self, node_ids: &[i64]) -> Result<Vec<(i64, VersionRecord)>> {
        self.read(|tx| lineage::versions_of_nodes(tx, node_ids))
    }

    fn referenced_objects(&self) -> Result<Vec<Digest>> {
        self.read(|tx| {
            let rows = tx.query(
                "SELECT digest FROM version_objects UNION SELECT digest FROM run_artifacts",
                &[],
            )?;
            rows.iter().map(|row| tx.digest(row, 0)).collect()
        })
    }

    fn forget_objects(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = digests.iter().map(Digest::to_hex).collect();
        // SERIALIZABLE (`write`): a registration committing a reference to one of these
        // meanwhile makes one of the two transactions fail and run again, seeing the other.
        self.write(|tx| {
            let rows = tx.query(
                "SELECT d FROM unnest($1::text[]) AS t(d) WHERE \
                 NOT EXISTS (SELECT 1 FROM version_objects v WHERE v.digest = d) \
                 AND NOT EXISTS (SELECT 1 FROM run_artifacts r WHERE r.digest = d)",
                &[&list],
            )?;
            let unreferenced: Vec<Digest> = rows
                .iter()
                .map(|row| tx.digest(row, 0))
                .collect::<Result<_>>()?;
            let hex: Vec<String> = unreferenced.iter().map(Digest::to_hex).collect();
            tx.execute("DELETE FROM objects WHERE digest = ANY($1)", &[&hex])?;
            tx.execute("DELETE FROM gc_marks WHERE digest = ANY($1)", &[&hex])?;
            Ok(unreferenced)
        })
    }

    fn mark_for_collection(
        &self,
        candidates: &[Digest],
        dry_run: bool,
    ) -> Result<Option<Vec<Digest>>> {
        let list: Vec<String> = candidates.iter().map(Digest::to_hex).collect();
        // `now()` is the transaction's start: a mark made here is never older than it, so
        // only an earlier run's marks come back.
        let ripe = "SELECT digest FROM gc_marks WHERE digest = ANY($1) AND marked_at < now() ORDER BY digest";
        let marked = |tx: &mut PgTx<'_>| -> Result<Vec<Digest>> {
            let rows = tx.query(ripe, &[&list])?;
            rows.iter().map(|row| tx.digest(row, 0)).collect()
        };
        if dry_run {
            return self.read(marked).map(Some);
        }
        self.write(|tx| {
            let ripe = marked(tx)?;
            tx.execute(
                "DELETE FROM gc_marks WHERE NOT (digest = ANY($1))",
                &[&list],
            )?;
            tx.execute(
                "INSERT INTO gc_marks (digest) SELECT unnest($1::text[]) \
                 ON CONFLICT (digest) DO NOTHING",
                &[&list],
            )?;
            Ok(Some(ripe))
        })
    }

    fn delete_version(
        &self,
        kind: Kind,
        reference: &Reference,
        force: bool,
    ) -> Result<VersionRecord> {
        self.write(|tx| rules::delete_version(tx, kind, reference, force))
    }
}

mod lineage;
mod locks;
mod packs;
mod passfile;
mod runs;
mod schema;
mod settings;
mod tls;
mod tx;

#[cfg(test)]
mod tests;
