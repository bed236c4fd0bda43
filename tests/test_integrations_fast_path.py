"""The fast path (one regex over a record) never accepts what the validators reject."""

import itertools
import random

import pytest

from handled.integrations import get_integration
from handled.integrations.base import RowError

TRICKY_NUMBERS = ["0", "5", "05", "99", "100", "-1", "1.5", "", " ", "1_0", "٣", "1e5", "nan", "inf",
                  "90", "90.0", "90.5", "-90", "-90.1", "180", "180.0", "180.01", "-179.9", ".5", "5.",
                  "123456789", "1234567890", "9999999999999999999"]
TRICKY_CODES = ["00501", "0050", "005011", "ABCDE", "00５01", "005", "05", "0055", "", "NY", "N", "ny",
                "N1", "10001", "99950", "TRUE", "FALSE", "true", "yes"]
TRICKY_TEXT = ["Holtsville", "", "a\tb", "back\\slash", "line\nbreak", "São Paulo", "x" * 300]
VOCABULARY = TRICKY_NUMBERS + TRICKY_CODES + TRICKY_TEXT


def _slow(integration, cells, context):
    try:
        return ["\t".join(row) for row in integration.convert(list(cells), context)]
    except RowError:
        return None


def _normalise_booleans(text: str) -> str:
    return "\t".join({"TRUE": "t", "FALSE": "f"}.get(v, v) for v in text.split("\t"))


def _good_rows(integration_id):
    return {
        "us-zips": ["00501", "40.8", "-73.0", "Holtsville", "NY", "New York", "FALSE", "11742", "", "",
                    "36103", "Suffolk", '{"36103": 100}', "Suffolk", "36103", "FALSE", "TRUE", "America/New_York"],
        "gaz-zcta": ["00601", "166847909", "799292", "64.42", "0.309", "18.18", "-66.75"],
        "usps-3d-base": ["005", "006", "1", "2", "", "3", "4", "5", "6", "7"],
        "ups-ground-service": ["10001", "00501", "NY", "1"],
    }[integration_id]


@pytest.mark.parametrize("integration_id", ["us-zips", "gaz-zcta", "usps-3d-base", "ups-ground-service"])
def test_fast_pattern_agrees_with_the_validators(integration_id):
    integration = get_integration(integration_id)
    context = {"origin": "10001"}
    fast = integration.fast_pattern(context)
    good = _good_rows(integration_id)
    randomly = random.Random(integration_id)
    candidates = [good, good + [""], good[:-1]]
    for column, value in itertools.product(range(len(good)), VOCABULARY):
        candidates.append(good[:column] + [value] + good[column + 1:])
    for _ in range(3000):
        row = list(good)
        for column in randomly.sample(range(len(good)), 2):
            row[column] = randomly.choice(VOCABULARY)
        candidates.append(row)
    accepted_fast = 0
    for cells in candidates:
        found = fast.fullmatch("\t".join(cells))
        if found is None:
            continue
        accepted_fast += 1
        text = found.group(1) if fast.groups else found.group(0)
        slow = _slow(integration, cells, context)
        assert slow is not None, f"fast path accepted what the validators reject: {cells}"
        assert [_normalise_booleans(text)] == [_normalise_booleans(s) for s in slow], cells
    assert accepted_fast > 10
