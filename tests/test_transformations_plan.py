"""The build plan: names, slice bounds and SQL of a build-and-swap, without PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handled.schema.names import is_scratch
from handled.transformations.build_plan import (NAME_LIMIT, BuildFailed, BuildPlan, LiveIndex, Statement,
                                                parse_index, partition_name, slice_bounds)
from handled.transformations.registry import get_transformation

MATRIX = get_transformation("delivery-matrix")
ZIP3 = get_transformation("zip3-reference")
PKEY = LiveIndex("delivery_matrix_pkey", "PRIMARY KEY (origin_zip3, dest_zip3, carrier, service)", True,
                 "USING btree (origin_zip3, dest_zip3, carrier, service)")


def test_build_and_old_tables_are_scratch_and_slices_are_not():
    plan = BuildPlan(MATRIX, generation="a1b2c3")
    assert (plan.build_table, plan.old_table) == ("_build_delivery_matrix", "_old_delivery_matrix")
    assert is_scratch(plan.build_table) and is_scratch(plan.old_table)
    slices = plan.slices(["100", "200", "300", "400"], 2)
    assert [s.table for s in slices] == ["delivery_matrix__pa1b2c3_0", "delivery_matrix__pa1b2c3_1"]
    assert not any(is_scratch(s.table) for s in slices)
    assert not is_scratch("delivery_matrix") and not is_scratch("_delivery_matrix_0")


def test_slice_bounds_cut_sorted_values_into_ranges_of_similar_size():
    assert slice_bounds(["100", "200", "300", "400"], 1) == [(None, None)]
    assert slice_bounds(["100", "200", "300", "400"], 2) == [(None, "300"), ("300", None)]
    assert slice_bounds(["100", "200", "300", "400"], 3) == [(None, "200"), ("200", "300"), ("300", None)]
    assert slice_bounds(["100", "200"], 8) == [(None, "200"), ("200", None)]     # never more than values
    assert slice_bounds(["100", "100", "100", "200"], 3) == [(None, "100"), ("100", None)]  # no empty range
    assert slice_bounds([], 4) == [(None, None)]


def test_unsplit_transformation_is_one_slice_into_the_build_table():
    plan = BuildPlan(ZIP3)
    assert plan.split_values() is None
    (only,) = plan.slices(None, 4)
    assert only.table == "_build_zip3_reference" and not only.split and only.params is None
    assert plan.create_tables([only]) == [Statement(
        "CREATE TABLE reference._build_zip3_reference (LIKE reference.zip3_reference "
        "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)")]


def test_split_build_table_is_partitioned_with_one_partition_per_slice():
    plan = BuildPlan(MATRIX, generation="a1b2c3")
    assert plan.split_values() == ("SELECT v FROM (SELECT zip3 FROM reference.zip3_reference) AS s (v) "
                                   "WHERE v IS NOT NULL ORDER BY 1")
    slices = plan.slices(["100", "200", "300"], 3)
    statements = plan.create_tables(slices)
    assert statements[0].sql.endswith(" PARTITION BY RANGE (origin_zip3)")
    assert statements[1:] == [
        Statement("CREATE TABLE reference.delivery_matrix__pa1b2c3_0 PARTITION OF reference._build_delivery_matrix "
                  "FOR VALUES FROM (MINVALUE) TO (%s)", ("200",)),
        Statement("CREATE TABLE reference.delivery_matrix__pa1b2c3_1 PARTITION OF reference._build_delivery_matrix "
                  "FOR VALUES FROM (%s) TO (%s)", ("200", "300")),
        Statement("CREATE TABLE reference.delivery_matrix__pa1b2c3_2 PARTITION OF reference._build_delivery_matrix "
                  "FOR VALUES FROM (%s) TO (MAXVALUE)", ("300",)),
        # the companion, in the same all-or-none transaction, and the comment tying it to the matrix
        Statement("CREATE TABLE reference._build_ground_days (LIKE reference.ground_days "
                  "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)"),
        Statement("COMMENT ON TABLE reference._build_delivery_matrix IS %s", ("handled build a1b2c3",)),
        Statement("COMMENT ON TABLE reference._build_ground_days IS %s", ("handled build a1b2c3",))]
    assert plan.insert(slices[1]) == Statement(f"INSERT INTO reference.delivery_matrix__pa1b2c3_1 {MATRIX.select_sql}",
                                               {"split_from": "200", "split_to": "300"})


def test_slice_session_shares_the_memory_and_keys_are_attached_to_the_build_table():
    plan = BuildPlan(MATRIX, generation="a1b2c3")
    slices = plan.slices(["100", "200"], 2)
    assert plan.slice_session(slices, 2) == ["SET LOCAL statement_timeout = 0",
                                             "SET LOCAL maintenance_work_mem = '512MB'",
                                             "SET LOCAL max_parallel_maintenance_workers = 0"]
    # a build uses at most `parallelism` cores: parallel workers only for the cores slices leave unused
    assert plan.slice_session(slices, 4) == ["SET LOCAL statement_timeout = 0",
                                             "SET LOCAL maintenance_work_mem = '512MB'"]
    assert plan.slice_indexes(slices[0], [PKEY]) == [
        "ALTER TABLE reference.delivery_matrix__pa1b2c3_0 ADD PRIMARY KEY (origin_zip3, dest_zip3, carrier, service)"]
    assert plan.finish_indexes(slices, [PKEY]) == [
        'ALTER TABLE reference._build_delivery_matrix ADD CONSTRAINT "_build_delivery_matrix_pkey" '
        "PRIMARY KEY (origin_zip3, dest_zip3, carrier, service)",
        "ANALYZE reference._build_delivery_matrix"]
    one = BuildPlan(ZIP3).slices(None, 1)
    assert BuildPlan(ZIP3).slice_session(one, 2)[-1] == "SET LOCAL maintenance_work_mem = '1024MB'"
    assert BuildPlan(ZIP3).slice_session(one, 1)[-1] == "SET LOCAL max_parallel_maintenance_workers = 0"


def test_index_model_reads_pg_indexdef():
    index = parse_index(ZIP3, "zip3_reference_state_idx",
                        "CREATE INDEX zip3_reference_state_idx ON reference.zip3_reference USING btree (state)",
                        None, False)
    assert index == LiveIndex("zip3_reference_state_idx", None, False, "USING btree (state)")
    assert index.create_on("_build_zip3_reference", index.build_name) == (
        'CREATE INDEX "_build_zip3_reference_state_idx" ON reference._build_zip3_reference USING btree (state)')
    assert index.create_on("t", None) == "CREATE INDEX ON reference.t USING btree (state)"
    with pytest.raises(BuildFailed, match="cannot recreate index"):
        parse_index(ZIP3, "odd", "CREATE something else", None, False)


def test_swap_renames_live_to_old_and_build_to_live_in_one_transaction():
    plan = BuildPlan(ZIP3)
    zip3_key = LiveIndex("zip3_reference_pkey", "PRIMARY KEY (zip3)", True, "USING btree (zip3)")
    assert plan.swap([zip3_key], 40) == [
        "SET LOCAL lock_timeout = '40ms'",
        "LOCK TABLE ONLY reference.zip3_reference IN ACCESS EXCLUSIVE MODE",
        "ALTER TABLE reference.zip3_reference RENAME TO _old_zip3_reference",
        'ALTER INDEX reference."zip3_reference_pkey" RENAME TO "_old_zip3_reference_pkey"',
        "ALTER TABLE reference._build_zip3_reference RENAME TO zip3_reference",
        'ALTER INDEX reference."_build_zip3_reference_pkey" RENAME TO "zip3_reference_pkey"']
    assert plan.old_tables() == ["_old_zip3_reference"]
    assert plan.drop_old("_old_zip3_reference", 40) == [
        "SET LOCAL lock_timeout = '40ms'", "DROP TABLE IF EXISTS reference._old_zip3_reference"]
    assert plan.drop_leftover(plan.build_table) == [
        "SET LOCAL lock_timeout = '5s'", "DROP TABLE IF EXISTS reference._build_zip3_reference"]


def test_companions_are_swapped_and_dropped_with_their_table():
    plan = BuildPlan(MATRIX)
    ground_key = LiveIndex("ground_days_pkey", "PRIMARY KEY (origin_zip3, dest_zip3)", True,
                           "USING btree (origin_zip3, dest_zip3)")
    assert plan.swap([PKEY], 40, {"ground_days": [ground_key]}) == [
        "SET LOCAL lock_timeout = '40ms'",
        "LOCK TABLE ONLY reference.delivery_matrix IN ACCESS EXCLUSIVE MODE",
        "LOCK TABLE ONLY reference.ground_days IN ACCESS EXCLUSIVE MODE",
        "ALTER TABLE reference.delivery_matrix RENAME TO _old_delivery_matrix",
        'ALTER INDEX reference."delivery_matrix_pkey" RENAME TO "_old_delivery_matrix_pkey"',
        "ALTER TABLE reference._build_delivery_matrix RENAME TO delivery_matrix",
        'ALTER INDEX reference."_build_delivery_matrix_pkey" RENAME TO "delivery_matrix_pkey"',
        "ALTER TABLE reference.ground_days RENAME TO _old_ground_days",
        'ALTER INDEX reference."ground_days_pkey" RENAME TO "_old_ground_days_pkey"',
        "ALTER TABLE reference._build_ground_days RENAME TO ground_days",
        'ALTER INDEX reference."_build_ground_days_pkey" RENAME TO "ground_days_pkey"']
    assert plan.old_tables() == ["_old_delivery_matrix", "_old_ground_days"]   # each dropped on its own
    assert plan.drop_builds() == ["DROP TABLE IF EXISTS reference._build_delivery_matrix",
                                  "DROP TABLE IF EXISTS reference._build_ground_days"]
    assert plan.scratch_tables() == ["_build_delivery_matrix", "_old_delivery_matrix",
                                     "_build_ground_days", "_old_ground_days"]
    assert all(is_scratch(name) for name in plan.scratch_tables())
    (derive_insert, key, analyze) = plan.derive(plan.companions[0], [ground_key])
    assert derive_insert.startswith("INSERT INTO reference._build_ground_days ")
    assert "FROM reference._build_delivery_matrix" in derive_insert and "{source}" not in derive_insert
    assert key == ('ALTER TABLE reference._build_ground_days ADD CONSTRAINT "_build_ground_days_pkey" '
                   "PRIMARY KEY (origin_zip3, dest_zip3)")
    assert analyze == "ANALYZE reference._build_ground_days"
    # the derive uses one core when the build may use one
    assert "SET LOCAL max_parallel_workers_per_gather = 0" in plan.derive_session(1)
    assert "SET LOCAL max_parallel_workers_per_gather = 0" not in plan.derive_session(3)
    assert plan.sources_empty().startswith("SELECT NOT EXISTS (SELECT 1 FROM workspace.")


def test_names_over_postgresqls_limit_are_refused():
    long_target = "t" * (NAME_LIMIT - len("_build_") + 1)
    with pytest.raises(BuildFailed, match="63-character limit"):
        BuildPlan(replace(ZIP3, target=long_target))
    with pytest.raises(BuildFailed, match="63-character limit"):
        partition_name("t" * 52, "a1b2c3", 10)
    assert len(partition_name("t" * 52, "a1b2c3", 9)) == NAME_LIMIT


def test_progress_spans_cover_the_whole_scale_in_phase_order():
    from handled.transformations.build_plan import PHASE_SPANS, PHASES, PROGRESS_TOTAL, progress_point

    ends = [PHASE_SPANS[p] for p in PHASES]
    assert ends[0][0] == 0 and ends[-1][1] == PROGRESS_TOTAL
    assert all(a[1] == b[0] for a, b in zip(ends, ends[1:]))       # no gap, no overlap
    assert progress_point("insert", 0.5) == 320 and progress_point("index", 2) == 900
    assert progress_point("done") == PROGRESS_TOTAL
    # insert and index are most of a real rebuild, so most of the scale
    assert PHASE_SPANS["index"][1] - PHASE_SPANS["insert"][0] >= 0.8 * PROGRESS_TOTAL
