-- delivery_matrix becomes a table partitioned by range of origin_zip3, so a
-- rebuild can fill and key its slices on several connections at once
-- (handled/transformations/swap.py). No row moves: the old table becomes the
-- one partition covering every origin, and its primary key becomes that
-- partition's part of the new one. The next rebuild replaces it with slices.
-- depends: 0002_seed_carriers_services

ALTER TABLE reference.delivery_matrix RENAME TO _delivery_matrix_0;
ALTER INDEX reference.delivery_matrix_pkey RENAME TO _delivery_matrix_0_pkey;

CREATE TABLE reference.delivery_matrix (
    origin_zip3    TEXT NOT NULL,
    dest_zip3      TEXT NOT NULL,
    carrier        TEXT NOT NULL,
    service        TEXT NOT NULL,
    transit_days   SMALLINT NOT NULL,
    zone           TEXT,
    delivery_score SMALLINT NOT NULL,
    source         TEXT NOT NULL,
    PRIMARY KEY (origin_zip3, dest_zip3, carrier, service)
) PARTITION BY RANGE (origin_zip3);

ALTER TABLE reference.delivery_matrix
    ATTACH PARTITION reference._delivery_matrix_0 FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
