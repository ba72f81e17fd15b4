-- When each task row last changed, as the run's event sequence stood at that commit
-- (`GET /runs/{id}/tasks?since=`): a viewer of a big run reads only the rows that
-- changed since its last read instead of every row again. Not every row change is an
-- event (usage a running attempt reports, a retry that waits its turn), so the row
-- carries the mark itself, written by the statement that changes it. No index: the
-- column changes at every write of the row, and an index on it would stop HOT updates
-- of tasks; a read walks the run's rows by (run_id, idx) and skips the unchanged.
-- Rows written before this migration read as changed at 0: a viewer saw them in the
-- full read its first cursor came with, and every later write marks them anew.
alter table tasks add column rev integer not null default 0;
