"""What an integration is, and the small validators its row converter uses.

An integration turns one source record (a list of cell strings plus its file
line number) into zero or more rows of its target table, each row a tuple of
strings already in PostgreSQL COPY text form. A record that cannot be
converted raises ``RowError`` naming the column, the value and the reason;
the loader records it and moves on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable

from handled.errors import HandledError

MODES = ("insert", "upsert", "replace")
FORMATS = ("csv", "tsv", "spreadsheet")

# Missing values reach COPY as empty fields (COPY ... NULL ''), so a NOT NULL
# text column must never receive an empty string: ``text()`` rejects it.
NULL = ""


class RowError(Exception):
    """One record of a file cannot be loaded: which column, what value, why."""

    def __init__(self, column: str, value, reason: str):
        super().__init__(reason)
        self.column = column
        self.value = "" if value is None else str(value)
        self.reason = reason


class FileRefused(HandledError):
    """The file as a whole is wrong; the message is one sentence for the user."""


class WrongKind(FileRefused):
    """The content does not show the integration's kind of file: no header or the wrong
    one, or not a spreadsheet at all. A browser-renamed file (``names.py``) is then
    refused for its name, since nothing proves what it is."""


class WrongHeader(WrongKind):
    """The header row is not the integration's: ``expected`` and ``found`` say both, so a
    browser-renamed file can be refused for its header, not for its name."""

    def __init__(self, message: str, expected: str, found: str):
        super().__init__(message)
        self.expected, self.found = expected, found


Record = tuple[int, list]  # (line number in the file, cell values)
Converter = Callable[[list, dict], Iterable[tuple]]
FastPattern = Callable[[dict], "re.Pattern | None"]


@dataclass(frozen=True)
class Integration:
    """One kind of source file and where its rows land in ``workspace``.

    ``name_pattern`` must match the whole base file name; its named groups
    become the ``context`` every converter call receives (e.g. the origin ZIP
    of a zone chart). ``header`` is the expected header (compared after
    trimming spaces, case-insensitively), or None for header-less files.
    ``header_row`` is its 1-based row for spreadsheets, whose earlier rows are
    titles. ``skip_record`` lets a format ignore non-data rows (footnotes).
    """

    id: str
    name: str
    description: str
    file_hint: str
    name_pattern: re.Pattern
    format: str
    target: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    mode: str
    convert: Converter
    header: tuple[str, ...] | None = None
    header_row: int = 1
    skip_record: Callable[[list], bool] | None = None
    # Columns the converter passes through unvalidated: the loader escapes
    # them for COPY. Every other value must come from a validator below.
    free_text: tuple[str, ...] = ()
    # Optional fast path: a regex (built per file from the name's context)
    # that a record's cells joined by tabs must match in full to go to COPY
    # as they are (group 1, if the pattern has one). It must accept only
    # records ``convert`` accepts unchanged; anything else takes the slow path.
    fast_pattern: FastPattern | None = None
    # Columns whose value the file name fixes (column -> context key). In
    # upsert mode a file whose scope has no rows yet can be copied straight in.
    scope: tuple[tuple[str, str], ...] = ()
    # Cells of a record that repeat a value the file name gives (cell index ->
    # context key), e.g. the origin column of a UPS ground file. A file whose
    # first data record names another value is refused as misnamed.
    name_cells: tuple[tuple[int, str], ...] = ()
    extensions: tuple[str, ...] = field(default=(".csv",))
    # strptime format of the name's ``date`` group (e.g. the USPS directory's MMDDYYYY): a name
    # whose digits are no calendar date is refused, whatever its rows hold.
    name_date: str | None = None

    def __post_init__(self):
        assert self.mode in MODES, self.mode
        assert self.format in FORMATS, self.format
        assert set(self.key) <= set(self.columns), self.key
        assert set(self.free_text) <= set(self.columns), self.free_text

    @property
    def table(self) -> str:
        return f"workspace.{self.target}"

    def match_name(self, file_name: str) -> dict:
        """The named groups of the file name, or FileRefused naming the rule."""
        match = self.name_pattern.fullmatch(file_name)
        if not match:
            raise FileRefused(
                f"{file_name!r} is not a {self.name} file name; expected {self.file_hint}.")
        context = match.groupdict()
        if self.name_date:
            try:
                datetime.strptime(context["date"], self.name_date)
            except ValueError:
                raise FileRefused(
                    f"{file_name!r}: {context['date']} in its name is not a real date, so it is not a "
                    f"{self.name} file name; expected {self.file_hint} with the directory's date.") from None
        return context


# ---- fast-path fragments: narrower than the validators below, never wider

FAST_TEXT = r"[^\t\\\n\r]+"           # non-empty, nothing COPY would need escaped
FAST_BOOL = r"(?:TRUE|FALSE)"
FAST_LAT = r"-?(?:90(?:\.0+)?|[1-8]?[0-9](?:\.[0-9]+)?)"
FAST_LNG = r"-?(?:180(?:\.0+)?|(?:1[0-7][0-9]|[1-9]?[0-9])(?:\.[0-9]+)?)"
FAST_UDECIMAL = r"[0-9]+(?:\.[0-9]+)?"
FAST_STATE = r"[A-Za-z]{2}"


def zip_digits(length: int) -> str:
    return f"[0-9]{{{length}}}"


# ---- validators: each returns the COPY text of a valid value or raises RowError


def cell_count(cells: list, expected: int, column_names: tuple[str, ...]) -> None:
    """A record with too few or too many fields is the line's fault, not a column's: the
    rejection names no column (``column`` is empty) and says how many fields the line has."""
    found = len(cells)
    if found == expected:
        return
    if found < expected:
        reason = f"the line has {found} of the {expected} fields"
    else:
        reason = f"the line has {found} fields, {found - expected} more than the {expected} expected"
    raise RowError("", "|".join(str(c) for c in cells)[:200], reason)


def digits(value: str, length: int, column: str) -> str:
    """A ZIP-like code: exactly ``length`` ASCII digits, never padded."""
    if len(value) != length or not (value.isdigit() and value.isascii()):
        raise RowError(column, value, f"must be exactly {length} digits")
    return value


def number(value: str, column: str, low: float | None = None, high: float | None = None,
           nullable: bool = False) -> str:
    """A decimal number (passed through as written) within [low, high]."""
    if value == "":
        if nullable:
            return NULL
        raise RowError(column, value, "is empty")
    try:
        parsed = float(value)
    except ValueError:
        raise RowError(column, value, "is not a number") from None
    if "_" in value or not value.isascii():
        raise RowError(column, value, "is not a number")
    if not math.isfinite(parsed):
        raise RowError(column, value, "is not a finite number")
    if (low is not None and parsed < low) or (high is not None and parsed > high):
        raise RowError(column, value, _out_of_range(parsed, low, high))
    return value


def integer(value: str, column: str, low: int, high: int, nullable: bool = False) -> str:
    """A whole number within [low, high]."""
    if value == "":
        if nullable:
            return NULL
        raise RowError(column, value, "is empty")
    body = value[1:] if value[:1] == "-" else value
    if not (body.isdigit() and body.isascii()):
        raise RowError(column, value, "is not a whole number")
    if not low <= int(value) <= high:
        raise RowError(column, value, _out_of_range(int(value), low, high))
    return value


def boolean(value: str, column: str) -> str:
    word = value.upper()
    if word == "TRUE":
        return "t"
    if word == "FALSE":
        return "f"
    raise RowError(column, value, "must be TRUE or FALSE")


def state_code(value: str, column: str) -> str:
    if len(value) != 2 or not (value.isalpha() and value.isascii()):
        raise RowError(column, value, "must be a 2-letter state code")
    return value


def text(value: str, column: str, required: bool = True) -> str:
    if required and value == "":
        raise RowError(column, value, "is empty")
    return value


# A bound at or past this is the column's storage limit (int4, int8), not a rule of the data:
# a value past it is "too large", and a range up to it is one-sided ("zero or more").
STORAGE_LIMIT = 2_147_483_647


def _out_of_range(value, low, high) -> str:
    """Why ``value`` is outside [low, high], as a person would say it."""
    storage = high is not None and high >= STORAGE_LIMIT
    if high is not None and value > high:
        if storage:
            return f"is too large: the most this column can hold is {_fmt(high)}"
        return f"must be between {_fmt(low)} and {_fmt(high)}" if low is not None else f"must be {_fmt(high)} or less"
    if high is None or storage:
        return "must be zero or more" if low == 0 else f"must be {_fmt(low)} or more"
    return f"must be between {_fmt(low)} and {_fmt(high)}"


def _fmt(bound) -> str:
    """A bound as written for people: 90, -180, 0.5, 2,147,483,647."""
    if float(bound).is_integer():
        number = int(bound)
        return f"{number:,}" if abs(number) >= 10_000 else str(number)
    return str(bound)
