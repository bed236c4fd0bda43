-- One row per origin: its days to every destination in order, 99 where no service.
WITH origins AS (SELECT DISTINCT origin_zip3 FROM _zone_best),
     destinations AS (SELECT DISTINCT dest_zip3 FROM _zone_best)
SELECT o.origin_zip3,
       string_agg(coalesce(b.days, 99)::text, ',' ORDER BY d.dest_zip3 COLLATE "C")
FROM origins o
CROSS JOIN destinations d
LEFT JOIN _zone_best b ON b.origin_zip3 = o.origin_zip3 AND b.dest_zip3 = d.dest_zip3
GROUP BY o.origin_zip3
ORDER BY o.origin_zip3 COLLATE "C"
