DROP TABLE config.backup_runs;
