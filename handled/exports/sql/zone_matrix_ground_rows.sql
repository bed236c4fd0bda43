-- One row per origin of a zone matrix: its days to each of the matrix's destinations
-- in order, 99 where no service; read in key order from reference.ground_days (built
-- with delivery_matrix: one row per origin x destination any ground service reaches).
-- The caller substitutes {days} (the least of the export's service columns); %(bits)s
-- are the export's services' bits, so its origins and destinations are those with any.
SELECT origin_zip3, string_agg(coalesce({days}, 99)::text, ',' ORDER BY dest_zip3)
FROM reference.ground_days
WHERE origin_services & %(bits)s <> 0 AND dest_services & %(bits)s <> 0
GROUP BY origin_zip3
ORDER BY origin_zip3
