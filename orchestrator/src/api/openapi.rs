//! The OpenAPI document of this API, generated from the handlers' `#[utoipa::path]`
//! annotations and the types of [`crate::api_types`], and served at
//! `/api/v1/openapi.json`. `orchestrator/openapi.json` is a checked-in copy for review
//! and for the dashboard's generated types; a test fails when it drifts.

use super::auth::{needs, Allowed};
use super::AppState;
use crate::api_types as t;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::OnceLock;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi))
}

/// This document. Needs scope `read`.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object)))]
pub(super) async fn openapi(_: Allowed<needs::Read>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

/// The generated document as JSON text, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let text = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the document is plain data");
        // utoipa 5 spells a Link object's `operationId` in snake case; nothing else in
        // the document has that key, so the spelling the specification wants replaces it.
        let mut text = text.replace("\"operation_id\": ", "\"operationId\": ");
        text.push('\n');
        text
    })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Apex API",
        description = "The HTTP API of the Apex orchestrator. Prose and examples: docs/API.md. Every error answer has the `Error` body; its `code` is one of `ErrorCode`.",
    ),
    paths(
        super::runs::create_run,
        super::runs::list_runs,
        super::runs::get_run,
        super::runs::list_tasks,
        super::runs::get_task,
        super::runs::list_events,
        super::runs::cancel_run,
        super::runs::retry_run,
        super::runs::validate_dag,
        super::run_delete::delete_run,
        super::rerun::rerun,
        super::decisions::approve,
        super::decisions::reject,
        super::decisions::cancel_task,
        super::templates::put_template,
        super::templates::list_templates,
        super::templates::get_template,
        super::templates::run_template,
        super::schedules::put_schedule,
        super::schedules::list_schedules,
        super::schedules::get_schedule,
        super::schedules::delete_schedule,
        super::schedules::pause,
        super::schedules::resume,
        super::hooks::put_hook,
        super::hooks::list_hooks,
        super::hooks::get_hook,
        super::hooks::receive,
        super::agents::list_agents,
        super::agents::get_agent,
        super::agents::put_agent,
        super::agents::delete_agent,
        super::tokens::create_token,
        super::tokens::list_tokens,
        super::tokens::revoke_token,
        super::audit::list_audit,
        super::fleet::list_workers,
        super::fleet::list_queues,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        super::health::health,
        super::ws::subscribe,
        openapi,
    ),
    components(schemas(t::ErrorCode, t::Problem, t::ProblemCode, t::WsFrame, t::LiveEvent, t::TaskState)),
    modifiers(&Shared),
    tags(
        (name = "runs", description = "Submit, follow, cancel and retry runs of tasks."),
        (name = "agents", description = "The registry of named agents."),
        (name = "tokens", description = "Scoped API tokens and the audit log."),
        (name = "fleet", description = "Workers and queues."),
        (name = "templates", description = "Stored, versioned DAGs with parameters, and runs made from them."),
        (name = "schedules", description = "Runs of templates on a cron or an interval."),
        (name = "hooks", description = "Signed webhooks that start runs of templates."),
        (name = "live", description = "Live events over a WebSocket."),
        (name = "health", description = "Liveness, readiness, health and metrics."),
        (name = "meta", description = "This document."),
    )
)]
struct ApiDoc;

/// The error answers every `/api/` route may give, whatever it does: shared responses
/// in `components/responses`, referenced from each operation that does not describe
/// that status itself. And the two ways to present a token.
struct Shared;

