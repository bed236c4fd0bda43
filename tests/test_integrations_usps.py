"""usps-3d-base: USPS 3-digit service standards into workspace.usps_3d_base_service (replace)."""

import pytest

from handled.integrations.service import import_file
from tests.support.import_files import USPS_HEADER, USPS_NAME, usps_row, write_usps
from tests.support.imports import assert_refused, seed_import, table_rows


def good_rows():
    return [usps_row("005", "005"), usps_row("005", "006"),
            usps_row("006", "005", "2", "", "", "3", "3", "", "", "")]


@pytest.fixture
def seeded(imp_ctx, files):
    """A good USPS directory imported first: each refusal below must leave its rows exactly as they were."""
    (files / "seed").mkdir()
    seed_import(imp_ctx, "usps-3d-base", write_usps(files / "seed" / USPS_NAME, [usps_row("007", "008")]))


def test_happy_path_with_empty_days_as_null(imp_app, files, imp_ctx):
    outcome = import_file(imp_ctx, "usps-3d-base", write_usps(files / USPS_NAME, good_rows()))
    assert outcome.status == "succeeded" and outcome.rows_written == 3
    rows = table_rows("usps_3d_base_service")
    assert rows[0] == ("005", "005", 1, 2, 3, 2, 2, 2, 2, 2)
    assert rows[2] == ("006", "005", 2, None, None, 3, 3, None, None, None)


def test_replace_mode_and_a_newer_directory_date(imp_app, files, imp_ctx):
    import_file(imp_ctx, "usps-3d-base", write_usps(files / USPS_NAME, good_rows()))
    newer = "3D_Base_Service_Standard_Directory_02012025.csv"
    import_file(imp_ctx, "usps-3d-base", write_usps(files / newer, [usps_row("007", "008")]))
    assert [r[:2] for r in table_rows("usps_3d_base_service")] == [("007", "008")]


BAD = [
    ("bad origin", usps_row("05", "006"), "Origin_ZIP_Code", "must be exactly 3 digits"),
    ("padded dest", usps_row("005", "0060"), "Destination_ZIP_Code", "must be exactly 3 digits"),
    ("days text", usps_row("007", "006", "1", "x", "3", "2", "2", "2", "2", "2"), "GAL_Service_Standard",
     "is not a whole number"),
    ("days range", usps_row("007", "006", "1", "2", "3", "2", "2", "2", "2", "100"), "PFC_Service_Standard",
     "must be between 0 and 99"),
    ("missing column", usps_row("007", "006")[:9], "", "the line has 9 of the 10 fields"),
    ("extra column", usps_row("007", "006") + ["2"], "", "the line has 11 fields, 1 more than the 10 expected"),
]


@pytest.mark.parametrize("label,row,column,reason", BAD, ids=[b[0] for b in BAD])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_bad_rows_refuse_the_file(imp_app, files, label, row, column, reason, imp_ctx):
    seed_import(imp_ctx, "usps-3d-base", write_usps(files / USPS_NAME, good_rows()))
    (files / "bad").mkdir()
    run = assert_refused(imp_ctx, "usps-3d-base", write_usps(files / "bad" / USPS_NAME, good_rows() + [row]),
                         "usps_3d_base_service", rejected=[(5, column)])
    assert run.rejected_rows[0]["reason"] == reason


def test_duplicate_pair_names_both_lines(imp_app, files, imp_ctx, seeded):
    run = assert_refused(imp_ctx, "usps-3d-base", write_usps(files / USPS_NAME, good_rows() + [usps_row("005", "006")]),
                         "usps_3d_base_service", rejected=[(3, "origin_zip3, dest_zip3"), (5, "origin_zip3, dest_zip3")])
    assert run.rejected_rows[0]["reason"].endswith("also on line 5")


WHOLE = [
    ("wrong header", lambda p: write_usps(p, good_rows(), header=USPS_HEADER[:2] + ["PRI"] + USPS_HEADER[3:]),
     "has the wrong header"),
    ("missing header column", lambda p: write_usps(p, good_rows(), header=USPS_HEADER[:-1]), "has the wrong header"),
    ("no header", lambda p: write_usps(p, good_rows(), header=None), "has the wrong header"),
    ("empty", lambda p: p.write_text(""), "is empty"),
    ("header only", lambda p: write_usps(p, []), "has no data rows"),
    ("binary junk", lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)), "contains binary data"),
]


@pytest.mark.parametrize("label,write,message", WHOLE, ids=[w[0] for w in WHOLE])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_wrong_files_are_refused(imp_app, files, label, write, message, imp_ctx):
    seed_import(imp_ctx, "usps-3d-base", write_usps(files / USPS_NAME, good_rows()))
    (files / "bad").mkdir()
    path = files / "bad" / USPS_NAME
    write(path)
    assert_refused(imp_ctx, "usps-3d-base", path, "usps_3d_base_service", message=message)


def test_wrong_name_is_refused(imp_app, files, imp_ctx, seeded):
    assert_refused(imp_ctx, "usps-3d-base", write_usps(files / "3D_Base_Service_Standard_Directory.csv", good_rows()),
                   "usps_3d_base_service", message="expected 3D_Base_Service_Standard_Directory_MMDDYYYY.csv")


@pytest.mark.parametrize("digits", ["13452025", "02302025", "00012025", "01150000"])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_a_name_whose_date_is_no_date_is_refused(imp_app, files, imp_ctx, seeded, digits):
    """The name is how the file says which directory it is: digits that are no MMDDYYYY date
    (month 13, 30 February, day 0, year 0) are a wrong file, refused before a row is read,
    and the table (replace mode: every row) stays as it was."""
    path = write_usps(files / f"3D_Base_Service_Standard_Directory_{digits}.csv", good_rows()[:1])
    assert_refused(imp_ctx, "usps-3d-base", path, "usps_3d_base_service",
                   message=f"{digits} in its name is not a real date")


def test_a_browser_copy_of_a_name_whose_date_is_no_date_is_refused(imp_app, files, imp_ctx, seeded):
    path = write_usps(files / "3D_Base_Service_Standard_Directory_13452025 (1).csv", good_rows()[:1])
    assert_refused(imp_ctx, "usps-3d-base", path, "usps_3d_base_service",
                   message="13452025 in its name is not a real date")
