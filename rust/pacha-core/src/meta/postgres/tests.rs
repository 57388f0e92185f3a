//! The PostgreSQL store: the conformance suite every backend passes, each test in a fresh
//! database of its own on the server `PACHA_TEST_POSTGRES_URL` names (one where the tests
//! may CREATE DATABASE), and what only this backend has (URLs, connecting, migrations under
//! concurrency, fork).
//!
//! Without that variable the server tests pass without running and one line on stderr says
//! so. `tests/test_rust_postgres.py` runs them against the server the Python test suite
//! starts (and fails there when it cannot start under `PACHA_REQUIRE_SERVICES=1`).

use std::io::Write;
use std::sync::Once;

use super::tx::format_timestamp;
use super::*;
use crate::meta::conformance::{self, new, Fixture};

const URL_VARIABLE: &str = "PACHA_TEST_POSTGRES_URL";

/// The test server's URL, or `None` (after saying so once) when none is configured.
fn server() -> Option<String> {
    static SKIPPED: Once = Once::new();
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            // Straight to stderr: the test harness captures `eprintln!` of passing tests.
            SKIPPED.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "pacha-core: PostgreSQL store tests skipped: {URL_VARIABLE} is not set"
                );
            });
            None
        }
    }
}

/// `url` pointed at database `name` (a later `dbname` parameter wins over the path).
fn with_dbname(url: &str, name: &str) -> String {
    if url.contains("://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}dbname={name}")
    } else {
        format!("{url} dbname={name}")
    }
}

/// Run `sql` on the server's administrative database (the one the URL names).
fn admin(url: &str, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("connect to the test server");
        let task = tokio::spawn(connection);
        client.batch_execute(sql).await.expect(sql);
        drop(client);
        let _ = task.await;
    });
}

/// A database made for one test, dropped after it (also when the test fails).
struct Database {
    server: String,
    name: String,
}

impl Database {
    fn create(server: &str) -> Database {
        let name = format!("pacha_test_{:016x}", fastrand::u64(..));
        admin(server, &format!("CREATE DATABASE {name}"));
        Database {
            server: server.to_string(),
            name,
        }
    }

