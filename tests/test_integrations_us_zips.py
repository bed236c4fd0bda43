"""us-zips: SimpleMaps uszips.csv into workspace.us_zips (replace on zip)."""

import pytest

from handled.integrations.service import import_file
from handled.models import ImportRun
from tests.support.import_files import USZIPS_HEADER, uszip_row, write_uszips
from tests.support.imports import assert_refused, seed_import, table_rows


def good_rows():
    return [
        uszip_row("00501"),
        uszip_row("00601", city="Adjuntas", state_id="PR", state_name="Puerto Rico", zcta="TRUE",
                  parent_zcta="", population="17126", density="102.7", county_fips="72001",
                  county_weights='{"72001": 98.74, "72141": 1.26}', county_names_all="Adjuntas|Utuado",
                  county_fips_all="72001|72141", timezone="America/Puerto_Rico"),
        uszip_row("99950", lat="55.54", lng="-131.43", city='Ketchikan, "Gateway"', state_id="AK",
                  state_name="Alaska", zcta="TRUE", parent_zcta="", population="26",
                  density="0.0", military="TRUE", imprecise="TRUE", timezone="America/Sitka"),
    ]


@pytest.fixture
def seeded(imp_ctx, files):
    """A good uszips.csv imported first: each refusal below must leave its rows exactly as they were."""
    (files / "seed").mkdir()
    seed_import(imp_ctx, "us-zips", write_uszips(files / "seed" / "uszips.csv", [uszip_row("02134")]))


def test_happy_path_keeps_leading_zeros_nulls_booleans_and_quotes(imp_app, files, imp_ctx):
    path = write_uszips(files / "uszips.csv", good_rows())
    outcome = import_file(imp_ctx, "us-zips", path)
    assert outcome.status == "succeeded" and outcome.rows_read == 3 and outcome.rows_written == 3
    rows = {r[0]: r for r in table_rows("us_zips")}
    assert list(rows) == ["00501", "00601", "99950"]
    holtsville = rows["00501"]
    assert holtsville[8] is None and holtsville[9] is None  # empty population/density → NULL
    assert holtsville[6] is False and holtsville[7] == "11742"
    adjuntas = rows["00601"]
    assert adjuntas[6] is True and adjuntas[7] is None and adjuntas[8] == 17126
    assert adjuntas[12] == '{"72001": 98.74, "72141": 1.26}'
    assert rows["99950"][3] == 'Ketchikan, "Gateway"' and rows["99950"][16] is True


