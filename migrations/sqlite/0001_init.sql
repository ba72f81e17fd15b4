-- Runs, their tasks (current state), the append-only event log, and workers: the schema
-- of migrations/postgres/0001_init.sql in SQLite's terms. Tables are strict, so a column
-- holds only its declared type, as in Postgres; JSON columns are text that must be
-- valid JSON, as jsonb must. Times are integer milliseconds since the Unix epoch.

create table runs (
    id text primary key,
    name text not null,
    queue text not null,
    state text not null,
    task_count integer not null,
    counts text not null check (json_valid(counts)),
    error text,
    created_at_ms integer not null,
    finished_at_ms integer,
    last_seq integer not null default 0
) strict;
create index runs_by_created on runs (created_at_ms desc, id desc);
create index runs_active on runs (state) where state = 'running';

create table tasks (
    run_id text not null references runs (id) on delete cascade,
    task_id text not null,
    idx integer not null,
    spec text not null check (json_valid(spec)),
    state text not null,
    attempt integer not null default 0,
    failures integer not null default 0,
    output text check (json_valid(output)),
    error text check (json_valid(error)),
    worker_id text,
    queued_at_ms integer,
    started_at_ms integer,
    finished_at_ms integer,
    primary key (run_id, task_id)
) strict;
create index tasks_by_idx on tasks (run_id, idx);

create table task_events (
    run_id text not null references runs (id) on delete cascade,
    seq integer not null,
    task_id text,
    kind text not null,
    state text,
    attempt integer not null default 0,
    worker_id text,
    at_ms integer not null,
    data text check (json_valid(data)),
    primary key (run_id, seq)
) strict;
create index task_events_by_task on task_events (run_id, task_id, seq);

create table workers (
    id text primary key,
    info text not null check (json_valid(info)),
    state text not null,
    last_heartbeat_ms integer not null
) strict;
