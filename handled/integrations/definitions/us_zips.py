"""SimpleMaps US ZIP database (uszips.csv): every field quoted, 18 columns."""

import re

from handled.integrations.base import (FAST_BOOL, FAST_LAT, FAST_LNG, FAST_STATE, FAST_TEXT,
                                       FAST_UDECIMAL, NULL, Integration, boolean, cell_count,
                                       digits, integer, number, state_code, text, zip_digits)

COLUMNS = ("zip", "lat", "lng", "city", "state_id", "state_name", "zcta", "parent_zcta",
           "population", "density", "county_fips", "county_name", "county_weights",
           "county_names_all", "county_fips_all", "imprecise", "military", "timezone")


def convert(cells: list, context: dict):
    cell_count(cells, 18, COLUMNS)
    (zip_code, lat, lng, city, state_id, state_name, zcta, parent_zcta, population, density,
     county_fips, county_name, county_weights, county_names_all, county_fips_all,
     imprecise, military, timezone) = cells
    yield (
        digits(zip_code, 5, "zip"),
        number(lat, "lat", -90, 90),
        number(lng, "lng", -180, 180),
        text(city, "city"),
        state_code(state_id, "state_id"),
        text(state_name, "state_name"),
        boolean(zcta, "zcta"),
        digits(parent_zcta, 5, "parent_zcta") if parent_zcta else NULL,
        integer(population, "population", 0, 2_147_483_647, nullable=True),
        number(density, "density", 0, None, nullable=True),
        text(county_fips, "county_fips"), text(county_name, "county_name"),
        text(county_weights, "county_weights"), text(county_names_all, "county_names_all"),
        text(county_fips_all, "county_fips_all"),
        boolean(imprecise, "imprecise"),
        boolean(military, "military"),
        text(timezone, "timezone"),
    )


# zip lat lng city state_id state_name zcta parent_zcta population density
# county_fips county_name county_weights county_names_all county_fips_all
# imprecise military timezone
FAST_ROW = re.compile("\t".join([
    zip_digits(5), FAST_LAT, FAST_LNG, FAST_TEXT, FAST_STATE, FAST_TEXT, FAST_BOOL,
    f"(?:{zip_digits(5)})?", "[0-9]{0,9}", f"(?:{FAST_UDECIMAL})?",
    FAST_TEXT, FAST_TEXT, FAST_TEXT, FAST_TEXT, FAST_TEXT, FAST_BOOL, FAST_BOOL, FAST_TEXT]))


INTEGRATION = Integration(
    id="us-zips",
    name="SimpleMaps US ZIP database",
    description="One row per US ZIP code: centroid, city, state, county, population.",
    file_hint="uszips.csv",
    name_pattern=re.compile(r"uszips\.csv", re.IGNORECASE),
    format="csv",
    header=COLUMNS,
    target="us_zips",
    columns=COLUMNS,
    key=("zip",),
    mode="replace",
    convert=convert,
    fast_pattern=lambda context: FAST_ROW,
    free_text=("city", "state_name", "county_fips", "county_name", "county_weights",
               "county_names_all", "county_fips_all", "timezone"),
)
