"""ups-ground-service: UPS ground transit days per origin ZIP5 (no header) → upsert."""

import pytest

from handled.integrations.service import import_file
from tests.support.import_files import ground_row, write_ground
from tests.support.imports import assert_refused, seed_import, table_rows


def good_rows(origin="10001"):
    return [ground_row(origin, "00501", "NY", "1"), ground_row(origin, "00601", "PR", "5"),
            ground_row(origin, "99950", "AK", "")]


@pytest.fixture
def seeded(imp_ctx, files):
    """A good transit-times file imported first: each refusal below must leave its rows exactly as they were."""
    (files / "seed").mkdir()
    seed_import(imp_ctx, "ups-ground-service", write_ground(files / "seed" / "10002.csv", good_rows("10002")))


def test_happy_path_with_trailing_empty_column_and_outbound_name(imp_app, files, imp_ctx):
    path = write_ground(files / "10001_Outbound.csv", good_rows(), trailing_empty=True)
    outcome = import_file(imp_ctx, "ups-ground-service", path)
    assert outcome.status == "succeeded" and outcome.rows_written == 3
    assert table_rows("ups_ground_service_zip5") == [
        ("10001", "00501", "NY", 1), ("10001", "00601", "PR", 5), ("10001", "99950", "AK", None)]


def test_upsert_updates_existing_pairs_and_keeps_other_origins(imp_app, files, imp_ctx):
    import_file(imp_ctx, "ups-ground-service", write_ground(files / "10001.csv", good_rows()))
    import_file(imp_ctx, "ups-ground-service", write_ground(files / "00501.csv", good_rows("00501")))
    (files / "again").mkdir()
    rows = [ground_row("10001", "00501", "NY", "2"), ground_row("10001", "02134", "MA", "1")]
    outcome = import_file(imp_ctx, "ups-ground-service", write_ground(files / "again" / "10001.csv", rows))
    assert outcome.status == "succeeded" and outcome.rows_written == 2
    stored = {(r[0], r[1]): r[3] for r in table_rows("ups_ground_service_zip5")}
    assert stored[("10001", "00501")] == 2 and stored[("10001", "02134")] == 1
    assert stored[("10001", "00601")] == 5 and len([k for k in stored if k[0] == "00501"]) == 3


BAD = [
    ("bad dest zip", ground_row(dest="0050"), "dest_zip", "must be exactly 5 digits"),
    ("letters", ground_row(dest="ABCDE"), "dest_zip", "must be exactly 5 digits"),
    ("origin differs", ground_row(origin="10002"), "origin_zip", "differs from the file name's origin 10001"),
    ("days not a number", ground_row(days="two"), "transit_days", "is not a whole number"),
    ("days out of range", ground_row(days="120"), "transit_days", "must be between 0 and 99"),
    ("state", ground_row(state="N"), "dest_state", "must be a 2-letter state code"),
    ("missing column", ground_row()[:3], "", "the line has 3 of the 4 fields"),
]


@pytest.mark.parametrize("label,row,column,reason", BAD, ids=[b[0] for b in BAD])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_bad_rows_refuse_the_file(imp_app, files, label, row, column, reason, imp_ctx):
    seed_import(imp_ctx, "ups-ground-service", write_ground(files / "10001.csv", good_rows()))
    (files / "bad").mkdir()
    row = list(row)
    if label != "missing column":
        row[1] = row[1] if label in ("bad dest zip", "letters") else "02134"
    run = assert_refused(imp_ctx, "ups-ground-service", write_ground(files / "bad" / "10001.csv", good_rows() + [row]),
                         "ups_ground_service_zip5", rejected=[(4, column)])
    assert run.rejected_rows[0]["reason"] == reason


def test_duplicate_pair_names_both_lines(imp_app, files, imp_ctx, seeded):
    rows = good_rows() + [ground_row(dest="00601", days="4")]
    run = assert_refused(imp_ctx, "ups-ground-service", write_ground(files / "10001.csv", rows),
                         "ups_ground_service_zip5", rejected=[(2, "origin_zip, dest_zip"), (4, "origin_zip, dest_zip")])
    assert run.rejected_rows[1]["value"] == "10001, 00601"
    assert run.rejected_rows[1]["reason"] == "duplicate key: the same origin_zip, dest_zip is also on line 2"


WHOLE = [
    ("empty", lambda p: p.write_text(""), "is empty"),
    ("only blank lines", lambda p: p.write_text("\r\n\r\n"), "has no data rows"),
    ("binary junk", lambda p: p.write_bytes(b"\x00\x01\x02PK\x03\x04" * 50), "contains binary data"),
    ("not utf-8", lambda p: p.write_bytes(b"10001,00501,N\xff,1\r\n"), "is not UTF-8 text"),
    ("broken quoting", lambda p: p.write_text('10001,00501,NY,1\r\n10001,"00601"x,PR,1\r\n'), "is not valid CSV"),
]


@pytest.mark.parametrize("label,write,message", WHOLE, ids=[w[0] for w in WHOLE])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_wrong_files_are_refused(imp_app, files, label, write, message, imp_ctx):
    seed_import(imp_ctx, "ups-ground-service", write_ground(files / "10001.csv", good_rows()))
    (files / "bad").mkdir()
    path = files / "bad" / "10001.csv"
    write(path)
    assert_refused(imp_ctx, "ups-ground-service", path, "ups_ground_service_zip5", message=message)


@pytest.mark.parametrize("name", ["1000.csv", "10001.txt", "10001_Inbound.csv", "ABCDE.csv"])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_wrong_names_are_refused(imp_app, files, name, imp_ctx, seeded):
    assert_refused(imp_ctx, "ups-ground-service", write_ground(files / name, good_rows()), "ups_ground_service_zip5",
                   message="expected NNNNN.csv or NNNNN_Outbound.csv")
