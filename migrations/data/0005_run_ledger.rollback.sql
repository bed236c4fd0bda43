-- Back to no ledger: PRIMARY's history alone says what ran (a kill between the DATA commit
-- and the history's end is then reported as "nothing was written" again).
DROP TABLE workspace.run_ledger;
