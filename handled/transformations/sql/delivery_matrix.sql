-- delivery-matrix: one row per (origin ZIP3, destination ZIP3, carrier, service)
-- (rules in ../shared/DATASETS.md). The runner wraps this SELECT in
-- INSERT INTO <build partition>; the column order matches reference.delivery_matrix.
--
-- The build is split by origin ZIP3 into slices that run side by side, one per
-- connection (build_runner.py): %(split_from)s and %(split_to)s bound this slice
-- (NULL = unbounded), and every source is filtered on them before the joins.
--
-- Candidates and their priority (lower wins, then fewer days):
--   1  UPS GND from ZIP5 transit times (most common days per ZIP3 pair, tie: fewer)
--   1  USPS, eight services, from the 3-digit base service directory
--   2  UPS, six services, from the zone charts
-- Only UPS GND has two candidates (ZIP5 times win whenever they exist, being
-- priority 1); USPS and the five UPS express services have exactly one each,
-- since each source holds one row per ZIP3 pair. Rows with no or non-positive
-- days are never candidates.
--
-- Shape: every ZIP3 pair any source knows, once (full joins on the pair), in
-- key order, then its fourteen (carrier, service) candidates in key order.
-- The rows therefore arrive sorted by the primary key, which makes building
-- the key afterwards a pass over presorted data rather than a full sort.
WITH zip5_day_counts AS (
    SELECT left(origin_zip, 3) AS origin_zip3, left(dest_zip, 3) AS dest_zip3,
           transit_days, count(*) AS pairs
    FROM workspace.ups_ground_service_zip5
    WHERE transit_days > 0
      AND (%(split_from)s::text IS NULL OR left(origin_zip, 3) >= %(split_from)s)
      AND (%(split_to)s::text IS NULL OR left(origin_zip, 3) < %(split_to)s)
    GROUP BY 1, 2, 3
),
ups_ground_zip5 AS (          -- the most common days per ZIP3 pair; tie: fewer days
    SELECT DISTINCT ON (origin_zip3, dest_zip3) origin_zip3, dest_zip3, transit_days AS days
    FROM zip5_day_counts
    ORDER BY origin_zip3, dest_zip3, pairs DESC, transit_days
),
usps AS (
    SELECT * FROM workspace.usps_3d_base_service
    WHERE (%(split_from)s::text IS NULL OR origin_zip3 >= %(split_from)s)
      AND (%(split_to)s::text IS NULL OR origin_zip3 < %(split_to)s)
),
zones AS (
    SELECT * FROM workspace.ups_zones
    WHERE (%(split_from)s::text IS NULL OR origin_zip3 >= %(split_from)s)
      AND (%(split_to)s::text IS NULL OR origin_zip3 < %(split_to)s)
),
pairs AS (
    SELECT coalesce(u.origin_zip3, z.origin_zip3, g.origin_zip3) AS origin_zip3,
           coalesce(u.dest_zip3, z.dest_zip3, g.dest_zip3) AS dest_zip3,
           g.days AS zip5_ground_days,
           CASE WHEN z.ground = '045' THEN 5                         -- ground zone 045: 5 days
                WHEN z.ground ~ '^[0-9]{3}$' THEN right(z.ground, 1)::int END  -- else the last digit
               AS zone_ground_days,
           z.ground, z.three_day_select, z.second_day_air, z.second_day_air_am,
           z.next_day_air_saver, z.next_day_air,
           u.pri_days, u.gal_days, u.mkt_days, u.per_days, u.pkg_days, u.fcm_days, u.gah_days, u.pfc_days
    FROM usps u
    FULL JOIN zones z ON z.origin_zip3 = u.origin_zip3 AND z.dest_zip3 = u.dest_zip3
    FULL JOIN ups_ground_zip5 g ON g.origin_zip3 = coalesce(u.origin_zip3, z.origin_zip3)
                               AND g.dest_zip3 = coalesce(u.dest_zip3, z.dest_zip3)
    ORDER BY 1, 2
)
SELECT p.origin_zip3, p.dest_zip3, c.carrier, c.service,
       c.days::smallint AS transit_days,
       c.zone,
       (CASE WHEN c.days <= 1 THEN 100 WHEN c.days = 2 THEN 95 WHEN c.days = 3 THEN 60
             WHEN c.days = 4 THEN 20 ELSE 0 END)::smallint AS delivery_score,
       c.source
FROM pairs p
CROSS JOIN LATERAL (VALUES
    -- UPS express services: days = the first digit of a well-formed zone
    ('UPS', '2AM', CASE WHEN p.second_day_air_am ~ '^[0-9]{3}$' THEN left(p.second_day_air_am, 1)::int END,
                   p.second_day_air_am, 'ups-zones'),
    ('UPS', '2DA', CASE WHEN p.second_day_air ~ '^[0-9]{3}$' THEN left(p.second_day_air, 1)::int END,
                   p.second_day_air, 'ups-zones'),
    ('UPS', '3DS', CASE WHEN p.three_day_select ~ '^[0-9]{3}$' THEN left(p.three_day_select, 1)::int END,
                   p.three_day_select, 'ups-zones'),
    -- UPS ground: ZIP5 times (priority 1, no zone) before the zone chart (priority 2)
    ('UPS', 'GND', coalesce(p.zip5_ground_days, p.zone_ground_days),
                   CASE WHEN p.zip5_ground_days IS NULL THEN p.ground END,
                   CASE WHEN p.zip5_ground_days IS NULL THEN 'ups-zones' ELSE 'ups-ground-service' END),
    ('UPS', 'NDA', CASE WHEN p.next_day_air ~ '^[0-9]{3}$' THEN left(p.next_day_air, 1)::int END,
                   p.next_day_air, 'ups-zones'),
    ('UPS', 'NDS', CASE WHEN p.next_day_air_saver ~ '^[0-9]{3}$' THEN left(p.next_day_air_saver, 1)::int END,
                   p.next_day_air_saver, 'ups-zones'),
    ('USPS', 'FCM', p.fcm_days, NULL, 'usps-3d-base'),
    ('USPS', 'GAH', p.gah_days, NULL, 'usps-3d-base'),
    ('USPS', 'GAL', p.gal_days, NULL, 'usps-3d-base'),
    ('USPS', 'MKT', p.mkt_days, NULL, 'usps-3d-base'),
    ('USPS', 'PER', p.per_days, NULL, 'usps-3d-base'),
    ('USPS', 'PFC', p.pfc_days, NULL, 'usps-3d-base'),
    ('USPS', 'PKG', p.pkg_days, NULL, 'usps-3d-base'),
    ('USPS', 'PRI', p.pri_days, NULL, 'usps-3d-base')
) AS c (carrier, service, days, zone, source)
WHERE c.days > 0