/// `(status, component name, description)` of the answers any `/api/` route may give.
const SHARED_ERRORS: [(&str, &str, &str); 7] = [
    ("400", "BadRequest", "`invalid_json`: the body is not JSON of the expected shape (syntax, types, unknown or missing fields); `bad_request`: an invalid path or query parameter (unknown name, wrong type, unknown value; a control character, bytes that are not UTF-8, or more than 1,024 bytes)."),
    ("401", "Unauthorized", "`unauthorized`: the server has a token and the request did not present a valid one."),
    ("403", "Forbidden", "`forbidden`: the token's scope does not cover the request (`required_scope` says which does); `foreign_origin`: a page of another origin made the request."),
    ("414", "UriTooLong", "`uri_too_long`: the request URI is longer than the server reads."),
    ("429", "RateLimited", "`rate_limited`: too many requests with a wrong token from this address lately; `Retry-After` says when to try again."),
    ("500", "Internal", "`internal`: a bug or an unexpected failure; the details are in the server's log only."),
    ("503", "Unavailable", "`unavailable`: a standby, a store outage, shutdown, or the WebSocket limit; `timeout`: the request took longer than `--request-timeout-s`. Try again shortly."),
];

/// The scope each operation needs, by `operationId`, as its handler enforces it with an
/// `Allowed<needs::…>` argument (`api/auth.rs`); `none` for those that take no token
/// (probes, metrics, and webhook deliveries, which prove themselves by a signature).
/// Published as `x-required-scope`; tests/contract.rs checks each against the server:
/// a token one scope short is refused with exactly this `required_scope`.
const SCOPES: [(&str, &str); 44] = [
    ("createRun", "submit"),
    ("validateDag", "submit"),
    ("listRuns", "read"),
    ("getRun", "read"),
    ("listTasks", "read"),
    ("getTask", "read"),
    ("listEvents", "read"),
    ("cancelRun", "operate"),
    ("retryRun", "operate"),
    ("deleteRun", "admin"),
    ("rerunRun", "submit"),
    ("approveTask", "operate"),
    ("rejectTask", "operate"),
    ("cancelTask", "operate"),
    ("putTemplate", "admin"),
    ("listTemplates", "read"),
    ("getTemplate", "read"),
    ("runTemplate", "submit"),
    ("putSchedule", "admin"),
    ("listSchedules", "read"),
    ("getSchedule", "read"),
    ("deleteSchedule", "admin"),
    ("pauseSchedule", "operate"),
    ("resumeSchedule", "operate"),
    ("putHook", "admin"),
    ("listHooks", "read"),
    ("getHook", "read"),
    ("receiveHook", "none"),
    ("listAgents", "read"),
    ("getAgent", "read"),
    ("putAgent", "admin"),
    ("deleteAgent", "admin"),
    ("createToken", "admin"),
    ("listTokens", "admin"),
    ("revokeToken", "admin"),
    ("listAudit", "admin"),
    ("listWorkers", "read"),
    ("listQueues", "read"),
    ("healthz", "none"),
    ("readyz", "none"),
    ("metrics", "none"),
    ("health", "read"),
    ("subscribe", "read"),
    ("openapi", "read"),
];

/// The scope `operation_id` needs; `None` for an operation missing from [`SCOPES`],
/// which the document test refuses.
fn required_scope(operation_id: &str) -> Option<&'static str> {
    SCOPES
        .iter()
        .find(|(op, _)| *op == operation_id)
        .map(|(_, scope)| *scope)
}

/// Example bodies of the main requests, by `operationId`: what a person would send.
fn request_example(operation_id: &str) -> Option<serde_json::Value> {
    use serde_json::json;
    Some(match operation_id {
        "createRun" | "validateDag" => json!({
            "name": "research-report",
            "queue": "default",
            "tasks": [
                {"id": "plan", "handler": "echo", "input": {"topic": "tides"}},
                {"id": "a", "handler": "sleep", "input": {"seconds": 0.2},
                 "depends_on": ["plan"], "retries": 2, "timeout_s": 30, "priority": 5},
                {"id": "report", "handler": "echo", "depends_on": ["a"], "trigger": "all_done"}
            ]
        }),
        "putTemplate" => json!({
            "name": "research",
            "params": {
                "topic": {"default": "tides", "description": "What to research"},
                "who": {"description": "Who the report is for (required)"}
            },
            "tasks": [
                {"id": "plan", "handler": "echo",
                 "input": {"topic": {"$param": "topic"}, "for": {"$param": "who"}}}
            ]
        }),
        "putSchedule" => json!({
            "template": "research",
            "params": {"who": "ops"},
            "cron": "0 */6 * * *",
            "timezone": "Europe/Paris",
            "overlap": "skip",
            "catch_up": true
        }),
        "runTemplate" => json!({"params": {"who": "ops"}}),
        _ => return None,
    })
}

