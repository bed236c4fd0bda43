-- Backups and their verifications get a run history like imports, transformations and
-- exports (handled/runs.py): a backup runs from a timer with nobody watching, so its
-- failure (pg_dump, the archive, or BACKUP_COPY_COMMAND copying it off the host) must be
-- kept where /system and /metrics read it; the files in BACKUP_DIR only show successes.
-- depends: 0006_audit_log_append_only

CREATE TABLE config.backup_runs (
    id               BIGSERIAL PRIMARY KEY,
    operation        TEXT NOT NULL CHECK (operation IN ('create', 'verify')),
    target           TEXT NOT NULL CHECK (target IN ('primary', 'data', 'archive')),
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    file_name        TEXT,
    file_size        BIGINT,
    copy_status      TEXT CHECK (copy_status IN ('copied', 'failed')),
    rows_written     BIGINT NOT NULL DEFAULT 0,
    message          TEXT,
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ,
    created_by_id    INTEGER REFERENCES config.users (id) ON DELETE SET NULL,
    created_by_email TEXT,
    worker           TEXT
);
CREATE INDEX backup_runs_target ON config.backup_runs (operation, target, started_at);
