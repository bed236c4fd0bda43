"""UPS ground transit days per origin ZIP5 (NNNNN.csv / NNNNN_Outbound.csv), no header."""

import re

from handled.integrations.base import (FAST_STATE, Integration, RowError, cell_count, digits,
                                       integer, state_code, zip_digits)

COLUMNS = ("origin_zip", "dest_zip", "dest_state", "transit_days")


def convert(cells: list, context: dict):
    if len(cells) == 5 and cells[4] == "":
        cells = cells[:4]  # a trailing delimiter leaves one empty column
    cell_count(cells, 4, COLUMNS)
    origin, dest, state, days = cells
    digits(origin, 5, "origin_zip")
    if origin != context["origin"]:
        raise RowError("origin_zip", origin, f"differs from the file name's origin {context['origin']}")
    yield (origin, digits(dest, 5, "dest_zip"), state_code(state, "dest_state"),
           integer(days, "transit_days", 0, 99, nullable=True))


def fast_row(context: dict) -> re.Pattern:
    """This file's origin, any destination; a trailing empty column is dropped (group 1)."""
    row = "\t".join([re.escape(context["origin"]), zip_digits(5), FAST_STATE, "[0-9]{0,2}"])
    return re.compile(f"({row})\t?")


INTEGRATION = Integration(
    id="ups-ground-service",
    name="UPS ground transit times",
    description="Ground transit days from one origin ZIP5 to every destination ZIP5.",
    file_hint="NNNNN.csv or NNNNN_Outbound.csv, named for the origin ZIP5",
    name_pattern=re.compile(r"(?P<origin>\d{5})(_Outbound)?\.csv", re.IGNORECASE),
    format="csv",
    header=None,
    target="ups_ground_service_zip5",
    columns=COLUMNS,
    key=("origin_zip", "dest_zip"),
    mode="upsert",
    convert=convert,
    fast_pattern=fast_row,
    scope=(("origin_zip", "origin"),),
    name_cells=((0, "origin"),),
)
