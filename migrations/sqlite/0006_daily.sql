-- Running it every day: the schema of migrations/postgres/0006_daily.sql in SQLite's
-- terms.
create table templates (
    name text not null,
    version integer not null,
    spec text not null check (json_valid(spec)),
    created_at_ms integer not null,
    created_by text not null,
    primary key (name, version)
) strict;

create table schedules (
    name text primary key,
    spec text not null check (json_valid(spec)),
    paused integer not null default 0,
    created_at_ms integer not null,
    updated_at_ms integer not null,
    last_tick_ms integer
) strict;

create table hooks (
    name text primary key,
    template text not null,
    secret text not null,
    created_at_ms integer not null,
    updated_at_ms integer not null
) strict;

create index runs_by_idempotency on runs (json_extract(options, '$.origin.idempotency'))
    where json_extract(options, '$.origin.idempotency') is not null;
create index runs_by_schedule on runs (json_extract(options, '$.origin.schedule'), created_at_ms)
    where json_extract(options, '$.origin.schedule') is not null;
create index runs_by_finished on runs (finished_at_ms) where finished_at_ms is not null;
