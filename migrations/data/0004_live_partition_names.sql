-- The live partitions of delivery_matrix get names no scratch test can match:
-- _delivery_matrix_<n> (0003's partition, or a build's slice) becomes
-- delivery_matrix__p<n>, the name a build now gives its slices
-- (handled/transformations/build_plan.py), and their indexes follow. Scratch
-- tables are exactly _build_* and _old_* (handled/schema/names.py), so a
-- cleanup of scratch tables can never drop live rows. Safe to rerun: a second
-- run finds nothing left to rename.
-- depends: 0003_delivery_matrix_partitioned

DO $$
DECLARE
    part record;
    idx record;
    renamed text;
BEGIN
    FOR part IN
        SELECT c.oid, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'reference.delivery_matrix'::regclass
          AND left(c.relname, length('_delivery_matrix_')) = '_delivery_matrix_'
    LOOP
        renamed := 'delivery_matrix__p' || substr(part.relname, length('_delivery_matrix_') + 1);
        FOR idx IN
            SELECT ic.relname FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
            WHERE x.indrelid = part.oid AND left(ic.relname, length(part.relname)) = part.relname
        LOOP
            EXECUTE format('ALTER INDEX reference.%I RENAME TO %I',
                           idx.relname, renamed || substr(idx.relname, length(part.relname) + 1));
        END LOOP;
        EXECUTE format('ALTER TABLE reference.%I RENAME TO %I', part.relname, renamed);
    END LOOP;
END $$;
