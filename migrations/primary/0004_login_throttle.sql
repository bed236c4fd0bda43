-- The sign-in throttle's counters in PRIMARY, used while Redis is unreachable
-- (handled/auth/throttle.py), so the throttle falls back to PRIMARY instead of
-- to nothing. One row per counter: kind is 'pair' (account and address),
-- 'address', 'account' or 'refused' (throttled attempts, for the one aggregated
-- audit row); key is a hash of the typed email, the client address, or both,
-- never the typed text. Rows are reset when their window has passed.
-- depends: 0003_run_worker_column

CREATE TABLE config.login_throttle (
    kind         TEXT NOT NULL,
    key          TEXT NOT NULL,
    count        INTEGER NOT NULL DEFAULT 0,
    window_start TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_at      TIMESTAMPTZ,
    PRIMARY KEY (kind, key)
);
