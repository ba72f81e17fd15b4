-- Fencing: every takeover increments the epoch, and every write transaction checks it
-- holds the epoch its orchestrator took, so a leader that lost its lock (and does not
-- know it yet) can write nothing after the next one took over.
create table leadership (
    id integer primary key check (id = 1),
    epoch integer not null
);
insert into leadership (id, epoch) values (1, 0);