/// OpenAPI links: what a successful answer of one operation lets a client call next,
/// `(from, to, [(parameter, runtime expression)])`. Clients (and schemathesis's
/// stateful phase) follow them from a created resource to the operations on it.
const LINKS: [(&str, &str, LinkParams); 17] = [
    ("createRun", "getRun", RUN),
    ("createRun", "listTasks", RUN),
    ("createRun", "listEvents", RUN),
    ("createRun", "cancelRun", RUN),
    ("createRun", "retryRun", RUN),
    ("createRun", "rerunRun", RUN),
    ("createRun", "deleteRun", RUN),
    ("createRun", "approveTask", FIRST_TASK),
    ("createRun", "cancelTask", FIRST_TASK),
    ("putAgent", "getAgent", NAMED),
    ("putAgent", "deleteAgent", NAMED),
    ("putSchedule", "getSchedule", NAMED),
    ("putSchedule", "pauseSchedule", NAMED),
    ("putSchedule", "resumeSchedule", NAMED),
    ("putSchedule", "deleteSchedule", NAMED),
    ("putTemplate", "getTemplate", NAMED),
    ("putTemplate", "runTemplate", NAMED),
];

/// A link's `(parameter, runtime expression)` pairs.
type LinkParams = &'static [(&'static str, &'static str)];

/// The run a submission created.
const RUN: LinkParams = &[("id", "$response.body#/id")];
/// The first task of the run a submission created.
const FIRST_TASK: LinkParams = &[
    ("id", "$response.body#/id"),
    ("task_id", "$request.body#/tasks/0/id"),
];
/// The resource a PUT stored, by the name in its path.
const NAMED: LinkParams = &[("name", "$request.path.name")];

/// Adds the [`LINKS`] from operation `id` to each of its success answers.
fn add_links(id: &str, op: &mut utoipa::openapi::path::Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with('2') {
            continue;
        }
        for (_, to, params) in LINKS.iter().filter(|(from, _, _)| *from == id) {
            let link = params.iter().fold(
                utoipa::openapi::link::LinkBuilder::new().operation_id(*to),
                |link, (name, expression)| link.parameter(*name, *expression),
            );
            response.links.insert((*to).to_owned(), link.build().into());
        }
    }
}

/// What a name (agent, concurrency key, task id, queue) may be.
const NAME_PATTERN: &str = "^[A-Za-z0-9_.:-]{1,128}$";

/// Says in the document what validation refuses and the types cannot: map keys that
/// are names, and `parent`, which only the orchestrator sets (on spawned tasks).
fn restrict_submissions(schemas: &mut std::collections::BTreeMap<String, RefOr<Schema>>) {
    let name = || {
        Box::new(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(NAME_PATTERN))
                .build(),
        ))
    };
    if let Some(RefOr::T(Schema::Object(run))) = schemas.get_mut("RunSpec") {
        for map in ["agents", "concurrency_limits"] {
            if let Some(RefOr::T(Schema::Object(o))) = run.properties.get_mut(map) {
                o.property_names = Some(name());
            }
        }
    }
    if let Some(RefOr::T(Schema::Object(task))) = schemas.get_mut("TaskSpec") {
        task.properties.shift_remove("parent");
    }
}

