-- The twin of migrations/postgres/0009_no_run_foreign_keys.sql, which drops the foreign
-- keys of tasks and task_events to runs there. SQLite keeps them: dropping one means
-- rebuilding both tables, and the embedded store (`apex up`) is not where the
-- throughput is measured. Its rows stay the same as Postgres'.
select 1;
