"""Reading source files: whole-file checks, then records one at a time.

``inspect_file`` reads the file once in chunks (sha256, size, UTF-8 and binary
checks, and for a spreadsheet the declared-size checks of limits.py) so a
wrong file is refused before anything is written. ``open_records``
then yields ``(line, cells)`` records without ever holding the file in memory:
CSV/TSV through the csv module, .xlsx through openpyxl's read-only mode. The
exceptions are spreadsheets of at most FAST_SHEET_MAX_BYTES, which calamine
reads whole when every cell is text (see ``_sheet_rows``), and .xls: xlrd
parses a whole sheet at once, which is fine for zone charts (a few hundred rows
each).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from handled.integrations.base import FileRefused, Integration, Record, WrongHeader, WrongKind
from handled.integrations.limits import FileLimits, check_spreadsheet

CHUNK = 1 << 20
FAST_SHEET_MAX_BYTES = 16 << 20   # calamine holds a whole sheet in memory: only files this small
XLSX_MAGIC = b"PK\x03\x04"
XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SPACES = re.compile(r"\s+")
_ZERO_PADDED = re.compile(r"0+")

csv.field_size_limit(1 << 20)


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    size: int
    kind: str  # "text", "xlsx" or "xls"


def file_sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def inspect_file(path: Path, name: str, integration: Integration, max_bytes: int,
                 limits: FileLimits | None = None) -> FileFacts:
    """Size, sha256 and the whole-file checks; FileRefused says what is wrong.

    A spreadsheet is also checked against ``limits`` (required for one) before
    any reader opens it: see handled/integrations/limits.py.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise FileRefused(f"{name} is {size:,} bytes, over the import limit of {max_bytes:,} bytes "
                          "(IMPORT_MAX_BYTES).")
    if size == 0:
        raise FileRefused(f"{name} is empty.")
    if integration.format == "spreadsheet":
        if limits is None:
            raise ValueError("a spreadsheet is inspected with its FileLimits")
        sha, size = file_sha256(path)
        kind = _spreadsheet_kind(path, name)
        check_spreadsheet(path, name, kind, limits)
        return FileFacts(sha, size, kind)
    return FileFacts(*_scan_text(path, name), "text")


def _spreadsheet_kind(path: Path, name: str) -> str:
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(XLSX_MAGIC):
        return "xlsx"
    if head == XLS_MAGIC:
        return "xls"
    raise WrongKind(f"{name} is not a spreadsheet (.xls or .xlsx).")


def _scan_text(path: Path, name: str) -> tuple[str, int]:
    """sha256 and size, refusing binary data or bytes that are not UTF-8."""
    digest, size = hashlib.sha256(), 0
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            nul = chunk.find(b"\x00")
            if nul >= 0:
                raise FileRefused(f"{name} contains binary data (a NUL byte at offset "
                                  f"{size + nul:,}); it is not a text file.")
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise FileRefused(f"{name} is not UTF-8 text (invalid byte at offset "
                                  f"{size + exc.start:,}); save it as UTF-8 and try again.") from None
            size += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise FileRefused(f"{name} is not UTF-8 text (it ends inside a character).") from None
    return digest.hexdigest(), size


def normalise_header(cells) -> tuple[str, ...]:
    """Header cells compared case-insensitively with runs of spaces collapsed;
    trailing empty cells (a trailing delimiter) are dropped."""
    names = [_SPACES.sub(" ", str(c or "")).strip().lower() for c in cells]
    while names and names[-1] == "":
        names.pop()
    return tuple(names)


def check_header(cells, integration: Integration, name: str, where: str) -> None:
    expected = tuple(h.lower() for h in integration.header)
    found = normalise_header(cells)
    if found != expected:
        shown = ", ".join(str(c).strip() for c in cells if str(c or "").strip()) or "nothing"
        expected_text = ", ".join(integration.header)
        raise WrongHeader(f"{name} has the wrong header {where}: expected {expected_text}; found {shown}.",
                          expected_text, shown)


class PositionedRecords:
    """Records of a text file that also tell how many bytes of it were read (for progress)."""

    def __init__(self, records: Iterator[Record], position):
        self._records = records
        self.position = position    # bytes read so far (the buffered reader's offset)

    def __iter__(self):
        return self._records

    def __next__(self):
        return next(self._records)


@contextmanager
def open_records(path: Path, name: str, integration: Integration, kind: str,
                 check_first: Callable[[Record], None] | None = None):
    """Yield an iterator of data records after the header has been checked.

    Raises FileRefused for a wrong header or a file without data rows, before
    the caller writes anything (WrongKind when the content is not this kind of
    file); ``check_first`` may refuse the file by its first data record.
    """
    if kind == "text":
        handle = open(path, encoding="utf-8-sig", newline="")
        try:
            records = _text_records(handle, name, integration)
            yield PositionedRecords(_require_data(records, name, integration, check_first), handle.buffer.tell)
        finally:
            handle.close()
    else:
        with _sheet_rows(path, name, kind) as rows:
            records = _sheet_records(rows, name, integration)
            yield _require_data(records, name, integration, check_first)


def _require_data(records: Iterator[Record], name: str, integration: Integration,
                  check_first: Callable[[Record], None] | None = None) -> Iterator[Record]:
    """Read up to the first data record now (so header problems and files
    without data rows are refused before any write), then stream the rest."""
    skip = integration.skip_record
    if skip is not None:
        records = (r for r in records if not skip(r[1]))
    first = next(records, None)
    if first is None:
        raise FileRefused(f"{name} has no data rows.")
    if check_first is not None:
        check_first(first)
    return itertools.chain((first,), records)


