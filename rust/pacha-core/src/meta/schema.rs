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
    // 3: the lineage graph. Every version and run is a node; a deleted version keeps its
    // node as a tombstone (version_id NULL, deleted_at set), so history stays readable and
    // its version number is never reused. Every change to these tables sets a new random
    // token, which names the state of the graph for the snapshot cache.
    r#"
    CREATE TABLE lineage_nodes (
        id           INTEGER PRIMARY KEY,
        kind         TEXT NOT NULL CHECK (kind IN ('model', 'dataset', 'recipe', 'run')),
        -- The artifact's name, or the run id.
        name         TEXT NOT NULL,
        version      TEXT,
        version_key  TEXT,
        version_id   INTEGER UNIQUE REFERENCES versions(id),
        run_id       TEXT UNIQUE REFERENCES runs(id),
        deleted_at   TEXT,
        UNIQUE (kind, name, version_key)
    );
    CREATE TABLE lineage_edges (
        id          INTEGER PRIMARY KEY,
        -- The derived node, and the node it came from.
        src         INTEGER NOT NULL REFERENCES lineage_nodes(id),
        dst         INTEGER NOT NULL REFERENCES lineage_nodes(id),
        relation    TEXT NOT NULL CHECK (relation IN ('fine_tuned', 'distilled', 'merged',
                        'quantized', 'pruned', 'trained_on', 'evaluated_on', 'trained_with',
                        'produced_by', 'used', 'executed', 'derived_from')),
        params      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        created_by  TEXT NOT NULL,
        CHECK (src != dst),
        UNIQUE (src, dst, relation)
    );
    CREATE INDEX lineage_edges_by_dst ON lineage_edges (dst);
    CREATE TABLE lineage_state (token TEXT NOT NULL);
    INSERT INTO lineage_state (token) VALUES (lower(hex(randomblob(16))));
    CREATE TRIGGER lineage_node_added AFTER INSERT ON lineage_nodes
        BEGIN UPDATE lineage_state SET token = lower(hex(randomblob(16))); END;
    CREATE TRIGGER lineage_node_changed AFTER UPDATE ON lineage_nodes
        BEGIN UPDATE lineage_state SET token = lower(hex(randomblob(16))); END;
    CREATE TRIGGER lineage_node_removed AFTER DELETE ON lineage_nodes
        BEGIN UPDATE lineage_state SET token = lower(hex(randomblob(16))); END;
    CREATE TRIGGER lineage_edge_added AFTER INSERT ON lineage_edges
        BEGIN UPDATE lineage_state SET token = lower(hex(randomblob(16))); END;
    CREATE TRIGGER lineage_edge_removed AFTER DELETE ON lineage_edges
        BEGIN UPDATE lineage_state SET token = lower(hex(randomblob(16))); END;
    -- What registries made before lineage existed already know: every version and run,
    -- which run produced a version, which recipe a run executed.
    INSERT INTO lineage_nodes (kind, name, version, version_key, version_id)
        SELECT a.kind, a.name, v.version, v.version_key, v.id
        FROM versions v JOIN artifacts a ON a.id = v.artifact_id ORDER BY v.id;
    INSERT INTO lineage_nodes (kind, name, run_id) SELECT 'run', id, id FROM runs ORDER BY rowid;
    INSERT INTO lineage_edges (src, dst, relation, created_by)
        SELECT vn.id, rn.id, 'produced_by', 'migration'
        FROM versions v JOIN lineage_nodes vn ON vn.version_id = v.id
        JOIN lineage_nodes rn ON rn.run_id = v.run_id
        WHERE vn.kind = 'model';
    INSERT INTO lineage_edges (src, dst, relation, created_by)
        SELECT rn.id, vn.id, 'executed', 'migration'
        FROM runs r JOIN lineage_nodes rn ON rn.run_id = r.id
        JOIN lineage_nodes vn ON vn.version_id = r.recipe_version_id;
    "#,
    // 4: the permission bits of a single-file version's file, restored on download (NULL
    // for versions registered before they were recorded).
    r#"
    ALTER TABLE versions ADD COLUMN mode INTEGER CHECK (mode IS NULL OR mode BETWEEN 0 AND 511);
    "#,
    // 5: when a running run last showed a sign of life (a write, or the tracker's
    // heartbeat), so that a run whose process died is seen as abandoned, not running.
    r#"
    ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;
    "#,
];
