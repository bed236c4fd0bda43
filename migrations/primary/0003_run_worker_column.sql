-- Every run history table names the process running it in a `worker` column
-- (<host>:<pid>, handled/heartbeat.py), so a run whose worker died can be
-- found and marked failed (handled/runs.py). transformation_runs has had the
-- column from the start; imports kept it inside their message as
-- "Running in process <host>:<pid>." and exports did not record it.
-- depends: 0002_seed_roles_permissions

ALTER TABLE config.import_runs ADD COLUMN worker TEXT;
ALTER TABLE config.export_runs ADD COLUMN worker TEXT;

UPDATE config.import_runs
   SET worker = substring(message FROM '^Running in process (\S+)\.$'),
       message = NULL
 WHERE status = 'running' AND message ~ '^Running in process \S+\.$';