def _text_records(handle, name: str, integration: Integration) -> Iterator[Record]:
    if integration.format == "tsv":
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(handle, strict=True)
    try:
        if integration.header is not None:
            header = next(reader, None)
            if header is None:
                raise WrongKind(f"{name} has no header.")
            check_header(header, integration, name, "on line 1")
        yield from _numbered(reader, name)
    except csv.Error as exc:
        # broken quoting in the header itself: nothing shows what kind of file it is
        refused = WrongKind if integration.header is not None and reader.line_num <= 1 else FileRefused
        raise refused(f"{name} is not valid {integration.format.upper()} near line "
                      f"{reader.line_num}: {exc}.") from None


def _numbered(reader, name: str) -> Iterator[Record]:
    """Each record with the file line it starts on (quoted fields may span lines)."""
    previous = reader.line_num
    for cells in reader:
        start = previous + 1
        previous = reader.line_num
        if cells and not (len(cells) == 1 and cells[0].strip() == ""):
            yield start, list(map(str.strip, cells))


def _sheet_records(rows: Iterator[tuple], name: str, integration: Integration) -> Iterator[Record]:
    header_row = integration.header_row
    seen_header = False
    for number, cells in enumerate(rows, start=1):
        if number < header_row:
            continue
        if number == header_row:
            check_header(cells, integration, name, f"in row {header_row}")
            seen_header = True
            continue
        values = list(cells)
        if any(values):
            yield number, values
    if not seen_header:
        raise WrongKind(f"{name} has no header: the first sheet ends before row {header_row}.")


def cell_text(value, number_format: str | None = None) -> str:
    """A cell as the text a person sees in the sheet.

    A whole number shows without a trailing .0; under a zero-padding number
    format such as ``000`` it shows padded to that width, as the sheet displays
    it (a ZIP3 stored as the number 6 formatted ``000`` reads ``006``). Any
    other number stays as it is, so a bare 6 is rejected, never padded.
    """
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not float(value).is_integer():
            return str(value)
        whole = int(value)
        if number_format and _ZERO_PADDED.fullmatch(number_format) and whole >= 0:
            return str(whole).zfill(len(number_format))
        return str(whole)
    return str(value).strip()


@contextmanager
def _sheet_rows(path: Path, name: str, kind: str):
    """The first sheet's rows, each cell as the text a person sees, from row 1 on.

    calamine (Rust) reads a zone chart about fifteen times faster than openpyxl,
    but it knows no number formats, and a number's text can depend on its format
    (6 formatted ``000`` shows ``006``). So it serves only sheets whose cells are
    all text; a sheet holding any number, date or error, a file above
    FAST_SHEET_MAX_BYTES, or one calamine cannot open goes through openpyxl
    (.xlsx) or xlrd (.xls), which apply formats and word the refusal of a file
    that is not a spreadsheet."""
    rows = _text_only_rows(path) if path.stat().st_size <= FAST_SHEET_MAX_BYTES else None
    if rows is not None:
        yield iter(rows)
        return
    opener = _xlsx_rows if kind == "xlsx" else _xls_rows
    with opener(path, name) as formatted:
        yield formatted


def _text_only_rows(path: Path) -> list[list[str]] | None:
    """The first sheet's cells when every one is text ('' when empty), else None."""
    from python_calamine import CalamineWorkbook

    try:
        with open(path, "rb") as handle:
            book = CalamineWorkbook.from_filelike(handle)
            if not book.sheet_names:
                return None
            values = book.get_sheet_by_index(0).to_python(skip_empty_area=False)
    except Exception:  # any damage: the formatted path refuses the file in words
        return None
    rows = []
    for row in values:
        if not all(type(value) is str for value in row):
            return None
        rows.append([value.strip() for value in row])
    return rows


@contextmanager
def _xlsx_rows(path: Path, name: str):
    import zipfile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    handle = open(path, "rb")  # a file object: openpyxl would judge a path by its extension
    try:
        try:
            book = load_workbook(handle, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError):
            raise WrongKind(f"{name} is not a spreadsheet (.xlsx could not be opened).") from None
        try:
            if not book.worksheets:
                raise WrongKind(f"{name} has no sheets.")
            yield ([cell_text(c.value, getattr(c, "number_format", None)) for c in row]
                   for row in book.worksheets[0].iter_rows())
        finally:
            book.close()
    finally:
        handle.close()


@contextmanager
def _xls_rows(path: Path, name: str):
    import xlrd

    try:
        book = xlrd.open_workbook(str(path), on_demand=True, formatting_info=True)
        sheet = book.sheet_by_index(0)
    except Exception:  # xlrd raises many unrelated types for a damaged file
        raise WrongKind(f"{name} is not a spreadsheet (.xls could not be opened).") from None
    try:
        yield ([cell_text(value, _xls_format(book, sheet, r, c))
                for c, value in enumerate(sheet.row_values(r))] for r in range(sheet.nrows))
    finally:
        book.release_resources()


def _xls_format(book, sheet, row: int, column: int) -> str | None:
    """The number format string of an .xls cell (None when xlrd cannot tell)."""
    try:
        xf = book.xf_list[sheet.cell_xf_index(row, column)]
        return book.format_map[xf.format_key].format_str
    except (IndexError, KeyError, AttributeError):
        return None