/// A template as `PUT /templates/{name}` takes it: a run's DAG (`RunSpec`) plus
/// `params`, the parameters that `{"$param": NAME}` objects in it refer to. Derived from
/// `RunSpec` here rather than declared again, so the two cannot drift apart.
fn template_schema(schemas: &mut std::collections::BTreeMap<String, RefOr<Schema>>) {
    let Some(RefOr::T(Schema::Object(run))) = schemas.get("RunSpec") else {
        return;
    };
    let mut template = run.clone();
    let param = ObjectBuilder::new()
        .property(
            "default",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
                .description(Some(
                    "Used when a run gives none; without one, the parameter is required.",
                )),
        )
        .property(
            "description",
            ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Null,
            ])),
        )
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .build();
    template.properties.insert(
        "params".to_owned(),
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("Declared parameters, by name."))
                .property_names(Some(Schema::Object(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(NAME_PATTERN))
                        .build(),
                )))
                .additional_properties(Some(Schema::Object(param)))
                .build(),
        )),
    );
    template.description = Some(
        "A run's DAG whose values may be `{\"$param\": NAME}` objects, plus the parameters they name."
            .to_owned(),
    );
    schemas.insert(
        "TemplateSpec".to_owned(),
        RefOr::T(Schema::Object(template)),
    );
}

/// Says in the document what `schedule::Timing::parse` refuses and the type cannot:
/// exactly one of `cron` and `every_s` (a null one is absent), and `timezone` with
/// `cron` only. `ScheduleSpec` becomes its derived object and that choice, both to hold.
fn schedule_timing(schemas: &mut std::collections::BTreeMap<String, RefOr<Schema>>) {
    use utoipa::openapi::schema::{AllOfBuilder, OneOfBuilder};
    let Some(RefOr::T(Schema::Object(spec))) = schemas.get_mut("ScheduleSpec") else {
        return;
    };
    let description = spec.description.take();
    let spec = spec.clone();
    let typed = |t: Type| ObjectBuilder::new().schema_type(t);
    // A property a branch lists must hold that type when present; `null` is what an
    // absent `Option` reads as, so a branch that forbids a field allows it as null.
    let by_cron = ObjectBuilder::new()
        .required("cron")
        .property("cron", typed(Type::String))
        .property("every_s", typed(Type::Null));
    let by_interval = ObjectBuilder::new()
        .required("every_s")
        .property("every_s", typed(Type::Integer))
        .property("cron", typed(Type::Null))
        .property("timezone", typed(Type::Null));
    let timing = OneOfBuilder::new()
        .item(by_cron)
        .item(by_interval)
        .description(Some(
            "Exactly one of `cron` and `every_s`; `timezone` only with `cron` (else 422 `invalid_schedule`).",
        ));
    schemas.insert(
        "ScheduleSpec".to_owned(),
        RefOr::T(Schema::AllOf(
            AllOfBuilder::new()
                .item(spec)
                .item(timing)
                .description(description)
                .build(),
        )),
    );
}

/// Says what `api/params.rs` refuses in any path or query parameter: control
/// characters, and more than 1,024 bytes (bounded here in characters).
fn bound_text(p: &mut utoipa::openapi::path::Parameter) {
    if let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut() {
        let is_text = matches!(
            &o.schema_type,
            utoipa::openapi::schema::SchemaType::Type(Type::String)
        );
        if is_text && o.enum_values.is_none() {
            o.pattern
                .get_or_insert_with(|| r"^[^\x00-\x1f\x7f]*$".to_owned());
            o.max_length.get_or_insert(1024);
        }
    }
}

