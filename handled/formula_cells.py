"""CSV cells a spreadsheet would run as formulas, neutralised (CSV injection, OWASP).

Text that came from an uploaded file (a city name, a rejected value) may start
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return; Excel, LibreOffice
and Google Sheets then treat the cell as a formula (``=HYPERLINK(...)`` leaks
data, ``=cmd|...`` used to run programs). Such a cell gets a leading apostrophe,
OWASP's recommendation: spreadsheets show the rest as text.

Two rules keep the data true:
- only text is touched: numbers (``-73.25`` in a number column) are written as
  they are, and a text cell that is a plain number (``-5``, ``+1.5``) too: a
  spreadsheet reads it as that number and runs nothing;
- nothing else changes (no quoting or escaping beyond CSV's own).

The same rule exists twice: ``neutralise`` for cells Python writes (the rejected
rows of an import) and ``neutralised_sql`` for the exports PostgreSQL writes
with COPY (every text column of the exported table).
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = r"^[-+]?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
_PLAIN_NUMBER = re.compile(PLAIN_NUMBER)


def neutralise(value):
    """``value`` as a spreadsheet-safe CSV cell (anything but text is returned as it is)."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def neutralised_sql(column: str) -> str:
    """A SELECT expression giving text ``column`` (an identifier) neutralised, under its own name."""
    quoted = '"' + column.replace('"', '""') + '"'
    starts = ", ".join(str(ord(c)) for c in FORMULA_STARTS)   # ascii() of the first character: no copy
    return (f"CASE WHEN ascii({quoted}) IN ({starts}) THEN "
            f"CASE WHEN {quoted} ~ '{PLAIN_NUMBER}' THEN {quoted} ELSE '''' || {quoted} END "
            f"ELSE {quoted} END AS {quoted}")
