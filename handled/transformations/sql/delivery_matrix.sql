-- delivery-matrix: one row per (origin ZIP3, destination ZIP3, carrier, service)
-- (rules in ../shared/DATASETS.md). The runner wraps this SELECT in
-- INSERT INTO <build table>; the column order matches reference.delivery_matrix.
--
-- Candidates and their priority (lower wins, then fewer days):
--   1  UPS GND from ZIP5 transit times (most common days per ZIP3 pair, tie: fewer)
--   1  USPS, eight services, from the 3-digit base service directory
--   2  UPS, six services, from the zone charts
-- Only UPS GND has two sources; USPS and the five UPS express services have
-- exactly one each (and one row per key in it), so only GND needs ranking.
-- Rows with no or non-positive days are never candidates.
WITH zip5_day_counts AS (
    SELECT left(origin_zip, 3) AS origin_zip3, left(dest_zip, 3) AS dest_zip3,
           transit_days, count(*) AS pairs
    FROM workspace.ups_ground_service_zip5
    WHERE transit_days > 0
    GROUP BY 1, 2, 3
),
ups_ground_zip5 AS (
    SELECT DISTINCT ON (origin_zip3, dest_zip3)
           origin_zip3, dest_zip3, transit_days AS days
    FROM zip5_day_counts
    ORDER BY origin_zip3, dest_zip3, pairs DESC, transit_days
),
ups_zone_cells AS (
    SELECT z.origin_zip3, z.dest_zip3, cell.service, cell.zone
    FROM workspace.ups_zones z
    CROSS JOIN LATERAL (VALUES ('GND', z.ground),
                               ('3DS', z.three_day_select),
                               ('2DA', z.second_day_air),
                               ('2AM', z.second_day_air_am),
                               ('NDS', z.next_day_air_saver),
                               ('NDA', z.next_day_air)) AS cell (service, zone)
    WHERE cell.zone ~ '^[0-9]{3}$'
),
ups_zone_days AS (
    SELECT origin_zip3, dest_zip3, service, zone,
           CASE WHEN service <> 'GND' THEN left(zone, 1)::smallint     -- express: first digit
                WHEN zone = '045' THEN 5::smallint                    -- ground zone 045: 5 days
                ELSE right(zone, 1)::smallint END AS days             -- ground: last digit
    FROM ups_zone_cells
),
ups_ground AS (
    SELECT DISTINCT ON (origin_zip3, dest_zip3)
           origin_zip3, dest_zip3, days, zone, source
    FROM (SELECT origin_zip3, dest_zip3, days, NULL::text AS zone, 1 AS priority,
                 'ups-ground-service' AS source
          FROM ups_ground_zip5
          UNION ALL
          SELECT origin_zip3, dest_zip3, days, zone, 2, 'ups-zones'
          FROM ups_zone_days
          WHERE service = 'GND' AND days > 0) AS ground_candidates
    ORDER BY origin_zip3, dest_zip3, priority, days
),
usps_cells AS (
    SELECT u.origin_zip3, u.dest_zip3, cell.service, cell.days
    FROM workspace.usps_3d_base_service u
    CROSS JOIN LATERAL (VALUES ('PRI', u.pri_days), ('GAL', u.gal_days),
                               ('MKT', u.mkt_days), ('PER', u.per_days),
                               ('PKG', u.pkg_days), ('FCM', u.fcm_days),
                               ('GAH', u.gah_days), ('PFC', u.pfc_days)) AS cell (service, days)
    WHERE cell.days > 0
),
winners AS (
    SELECT origin_zip3, dest_zip3, 'UPS' AS carrier, 'GND' AS service, days, zone, source
    FROM ups_ground
    UNION ALL
    SELECT origin_zip3, dest_zip3, 'UPS', service, days, zone, 'ups-zones'
    FROM ups_zone_days
    WHERE service <> 'GND' AND days > 0
    UNION ALL
    SELECT origin_zip3, dest_zip3, 'USPS', service, days, NULL, 'usps-3d-base'
    FROM usps_cells
)
SELECT origin_zip3, dest_zip3, carrier, service,
       days::smallint AS transit_days,
       zone,
       (CASE WHEN days <= 1 THEN 100 WHEN days = 2 THEN 95 WHEN days = 3 THEN 60
             WHEN days = 4 THEN 20 ELSE 0 END)::smallint AS delivery_score,
       source
FROM winners
