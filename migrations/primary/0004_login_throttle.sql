-- The sign-in throttle's counters in PRIMARY, used while Redis is unreachable
-- (handled/auth/throttle.py), so the throttle falls back to PRIMARY instead of
-- to nothing. One row per counter: kind is 'pair' (account and address),
-- 'address', 'account' or 'refused'; key is a hash of the typed email, the client
-- address, or both, never the typed text. Rows are reset when their window has passed.
-- 'refused' rows count throttled attempts of one account from one address, in
-- PRIMARY even while Redis is up: the audit log gets one row at the first of them
-- (audit_id) and one with the total when the window has passed, never one per
-- attempt, and config.audit_log stays append-only.
-- depends: 0003_run_worker_column

CREATE TABLE config.login_throttle (
    kind         TEXT NOT NULL,
    key          TEXT NOT NULL,
    count        INTEGER NOT NULL DEFAULT 0,
    window_start TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_at      TIMESTAMPTZ,
    audit_id     BIGINT,
    PRIMARY KEY (kind, key)
);
