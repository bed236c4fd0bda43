"""Models and migrated SQL must agree: tables, columns, types, nullability, keys, ON DELETE.

The sabotage tests compare the session's databases (migrated from empty once per mode,
tests/fixtures/databases.py) after a sabotage made in a transaction that is rolled back: DDL is
transactional in PostgreSQL, so no test needs databases of its own to break. The plain comparison
migrates a scratch pair from empty.
"""

import pytest

from handled.db import direct_connection
from handled.models import DATA_MODELS, PRIMARY_MODELS, SCHEMAS
from handled.schema import migrations
from handled.schema.catalog import compare_models


def migrate_and_compare(settings, sabotage_primary=None, sabotage_data=None):
    """What compare_models finds on each side of the migrated databases after the sabotage
    (run as the owner, rolled back with the comparison's transaction)."""
    problems = []
    for target in migrations.resolve_targets(settings):
        models = PRIMARY_MODELS if target.name == "primary" else DATA_MODELS
        sabotage = sabotage_primary if target.name == "primary" else sabotage_data
        with direct_connection(target.config, "test", autocommit=False) as conn:
            try:
                if sabotage:
                    with conn.cursor() as cur:
                        cur.execute(sabotage)
                problems += compare_models(conn, models, SCHEMAS[target.name])
            finally:
                conn.rollback()
    return problems


def test_models_match_the_migrated_catalog(scratch):
    """Migrated from empty here (the session's databases have been rebuilt by earlier tests: a
    build's CREATE TABLE ... LIKE copies carry no foreign keys, so drift in them could hide)."""
    for target in migrations.resolve_targets(scratch):
        migrations.migrate(target)
    assert migrate_and_compare(scratch) == []


@pytest.mark.parametrize("sabotage,expected", [
    ("ALTER TABLE config.sessions DROP CONSTRAINT sessions_user_id_fkey, "
     "ADD FOREIGN KEY (user_id) REFERENCES config.users (id) ON DELETE SET NULL",
     "config.sessions foreign key on user_id is -> config.users(id) ON DELETE SET NULL in the database "
     "but -> config.users(id) ON DELETE CASCADE in the model"),
    ("ALTER TABLE config.users ALTER COLUMN last_login_at SET NOT NULL",
     "config.users.last_login_at is NOT NULL in the database but NULL in the model"),
    ("ALTER TABLE customer.facilities ALTER COLUMN zip TYPE varchar(5)",
     "customer.facilities.zip is character varying in the database but text in the model"),
    ("ALTER TABLE config.roles ADD COLUMN colour TEXT",
     "config.roles.colour exists in the database but not in the model"),
    ("ALTER TABLE customer.organizations DROP COLUMN contact_phone",
     "customer.organizations.contact_phone is in the model but not in the database"),
    ("ALTER TABLE config.permissions DROP CONSTRAINT permissions_code_key",
     "config.permissions unique keys are [] in the database but [('code',)] in the model"),
    ("DROP TABLE config.export_runs",
     "table config.export_runs is declared by a model but missing from the database"),
    ("CREATE TABLE customer.stray (id int)",
     "table customer.stray exists in the database but no model declares it"),
])
@pytest.mark.one_mode   # PRIMARY's schemas are the same in both modes; data-side drift runs in both
def test_drift_in_primary_is_reported(settings, sabotage, expected):
    assert expected in migrate_and_compare(settings, sabotage_primary=sabotage)


@pytest.mark.parametrize("sabotage,expected", [
    ("ALTER TABLE reference.delivery_matrix DROP CONSTRAINT delivery_matrix_pkey, "
     "ADD PRIMARY KEY (origin_zip3, dest_zip3, carrier)",
     "reference.delivery_matrix primary key is ('carrier', 'dest_zip3', 'origin_zip3') in the database"),
    ("ALTER TABLE reference.services DROP CONSTRAINT services_carrier_code_fkey, "
     "ADD FOREIGN KEY (carrier_code) REFERENCES reference.carriers (code) ON DELETE RESTRICT",
     "ON DELETE RESTRICT in the database but -> reference.carriers(code) ON DELETE CASCADE in the model"),
    ("ALTER TABLE workspace.us_zips ALTER COLUMN population TYPE bigint",
     "workspace.us_zips.population is bigint in the database but integer in the model"),
])
def test_drift_in_data_is_reported(settings, sabotage, expected):
    problems = migrate_and_compare(settings, sabotage_data=sabotage)
    assert any(expected in p for p in problems), problems


def test_scratch_build_tables_are_not_drift(settings):
    assert migrate_and_compare(settings, sabotage_data="CREATE TABLE reference._build_delivery_matrix (x int)") == []


# Partitions are part of their parent whatever they are named (live slices are
# named <table>__p<gen>_<i>, with no scratch prefix), and a scratch parent's
# partitions are scratch with it.
REPARTITION_DELIVERY_MATRIX = """
    DO $$
    DECLARE slice regclass;
    BEGIN   -- whatever slices a rebuild earlier in the session left (named __p0 after migrating)
        FOR slice IN SELECT inhrelid::regclass FROM pg_inherits
                     WHERE inhparent = 'reference.delivery_matrix'::regclass LOOP
            EXECUTE format('ALTER TABLE reference.delivery_matrix DETACH PARTITION %s', slice);
            EXECUTE format('DROP TABLE %s', slice);
        END LOOP;
    END $$;
    CREATE TABLE reference.delivery_matrix__p1a2b3_0 PARTITION OF reference.delivery_matrix
        FOR VALUES FROM (MINVALUE) TO ('500');
    CREATE TABLE reference.any_name_at_all PARTITION OF reference.delivery_matrix
        FOR VALUES FROM ('500') TO (MAXVALUE)"""
SCRATCH_PARENT_WITH_PLAIN_NAMED_PARTITIONS = """
    CREATE TABLE reference._build_delivery_matrix (LIKE reference.delivery_matrix) PARTITION BY RANGE (origin_zip3);
    CREATE TABLE reference.delivery_matrix__p9f8e7_0 PARTITION OF reference._build_delivery_matrix
        FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
    ALTER TABLE reference.delivery_matrix__p9f8e7_0 ADD PRIMARY KEY (origin_zip3, dest_zip3, carrier, service)"""


@pytest.mark.parametrize("sabotage", [REPARTITION_DELIVERY_MATRIX, SCRATCH_PARENT_WITH_PLAIN_NAMED_PARTITIONS],
                         ids=["live-partitions", "scratch-parent"])
def test_partitions_are_part_of_their_parent_whatever_their_names(settings, sabotage):
    assert migrate_and_compare(settings, sabotage_data=sabotage) == []


def test_a_table_named_with_an_underscore_is_not_scratch_for_that_alone(settings):
    problems = migrate_and_compare(settings, sabotage_data="CREATE TABLE reference._stray (x int)")
    assert problems == ["table reference._stray exists in the database but no model declares it"]
