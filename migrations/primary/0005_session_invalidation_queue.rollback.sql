-- Pending invalidations live only in each process's memory again, as before 0005.
DROP TABLE config.pending_invalidations;
