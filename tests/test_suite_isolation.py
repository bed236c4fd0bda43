"""The suite's own promise (docs/TESTING.md "Isolation"): after a test, every table it wrote is
empty again, every sequence it used starts over, the seeded tables hold exactly the seeds, and a
seeded table the reset leaves alone is one no test changed (rows and sequence positions alike)."""

from __future__ import annotations

import pytest

from tests.support.databases import connect, reset_tables, superuser_config

SEEDED = {"primary": ["config.permissions", "config.role_permissions", "config.roles"],
          "data": ["reference.carriers", "reference.services"]}


def rows(cur, table: str) -> list[tuple]:
    """Every row with where it lies (a query without ORDER BY reads them in that order)."""
    cur.execute(f"SELECT ctid::text, * FROM {table} ORDER BY ctid")
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
    "UPDATE config.roles SET name = 'Renamed' WHERE code = 'salesperson'",
    # an edit undone: the same rows, but the row now lies elsewhere (a query without ORDER BY
    # would see another order)
    "UPDATE config.roles SET name = name WHERE code = 'admin'",
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


def relfilenodes(settings, *tables: str) -> dict[str, int]:
    return dict(write(settings, *(f"SELECT '{t}', relfilenode FROM pg_class WHERE oid = '{t}'::regclass"
                                  for t in tables)))


def test_seeded_tables_no_test_changed_are_left_alone(settings):
    """The skip is taken: a TRUNCATE gives a table new files, so an untouched seeded table keeps its own."""
    reset_tables(settings)
    before = relfilenodes(settings, "config.roles", "config.permissions", "customer.organizations")
    write(settings, "INSERT INTO customer.organizations (code, name) VALUES ('acme', 'Acme')")

    reset_tables(settings)

    after = relfilenodes(settings, "config.roles", "config.permissions", "customer.organizations")
    assert after["config.roles"] == before["config.roles"]
    assert after["config.permissions"] == before["config.permissions"]
    assert after["customer.organizations"] != before["customer.organizations"]


@pytest.mark.one_mode   # PRIMARY's tables only
def test_a_seeded_table_emptied_through_a_chain_of_foreign_keys_is_seeded_again(settings):
    """roles -> a middle table -> organizations: emptying organizations (CASCADE) empties the middle
    table and roles with it, though roles' own rows were never touched."""
    reset_tables(settings)
    seeds = seeded_state(settings)
    write(settings, "CREATE TABLE customer.iso_middle (id int PRIMARY KEY, "
                    "organization_id int REFERENCES customer.organizations (id))",
          "ALTER TABLE config.roles ADD CONSTRAINT iso_chain FOREIGN KEY (id) "
          "REFERENCES customer.iso_middle (id) NOT VALID")   # roles' rows stay as they are
    try:
        write(settings, "INSERT INTO customer.organizations (code, name) VALUES ('acme', 'Acme')")

        reset_tables(settings)

        assert write(settings, "SELECT count(*) FROM config.roles") == [(len(seeds["config.roles"]),)]
    finally:
        write(settings, "ALTER TABLE config.roles DROP CONSTRAINT iso_chain", "DROP TABLE customer.iso_middle")
        reset_tables(settings)
    assert seeded_state(settings) == seeds


def test_a_seeded_data_table_changed_is_seeded_again(settings):
    reset_tables(settings)
    seeds = seeded_state(settings)
    write(settings, "DELETE FROM reference.services WHERE code = 'GND'", side="data")

    reset_tables(settings)

    assert seeded_state(settings) == seeds

