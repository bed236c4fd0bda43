"""Declared sizes, checked before a reader trusts them: spreadsheet bombs and zip bombs.

A spreadsheet reader allocates the range a sheet declares or spreads its cells
over: a 1.5 KB .xlsx with cells at A1 and XFD1048576 asks python-calamine for
17 billion cells, and the allocation failure aborts the process (SIGABRT, which
Python cannot catch), killing a web worker in the middle of its run. So before
any reader opens a spreadsheet, these checks read it cheaply and refuse it when
a sheet is larger than a cell budget (IMPORT_SHEET_MAX_CELLS):

- .xlsx: every part a relationship names as a sheet (or as the shared
  strings) is streamed through expat (no tree is built) whatever its name,
  extension or root element, and so is every part that is not a known
  non-sheet part (images, styles, themes, ...), taking the largest of its
  ``<dimension ref>`` and of its cell and row references; the scan stops as
  soon as the budget is exceeded. A reference that is not, whole, a cell of
  Excel's grid (A1 to XFD1048576: no lowercase, no row 0 or 4000000000, no
  column AAAA) is refused, never guessed at: calamine reads it as written. A
  shared-strings part declaring more strings (``uniqueCount``) than it holds
  and than the budget is refused too: calamine reserves memory for the count.
- .xls: the BIFF records of the workbook stream are walked (4 bytes of header
  each), taking each sheet's DIMENSIONS record and its cell records, past any
  empty record (calamine reads past one, so it cannot hide what follows).

Both count from A1: a real sheet starts there, and the budget then bounds what
every reader (calamine, openpyxl, xlrd) can be asked to hold.

Archives (.zip uploads, and the zip inside every .xlsx) are judged by their
central directory before anything is extracted: number of files, total size
once expanded (IMPORT_ZIP_MAX_FILES, IMPORT_ZIP_MAX_BYTES) and how many times
bigger than the archive they expand (``MAX_EXPANSION_RATIO``). Python's zipfile
never yields more than a member's declared size, so the declared sizes bind.
Every refusal is a ``FileRefused`` whose sentence names the file.
"""

from __future__ import annotations

import posixpath
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

from handled.integrations.base import FileRefused


@dataclass(frozen=True)
class FileLimits:
    """The limits a spreadsheet or an archive is judged by (from the settings of the same names)."""

    sheet_max_cells: int      # IMPORT_SHEET_MAX_CELLS
    zip_max_files: int        # IMPORT_ZIP_MAX_FILES
    zip_max_bytes: int        # IMPORT_ZIP_MAX_BYTES

    @classmethod
    def from_settings(cls, settings) -> "FileLimits":
        return cls(settings.import_sheet_max_cells, settings.import_zip_max_files, settings.import_zip_max_bytes)

MAX_EXPANSION_RATIO = 100          # real CSV and sheet XML deflate 3-30 times; zeros deflate ~1000 times
RATIO_APPLIES_FROM = 16 << 20      # below this many expanded bytes a high ratio harms no one
GRID_ROWS, GRID_COLUMNS = 1_048_576, 16_384     # Excel's grid: A1 to XFD1048576
_REF = re.compile(r"([A-Z]{1,3})([0-9]{1,7})")  # a cell as a sheet part writes it: no $, capitals
_ROW = re.compile(r"[0-9]{1,7}")
_NONZERO = re.compile(rb"[^\x00]")
READ_CHUNK = 64 * 1024
# Relationship types whose target a reader opens as a sheet (or, for shared strings, sizes from its count).
SHEET_RELATIONSHIPS = {"worksheet", "chartsheet", "dialogsheet", "macrosheet", "xlmacrosheet",
                       "xlintlmacrosheet", "sharedstrings"}
# Parts no reader opens as a sheet, skipped unless a relationship names them as one.
NOT_SHEETS = re.compile(
    r"\[Content_Types\]\.xml|(?:.*/)?_rels/.*\.rels|docProps/.*|customXml/.*"
    r"|xl/(?:theme|media|drawings|charts|chartsheets/_rels|printerSettings|embeddings|externalLinks|pivotCache"
    r"|pivotTables|tables|queryTables|threadedComments|persons|ctrlProps|activeX|richData|slicers"
    r"|slicerCaches|timelines|timelineCaches|model|diagrams)/.*"
    r"|xl/(?:styles|calcChain|connections|metadata|volatileDependencies)\.xml|xl/comments[0-9]*\.xml"
    r"|xl/vbaProject\.bin", re.IGNORECASE)


