"""UPS zone charts (NNN.xls / NNN.xlsx, named for the origin ZIP3).

First sheet; rows 1-8 are titles, row 9 the header, then one row per
destination: a ZIP3 or an inclusive range such as ``004-005`` (one row per
prefix). Zone cells are 3-character codes; ``-`` means no service (NULL).
Footnote rows (text in the first cell, no zone values) are not data and are
skipped wherever they appear; any row with a zone value is validated.
"""

import re

from handled.integrations.base import NULL, Integration, RowError

HEADER = ("Dest. ZIP", "Ground", "3 Day Select", "2nd Day Air", "2nd Day Air A.M.",
          "Next Day Air Saver", "Next Day Air")
COLUMNS = ("origin_zip3", "dest_zip3", "ground", "three_day_select", "second_day_air",
           "second_day_air_am", "next_day_air_saver", "next_day_air")
DEST = re.compile(r"(\d{3})(?:\s*-\s*(\d{3}))?")
ZONE = re.compile(r"\d{3}")


def is_footnote(cells: list) -> bool:
    first = cells[0] if cells else ""
    return not first[:1].isdigit() and not any(cells[1:7])


def convert(cells: list, context: dict):
    cells = list(cells[:7]) + [""] * (7 - len(cells))
    if any(cells[7:]):
        raise RowError("(extra)", cells[7], "unexpected value after the Next Day Air column")
    match = DEST.fullmatch(cells[0])
    if not match or not cells[0].isascii():
        raise RowError("Dest. ZIP", cells[0], "must be a ZIP3 like 008 or a range like 004-005")
    zones = tuple(_zone(value, HEADER[i]) for i, value in enumerate(cells[1:7], start=1))
    first, last = match.group(1), match.group(2) or match.group(1)
    if int(last) < int(first):
        raise RowError("Dest. ZIP", cells[0], "range ends before it starts")
    origin = context["origin"]
    for prefix in range(int(first), int(last) + 1):
        yield (origin, f"{prefix:03d}", *zones)


def _zone(value: str, column: str) -> str:
    if value == "-":
        return NULL
    if value == "":
        raise RowError(column, value, "is empty; use - for no service")
    if not ZONE.fullmatch(value) or not value.isascii():
        raise RowError(column, value, "must be a 3-character zone code like 002 or - for no service")
    return value


INTEGRATION = Integration(
    id="ups-zones",
    name="UPS zone charts",
    description="Zones for six UPS services from one origin ZIP3 to every destination ZIP3.",
    file_hint="NNN.xls or NNN.xlsx, named for the origin ZIP3",
    name_pattern=re.compile(r"(?P<origin>\d{3})\.xlsx?", re.IGNORECASE),
    format="spreadsheet",
    header=HEADER,
    header_row=9,
    target="ups_zones",
    columns=COLUMNS,
    key=("origin_zip3", "dest_zip3"),
    mode="upsert",
    convert=convert,
    skip_record=is_footnote,
    scope=(("origin_zip3", "origin"),),
    extensions=(".xls", ".xlsx"),
)
