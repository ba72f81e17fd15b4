//! The HTTP API's request and response bodies, typed once. The server renders them
//! (`views.rs`, `api/`), the CLI and `apex-loadgen` read them, and the OpenAPI document
//! (`api/openapi.rs`) is generated from them, so the shapes cannot drift apart.

mod catalog;
mod daily;
mod decisions;
mod error;
mod fleet;
mod live;
mod runs;
mod states;

pub use crate::access::Scope;
pub use crate::dag::{
    AgentSpec, Budget, KeyLimit, Problem, ProblemCode, RunSpec, TaskSpec, Trigger,
};
pub use crate::state_machine::{RunState, TaskState};
pub use catalog::{
    Agent, AgentList, AuditEntry, AuditList, CreatedToken, NewToken, Token, TokenList,
};
pub use daily::{
    Hook, HookList, HookSpec, Overlap, ParamSpec, Schedule, ScheduleList, ScheduleSpec, Template,
    TemplateList, TemplateRunRequest,
};
pub use decisions::{ApproveRequest, BudgetRaise, RejectRequest};
pub use error::{ErrorBody, ErrorCode, ErrorResponse};
pub use fleet::{Health, Probe, Queue, QueueList, Readiness, Worker, WorkerCounts, WorkerList};
pub use live::{
    AnswerEvent, DeadLetterEvent, LiveEvent, ProgressEvent, QueuesEvent, RunEvent, WorkerEvent,
    WsFrame, WsSnapshot,
};
pub use runs::{
    Attempt, DecidedTask, Event, EventList, LogLine, RerunLink, Run, RunList, RunSummary, Task,
    TaskCounts, TaskDetail, TaskError, TaskPage, Validation,
};
pub use worker_protocol::{Price, Usage};
