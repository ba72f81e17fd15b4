-- Running it every day: versioned workflow templates, schedules and signed webhooks that
-- start them, and indexes that find a run by where it came from (its idempotency key,
-- its schedule) or by when it finished (retention). Where a run came from is kept in
-- its own options (`origin`), written in the same transaction as the run.
create table templates (
    name text not null,
    version integer not null,
    spec jsonb not null,
    created_at_ms bigint not null,
    created_by text not null,
    primary key (name, version)
);

create table schedules (
    name text primary key,
    spec jsonb not null,
    paused boolean not null default false,
    created_at_ms bigint not null,
    updated_at_ms bigint not null,
    -- The last tick handled (fired or skipped): a cache that outlives the runs that
    -- retention deletes. The run rows themselves are the record of what fired.
    last_tick_ms bigint
);

-- The secret is kept as given: checking an HMAC needs it. It is never answered back.
create table hooks (
    name text primary key,
    template text not null,
    secret text not null,
    created_at_ms bigint not null,
    updated_at_ms bigint not null
);

create index runs_by_idempotency on runs ((options->'origin'->>'idempotency'))
    where options->'origin'->>'idempotency' is not null;
create index runs_by_schedule on runs ((options->'origin'->>'schedule'), created_at_ms)
    where options->'origin'->>'schedule' is not null;
create index runs_by_finished on runs (finished_at_ms) where finished_at_ms is not null;
