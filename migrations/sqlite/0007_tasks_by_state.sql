-- A run's tasks in one state, in run order: `GET /runs/{id}/tasks?state=failed` on a
-- 100,000-task run reads the page it returns, not every task of the run (the table
-- view of a big run filters by state).
create index tasks_by_state on tasks (run_id, state, idx);
