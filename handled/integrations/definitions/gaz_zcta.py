"""Census Gazetteer ZCTA file: tab-separated, the last header often has trailing spaces."""

import re

from handled.integrations.base import (FAST_LAT, FAST_LNG, FAST_UDECIMAL, Integration, cell_count,
                                       digits, integer, number, zip_digits)

HEADER = ("GEOID", "ALAND", "AWATER", "ALAND_SQMI", "AWATER_SQMI", "INTPTLAT", "INTPTLONG")
COLUMNS = ("geoid", "aland", "awater", "aland_sqmi", "awater_sqmi", "intptlat", "intptlong")
BIGINT_MAX = 9_223_372_036_854_775_807


def convert(cells: list, context: dict):
    cell_count(cells, 7, HEADER)
    geoid, aland, awater, aland_sqmi, awater_sqmi, lat, lng = cells
    yield (
        digits(geoid, 5, "GEOID"),
        integer(aland, "ALAND", 0, BIGINT_MAX),
        integer(awater, "AWATER", 0, BIGINT_MAX),
        number(aland_sqmi, "ALAND_SQMI", 0, None),
        number(awater_sqmi, "AWATER_SQMI", 0, None),
        number(lat, "INTPTLAT", -90, 90),
        number(lng, "INTPTLONG", -180, 180),
    )


FAST_ROW = re.compile("\t".join([zip_digits(5), "[0-9]{1,18}", "[0-9]{1,18}", FAST_UDECIMAL,
                                  FAST_UDECIMAL, FAST_LAT, FAST_LNG]))


INTEGRATION = Integration(
    id="gaz-zcta",
    name="Census Gazetteer ZCTA file",
    description="Land and water area and internal point of every ZIP Code Tabulation Area.",
    file_hint="a Gazetteer ZCTA file such as 2020_Gaz_zcta_national.txt",
    name_pattern=re.compile(r"\d{4}_Gaz_zcta_national\.txt", re.IGNORECASE),
    format="tsv",
    header=HEADER,
    target="gaz_zcta_national",
    columns=COLUMNS,
    key=("geoid",),
    mode="replace",
    convert=convert,
    fast_pattern=lambda context: FAST_ROW,
    extensions=(".txt",),
)
