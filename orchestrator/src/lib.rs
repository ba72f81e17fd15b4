//! Apex: an orchestrator for swarms of LLM agents and pipelines.
//!
//! A map of the crate, in the order a task flows through it:
//!
//! - [`dag`]: the submitted DAG: JSON spec, validation (every problem at once), the sealed
//!   graph. Pure.
//! - [`state_machine`]: the task lifecycle as one transition table and a per-run machine:
//!   stimuli in, commands and numbered events out. Pure.
//! - [`engine`]: the async shell: owns active runs in memory, feeds them worker reports,
//!   carries out their commands, and group-commits the results.
//! - [`queue`]: Redis Streams transport to and from the workers (`worker-protocol`).
//! - [`store`]: persistence, the source of truth (Postgres, or SQLite for `apex up`).
//! - [`live`]: stored events and streamed text published live to WebSocket clients:
//!   routed per run, coalesced into frames built once and shared by every subscriber.
//! - [`api`]: the HTTP API (axum), one module per resource; [`views`] shapes its JSON.
//! - [`access`]: who may do what: token scopes, principals, token secrets. Pure.
//! - [`autoscale`]: how many workers each queue's work calls for (pure policy).
//! - [`up`]: `apex up`, the whole system on one machine (private Redis, local workers).
//! - [`config`], [`server`]: settings and assembly of a running server; [`providers`]:
//!   the LLM providers the operator declared (runs name one, never an endpoint or key);
//!   [`ceilings`]: the operator's limits per concurrency key or agent, which runs cannot
//!   loosen.
//! - [`telemetry`]: OpenTelemetry traces of runs, tasks and attempts (off unless the
//!   `OTEL_*` environment asks), built from what the engine stored.
//! - [`cli`]: the client commands of the `apex` binary (submit, watch, inspect, …).

pub mod access;
pub mod api;
pub mod api_types;
pub mod autoscale;
pub mod ceilings;
pub mod cli;
pub mod config;
pub mod config_daily;
pub mod dag;
pub mod engine;
pub mod live;
pub mod providers;
pub mod queue;
pub mod retention;
pub mod schedule;
pub mod server;
pub mod state_machine;
pub mod store;
pub mod telemetry;
pub mod ticker;
pub mod up;
pub mod views;
