"""Files written in each real format, for the integrations tests.

Each writer produces the file the way its publisher does: uszips.csv with every
field quoted, the Gazetteer tab-separated with trailing spaces after the last
header, UPS zone charts as real .xlsx (openpyxl) or .xls (xlwt) workbooks with
eight title rows, UPS ground files without a header, USPS with its header.
"""

from __future__ import annotations

import csv
from pathlib import Path

USZIPS_HEADER = ["zip", "lat", "lng", "city", "state_id", "state_name", "zcta", "parent_zcta",
                 "population", "density", "county_fips", "county_name", "county_weights",
                 "county_names_all", "county_fips_all", "imprecise", "military", "timezone"]
GAZ_HEADER = ["GEOID", "ALAND", "AWATER", "ALAND_SQMI", "AWATER_SQMI", "INTPTLAT", "INTPTLONG"]
ZONE_HEADER = ["Dest. ZIP", "Ground", "3 Day Select", "2nd Day Air", "2nd Day Air A.M.",
               "Next Day Air Saver", "Next Day Air"]
USPS_HEADER = ["Origin_ZIP_Code", "Destination_ZIP_Code"] + [
    f"{s}_Service_Standard" for s in ("PRI", "GAL", "MKT", "PER", "PKG", "FCM", "GAH", "PFC")]
USPS_NAME = "3D_Base_Service_Standard_Directory_01152025.csv"


def uszip_row(zip_code="00501", **changes) -> list[str]:
    values = {"zip": zip_code, "lat": "40.81308", "lng": "-73.04639", "city": "Holtsville",
              "state_id": "NY", "state_name": "New York", "zcta": "FALSE", "parent_zcta": "11742",
              "population": "", "density": "", "county_fips": "36103", "county_name": "Suffolk",
              "county_weights": '{"36103": 100}', "county_names_all": "Suffolk",
              "county_fips_all": "36103", "imprecise": "FALSE", "military": "FALSE",
              "timezone": "America/New_York"}
    values.update(changes)
    return [values[c] for c in USZIPS_HEADER]


def write_uszips(path: Path, rows, header=USZIPS_HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def gaz_row(geoid="00601", aland="166847909", awater="799292", aland_sqmi="64.42",
            awater_sqmi="0.309", lat="18.180555", lng="-66.749961") -> list[str]:
    return [geoid, aland, awater, aland_sqmi, awater_sqmi, lat, lng]


def write_gaz(path: Path, rows, header=GAZ_HEADER, header_tail="                    ") -> Path:
    lines = ["\t".join(header) + header_tail] if header is not None else []
    lines += ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def zone_row(dest="008", *zones) -> list[str]:
    return [dest, *(zones or ("002", "302", "202", "242", "132", "102"))]


def zone_rows(count: int) -> list[list[str]]:
    """``count`` destinations (ZIP3 001 on), every service zoned: the size of a real chart at 999."""
    return [zone_row(f"{n:03d}") for n in range(1, count + 1)]


def write_zone_chart(path: Path, rows, header=ZONE_HEADER, footnotes=None, title_rows=8,
                     number_format: str | None = None) -> Path:
    """A UPS zone chart: titles, header in row 9, data, blank row, footnotes.

    Numbers are written as numeric cells, with ``number_format`` (e.g. "000") if given.
    """
    titles = [["UPS Zone Chart"], ["Ground, 3 Day Select, 2nd Day Air, Next Day Air"],
              ["For shipments originating in ZIP codes " + path.stem + "-xx"], [], ["Notes:"],
              ["Zones apply to UPS services listed below"], [], ["Effective January 2025"]][:title_rows]
    footnotes = footnotes if footnotes is not None else [
        [], ["* For Hawaii and Alaska see the separate zone charts."],
        ["Zones marked - are not served."]]
    table = titles + ([header] if header is not None else []) + list(rows) + footnotes
    if path.suffix.lower() == ".xls":
        import xlwt

        book = xlwt.Workbook()
        sheet = book.add_sheet("Zones")
        padded = xlwt.easyxf(num_format_str=number_format) if number_format else None
        for r, cells in enumerate(table):
            for c, value in enumerate(cells):
                if padded is not None and isinstance(value, int):
                    sheet.write(r, c, value, padded)
                else:
                    sheet.write(r, c, value)
        book.save(str(path))
    else:
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        for r, cells in enumerate(table, start=1):
            for c, value in enumerate(cells, start=1):
                cell = sheet.cell(row=r, column=c, value=value)
                if number_format and isinstance(value, int):
                    cell.number_format = number_format
        book.save(path)
    return path


def ground_row(origin="10001", dest="00501", state="NY", days="1") -> list[str]:
    return [origin, dest, state, days]


def write_ground(path: Path, rows, trailing_empty=False) -> Path:
    tail = "," if trailing_empty else ""
    path.write_text("".join(",".join(r) + tail + "\r\n" for r in rows), encoding="utf-8")
    return path


def usps_row(origin="005", dest="006", *days) -> list[str]:
    return [origin, dest, *(days or ("1", "2", "3", "2", "2", "2", "2", "2"))]


def write_usps(path: Path, rows, header=USPS_HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


# ---- hostile files: spreadsheets that declare far more cells than they hold, archives that expand

_XLSX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '</Types>'),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'officeDocument" Target="xl/workbook.xml"/></Relationships>'),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheets><sheet name="Zones" sheetId="1" r:id="rId1"/></sheets></workbook>'),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'worksheet" Target="worksheets/sheet1.xml"/></Relationships>'),
}


