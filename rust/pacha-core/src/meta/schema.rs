//! The SQLite schema and its forward migrations. Migration N takes a database at version
//! N-1 to version N; they run in order, each in its own transaction, and are never edited
//! once released: a change is a new migration appended to the list.

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: artifacts, versions, history, aliases, tags, objects.
    r#"
    CREATE TABLE artifacts (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL CHECK (kind IN ('model', 'dataset', 'recipe')),
        name        TEXT NOT NULL,
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        UNIQUE (kind, name)
    );
    CREATE TABLE versions (
        id           INTEGER PRIMARY KEY,
        artifact_id  INTEGER NOT NULL REFERENCES artifacts(id),
        version      TEXT NOT NULL,
        -- The version without build metadata: versions of equal precedence are one version.
        version_key  TEXT NOT NULL,
        prerelease   INTEGER NOT NULL CHECK (prerelease IN (0, 1)),
        digest       TEXT NOT NULL CHECK (length(digest) = 64),
        layout       TEXT NOT NULL CHECK (layout IN ('file', 'tree')),
        size         INTEGER NOT NULL CHECK (size >= 0),
        file_count   INTEGER NOT NULL CHECK (file_count >= 0),
        stage        TEXT NOT NULL DEFAULT 'development'
                     CHECK (stage IN ('development', 'staging', 'production', 'archived')),
        description  TEXT,
        card         TEXT,
        created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        created_by   TEXT NOT NULL,
        UNIQUE (artifact_id, version_key)
    );
    CREATE INDEX versions_by_stage ON versions (artifact_id, stage);
    CREATE TABLE stage_history (
        id          INTEGER PRIMARY KEY,
        version_id  INTEGER NOT NULL REFERENCES versions(id),
        from_stage  TEXT,
        to_stage    TEXT NOT NULL,
        at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        by          TEXT NOT NULL
    );
    CREATE INDEX stage_history_by_version ON stage_history (version_id);
    CREATE TABLE aliases (
        artifact_id  INTEGER NOT NULL REFERENCES artifacts(id),
        alias        TEXT NOT NULL,
        version_id   INTEGER NOT NULL REFERENCES versions(id),
        PRIMARY KEY (artifact_id, alias)
    );
    CREATE TABLE tags (
        version_id  INTEGER NOT NULL REFERENCES versions(id),
        key         TEXT NOT NULL,
        value       TEXT NOT NULL,
        PRIMARY KEY (version_id, key)
    );
    CREATE INDEX tags_by_pair ON tags (key, value);
    CREATE TABLE objects (
        digest  TEXT PRIMARY KEY CHECK (length(digest) = 64),
        size    INTEGER NOT NULL CHECK (size >= 0)
    );
    CREATE TABLE version_objects (
        version_id  INTEGER NOT NULL REFERENCES versions(id),
        digest      TEXT NOT NULL REFERENCES objects(digest),
        PRIMARY KEY (version_id, digest)
    ) WITHOUT ROWID;
    CREATE INDEX version_objects_by_digest ON version_objects (digest);
    "#,
    // 2: experiment runs, their metrics and artifacts; versions registered from a run.
    r#"
    CREATE TABLE runs (
        id                 TEXT PRIMARY KEY CHECK (length(id) = 32),
        recipe_version_id  INTEGER REFERENCES versions(id),
        status             TEXT NOT NULL
                           CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
        params             TEXT NOT NULL,
        environment        TEXT NOT NULL,
        started_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        finished_at        TEXT,
        error              TEXT,
        created_by         TEXT NOT NULL
    );
    CREATE INDEX runs_by_recipe ON runs (recipe_version_id, status);
    -- One row per logged point: appending never rewrites what was logged before.
    CREATE TABLE metrics (
        run_id  TEXT NOT NULL REFERENCES runs(id),
        name    TEXT NOT NULL,
        step    INTEGER NOT NULL,
        value   REAL NOT NULL,
        at      REAL NOT NULL
    );
    CREATE INDEX metrics_by_run ON metrics (run_id, name, step);
    CREATE TABLE run_artifacts (
        run_id  TEXT NOT NULL REFERENCES runs(id),
        name    TEXT NOT NULL,
        digest  TEXT NOT NULL REFERENCES objects(digest),
        PRIMARY KEY (run_id, name)
    ) WITHOUT ROWID;
    ALTER TABLE versions ADD COLUMN run_id TEXT REFERENCES runs(id);
    "#,
];
