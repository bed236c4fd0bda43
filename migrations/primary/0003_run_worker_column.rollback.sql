-- Running imports name their process inside their message again, as before 0003.
UPDATE config.import_runs
   SET message = 'Running in process ' || worker || '.'
 WHERE status = 'running' AND worker IS NOT NULL;

ALTER TABLE config.import_runs DROP COLUMN worker;
ALTER TABLE config.export_runs DROP COLUMN worker;
