"""The suite's own promise (docs/TESTING.md "Isolation"): after a test, every table it wrote is
empty again, every sequence it used starts over, the seeded tables hold exactly the seeds, and a
seeded table the reset leaves alone is one no test changed (rows and sequence positions alike)."""

from __future__ import annotations

import pytest

from tests.support.databases import connect, reset_tables, superuser_config

SEEDED = {"primary": ["config.permissions", "config.role_permissions", "config.roles"],
          "data": ["reference.carriers", "reference.services"]}


def rows(cur, table: str) -> list[tuple]:
    cur.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
    return cur.fetchall()


def seeded_state(settings) -> dict[str, list[tuple]]:
    state = {}
    for side, config in (("primary", settings.primary), ("data", settings.data)):
        conn = connect(superuser_config(config))
        with conn.cursor() as cur:
            for table in SEEDED[side]:
                state[table] = rows(cur, table)
        conn.close()
    return state


def write(settings, *statements: str, side: str = "primary") -> list:
    conn = connect(superuser_config(settings.primary if side == "primary" else settings.data))
    results = []
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
            results.append(cur.fetchone() if cur.description else None)
    conn.close()
    return results


def test_reset_empties_what_was_written_restarts_its_sequences_and_keeps_the_seeds(settings):
    reset_tables(settings)                      # a full reset first: the seeds' fingerprints are known
    seeds = seeded_state(settings)
    assert seeds["config.roles"] and seeds["reference.carriers"]
    org_id, = write(settings, "INSERT INTO customer.organizations (code, name) VALUES ('acme', 'Acme') RETURNING id")

    reset_tables(settings)

    assert write(settings, "SELECT count(*) FROM customer.organizations") == [(0,)]
    assert write(settings, "INSERT INTO customer.organizations (code, name) VALUES ('b', 'B') RETURNING id") == [org_id]
    assert seeded_state(settings) == seeds


@pytest.mark.parametrize("change", [
    "UPDATE config.roles SET name = 'Renamed' WHERE code = 'viewer'",
    "DELETE FROM config.role_permissions",
    "INSERT INTO config.roles (code, name) VALUES ('temp', 'Temp')",
    # the rows end as they were, but the sequence moved: the next role would get another id
    "WITH added AS (INSERT INTO config.roles (code, name) VALUES ('gone', 'Gone') RETURNING id) "
    "DELETE FROM config.roles WHERE id IN (SELECT id FROM added)",
])
def test_a_changed_seeded_table_is_seeded_again_with_its_sequences_restarted(settings, change):
    reset_tables(settings)
    seeds = seeded_state(settings)
    next_role = write(settings, "BEGIN", "INSERT INTO config.roles (code, name) VALUES ('probe', 'P') RETURNING id",
                      "ROLLBACK")[1]
    reset_tables(settings)                      # the probe moved the sequence: a full reset again
    write(settings, change)

    reset_tables(settings)

    assert seeded_state(settings) == seeds
    assert write(settings, "INSERT INTO config.roles (code, name) VALUES ('new', 'New') RETURNING id") == [next_role]


def test_a_seeded_data_table_changed_is_seeded_again(settings):
    reset_tables(settings)
    seeds = seeded_state(settings)
    write(settings, "DELETE FROM reference.services WHERE code = 'GND'", side="data")

    reset_tables(settings)

    assert seeded_state(settings) == seeds

