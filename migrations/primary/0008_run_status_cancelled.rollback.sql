-- Back to the statuses before 0008: a cancelled run is recorded as failed again
-- (its message still says who cancelled it).
UPDATE config.import_runs SET status = 'failed' WHERE status = 'cancelled';
UPDATE config.transformation_runs SET status = 'failed' WHERE status = 'cancelled';
UPDATE config.export_runs SET status = 'failed' WHERE status = 'cancelled';
ALTER TABLE config.import_runs DROP CONSTRAINT import_runs_status_check,
    ADD CONSTRAINT import_runs_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped'));
ALTER TABLE config.transformation_runs DROP CONSTRAINT transformation_runs_status_check,
    ADD CONSTRAINT transformation_runs_status_check CHECK (status IN ('pending', 'running', 'succeeded', 'failed'));
ALTER TABLE config.export_runs DROP CONSTRAINT export_runs_status_check,
    ADD CONSTRAINT export_runs_status_check CHECK (status IN ('pending', 'running', 'succeeded', 'failed'));