def column_letters(number: int) -> str:
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - 64
    return number


def _parse_ref(ref: str) -> tuple[int, int] | None:
    """(row, column) of a cell reference such as ``XFD1048576`` (1-based), None unless it is, whole,
    a cell of Excel's grid (a reader would read row 4000000000 or column AAAAAAAA as they are)."""
    match = _REF.fullmatch(ref)
    if not match:
        return None
    row, column = int(match.group(2)), _column_number(match.group(1))
    if not (1 <= row <= GRID_ROWS and 1 <= column <= GRID_COLUMNS):
        return None
    return row, column


class _Extent:
    """The rows x columns a sheet reaches from A1, refused as soon as it exceeds the budget."""

    def __init__(self, name: str, max_cells: int):
        self.name, self.max_cells = name, max_cells
        self.rows = self.columns = 0

    def declared(self, rows: int, columns: int) -> None:
        """The sheet's own statement of its size (xlsx <dimension>, xls DIMENSIONS)."""
        self._check(rows, columns, "declares")

    def reaches(self, row: int, column: int) -> None:
        """A cell the sheet holds."""
        self.rows, self.columns = max(self.rows, row), max(self.columns, column)
        self._check(self.rows, self.columns, "has cells as far as")

    def row(self, row: int) -> None:
        """A row the sheet holds (readers pad the rows before it): judged at the next cell or the end."""
        self.rows = max(self.rows, row)

    def finish(self) -> None:
        self._check(self.rows, max(self.columns, 1), "has rows as far as")

    def _check(self, rows: int, columns: int, verb: str) -> None:
        cells = rows * columns
        if cells > self.max_cells:
            corner = f"{column_letters(max(columns, 1))}{max(rows, 1)}"
            raise FileRefused(
                f"{self.name} {verb} {corner} in one sheet (A1:{corner}, {rows:,} rows x {columns:,} columns "
                f"= {cells:,} cells), over the limit of {self.max_cells:,} cells (IMPORT_SHEET_MAX_CELLS); "
                "it was refused before being read. A UPS zone chart has about 7,000 cells.")


# ---- archives


def check_archive(archive: zipfile.ZipFile, name: str, *, max_files: int, max_bytes: int,
                  what: str = "files") -> None:
    """Refuse a zip whose central directory promises too many files or too many bytes."""
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > max_files:
        raise FileRefused(f"{name} holds {len(members):,} {what}, over the limit of {max_files:,} "
                          "(IMPORT_ZIP_MAX_FILES); nothing in it was imported.")
    expanded = sum(m.file_size for m in members)
    packed = sum(m.compress_size for m in members)
    if expanded > max_bytes:
        raise FileRefused(f"{name} expands to {expanded:,} bytes, over the limit of {max_bytes:,} bytes "
                          "(IMPORT_ZIP_MAX_BYTES); nothing in it was imported.")
    if expanded > RATIO_APPLIES_FROM and expanded > MAX_EXPANSION_RATIO * max(packed, 1):
        raise FileRefused(f"{name} expands to {expanded:,} bytes, {expanded // max(packed, 1):,} times its size "
                          f"packed (more than {MAX_EXPANSION_RATIO} times is refused as a zip bomb); nothing "
                          "in it was imported.")


# ---- .xlsx


def check_spreadsheet(path: Path, name: str, kind: str, limits: FileLimits) -> None:
    """Refuse a spreadsheet (kind "xlsx" or "xls") over ``limits`` before any reader opens it."""
    if kind == "xlsx":
        check_xlsx(path, name, max_cells=limits.sheet_max_cells, max_files=limits.zip_max_files,
                   max_bytes=limits.zip_max_bytes)
    else:
        check_xls(path, name, max_cells=limits.sheet_max_cells)