    fn url(&self) -> String {
        with_dbname(&self.server, &self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        admin(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn fixture() -> Option<Fixture> {
    let database = Database::create(&server()?);
    let url = database.url();
    let store = PostgresMetaStore::connect(&url).expect("connect");
    assert!(store.created());
    Some(Fixture::new(
        Box::new(store),
        move || Box::new(PostgresMetaStore::connect(&url).expect("connect again")),
        database,
    ))
}

conformance::suite!(fixture);

// ---- without a server ----

#[test]
fn timestamps_are_written_like_sqlite_writes_them() {
    // Microseconds since 2000-01-01T00:00:00Z.
    assert_eq!(
        format_timestamp(0).as_deref(),
        Some("2000-01-01T00:00:00.000Z")
    );
    // 2026-12-03T10:15:30.123456Z: milliseconds truncated, as SQLite's %f.
    let micros = ((9833 * 86_400 + 10 * 3600 + 15 * 60 + 30) * 1_000_000) + 123_456;
    assert_eq!(
        format_timestamp(micros).as_deref(),
        Some("2026-12-03T10:15:30.123Z")
    );
    assert_eq!(
        format_timestamp(-1).as_deref(),
        Some("1999-12-31T23:59:59.999Z")
    );
    // 2024-02-29 (a leap day) and 2100-03-01 (2100 is no leap year).
    assert_eq!(
        format_timestamp(8825 * 86_400_000_000).as_deref(),
        Some("2024-02-29T00:00:00.000Z")
    );
    assert_eq!(
        format_timestamp(36_584 * 86_400_000_000).as_deref(),
        Some("2100-03-01T00:00:00.000Z")
    );
    // ±infinity and years without four digits are damage, never a panic.
    for bad in [i64::MAX, i64::MIN, 4_000_000 * 86_400_000_000] {
        assert_eq!(format_timestamp(bad), None, "{bad}");
    }
}

fn shown(url: &str) -> String {
    shown_url(&url.parse().expect("url"))
}

#[test]
fn urls_are_shown_without_their_password() {
    assert_eq!(
        shown("postgresql://alice:s3cret@db.example:6543/registry"),
        "postgresql://alice:***@db.example:6543/registry"
    );
    assert_eq!(
        shown("postgres://alice@db.example/registry?password=s3cret&sslmode=disable"),
        "postgresql://alice:***@db.example:5432/registry"
    );
    assert_eq!(
        shown("host=h1,h2 port=1,2 user=bob password=s3cret"),
        "postgresql://bob:***@h1:1,h2:2/bob"
    );
    assert_eq!(
        shown("postgresql://%2Fvar%2Frun%2Fpostgresql/db"),
        "postgresql://%2Fvar%2Frun%2Fpostgresql:5432/db"
    );
}

#[test]
fn a_malformed_url_is_refused_without_echoing_it() {
    for url in [
        "postgresql://alice:s3cret@host:notaport/db",
        "user=alice password=s3cret junk",
    ] {
        let err = PostgresMetaStore::connect(url).expect_err("malformed");
        let text = err.to_string();
        assert!(matches!(err, CoreError::InvalidInput { .. }), "{text}");
        assert!(
            text.contains("malformed") && !text.contains("s3cret"),
            "{text}"
        );
    }
}

#[test]
fn an_unreachable_server_is_one_line_naming_what_to_check() {
    // Nothing listens on port 1 of the loopback address: refused at once.
    let err = PostgresMetaStore::connect("postgresql://alice:s3cret@127.0.0.1:1/registry")
        .expect_err("nothing listens there");
    let text = err.to_string();
    assert!(matches!(err, CoreError::Backend { .. }), "{text}");
    assert!(
        text.contains("postgresql://alice:***@127.0.0.1:1/registry")
            && text.contains("PostgreSQL at")
            && text.contains("cannot reach the server")
            && text.contains("check that the server runs"),
        "{text}"
    );
    assert!(!text.contains("s3cret") && !text.contains('\n'), "{text}");
}

#[test]
fn tls_settings_that_cannot_work_are_refused_before_connecting() {
    let err = PostgresMetaStore::connect(
        "postgresql://a:s3cret@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    )
    .expect_err("no roots");
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/ca.pem") && text.contains("sslrootcert"),
        "{text}"
    );
    let err = PostgresMetaStore::connect("postgresql://a:s3cret@127.0.0.1:1/db?sslmode=sure")
        .expect_err("bogus mode");
    let text = err.to_string();
    assert!(
        text.contains("verify-full") && !text.contains("s3cret"),
        "{text}"
    );
}

// ---- with a server ----

#[test]
fn a_missing_database_and_a_wrong_password_say_so() {
    let Some(server) = server() else { return };
    let url = with_dbname(&server, "pacha_test_no_such_database");
    let text = PostgresMetaStore::connect(&url)
        .expect_err("no database")
        .to_string();
    assert!(
        text.contains("pacha_test_no_such_database") && text.contains("create the database"),
        "{text}"
    );
    // Only meaningful where the server checks passwords (the URL carries one).
    let config: Config = server.parse().expect("url");
    if let (Some(password), Some(user)) = (config.get_password(), config.get_user()) {
        let password = String::from_utf8_lossy(password).to_string();
        let wrong = server.replacen(
            &format!("{user}:{password}@"),
            &format!("{user}:not-{password}@"),
            1,
        );
        let text = PostgresMetaStore::connect(&wrong)
            .expect_err("wrong password")
            .to_string();
        assert!(
            text.contains("refused the password") && !text.contains(&password),
            "{text}"
        );
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let Some(server) = server() else { return };
    let database = Database::create(&server);
    drop(PostgresMetaStore::connect(&database.url()).expect("create"));
    admin(&database.url(), "UPDATE schema_version SET version = 99");
    let text = PostgresMetaStore::connect(&database.url())
        .expect_err("too new")
        .to_string();
    assert!(
        text.contains("schema is version 99, newer than this pacha understands"),
        "{text}"
    );
}

#[test]
fn processes_connecting_at_once_migrate_once() {
    let Some(server) = server() else { return };
    let database = Database::create(&server);
    let url = database.url();
    let created: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let url = &url;
                s.spawn(move || PostgresMetaStore::connect(url).expect("connect").created())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(created.iter().filter(|c| **c).count(), 1, "{created:?}");
    let store = PostgresMetaStore::connect(&url).expect("connect");
    assert!(!store.created());
    store.insert_version(&new("m", "1.0.0")).expect("works");
}

#[test]
fn a_lost_connection_is_replaced_transparently() {
    let Some(server) = server() else { return };
    let database = Database::create(&server);
    let store = PostgresMetaStore::connect(&database.url()).expect("connect");
    store.insert_version(&new("m", "1.0.0")).expect("insert");
    // The server ends every session of this database (as a restart would).
    admin(
        &server,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            database.name
        ),
    );
    // A read that meets the closed connection connects anew and runs again.
    assert_eq!(store.stats().expect("reconnected").versions, 1);
    // So does a write that lost its connection before COMMIT (the server rolled it back).
    admin(
        &server,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            database.name
        ),
    );
    store
        .insert_version(&new("m", "2.0.0"))
        .expect("reconnected");
    assert_eq!(store.stats().expect("stats").versions, 2);
}

#[test]
fn a_forked_child_connects_on_its_own() {
    let Some(server) = server() else { return };
    let database = Database::create(&server);
    let store = PostgresMetaStore::connect(&database.url()).expect("connect");
    store.insert_version(&new("m", "1.0.0")).expect("parent");
    // SAFETY: the child only uses this test's own store (whose inherited connection it
    // never touches: it connects anew) and exits with `_exit`; no other thread holds a
    // lock the child needs at the instant of the fork (the allocator is fork-safe).
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        let ok = store.insert_version(&new("m", "2.0.0")).is_ok()
            && store.stats().is_ok_and(|s| s.versions == 2);
        // SAFETY: `_exit` ends the child at once, without running the parent's destructors
        // (which would close the parent's connection) or atexit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let started = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        let done = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if done == child {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            // SAFETY: kills our own child, which hung.
            unsafe { libc::kill(child, libc::SIGKILL) };
            panic!("the forked child hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    // The parent's own connection still works and sees the child's write.
    assert_eq!(store.stats().expect("parent").versions, 2);
    store.insert_version(&new("m", "3.0.0")).expect("parent");
}

#[test]
fn damaged_values_are_errors_not_panics() {
    let Some(server) = server() else { return };
    let database = Database::create(&server);
    let store = PostgresMetaStore::connect(&database.url()).expect("connect");
    store.insert_version(&new("m", "1.0.0")).expect("insert");
    for damage in [
        "UPDATE versions SET created_at = 'infinity'",
        "UPDATE versions SET digest = repeat('z', 64)",
        "UPDATE versions SET created_at = '12000-01-01'",
    ] {
        let fresh = Database::create(&server);
        let store = PostgresMetaStore::connect(&fresh.url()).expect("connect");
        store.insert_version(&new("m", "1.0.0")).expect("insert");
        admin(&fresh.url(), damage);
        let err = store
            .resolve(Kind::Model, &conformance::reference("m:1.0.0"))
            .expect_err(damage);
        assert!(
            matches!(err, CoreError::Database { .. }) && err.to_string().contains("damaged"),
            "{damage}: {err}"
        );
    }
    // Edge parameters that are JSON but not an object are refused when read.
    admin(
        &database.url(),
        "INSERT INTO lineage_nodes (kind, name, run_id) VALUES ('run', 'x', NULL); \
         INSERT INTO lineage_edges (src, dst, relation, params, created_by) \
         SELECT max(id), min(id), 'derived_from', '[1]', 'u' FROM lineage_nodes",
    );
    let err = store.lineage_rows().expect_err("damaged params");
    assert!(err.to_string().contains("not a JSON object"), "{err}");
}
