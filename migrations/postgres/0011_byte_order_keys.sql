-- Byte order for the keys every commit looks up. A database created with a libc locale
-- (C.UTF-8, en_US.UTF-8) compares text through strcoll: about 6 % of Postgres' CPU under
-- W1 went to comparing run and task ids in the B-trees of tasks and task_events
-- (benches/NOTES.md, "Byte-order keys"). Under "C" those comparisons are memcmp. The ids
-- are only ever tested for equality or walked in index order, and byte order is the
-- order the SQLite store and the server's own sorts already use. Changing a column's
-- collation rebuilds the indexes on it, not the table.
alter table runs
    alter column id type text collate "C",
    alter column state type text collate "C";
alter table tasks
    alter column run_id type text collate "C",
    alter column task_id type text collate "C",
    alter column state type text collate "C";
alter table task_events
    alter column run_id type text collate "C",
    alter column task_id type text collate "C";