def check_xlsx(path: Path, name: str, *, max_cells: int, max_files: int, max_bytes: int) -> None:
    """Refuse an .xlsx whose container or any sheet is over the limits (see the module's text).

    Every part a relationship names as a sheet (or as the shared strings) is scanned whatever its
    name, extension or root element, and so is every other part that is not a known non-sheet part
    (images, styles, themes, ...): a reader finds its sheets through the relationships, and what it
    reads in a part does not depend on the part's name.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise FileRefused(f"{name} is not a spreadsheet (.xlsx could not be opened).") from None
    with archive:
        check_archive(archive, name, max_files=max_files, max_bytes=max_bytes, what="parts")
        members = [m for m in archive.infolist() if not m.is_dir()]
        named_sheets: set[str] = set()
        for member in members:
            if member.filename.lower().endswith(".rels"):
                named_sheets |= _read_part(archive, member, name, lambda stream: _sheet_targets(stream, member))
        for member in members:
            part = member.filename

            def scan(stream, part=part):
                _scan_sheet_xml(stream, name, part, max_cells)

            if part in named_sheets:
                _read_part(archive, member, name, scan)
            elif NOT_SHEETS.fullmatch(part):
                continue   # calcChain.xml, say, lists the cells of every sheet at once: not one sheet's size
            elif part.lower().endswith(".xml"):
                _read_part(archive, member, name, scan)
            else:
                # neither named nor named as a sheet (a blob of some add-in): scanned in case a reader
                # finds it after all, as far as it is XML (what came before an error was checked)
                try:
                    _read_part(archive, member, name, scan)
                except _NotXml:
                    pass


class _NotXml(FileRefused):
    pass


def _read_part(archive: zipfile.ZipFile, member: zipfile.ZipInfo, name: str, read):
    try:
        with archive.open(member) as stream:
            return read(stream)
    except FileRefused:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError):
        raise FileRefused(f"{name} is not a spreadsheet (.xlsx could not be opened: "
                          f"{member.filename} is damaged).") from None
    except expat.ExpatError as exc:
        raise _NotXml(f"{name} is not a spreadsheet (.xlsx part {member.filename} is not valid "
                      f"XML: {expat.ErrorString(exc.code)}).") from None


def _stream_xml(stream, start, end=None) -> None:
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = start
    if end is not None:
        parser.EndElementHandler = end
    while chunk := stream.read(READ_CHUNK):
        parser.Parse(chunk, False)
    parser.Parse(b"", True)


def _sheet_targets(stream, member: zipfile.ZipInfo) -> set[str]:
    """Every member name a relationships part may mean by a sheet (or shared strings) target:
    as written after the source part's folder (calamine's way), resolved, and from the root."""
    folder = posixpath.dirname(posixpath.dirname(member.filename))
    folder = f"{folder}/" if folder else ""
    targets: set[str] = set()

    def start(tag: str, attrs: dict) -> None:
        if tag.rsplit(" ", 1)[-1] != "Relationship" or attrs.get("TargetMode") == "External":
            return
        kind = (attrs.get("Type") or "").rstrip("/").rsplit("/", 1)[-1].lower()
        target = attrs.get("Target") or ""
        if kind in SHEET_RELATIONSHIPS and target:
            relative = target.lstrip("/") if target.startswith("/") else folder + target
            targets.update({target, target.lstrip("/"), relative, posixpath.normpath(relative), "xl/" + target})

    _stream_xml(stream, start)
    return targets


def _scan_sheet_xml(stream, name: str, part: str, max_cells: int) -> None:
    """Stream one part through expat (no tree is built), whatever its root: every cell, row,
    <dimension> and merged range must be inside Excel's grid, the sheet within ``max_cells``, and a
    shared-strings count no larger than the strings the part holds (or the cell budget)."""
    extent = _Extent(name, max_cells)
    state = {"row": 0, "column": 0, "strings": None, "held": 0}

    def outside(what: str, value: str, grid: str) -> FileRefused:
        return FileRefused(f"{name} names the {what} {value!r} in {part}, which is not a {what} of Excel's grid "
                           f"({grid}); it was refused before being read.")

    def start(tag: str, attrs: dict) -> None:
        local = tag.rsplit(" ", 1)[-1]
        if local == "row":
            number = attrs.get("r")
            if number is None:
                state["row"] += 1
            elif _ROW.fullmatch(number) and 1 <= int(number) <= GRID_ROWS:
                state["row"] = int(number)
            else:
                raise outside("row", number, "1 to 1,048,576")
            state["column"] = 0
            extent.row(state["row"])
        elif local == "c":
            ref = attrs.get("r")
            if ref is None:  # a cell without a reference follows the one before it
                where = (max(state["row"], 1), state["column"] + 1)
            else:
                where = _parse_ref(ref)
                if where is None:
                    raise outside("cell", ref, "A1 to XFD1048576")
            state["column"] = where[1]
            extent.reaches(*where)
        elif local in ("dimension", "mergeCell"):
            ref = attrs.get("ref")
            if ref is None:
                return
            corners = [_parse_ref(corner) for corner in ref.split(":", 1)]
            if None in corners:
                raise outside("range", ref, "A1 to XFD1048576")
            if local == "dimension":
                extent.declared(max(c[0] for c in corners), max(c[1] for c in corners))
        elif local == "sst":
            count = attrs.get("uniqueCount")
            if count is not None:
                if not count.isascii() or not count.isdigit():
                    raise FileRefused(f"{name} declares {count!r} shared strings in {part}, which is not a "
                                      "count; it was refused before being read.")
                state["strings"] = int(count)
        elif local == "si":
            state["held"] += 1

    _stream_xml(stream, start)
    extent.finish()
    declared, held = state["strings"], state["held"]
    if declared is not None and declared > max(held, max_cells):
        raise FileRefused(f"{name} declares {declared:,} shared strings in {part} but holds {held:,}; a reader "
                          "reserves memory for the count declared, so it was refused before being read.")


# ---- .xls (BIFF in an OLE2 compound document)

BOF, DIMENSIONS, ROW = 0x0809, 0x0200, 0x0208
CELL_RECORDS = {0x0006, 0x0201, 0x0203, 0x0204, 0x0205, 0x027E, 0x00FD, 0x00D6}  # formula, blank, number, ...
MULTI_CELL_RECORDS = {0x00BD, 0x00BE}   # MULRK, MULBLANK: row, first column, ..., last column


def check_xls(path: Path, name: str, *, max_cells: int) -> None:
    """Refuse an .xls any of whose sheets declares or holds more than ``max_cells`` cells."""
    from xlrd import compdoc

    try:
        data = path.read_bytes()
        document = compdoc.CompDoc(data, logfile=_Discard())
        for stream_name in ("Workbook", "Book"):
            mem, base, length = document.locate_named_stream(stream_name)
            if mem:
                break
        else:
            raise ValueError("no workbook stream")
    except Exception:  # compdoc raises many types for a damaged file
        raise FileRefused(f"{name} is not a spreadsheet (.xls could not be opened).") from None
    _walk_biff(memoryview(mem)[base:base + length], _Extent(name, max_cells), name, max_cells)


def _walk_biff(stream: memoryview, extent: _Extent, name: str, max_cells: int) -> None:
    position, end = 0, len(stream)
    while position + 4 <= end:
        opcode, size = struct.unpack_from("<HH", stream, position)
        if opcode == 0 and size == 0:
            # The zeros padding the last sector, or an empty record hiding what follows: calamine reads
            # on past it 4 bytes at a time, so the walk does too (in one step over a run of zeros).
            following = _NONZERO.search(stream, position)
            if following is None:
                break
            position += max(4, (following.start() - position) // 4 * 4)
            continue
        body = stream[position + 4:position + 4 + size]
        position += 4 + size
        if opcode == BOF:
            extent.finish()
            extent = _Extent(name, max_cells)    # each sheet (substream) on its own
        elif opcode == DIMENSIONS and size >= 10:
            if size >= 14:    # BIFF8: 32-bit rows
                _, last_row, _, last_column = struct.unpack_from("<IIHH", body)
            else:
                _, last_row, _, last_column = struct.unpack_from("<HHHH", body)
            extent.declared(last_row, last_column)   # both are "last + 1": counts from A1
        elif opcode == ROW and size >= 6:
            row, _, last_column = struct.unpack_from("<HHH", body)
            extent.row(row + 1)
        elif opcode in CELL_RECORDS and size >= 4:
            row, column = struct.unpack_from("<HH", body)
            extent.reaches(row + 1, column + 1)
        elif opcode in MULTI_CELL_RECORDS and size >= 6:
            row, first_column = struct.unpack_from("<HH", body)
            (last_column,) = struct.unpack_from("<H", body, size - 2)
            cells = (size - 6) // (6 if opcode == 0x00BD else 2)   # MULRK: 6 bytes a cell, MULBLANK: 2
            extent.reaches(row + 1, max(first_column, last_column, first_column + cells - 1) + 1)
    extent.finish()


class _Discard:
    def write(self, text) -> None:
        pass
