"""USPS 3-digit base service standards (3D_Base_Service_Standard_Directory_MMDDYYYY.csv)."""

import re

from handled.integrations.base import Integration, cell_count, digits, integer, zip_digits

SERVICES = ("PRI", "GAL", "MKT", "PER", "PKG", "FCM", "GAH", "PFC")
HEADER = ("Origin_ZIP_Code", "Destination_ZIP_Code") + tuple(f"{s}_Service_Standard" for s in SERVICES)
COLUMNS = ("origin_zip3", "dest_zip3") + tuple(f"{s.lower()}_days" for s in SERVICES)


def convert(cells: list, context: dict):
    cell_count(cells, 10, HEADER)
    yield (digits(cells[0], 3, HEADER[0]), digits(cells[1], 3, HEADER[1]),
           *(integer(cells[i], HEADER[i], 0, 99, nullable=True) for i in range(2, 10)))


FAST_ROW = re.compile("\t".join([zip_digits(3), zip_digits(3)] + ["[0-9]{0,2}"] * 8))


INTEGRATION = Integration(
    id="usps-3d-base",
    name="USPS 3-digit service standards",
    description="USPS days from every origin ZIP3 to every destination ZIP3, eight services.",
    file_hint="3D_Base_Service_Standard_Directory_MMDDYYYY.csv",
    name_pattern=re.compile(r"3D_Base_Service_Standard_Directory_(?P<date>\d{8})\.csv", re.IGNORECASE),
    name_date="%m%d%Y",
    format="csv",
    header=HEADER,
    target="usps_3d_base_service",
    columns=COLUMNS,
    key=("origin_zip3", "dest_zip3"),
    mode="replace",
    convert=convert,
    fast_pattern=lambda context: FAST_ROW,
)
