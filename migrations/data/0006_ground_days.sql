-- reference.ground_days: the fewest days of each ground service per ZIP3 pair,
-- derived from delivery_matrix in the same build and swapped in with it
-- (handled/transformations/sql/ground_days.sql), so the zone-matrix exports read
-- ~810,000 pre-aggregated rows instead of aggregating 11.3M on their first request.
-- One row for every origin x destination that any ground service reaches (NULL
-- days where a pair has none); origin_services / dest_services are bit sets of
-- the ground services the origin / destination has with any ZIP3 (bit i =
-- GROUND_SERVICES[i] of handled/transformations/registry.py). The ZIP3 columns
-- sort as "C", the order of the exported files, so the key is read in order.
-- Empty until the next delivery-matrix build: until then the exports aggregate
-- the matrix itself (handled/exports/builders.py).
-- depends: 0004_live_partition_names

CREATE TABLE reference.ground_days (
    origin_zip3     TEXT COLLATE "C" NOT NULL,
    dest_zip3       TEXT COLLATE "C" NOT NULL,
    ups_gnd         SMALLINT,
    usps_gal        SMALLINT,
    usps_gah        SMALLINT,
    usps_pkg        SMALLINT,
    origin_services SMALLINT NOT NULL,
    dest_services   SMALLINT NOT NULL,
    PRIMARY KEY (origin_zip3, dest_zip3)
);
