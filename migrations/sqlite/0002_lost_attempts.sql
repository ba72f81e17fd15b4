-- Attempts lost with their worker are counted apart from failures: they do not use up
-- retries, but a task may lose only a few before it fails.
alter table tasks add column lost integer not null default 0;
