-- Back to the old names: delivery_matrix__p<n> becomes _delivery_matrix_<n>, with its indexes.
DO $$
DECLARE
    part record;
    idx record;
    renamed text;
BEGIN
    FOR part IN
        SELECT c.oid, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'reference.delivery_matrix'::regclass
          AND left(c.relname, length('delivery_matrix__p')) = 'delivery_matrix__p'
    LOOP
        renamed := '_delivery_matrix_' || substr(part.relname, length('delivery_matrix__p') + 1);
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
