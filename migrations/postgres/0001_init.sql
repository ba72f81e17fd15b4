-- Runs, their tasks (current state), the append-only event log, and workers.
-- Times are integer milliseconds since the Unix epoch, as in the API.

create table runs (
    id text primary key,
    name text not null,
    queue text not null,
    state text not null,
    task_count integer not null,
    counts jsonb not null,
    error text,
    created_at_ms bigint not null,
    finished_at_ms bigint,
    last_seq bigint not null default 0
);
create index runs_by_created on runs (created_at_ms desc, id desc);
create index runs_active on runs (state) where state = 'running';

create table tasks (
    run_id text not null references runs (id) on delete cascade,
    task_id text not null,
    idx integer not null,
    spec jsonb not null,
    state text not null,
    attempt integer not null default 0,
    failures integer not null default 0,
    output jsonb,
    error jsonb,
    worker_id text,
    queued_at_ms bigint,
    started_at_ms bigint,
    finished_at_ms bigint,
    primary key (run_id, task_id)
);
create index tasks_by_idx on tasks (run_id, idx);

create table task_events (
    run_id text not null references runs (id) on delete cascade,
    seq bigint not null,
    task_id text,
    kind text not null,
    state text,
    attempt integer not null default 0,
    worker_id text,
    at_ms bigint not null,
    data jsonb,
    primary key (run_id, seq)
);
create index task_events_by_task on task_events (run_id, task_id, seq);

create table workers (
    id text primary key,
    info jsonb not null,
    state text not null,
    last_heartbeat_ms bigint not null
);
