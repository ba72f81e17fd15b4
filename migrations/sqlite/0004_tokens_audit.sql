-- Scoped API tokens, who created each run and caused each event, and the audit log: the
-- schema of migrations/postgres/0004_tokens_audit.sql in SQLite's terms.
create table api_tokens (
    name text primary key,
    scope text not null,
    secret_sha256 text not null unique,
    created_at_ms integer not null,
    created_by text not null,
    last_used_at_ms integer
) strict;

alter table runs add column created_by text;
alter table task_events add column actor text;

create table audit_log (
    id integer primary key autoincrement,
    at_ms integer not null,
    actor text not null,
    action text not null,
    target text not null,
    detail text check (json_valid(detail))
) strict;
