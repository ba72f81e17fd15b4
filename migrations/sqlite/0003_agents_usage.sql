-- Agent swarms: the schema of migrations/postgres/0003_agents_usage.sql in SQLite's terms.
alter table runs add column options text check (json_valid(options));
alter table runs add column usage text check (json_valid(usage));
alter table tasks add column usage text check (json_valid(usage));

create table agents (
    name text primary key,
    spec text not null check (json_valid(spec)),
    created_at_ms integer not null,
    updated_at_ms integer not null
) strict;
