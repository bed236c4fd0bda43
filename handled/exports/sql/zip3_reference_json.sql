-- zip3-reference.json: { "<zip3>": {lat, lng, city, state, population} } with the
-- population-weighted centroid; ZIP3s known only from the gazetteer have no
-- population centroid, city or state and are left out.
SELECT coalesce(json_object_agg(zip3, json_build_object(
           'lat', pop_lat, 'lng', pop_lng, 'city', primary_city,
           'state', primary_state, 'population', total_population)
       ORDER BY zip3 COLLATE "C"), '{}')::text,
       count(*)
FROM reference.zip3_reference
WHERE pop_lat IS NOT NULL
