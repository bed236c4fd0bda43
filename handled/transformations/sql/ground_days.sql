-- ground_days (a companion of delivery-matrix, see registry.py): per ZIP3 pair the
-- days of each ground service, read from the new matrix ({source}) before it is
-- swapped in, so the zone-matrix exports read ~810,000 rows instead of 11.3M.
-- Columns and bits follow registry.GROUND_SERVICES (bit i = GROUND_SERVICES[i]).
--
-- Dense: one row for every origin and every destination any ground service
-- reaches (days NULL where the pair has none), so an export's rows are exactly
-- its origins x its destinations, found from the bit sets without aggregating.
-- The pairs that exist go in first, in key order ("C", as the exports sort), so
-- reading the key reads the table in order; the missing pairs (none in the real
-- files, where every source covers every pair) follow, found only for origins
-- that lack some destination.
WITH cells AS MATERIALIZED (
    SELECT origin_zip3 COLLATE "C" AS origin_zip3, dest_zip3 COLLATE "C" AS dest_zip3,
           min(transit_days) FILTER (WHERE carrier = 'UPS' AND service = 'GND') AS ups_gnd,
           min(transit_days) FILTER (WHERE carrier = 'USPS' AND service = 'GAL') AS usps_gal,
           min(transit_days) FILTER (WHERE carrier = 'USPS' AND service = 'GAH') AS usps_gah,
           min(transit_days) FILTER (WHERE carrier = 'USPS' AND service = 'PKG') AS usps_pkg,
           bit_or(CASE WHEN carrier = 'UPS' THEN 1 WHEN service = 'GAL' THEN 2
                       WHEN service = 'GAH' THEN 4 ELSE 8 END)::smallint AS services
    FROM reference.{source}
    WHERE (carrier, service) IN (('UPS', 'GND'), ('USPS', 'GAL'), ('USPS', 'GAH'), ('USPS', 'PKG'))
    GROUP BY 1, 2
),
origins AS MATERIALIZED (
    SELECT origin_zip3, bit_or(services)::smallint AS services, count(*) AS destinations
    FROM cells GROUP BY 1
),
destinations AS MATERIALIZED (SELECT dest_zip3, bit_or(services)::smallint AS services FROM cells GROUP BY 1)
(SELECT c.origin_zip3, c.dest_zip3, c.ups_gnd, c.usps_gal, c.usps_gah, c.usps_pkg, o.services, d.services
 FROM cells c
 JOIN origins o ON o.origin_zip3 = c.origin_zip3
 JOIN destinations d ON d.dest_zip3 = c.dest_zip3
 ORDER BY 1, 2)
UNION ALL
SELECT o.origin_zip3, d.dest_zip3, NULL, NULL, NULL, NULL, o.services, d.services
FROM origins o
CROSS JOIN destinations d
WHERE o.destinations < (SELECT count(*) FROM destinations)
  AND NOT EXISTS (SELECT FROM cells c WHERE c.origin_zip3 = o.origin_zip3 AND c.dest_zip3 = d.dest_zip3)
