"""gaz-zcta: Census Gazetteer ZCTA file (tab-separated) into workspace.gaz_zcta_national."""

import pytest

from handled.integrations.service import import_file
from tests.support.import_files import GAZ_HEADER, gaz_row, write_gaz
from tests.support.imports import assert_refused, seed_import, table_rows

NAME = "2020_Gaz_zcta_national.txt"


def good_rows():
    return [gaz_row("00601"), gaz_row("00602", "79288158", "4446273", "30.61", "1.717", "18.36", "-67.17"),
            gaz_row("99929", "36655478", "0", "14.15", "0", "56.41", "-132.32")]


@pytest.fixture
def seeded(imp_ctx, files):
    """A good Gazetteer file imported first: each refusal below must leave its rows exactly as they were."""
    (files / "seed").mkdir()
    seed_import(imp_ctx, "gaz-zcta", write_gaz(files / "seed" / "2019_Gaz_zcta_national.txt", [gaz_row("00603")]))


def test_happy_path_with_trailing_spaces_after_the_last_header(imp_app, files, imp_ctx):
    path = write_gaz(files / NAME, good_rows(), header_tail="        ")
    assert path.read_text().splitlines()[0].endswith("INTPTLONG        ")
    outcome = import_file(imp_ctx, "gaz-zcta", path)
    assert outcome.status == "succeeded" and outcome.rows_written == 3
    rows = table_rows("gaz_zcta_national")
    assert rows[0] == ("00601", 166847909, 799292, 64.42, 0.309, 18.180555, -66.749961)
    assert [r[0] for r in rows] == ["00601", "00602", "99929"]


def test_values_padded_with_spaces_and_a_header_without_trailing_spaces(imp_app, files, imp_ctx):
    rows = [[c + "   " if i == 6 else c for i, c in enumerate(r)] for r in good_rows()]
    outcome = import_file(imp_ctx, "gaz-zcta", write_gaz(files / NAME, rows, header_tail=""))
    assert outcome.status == "succeeded"
    assert table_rows("gaz_zcta_national")[2][6] == -132.32


def test_other_years_are_accepted_by_name(imp_app, files, imp_ctx):
    assert import_file(imp_ctx, "gaz-zcta", write_gaz(files / "2023_Gaz_zcta_national.txt", good_rows())).status == "succeeded"


BAD = [
    ("bad geoid", gaz_row("6010"), "GEOID", "must be exactly 5 digits"),
    ("non-numeric lat", gaz_row("00603", lat="18.x"), "INTPTLAT", "is not a number"),
    ("lat out of range", gaz_row("00603", lat="-90.5"), "INTPTLAT", "must be between -90 and 90"),
    ("lng out of range", gaz_row("00603", lng="180.01"), "INTPTLONG", "must be between -180 and 180"),
    ("negative land", gaz_row("00603", aland="-5"), "ALAND", "must be zero or more"),
    ("land past int8", gaz_row("00603", aland="9223372036854775808"), "ALAND",
     "is too large: the most this column can hold is 9,223,372,036,854,775,807"),
    ("missing column", gaz_row("00603")[:6], "", "the line has 6 of the 7 fields"),   # the line, not a column
]


@pytest.mark.parametrize("label,row,column,reason", BAD, ids=[b[0] for b in BAD])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_bad_rows_refuse_the_file(imp_app, files, label, row, column, reason, imp_ctx):
    seed_import(imp_ctx, "gaz-zcta", write_gaz(files / NAME, good_rows()))
    (files / "bad").mkdir()
    run = assert_refused(imp_ctx, "gaz-zcta", write_gaz(files / "bad" / NAME, good_rows() + [row]),
                         "gaz_zcta_national", rejected=[(5, column)])
    assert run.rejected_rows[0]["reason"] == reason


def test_duplicate_geoid_names_both_lines(imp_app, files, imp_ctx, seeded):
    run = assert_refused(imp_ctx, "gaz-zcta", write_gaz(files / NAME, good_rows() + [gaz_row("00602")]),
                         "gaz_zcta_national", rejected=[(3, "geoid"), (5, "geoid")])
    assert "also on line 5" in run.rejected_rows[0]["reason"]


WHOLE = [
    ("comma separated header", lambda p: p.write_text(",".join(GAZ_HEADER) + "\n00601,1,1,1,1,1,1\n"),
     "has the wrong header"),
    ("missing header column", lambda p: write_gaz(p, good_rows(), header=GAZ_HEADER[:-1]), "has the wrong header"),
    ("no header", lambda p: write_gaz(p, good_rows(), header=None), "has the wrong header"),
    ("empty", lambda p: p.write_text(""), "is empty"),
    ("header only", lambda p: write_gaz(p, []), "has no data rows"),
    ("binary junk", lambda p: p.write_bytes(bytes(range(256)) * 4), "contains binary data"),
]


@pytest.mark.parametrize("label,write,message", WHOLE, ids=[w[0] for w in WHOLE])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_wrong_files_are_refused(imp_app, files, label, write, message, imp_ctx):
    seed_import(imp_ctx, "gaz-zcta", write_gaz(files / NAME, good_rows()))
    (files / "bad").mkdir()
    path = files / "bad" / NAME
    write(path)
    assert_refused(imp_ctx, "gaz-zcta", path, "gaz_zcta_national", message=message)


def test_wrong_name_is_refused(imp_app, files, imp_ctx, seeded):
    assert_refused(imp_ctx, "gaz-zcta", write_gaz(files / "gazetteer.txt", good_rows()), "gaz_zcta_national",
                   message="expected a Gazetteer ZCTA file such as 2020_Gaz_zcta_national.txt")
