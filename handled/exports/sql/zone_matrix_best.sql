-- Fewest days per (origin, destination) across the export's services; the
-- caller substitutes the service list. Kept in a temporary table so the
-- destination list and the matrix rows read the 11M-row table once.
CREATE TEMPORARY TABLE _zone_best ON COMMIT DROP AS
SELECT origin_zip3, dest_zip3, min(transit_days) AS days
FROM reference.delivery_matrix
WHERE (carrier, service) IN ({services})
GROUP BY origin_zip3, dest_zip3
