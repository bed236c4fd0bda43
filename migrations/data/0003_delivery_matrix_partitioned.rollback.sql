-- Back to one plain table: the rows of every partition are copied into it.
CREATE TABLE reference._delivery_matrix_plain
    (LIKE reference.delivery_matrix INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO reference._delivery_matrix_plain SELECT * FROM reference.delivery_matrix;
DROP TABLE reference.delivery_matrix;
ALTER TABLE reference._delivery_matrix_plain RENAME TO delivery_matrix;
ALTER TABLE reference.delivery_matrix ADD PRIMARY KEY (origin_zip3, dest_zip3, carrier, service);
