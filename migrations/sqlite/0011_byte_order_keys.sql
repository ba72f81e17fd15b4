-- The twin of migrations/postgres/0011_byte_order_keys.sql, which gives the run and task
-- ids byte order there. SQLite's default collation, BINARY, already compares bytes.
select 1;