def write_sheet_xlsx(path: Path, cells: dict[str, str], dimension: str | None = None) -> Path:
    """A hand-written .xlsx whose one sheet holds ``cells`` ({"A1": "text"}) as inline strings,
    with a ``<dimension ref>`` that may say anything (a lie, or nothing when None)."""
    import re
    import zipfile

    def row_of(ref):
        return int(re.sub(r"[A-Z]", "", ref))

    rows: dict[int, list[str]] = {}
    for ref, value in cells.items():
        rows.setdefault(row_of(ref), []).append(
            f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>')
    body = "".join(f'<row r="{r}">{"".join(cs)}</row>' for r, cs in sorted(rows.items()))
    sheet = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
             '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             + (f'<dimension ref="{dimension}"/>' if dimension else "")
             + f"<sheetData>{body}</sheetData></worksheet>")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in _XLSX_PARTS.items():
            archive.writestr(name, text)
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
    return path


def write_far_cell_xlsx(path: Path) -> Path:
    """The ~5 KB spreadsheet bomb as openpyxl writes it: cells at A1 and XFD1048576."""
    from openpyxl import Workbook

    book = Workbook()
    book.active["A1"] = "UPS Zone Chart"
    book.active["XFD1048576"] = "x"
    book.save(path)
    return path


def write_far_cell_xls(path: Path) -> Path:
    """The .xls version: cells at A1 and IV65536, the last cell BIFF8 can address (16.7M cells)."""
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Zones")
    sheet.write(0, 0, "UPS Zone Chart")
    sheet.write(65535, 255, "x")
    book.save(str(path))
    return path


SPREADSHEETML = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = ('<Relationship Id="{id}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/{type}" '
        'Target="{target}"/>')


def sheet_xml(far: str | None = "XFD1048576", root: str = "worksheet", head: str = "", rows: str = "") -> str:
    """A sheet part: text at A1 (and at ``far`` when given), ``head`` before <sheetData>, ``rows`` after row 1."""
    cells = '<c r="A1" t="inlineStr"><is><t>a</t></is></c>'
    if far:
        cells += f'<c r="{far}" t="inlineStr"><is><t>b</t></is></c>'
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<{root} xmlns="{SPREADSHEETML}">{head}<sheetData><row>{cells}</row>{rows}</sheetData></{root}>')


def write_xlsx_parts(path: Path, sheet: str, sheet_part: str = "xl/worksheets/sheet1.xml",
                     extra: dict[str, tuple[str, str]] | None = None) -> Path:
    """A hand-written .xlsx whose one sheet is ``sheet`` stored as ``sheet_part`` (any name, named in
    workbook.xml.rels), plus ``extra`` parts {member: (relationship type, text)} the workbook points to."""
    import zipfile

    parts = {name: text.replace("worksheets/sheet1.xml", sheet_part.split("xl/", 1)[1])
             for name, text in _XLSX_PARTS.items()}
    links = "".join(_REL.format(id=f"rId{n}", type=kind, target=member.split("xl/", 1)[1])
                    for n, (member, (kind, _)) in enumerate((extra or {}).items(), start=2))
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(
        "</Relationships>", links + "</Relationships>")
    parts[sheet_part] = sheet
    parts.update({member: text for member, (_, text) in (extra or {}).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return path


def shared_strings_xml(unique_count: str, strings=("a",)) -> str:
    items = "".join(f"<si><t>{s}</t></si>" for s in strings)
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="{SPREADSHEETML}" '
            f'count="{len(strings)}" uniqueCount="{unique_count}">{items}</sst>')


def patch_xls_records(path: Path, patch) -> Path:
    """Rewrite, in place and at the same length, BIFF records of an .xls written by xlwt:
    ``patch(opcode, body)`` returns the record's new bytes (header included) or None to keep it."""
    import struct

    from io import StringIO

    from xlrd import compdoc

    data = bytearray(path.read_bytes())
    mem, base, length = compdoc.CompDoc(bytes(data), logfile=StringIO()).locate_named_stream("Workbook")
    stream = bytes(mem[base:base + length])
    offset = data.find(stream[:512])
    assert offset >= 0 and data[offset:offset + length] == stream, "xlwt's workbook stream is not contiguous"
    position = 0
    while position + 4 <= length:
        opcode, size = struct.unpack_from("<HH", stream, position)
        if opcode == 0 and size == 0:
            break
        new = patch(opcode, stream[position + 4:position + 4 + size])
        if new is not None:
            assert len(new) == 4 + size
            data[offset + position:offset + position + 4 + size] = new
        position += 4 + size
    path.write_bytes(bytes(data))
    return path
