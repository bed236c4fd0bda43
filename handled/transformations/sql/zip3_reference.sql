-- zip3-reference: one row per ZIP3 prefix (rules in ../shared/DATASETS.md).
-- The runner wraps this SELECT in INSERT INTO <build table>; the column order
-- matches reference.zip3_reference.
WITH zips AS (
    SELECT left(zip, 3) AS zip3, zip, city, state_id, lat, lng, population,
           coalesce(population, 0) AS weight              -- missing population counts as 0
    FROM workspace.us_zips
),
zip_totals AS (
    SELECT zip3,
           count(*)::integer AS zip_count,
           -- NULL when no ZIP of the group has a population: unknown, not zero
           sum(population)::bigint AS total_population,
           -- population-weighted centroid; plain mean when nobody lives there
           CASE WHEN sum(weight) > 0 THEN sum(lat * weight) / sum(weight) ELSE avg(lat) END AS pop_lat,
           CASE WHEN sum(weight) > 0 THEN sum(lng * weight) / sum(weight) ELSE avg(lng) END AS pop_lng
    FROM zips
    GROUP BY zip3
),
state_counts AS (
    SELECT zip3, state_id, count(*) AS zips_in_state
    FROM zips
    GROUP BY zip3, state_id
),
primary_states AS (
    -- most frequent state; a tie goes to the alphabetically first
    SELECT DISTINCT ON (zip3) zip3, state_id
    FROM state_counts
    ORDER BY zip3, zips_in_state DESC, state_id COLLATE "C"
),
primary_cities AS (
    -- city of the most populous ZIP; a tie (or no population at all) goes to the lowest ZIP
    SELECT DISTINCT ON (zip3) zip3, city
    FROM zips
    ORDER BY zip3, weight DESC, zip COLLATE "C"
),
gazetteer AS (
    SELECT left(geoid, 3) AS zip3,
           sum(aland_sqmi) AS land_sqmi,
           sum(awater_sqmi) AS water_sqmi,
           -- land-area-weighted centroid; plain mean when the prefix has no land area
           CASE WHEN sum(aland) > 0 THEN sum(intptlat * aland) / sum(aland) ELSE avg(intptlat) END AS geo_lat,
           CASE WHEN sum(aland) > 0 THEN sum(intptlong * aland) / sum(aland) ELSE avg(intptlong) END AS geo_lng
    FROM workspace.gaz_zcta_national
    GROUP BY left(geoid, 3)
)
SELECT coalesce(t.zip3, g.zip3) AS zip3,
       t.zip_count, t.total_population, s.state_id AS primary_state, c.city AS primary_city,
       t.pop_lat, t.pop_lng,
       g.land_sqmi, g.water_sqmi, g.geo_lat, g.geo_lng
FROM zip_totals t
JOIN primary_states s ON s.zip3 = t.zip3
JOIN primary_cities c ON c.zip3 = t.zip3
FULL OUTER JOIN gazetteer g ON g.zip3 = t.zip3       -- a ZIP3 in only one source still gets a row
