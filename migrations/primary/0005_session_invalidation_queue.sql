-- Session-cache invalidations that could not reach Redis when they were made
-- (docs/SESSIONS.md, "Redis unavailable"). Every process that can reach Redis
-- replays these rows (drops the cached entries, moves the epoch) and deletes
-- them; until then /system shows how many are pending. One target per row:
-- a user's entries, one session's entry, or every entry.
-- depends: 0003_run_worker_column

CREATE TABLE config.pending_invalidations (
    id          BIGSERIAL PRIMARY KEY,
    user_id     INTEGER,
    token_hash  TEXT,
    everything  BOOLEAN NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pending_invalidations_one_target CHECK (
        (user_id IS NOT NULL)::int + (token_hash IS NOT NULL)::int + everything::int = 1)
);
