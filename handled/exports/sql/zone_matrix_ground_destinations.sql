-- The destinations of a zone matrix, in order: those of its first origin, since
-- reference.ground_days holds every destination for every origin.
SELECT dest_zip3
FROM reference.ground_days
WHERE origin_zip3 = (SELECT origin_zip3 FROM reference.ground_days WHERE origin_services & %(bits)s <> 0
                     ORDER BY origin_zip3 LIMIT 1)
  AND dest_services & %(bits)s <> 0
ORDER BY dest_zip3
