-- Scoped API tokens (stored by the SHA-256 of their secret, never the secret), who
-- created each run and caused each event, and an append-only audit log of changes that
-- have no run to record them (the agent registry, API tokens).
create table api_tokens (
    name text primary key,
    scope text not null,
    secret_sha256 text not null unique,
    created_at_ms bigint not null,
    created_by text not null,
    last_used_at_ms bigint
);

alter table runs add column created_by text;
alter table task_events add column actor text;

create table audit_log (
    id bigint generated always as identity primary key,
    at_ms bigint not null,
    actor text not null,
    action text not null,
    target text not null,
    detail jsonb
);
