-- The zone-matrix exports aggregate delivery_matrix again.
DROP TABLE IF EXISTS reference.ground_days;