def test_replace_mode_swaps_the_whole_table(imp_app, files, imp_ctx):
    import_file(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", good_rows()))
    second = files / "second"
    second.mkdir()
    outcome = import_file(imp_ctx, "us-zips", write_uszips(second / "uszips.csv", [uszip_row("12345")]))
    assert outcome.status == "succeeded"
    assert [r[0] for r in table_rows("us_zips")] == ["12345"]


def test_free_text_with_tabs_and_backslashes_survives_copy(imp_app, files, imp_ctx):
    row = uszip_row("00501", city="Back\\slash\tTab", county_name="Line\nBreak", county_names_all="\\N")
    import_file(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", [row]))
    stored = table_rows("us_zips")[0]
    assert stored[3] == "Back\\slash\tTab" and stored[11] == "Line\nBreak" and stored[13] == "\\N"


def test_bom_at_the_start_is_accepted(imp_app, files, imp_ctx):
    path = write_uszips(files / "uszips.csv", good_rows())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert import_file(imp_ctx, "us-zips", path).status == "succeeded"


BAD_ROWS = [
    ("short zip", {"zip_code": "501"}, "zip", "must be exactly 5 digits"),
    ("padded zip", {"zip_code": " 501"}, "zip", "must be exactly 5 digits"),
    ("letters in zip", {"zip_code": "0050A"}, "zip", "must be exactly 5 digits"),
    ("non-numeric lat", {"lat": "north"}, "lat", "is not a number"),
    ("lat out of range", {"lat": "91.5"}, "lat", "must be between -90 and 90"),
    ("lng out of range", {"lng": "-181"}, "lng", "must be between -180 and 180"),
    ("non-numeric lng", {"lng": "1_000"}, "lng", "is not a number"),
    ("nan lat", {"lat": "nan"}, "lat", "is not a finite number"),
    ("boolean", {"zcta": "yes"}, "zcta", "must be TRUE or FALSE"),
    ("population", {"population": "12.5"}, "population", "is not a whole number"),
    ("negative population", {"population": "-5"}, "population", "must be zero or more"),
    ("population past int4", {"population": "2147483648"}, "population",
     "is too large: the most this column can hold is 2,147,483,647"),
    ("negative density", {"density": "-1"}, "density", "must be zero or more"),
    ("state", {"state_id": "New York"}, "state_id", "must be a 2-letter state code"),
    ("parent zcta", {"parent_zcta": "1174"}, "parent_zcta", "must be exactly 5 digits"),
    ("empty timezone", {"timezone": ""}, "timezone", "is empty"),
]


@pytest.mark.parametrize("label,change,column,reason", BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_row_refuses_the_file_and_names_line_column_value(imp_app, files, label, change, column, reason, imp_ctx):
    seed_import(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", good_rows()))
    bad = files / "bad"
    bad.mkdir()
    change = dict(change)
    zip_code = change.pop("zip_code", "02134")
    rows = good_rows() + [uszip_row(zip_code, **change)]
    run = assert_refused(imp_ctx, "us-zips", write_uszips(bad / "uszips.csv", rows), "us_zips",
                         message="Nothing was written", rejected=[(5, column)])
    assert run.rejected_rows[0]["reason"] == reason
    assert run.rows_read == 4


def test_missing_column_in_a_row_is_rejected(imp_app, files, imp_ctx, seeded):
    rows = good_rows() + [uszip_row("02134")[:-1]]
    run = assert_refused(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", rows), "us_zips",
                         rejected=[(5, "")])   # the line is short: no column is to blame
    assert run.rejected_rows[0]["reason"] == "the line has 17 of the 18 fields"
    assert "(first on line 5: the line has 17 of the 18 fields)" in run.message


def test_a_refused_first_import_leaves_the_table_empty(imp_app, files, imp_ctx):
    """A fresh install's first file, refused for its last row: none of the good rows before it appear."""
    rows = good_rows() + [uszip_row("0250")]
    run = assert_refused(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", rows), "us_zips", table_empty=True,
                         rejected=[(5, "zip")])
    assert run.rows_written == 0


def test_duplicate_zip_names_both_lines(imp_app, files, imp_ctx, seeded):
    rows = good_rows() + [uszip_row("00601")]
    run = assert_refused(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", rows), "us_zips",
                         rejected=[(3, "zip"), (5, "zip")])
    assert run.rejected_rows[0]["reason"] == "duplicate key: the same zip is also on line 5"
    assert run.rejected_rows[1]["reason"] == "duplicate key: the same zip is also on line 3"
    assert run.rejected_rows[0]["value"] == "00601"


def test_partial_loads_good_rows_and_records_every_bad_one(imp_app, files, imp_ctx):
    rows = good_rows() + [uszip_row("0250"), uszip_row("02135", lat="x"), uszip_row("00501")]
    outcome = import_file(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", rows), partial=True)
    assert outcome.status == "succeeded" and outcome.rows_rejected == 4
    assert [r[0] for r in table_rows("us_zips")] == ["00601", "99950"]
    run = ImportRun.get_by_id(outcome.run_id)
    assert run.partial and [(r["line"], r["column"]) for r in run.rejected_rows] == [
        (2, "zip"), (5, "zip"), (6, "lat"), (7, "zip")]


WHOLE_FILE = [
    ("wrong header", lambda p: write_uszips(p, [uszip_row()], header=USZIPS_HEADER[:-1] + ["tz"]),
     "has the wrong header on line 1"),
    ("missing column in header", lambda p: write_uszips(p, [uszip_row()], header=USZIPS_HEADER[:-1]),
     "has the wrong header on line 1"),
    ("no header", lambda p: write_uszips(p, [uszip_row()], header=None), "has the wrong header"),
    ("empty", lambda p: p.write_bytes(b""), "is empty"),
    ("header only", lambda p: write_uszips(p, []), "has no data rows"),
    ("binary junk", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "contains binary data"),
    ("latin-1", lambda p: p.write_bytes(",".join(USZIPS_HEADER).encode() + "\n\"caf\xe9\"".encode("latin-1")),
     "is not UTF-8 text"),
]


@pytest.mark.parametrize("label,write,message", WHOLE_FILE, ids=[w[0] for w in WHOLE_FILE])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_wrong_files_are_refused_before_anything_is_written(imp_app, files, label, write, message, imp_ctx):
    seed_import(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", good_rows()))
    bad = files / "bad"
    bad.mkdir()
    path = bad / "uszips.csv"
    write(path)
    run = assert_refused(imp_ctx, "us-zips", path, "us_zips", message=message)
    assert run.message.startswith("Refused: ") and run.rows_written == 0


def test_wrong_file_name_is_refused(imp_app, files, imp_ctx, seeded):
    path = write_uszips(files / "zips.csv", good_rows())
    run = assert_refused(imp_ctx, "us-zips", path, "us_zips", message="'zips.csv' is not a SimpleMaps US ZIP database file name")
    assert run.file_sha256 and run.file_size == path.stat().st_size


def test_partial_import_with_no_good_row_leaves_the_table_alone(imp_app, files, imp_ctx):
    seed_import(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", good_rows()))
    (files / "bad").mkdir()
    rows = [uszip_row("0250"), uszip_row("02135", lat="x")]
    run = assert_refused(imp_ctx, "us-zips", write_uszips(files / "bad" / "uszips.csv", rows), "us_zips", partial=True,
                         message="Nothing was written", rejected=[(2, "zip"), (3, "lat")])
    assert "has no good row to load" in run.message


def test_broken_quoting_deep_in_the_file_leaves_the_table_alone(imp_app, files, imp_ctx):
    seed_import(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", good_rows()))
    (files / "bad").mkdir()
    path = write_uszips(files / "bad" / "uszips.csv", [uszip_row(f"{n:05d}") for n in range(3000)])
    with open(path, "a") as handle:
        handle.write('"09999","40.1"x,"-73"\n')
    run = assert_refused(imp_ctx, "us-zips", path, "us_zips", message="is not valid CSV near line 3002")
    assert run.message.startswith("Refused: ")