impl utoipa::Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer TOKEN`, when the server has a token (`APEX_API_TOKEN`): that token, or a scoped API token (`apex_…`)."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "tokenQuery",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "`?token=TOKEN` (percent-encoded), on the WebSocket only: browsers cannot set headers on it.",
            ))),
        );
        let error_body = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Error")))
            .build();
        for (_, name, description) in SHARED_ERRORS {
            components.responses.insert(
                name.to_owned(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content("application/json", error_body.clone())
                        .build(),
                ),
            );
        }
        restrict_submissions(&mut components.schemas);
        template_schema(&mut components.schemas);
        schedule_timing(&mut components.schemas);
        doc.security = Some(vec![SecurityRequirement::new(
            "bearerAuth",
            Vec::<String>::new(),
        )]);
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                for p in op.parameters.iter_mut().flatten() {
                    bound_text(p);
                }
                let id = op.operation_id.clone().unwrap_or_default();
                let scope = required_scope(&id).unwrap_or("unknown");
                op.extensions.get_or_insert_with(Default::default).merge(
                    ExtensionsBuilder::new()
                        .add("x-required-scope", scope)
                        .build(),
                );
                add_links(&id, op);
                if id == "putTemplate" {
                    if let Some(content) = op
                        .request_body
                        .as_mut()
                        .and_then(|b| b.content.get_mut("application/json"))
                    {
                        content.schema = Some(Ref::from_schema_name("TemplateSpec").into());
                    }
                }
                if let (Some(example), Some(body)) =
                    (request_example(&id), op.request_body.as_mut())
                {
                    if let Some(content) = body.content.get_mut("application/json") {
                        content.example = Some(example);
                    }
                }
                // A webhook delivery proves itself by its signature, not a token
                // (`api/auth.rs`), but answers every other shared error.
                if scope == "none" {
                    op.security = Some(Vec::new());
                }
                if !path.starts_with("/api/") {
                    // Probes and metrics need no token (`api/auth.rs`).
                    op.security = Some(Vec::new());
                    continue;
                }
                // Every error of the API is the one Error shape (`api/error.rs`); an
                // operation's own error answers say why, and get that body here.
                for (status, response) in op.responses.responses.iter_mut() {
                    if let (true, RefOr::T(r)) =
                        (status.starts_with('4') || status.starts_with('5'), response)
                    {
                        r.content
                            .entry("application/json".to_owned())
                            .or_insert_with(|| error_body.clone());
                    }
                }
                for (status, name, _) in SHARED_ERRORS {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            RefOr::Ref(Ref::new(format!("#/components/responses/{name}")))
                        });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{document, SCOPES};
    use std::collections::BTreeSet;

    #[test]
    fn every_operation_has_its_own_id_and_a_scope() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default();
                // utoipa's default is the handler's name, in snake_case.
                assert!(
                    !id.is_empty() && !id.contains('_'),
                    "{method} {path}: set an explicit camelCase operation_id, not {id:?}"
                );
                assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
                let scope = op["x-required-scope"].as_str().unwrap_or_default();
                assert!(
                    ["none", "read", "submit", "operate", "admin"].contains(&scope),
                    "{method} {path} ({id}): add it to SCOPES in api/openapi.rs"
                );
            }
        }
        let listed: BTreeSet<String> = SCOPES.iter().map(|(op, _)| op.to_string()).collect();
        assert_eq!(
            ids, listed,
            "SCOPES lists exactly the documented operations"
        );
    }

    #[test]
    fn every_link_names_an_operation_and_its_parameters() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let mut params = std::collections::BTreeMap::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                let names: BTreeSet<String> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect();
                params.insert(op["operationId"].as_str().unwrap().to_owned(), names);
            }
        }
        let mut links = 0;
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                for response in op["responses"].as_object().unwrap().values() {
                    for (name, link) in response["links"].as_object().into_iter().flatten() {
                        links += 1;
                        let to = link["operationId"].as_str().unwrap_or_default();
                        let known = params
                            .get(to)
                            .unwrap_or_else(|| panic!("link {name} names no operation: {link}"));
                        for param in link["parameters"].as_object().unwrap().keys() {
                            assert!(known.contains(param), "{to} has no parameter {param}");
                        }
                    }
                }
            }
        }
        assert!(links >= super::LINKS.len(), "every link is in the document");
    }

    #[test]
    fn the_checked_in_copy_is_the_generated_document() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == document(),
            "orchestrator/openapi.json is not the generated document: run \
             `cargo run -p apex -- openapi > orchestrator/openapi.json` and commit it"
        );
    }
}
