-- Agent swarms: what each task and run spent, what a run was submitted with besides its
-- tasks (agents, budget, limits), and the registry of named agents.
alter table runs add column options jsonb;
alter table runs add column usage jsonb;
alter table tasks add column usage jsonb;

create table agents (
    name text primary key,
    spec jsonb not null,
    created_at_ms bigint not null,
    updated_at_ms bigint not null
);
