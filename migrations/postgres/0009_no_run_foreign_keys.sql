-- Tasks and events no longer reference runs by foreign key: every insert fired an RI
-- trigger (a `select ... for key share` on the run's row), ~30 % of a 2,000-task
-- submission's commit, for rows only the orchestrator writes, in the same transaction
-- as their run. Deleting runs (retention, `DELETE /runs/{id}`) deletes their events and
-- tasks explicitly (`delete_runs`), so nothing relied on the cascade.
alter table task_events drop constraint task_events_run_id_fkey;
alter table tasks drop constraint tasks_run_id_fkey;
