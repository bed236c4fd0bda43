"""Every export: its file name, how it is built and which transformations it comes from."""

from __future__ import annotations

from dataclasses import dataclass

from handled.errors import NotFound
from handled.transformations.registry import GROUND_SERVICES

GROUND = GROUND_SERVICES   # the zone matrices' services: columns of reference.ground_days


class UnknownExport(NotFound):
    """No export has the id the user gave."""


@dataclass(frozen=True)
class Export:
    id: str                       # also the file name
    title: str
    kind: str                     # "zip3-json", "zone-matrix" or "csv"
    transformations: tuple[str, ...] = ()   # whose last success versions the file
    table: str | None = None      # csv: reference table
    key: tuple[str, ...] = ()     # csv: ORDER BY for small tables (big ones stream in physical order)
    services: tuple[tuple[str, str], ...] = ()
    # csv: text columns that hold only validated codes (ZIP digits, seeded carrier/service codes, zone
    # codes, the build's own source names), never free text from a file: written without the formula
    # check (handled/formula_cells.py), so the 11M-row matrix streams at COPY's full speed
    code_columns: tuple[str, ...] = ()

    @property
    def unit(self) -> str:
        """What the export's count counts: a matrix's cells, the ZIP3s of the JSON, a CSV's rows."""
        return {"zone-matrix": "cells", "zip3-json": "ZIP3s"}.get(self.kind, "rows")

    @property
    def tables(self) -> tuple[str, ...]:
        """The reference tables the export reads (the zone matrices fall back on the matrix)."""
        return {"zone-matrix": ("delivery_matrix",), "zip3-json": ("zip3_reference",)}.get(
            self.kind, (self.table,) if self.table else ())

    @property
    def content_type(self) -> str:
        return "text/csv; charset=utf-8" if self.kind == "csv" else "application/json"


EXPORTS: dict[str, Export] = {e.id: e for e in (
    Export("zip3-reference.json", "ZIP3 centroids, city, state and population", "zip3-json",
           ("zip3-reference",)),
    Export("zone-matrix.json", "Fewest ground days: UPS GND and USPS GAL, GAH, PKG", "zone-matrix",
           ("delivery-matrix",), services=GROUND),
    Export("zone-matrix-ups.json", "Ground days: UPS GND", "zone-matrix", ("delivery-matrix",),
           services=GROUND[:1]),
    Export("zone-matrix-usps.json", "Fewest ground days: USPS GAL, GAH, PKG", "zone-matrix",
           ("delivery-matrix",), services=GROUND[1:]),
    Export("carriers.csv", "reference.carriers", "csv", (), "carriers", ("code",)),
    Export("services.csv", "reference.services", "csv", (), "services", ("carrier_code", "code")),
    Export("zip3_reference.csv", "reference.zip3_reference", "csv", ("zip3-reference",),
           "zip3_reference", ("zip3",)),
    Export("delivery_matrix.csv", "reference.delivery_matrix", "csv",
           ("delivery-matrix",), "delivery_matrix",
           code_columns=("origin_zip3", "dest_zip3", "carrier", "service", "zone", "source")),
)}


def get_export(export_id: str) -> Export:
    try:
        return EXPORTS[export_id]
    except KeyError:
        raise UnknownExport(f"There is no export {export_id!r}; known exports: {', '.join(EXPORTS)}.") from None
