"""ups-zones: UPS zone charts (.xlsx and .xls) into workspace.ups_zones (upsert)."""

import pytest

from handled.integrations import sources
from handled.integrations.service import import_file
from tests.support.import_files import ZONE_HEADER, write_zone_chart, zone_row
from tests.support.imports import assert_refused, seed_import, table_rows

FORMATS = ["xlsx", "xls"]


def good_rows():
    return [zone_row("004-005", "002", "302", "202", "242", "132", "102"),
            zone_row("006", "045", "-", "208", "-", "138", "108"),
            zone_row("008")]


@pytest.fixture
def seeded(imp_ctx, files):
    """A good zone chart (another origin) imported first: each refusal below must leave its rows exactly as they were."""
    (files / "seed").mkdir()
    seed_import(imp_ctx, "ups-zones", write_zone_chart(files / "seed" / "010.xlsx", [zone_row("004")]))


@pytest.mark.parametrize("ext", FORMATS)
def test_ranges_expand_dashes_are_null_titles_and_footnotes_skipped(imp_app, files, ext, imp_ctx):
    outcome = import_file(imp_ctx, "ups-zones", write_zone_chart(files / f"007.{ext}", good_rows()))
    assert outcome.status == "succeeded", outcome.message
    assert outcome.rows_read == 3 and outcome.rows_written == 4
    assert table_rows("ups_zones") == [
        ("007", "004", "002", "302", "202", "242", "132", "102"),
        ("007", "005", "002", "302", "202", "242", "132", "102"),
        ("007", "006", "045", None, "208", None, "138", "108"),
        ("007", "008", "002", "302", "202", "242", "132", "102"),
    ]


def test_upsert_keeps_other_origins_and_updates_pairs(imp_app, files, imp_ctx):
    import_file(imp_ctx, "ups-zones", write_zone_chart(files / "007.xlsx", good_rows()))
    import_file(imp_ctx, "ups-zones", write_zone_chart(files / "010.xlsx", good_rows()))
    (files / "new").mkdir()
    import_file(imp_ctx, "ups-zones", write_zone_chart(files / "new" / "007.xlsx", [zone_row("006", *["003"] * 6)]))
    rows = {(r[0], r[1]): r[2] for r in table_rows("ups_zones")}
    assert len(rows) == 8 and rows[("007", "006")] == "003" and rows[("010", "006")] == "045"


def test_footnotes_anywhere_after_the_header_are_not_data(imp_app, files, imp_ctx):
    rows = [zone_row("004"), ["Zones for Alaska follow"], zone_row("005")]
    outcome = import_file(imp_ctx, "ups-zones", write_zone_chart(files / "007.xlsx", rows, footnotes=[
        ["[1] Next Day Air Early is not available"], [], ["* see ups.com"]]))
    assert outcome.status == "succeeded" and outcome.rows_written == 2


def test_many_charts_in_one_call(imp_app, files, imp_ctx):
    from handled.integrations.service import import_paths

    paths = [write_zone_chart(files / f"{o:03d}.xlsx", good_rows()) for o in (7, 10, 11)]
    outcomes = import_paths(imp_ctx, "ups-zones", paths)
    assert [o.status for o in outcomes] == ["succeeded"] * 3
    assert len(table_rows("ups_zones")) == 12


BAD = [
    ("zip3 too short", zone_row("08"), "Dest. ZIP", "must be a ZIP3 like 008 or a range like 004-005"),
    ("zip5 instead of zip3", zone_row("00801"), "Dest. ZIP", "must be a ZIP3 like 008 or a range like 004-005"),
    ("backwards range", zone_row("009-008"), "Dest. ZIP", "range ends before it starts"),
    ("zone code", zone_row("009", "2", "302", "202", "242", "132", "102"), "Ground",
     "must be a 3-character zone code like 002 or - for no service"),
    ("empty zone", zone_row("009", "002", "302", "", "242", "132", "102"), "2nd Day Air",
     "is empty; use - for no service"),
    ("missing column", zone_row("009")[:6], "Next Day Air", "is empty; use - for no service"),
]


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("label,row,column,reason", BAD, ids=[b[0] for b in BAD])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_bad_rows_refuse_the_chart(imp_app, files, ext, label, row, column, reason, imp_ctx):
    seed_import(imp_ctx, "ups-zones", write_zone_chart(files / f"007.{ext}", good_rows()))
    (files / "bad").mkdir()
    run = assert_refused(imp_ctx, "ups-zones", write_zone_chart(files / "bad" / f"007.{ext}", good_rows() + [row]),
                         "ups_zones", rejected=[(13, column)])
    assert run.rejected_rows[0]["reason"] == reason


