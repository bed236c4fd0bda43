DROP TRIGGER IF EXISTS audit_log_no_truncate ON config.audit_log;
DROP TRIGGER IF EXISTS audit_log_append_only ON config.audit_log;
DROP FUNCTION IF EXISTS config.audit_log_append_only();
-- NOT VALID: rows of users deleted since keep their id, which no longer matches a user
ALTER TABLE config.audit_log ADD CONSTRAINT audit_log_actor_id_fkey
    FOREIGN KEY (actor_id) REFERENCES config.users (id) ON DELETE SET NULL NOT VALID;
