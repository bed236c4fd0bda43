-- A run a user cancelled is not a failure (issue 14 review): it gets its own status,
-- 'cancelled', so pages say so and home's "failed runs not since fixed" leaves it out.
-- Only the CHECK constraints change; no row is rewritten.
-- depends: 0007_backup_runs
ALTER TABLE config.import_runs DROP CONSTRAINT import_runs_status_check,
    ADD CONSTRAINT import_runs_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled'));
ALTER TABLE config.transformation_runs DROP CONSTRAINT transformation_runs_status_check,
    ADD CONSTRAINT transformation_runs_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled'));
ALTER TABLE config.export_runs DROP CONSTRAINT export_runs_status_check,
    ADD CONSTRAINT export_runs_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled'));
