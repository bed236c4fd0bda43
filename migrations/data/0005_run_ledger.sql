-- What DATA committed, run by run. An import's rows and a transformation's swap commit in
-- DATA, then the run is finished in PRIMARY's history; a process killed between the two
-- left the history saying "nothing was written" while the rows were live. Each such DATA
-- transaction now also writes its row here, so the dead-run sweep (handled/runs.py) and
-- `flask data rebuild` complete PRIMARY's history from what DATA really holds
-- (handled/ledger.py). run_id is the id of config.import_runs or config.transformation_runs,
-- a plain column: no key crosses the two databases. A run is named by its id AND its start
-- time: a PRIMARY restored from a backup hands its ids out again, and the new run with an
-- old id is not the run DATA recorded before the restore.
-- depends: 0004_live_partition_names

CREATE TABLE workspace.run_ledger (
    kind          TEXT NOT NULL CHECK (kind IN ('import', 'transformation')),
    run_id        BIGINT NOT NULL,
    run_started_at TIMESTAMPTZ NOT NULL,            -- the run's started_at in PRIMARY
    subject       TEXT NOT NULL,                    -- the integration or transformation id
    outcome       TEXT NOT NULL CHECK (outcome IN ('imported', 'swapped')),
    file_sha256   TEXT,                             -- imports: the file's content
    rows_read     BIGINT NOT NULL DEFAULT 0,
    rows_written  BIGINT NOT NULL DEFAULT 0,
    rows_rejected BIGINT NOT NULL DEFAULT 0,
    rejected_rows JSONB NOT NULL DEFAULT '[]',      -- a partial import's first rejected rows, capped
    committed_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kind, run_id, run_started_at)
);