@pytest.mark.parametrize("ext", FORMATS)
def test_numbers_formatted_000_read_as_the_sheet_shows_them(imp_app, files, ext, imp_ctx):
    rows = [[6, 2, 302, "-", 242, 132, 102], ["008-009", 45, 302, 202, 242, 132, 102]]
    outcome = import_file(imp_ctx, "ups-zones", write_zone_chart(files / f"007.{ext}", rows, number_format="000"))
    assert outcome.status == "succeeded", outcome.message
    assert table_rows("ups_zones") == [
        ("007", "006", "002", "302", None, "242", "132", "102"),
        ("007", "008", "045", "302", "202", "242", "132", "102"),
        ("007", "009", "045", "302", "202", "242", "132", "102"),
    ]


@pytest.mark.parametrize("ext", FORMATS)
def test_numbers_without_a_padding_format_are_rejected_not_padded(imp_app, files, ext, imp_ctx, seeded):
    rows = [[6, "002", "302", "202", "242", "132", "102"]]
    run = assert_refused(imp_ctx, "ups-zones", write_zone_chart(files / f"007.{ext}", rows), "ups_zones",
                         rejected=[(10, "Dest. ZIP")])
    assert run.rejected_rows[0]["value"] == "6"


def test_a_numeric_zip_cell_is_rejected_not_padded(imp_app, files, imp_ctx, seeded):
    run = assert_refused(imp_ctx, "ups-zones", write_zone_chart(files / "007.xlsx", good_rows() + [[9, "002"]]),
                         "ups_zones", rejected=[(13, "Dest. ZIP")])
    assert run.rejected_rows[0]["value"] == "9"


def test_overlapping_range_and_prefix_name_both_lines(imp_app, files, imp_ctx, seeded):
    rows = good_rows() + [zone_row("005")]
    run = assert_refused(imp_ctx, "ups-zones", write_zone_chart(files / "007.xlsx", rows), "ups_zones",
                         rejected=[(10, "origin_zip3, dest_zip3"), (13, "origin_zip3, dest_zip3")])
    assert run.rejected_rows[0]["value"] == "007, 005"
    assert run.rejected_rows[0]["reason"] == "duplicate key: the same origin_zip3, dest_zip3 is also on line 13"


def test_partial_keeps_the_rest_of_an_overlapping_range(imp_app, files, imp_ctx):
    rows = good_rows() + [zone_row("005"), zone_row("0X9")]
    outcome = import_file(imp_ctx, "ups-zones", write_zone_chart(files / "007.xlsx", rows), partial=True)
    assert outcome.status == "succeeded" and outcome.rows_rejected == 3
    assert [r[1] for r in table_rows("ups_zones")] == ["004", "006", "008"]


@pytest.mark.parametrize("ext", FORMATS)
def test_chart_without_data_rows_is_refused(imp_app, files, ext, imp_ctx):
    seed_import(imp_ctx, "ups-zones", write_zone_chart(files / f"007.{ext}", good_rows()))
    (files / "bad").mkdir()
    assert_refused(imp_ctx, "ups-zones", write_zone_chart(files / "bad" / f"007.{ext}", []), "ups_zones",
                   message="has no data rows")


@pytest.mark.parametrize("ext", FORMATS)
def test_header_not_in_row_9_is_refused(imp_app, files, ext, imp_ctx, seeded):
    path = write_zone_chart(files / f"007.{ext}", good_rows(), title_rows=7)
    assert_refused(imp_ctx, "ups-zones", path, "ups_zones", message="has the wrong header in row 9")


