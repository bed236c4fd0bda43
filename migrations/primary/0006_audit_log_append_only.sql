-- config.audit_log is append-only (issue 12, item 19). The runtime role has no
-- UPDATE/DELETE/TRUNCATE on it (flask db create-roles), and this trigger refuses
-- them for every role, the owner and superusers included: changing the trail
-- takes a deliberate `ALTER TABLE config.audit_log DISABLE TRIGGER ...` by the
-- table's owner, itself visible in the server log.
--
-- The foreign key to config.users goes: its ON DELETE SET NULL rewrote audit rows
-- when a user was deleted (an UPDATE the trigger refuses). The row keeps the
-- actor's id and email as they were, so the trail outlives the account.
-- depends: 0003_run_worker_column

ALTER TABLE config.audit_log DROP CONSTRAINT IF EXISTS audit_log_actor_id_fkey;

CREATE FUNCTION config.audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'config.audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Only the table owner can change the trail, by disabling the trigger '
                     || TG_NAME || ' deliberately.';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON config.audit_log
    FOR EACH ROW EXECUTE FUNCTION config.audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON config.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION config.audit_log_append_only();
