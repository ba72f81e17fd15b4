-- The newest runs in one state (`GET /runs?state=succeeded`, `apex runs list --state`):
-- read from this index, newest first, instead of walking every run by id and dropping
-- those in other states, which on a store of many finished runs read them all for a
-- page of the few that are running. (`runs_active` only serves the engine's own
-- `state = 'running'` reads, and a parameter cannot pick a partial index.)
create index runs_by_state on runs (state, id);