def test_wrong_header_names_what_was_found(imp_app, files, imp_ctx, seeded):
    header = ZONE_HEADER[:1] + ["Ground Zone"] + ZONE_HEADER[2:]
    run = assert_refused(imp_ctx, "ups-zones", write_zone_chart(files / "007.xlsx", good_rows(), header=header), "ups_zones")
    assert "found Dest. ZIP, Ground Zone, 3 Day Select" in run.message


def test_short_sheet_is_refused(imp_app, files, imp_ctx, seeded):
    path = write_zone_chart(files / "007.xlsx", [], header=None, footnotes=[], title_rows=3)
    assert_refused(imp_ctx, "ups-zones", path, "ups_zones", message="has no header: the first sheet ends before row 9")


WHOLE = [
    ("csv named xlsx", "007.xlsx", b"Dest. ZIP,Ground\n004,002\n", "is not a spreadsheet"),
    ("junk named xls", "007.xls", b"\x00\x01junk" * 100, "is not a spreadsheet"),
    ("broken xlsx", "007.xlsx", b"PK\x03\x04" + b"\x00" * 200, "is not a spreadsheet"),
    ("broken xls", "007.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "is not a spreadsheet"),
    ("empty", "007.xlsx", b"", "is empty"),
]


@pytest.mark.parametrize("label,name,content,message", WHOLE, ids=[w[0] for w in WHOLE])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_files_that_are_not_spreadsheets_are_refused(imp_app, files, label, name, content, message, imp_ctx):
    seed_import(imp_ctx, "ups-zones", write_zone_chart(files / "007.xlsx", good_rows()))
    (files / "bad").mkdir()
    path = files / "bad" / name
    path.write_bytes(content)
    assert_refused(imp_ctx, "ups-zones", path, "ups_zones", message=message)


@pytest.mark.parametrize("name", ["7.xlsx", "0070.xls", "007.csv", "zones-007.xlsx"])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_wrong_names_are_refused(imp_app, files, name, imp_ctx, seeded):
    path = files / name
    write_zone_chart(files / "007.xlsx", good_rows()).rename(path)
    assert_refused(imp_ctx, "ups-zones", path, "ups_zones", message="expected NNN.xls or NNN.xlsx")


# --- how a sheet is read: calamine for all-text sheets, openpyxl/xlrd where formats matter -----

def formatted_rows(path):
    opener = sources._xlsx_rows if path.suffix == ".xlsx" else sources._xls_rows
    with opener(path, path.name) as rows:
        return [list(row) for row in rows]


def rows_read(path):
    with sources._sheet_rows(path, path.name, path.suffix[1:]) as rows:
        return [list(row) for row in rows]


@pytest.mark.parametrize("ext", FORMATS)
def test_an_all_text_chart_is_read_by_calamine_as_openpyxl_or_xlrd_reads_it(tmp_path, ext):
    path = write_zone_chart(tmp_path / f"007.{ext}", good_rows())
    fast = sources._text_only_rows(path)
    assert fast is not None                       # the fast path takes it
    assert fast[8][:7] == ZONE_HEADER and rows_read(path) == fast
    width = max(len(row) for row in fast)
    assert fast == [row + [""] * (width - len(row)) for row in formatted_rows(path)]


@pytest.mark.parametrize("ext", FORMATS)
def test_a_chart_holding_a_number_is_read_with_its_formats(tmp_path, ext):
    path = write_zone_chart(tmp_path / f"007.{ext}", good_rows() + [[6, "002", "302", "202", "242", "132", "102"]],
                            number_format="000")
    assert sources._text_only_rows(path) is None  # 6 shows as 006 only with its format
    assert rows_read(path) == formatted_rows(path) and ["006", "002"] == rows_read(path)[-4][:2]


def test_big_or_unreadable_files_skip_calamine(tmp_path, monkeypatch):
    junk = tmp_path / "008.xlsx"
    junk.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    assert sources._text_only_rows(junk) is None      # openpyxl then words the refusal
    path = write_zone_chart(tmp_path / "007.xlsx", good_rows())
    monkeypatch.setattr(sources, "FAST_SHEET_MAX_BYTES", path.stat().st_size - 1)
    monkeypatch.setattr(sources, "_text_only_rows", lambda _: pytest.fail("calamine read a file over the limit"))
    assert rows_read(path) == formatted_rows(path)
