"""The OpenAPI document the orchestrator serves is valid and describes every route.

The document is generated from the handlers' `#[utoipa::path]` annotations and the
types of `orchestrator/src/api_types/` (`apex openapi`); `orchestrator/openapi.json` is
its checked-in copy, kept current by a Rust test. The routes are read from the axum
routers in `orchestrator/src/api/*.rs`, so a route added there without annotating its
handler and listing it in `api/openapi.rs` fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

REPO = Path(__file__).resolve().parents[3]
OPENAPI = REPO / "orchestrator" / "openapi.json"
API_SRC = REPO / "orchestrator" / "src" / "api"
EXAMPLES_DIR = REPO / "examples"

HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options", "trace")
METHOD_CALL = re.compile(r"\b(" + "|".join(HTTP_METHODS) + r")\s*\(")
ROUTE_CALL = re.compile(r"\.route\(\s*\"([^\"]+)\"\s*,")
#: Routes that need no token (outside `/api/`, see `api/auth.rs`).
PUBLIC = {"/healthz", "/readyz", "/metrics"}
#: Operations under `/api/` that need no token: a webhook delivery is signed instead.
PUBLIC_OPS = {("post", "/api/v1/hooks/{name}")}
#: The smallest valid agent spec.
MOCK_AGENT = {"provider": "mock", "model": "m"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(OPENAPI.read_text())
    return loaded


def _call_args(text: str, start: int) -> str:
    """The text from `start` up to the parenthesis that closes the call open before it."""
    depth = 1
    in_str = False
    i = start
    while i < len(text):
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    raise AssertionError(f"unbalanced .route( call at offset {start}")


def _top_level_methods(args: str) -> set[str]:
    """Method routers (`get(h)`, `post(h).get(h2)`) at the top nesting level of `args`."""
    methods = set()
    for m in METHOD_CALL.finditer(args):
        prefix = args[: m.start()]
        if prefix.count("(") - prefix.count(")") == 0:
            methods.add(m.group(1))
    return methods


def registered_routes() -> set[tuple[str, str]]:
    """`(path, method)` of every `.route("PATH", METHOD(...)...)` in the API modules."""
    routes = set()
    for source in sorted(API_SRC.rglob("*.rs")):
        text = source.read_text()
        for m in ROUTE_CALL.finditer(text):
            methods = _top_level_methods(_call_args(text, m.end()))
            assert methods, (
                f"{source.name}: no method router found for route {m.group(1)}"
            )
            routes.update((m.group(1), method) for method in methods)
    return routes


def documented_routes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_the_route_parser_finds_the_known_routes() -> None:
    routes = registered_routes()
    # Guards against a parser that finds nothing and so passes vacuously.
    for known in [
        ("/api/v1/runs", "post"),
        ("/api/v1/runs", "get"),
        ("/api/v1/runs/{id}/tasks/{task_id}", "get"),
        ("/api/v1/ws", "get"),
        ("/metrics", "get"),
    ]:
        assert known in routes
    assert len(routes) >= 16


def test_every_registered_route_is_documented(doc: dict[str, Any]) -> None:
    missing = registered_routes() - documented_routes(doc)
    assert not missing, (
        f"routes missing from the document (annotate the handler with "
        f"#[utoipa::path] and list it in api/openapi.rs): {sorted(missing)}"
    )


def test_every_documented_route_exists(doc: dict[str, Any]) -> None:
    stale = documented_routes(doc) - registered_routes()
    assert not stale, f"documented routes the server does not have: {sorted(stale)}"


def test_operations_are_complete(doc: dict[str, Any]) -> None:
    ids = set()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            assert op.get("operationId") not in ids, f"{where}: duplicate operationId"
            ids.add(op["operationId"])
            assert any(s.startswith("2") or s == "101" for s in op["responses"]), where
            if path.startswith("/api/"):
                assert "401" in op["responses"], (
                    f"{where}: needs the token, so may answer 401"
                )
                assert "503" in op["responses"], f"{where}: a standby answers 503"
            if path in PUBLIC or (method, path) in PUBLIC_OPS:
                assert op.get("security") == [], f"{where}: needs no token"
            else:
                assert "security" not in op or op["security"], (
                    f"{where}: needs the token"
                )
            for name in re.findall(r"\{(\w+)\}", path):
                params = [
                    p.get("name") or p["$ref"].rsplit("/", 1)[-1]
                    for p in op["parameters"]
                ]
                shared = doc["components"].get("parameters", {})
                resolved = [shared[p]["name"] if p in shared else p for p in params]
                assert name in resolved, f"{where}: path parameter {name} undocumented"
    assert doc["security"] == [{"bearerAuth": []}]


def test_error_responses_use_the_error_schema(doc: dict[str, Any]) -> None:
    def schema_refs(schema: dict[str, Any]) -> set[str]:
        refs = {schema["$ref"]} if "$ref" in schema else set()
        for alt in schema.get("anyOf", []) + schema.get("oneOf", []):
            refs |= schema_refs(alt)
        return refs

    shared = doc["components"]["responses"]
    for path, item in doc["paths"].items():
        if not path.startswith("/api/"):
            continue  # `/readyz` answers 503 with its own probe body.
        if path == "/api/v1/health":
            continue  # Degraded, it answers 503 with its own probe body too.
        for method, op in item.items():
            for status, response in op["responses"].items():
                if int(status) < 400:
                    continue
                if "$ref" in response:
                    response = shared[response["$ref"].rsplit("/", 1)[-1]]
                json_body = response.get("content", {}).get("application/json")
                if json_body is None:
                    continue
                assert "#/components/schemas/Error" in schema_refs(
                    json_body["schema"]
                ), f"{method.upper()} {path} {status}"


def _snake_variants(source: str, enum: str) -> set[str]:
    body = re.search(rf"pub enum {enum} \{{(.*?)\n\}}", source, re.DOTALL)
    assert body is not None, enum
    variants = re.findall(r"^\s*([A-Z]\w*),", body.group(1), re.MULTILINE)
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", v).lower() for v in variants}


def test_error_codes_match_the_server(doc: dict[str, Any]) -> None:
    codes = _snake_variants((API_SRC / "error.rs").read_text(), "ErrorCode")
    assert len(codes) >= 15, "error codes parsed from error.rs"
    assert set(doc["components"]["schemas"]["ErrorCode"]["enum"]) == codes


def test_problem_codes_match_the_server(doc: dict[str, Any]) -> None:
    source = (REPO / "orchestrator" / "src" / "dag" / "validate.rs").read_text()
    codes = _snake_variants(source, "ProblemCode")
    code = doc["components"]["schemas"]["Problem"]["properties"]["code"]
    assert code == {"$ref": "#/components/schemas/ProblemCode"}
    documented = set(doc["components"]["schemas"]["ProblemCode"]["enum"])
    assert documented <= codes, (
        f"documented codes the server lacks: {documented - codes}"
    )
    assert codes <= documented, (
        f"server codes missing from the document: {codes - documented}"
    )


def _run_spec_validator(doc: dict[str, Any]) -> jsonschema.Draft202012Validator:
    schema = {"$ref": "#/components/schemas/RunSpec", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


EXAMPLES = sorted(EXAMPLES_DIR.glob("*.json"))


def test_there_are_example_dags_to_check() -> None:
    assert len(EXAMPLES) >= 3
    # The swarm examples exercise agents and fan-out, the parts of RunSpec most likely to drift.
    assert any(p.name.startswith("swarm") for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_dags_match_the_run_spec_schema(
    doc: dict[str, Any], path: Path
) -> None:
    _run_spec_validator(doc).validate(json.loads(path.read_text()))


def _schema_validator(
    doc: dict[str, Any], name: str
) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_schema_examples_match_their_schemas(doc: dict[str, Any]) -> None:
    # Examples live in docs/API.md; any the document carries must still be valid.
    for name, schema in doc["components"]["schemas"].items():
        if "example" in schema:
            _schema_validator(doc, name).validate(schema["example"])


def test_request_examples_match_their_schemas(doc: dict[str, Any]) -> None:
    for item in doc["paths"].values():
        for op in item.values():
            media = op.get("requestBody", {}).get("content", {}).get("application/json")
            if media is None:
                continue
            examples = [media["example"]] if "example" in media else []
            examples += [e["value"] for e in media.get("examples", {}).values()]
            validator = jsonschema.Draft202012Validator(
                {**media["schema"], "components": doc["components"]}
            )
            for example in examples:
                validator.validate(example)


def test_the_run_spec_schema_rejects_what_the_server_rejects(
    doc: dict[str, Any],
) -> None:
    validator = _run_spec_validator(doc)
    assert validator.is_valid({"tasks": [{"id": "a", "handler": "echo"}]})
    for bad in [
        {},
        {"tasks": []},
        {"tasks": [{"id": "a"}]},
        {"tasks": [{"id": "a", "handler": "echo", "bogus": 1}]},
        {"tasks": [{"id": "a", "handler": "echo"}], "bogus": 1},
        {"tasks": [{"id": "a b", "handler": "echo"}]},
        {"tasks": [{"id": "a", "handler": "echo", "trigger": "sometimes"}]},
        {"tasks": [{"id": "a", "handler": "echo", "retries": -1}]},
        # Only the orchestrator sets `parent`, on spawned tasks (`invalid_parent`).
        {"tasks": [{"id": "a", "handler": "echo", "parent": "b"}]},
        {"tasks": [{"id": "a", "handler": "echo", "agent": "a b"}]},
        {"tasks": [{"id": "a", "handler": "echo", "budget": {"max_cost_usd": -1}}]},
        {"tasks": [{"id": "a", "handler": "echo", "budget": {"bogus": 1}}]},
        {"tasks": [{"id": "a", "handler": "echo"}], "max_parallel": 0},
        # An agent needs a model; endpoints and keys are the operator's, never a run's.
        {
            "tasks": [{"id": "a", "handler": "echo"}],
            "agents": {"w": {"provider": "mock"}},
        },
        {
            "tasks": [{"id": "a", "handler": "echo"}],
            "agents": {"w": {**MOCK_AGENT, "base_url": "http://127.0.0.1:9/v1?x="}},
        },
        {
            "tasks": [{"id": "a", "handler": "echo"}],
            "agents": {"w": {**MOCK_AGENT, "api_key_env": "DATABASE_URL"}},
        },
        {
            "tasks": [{"id": "a", "handler": "echo"}],
            "agents": {"w": {**MOCK_AGENT, "temperature": 3}},
        },
        {
            "tasks": [{"id": "a", "handler": "echo"}],
            "agents": {"w": {**MOCK_AGENT, "colour": "red"}},
        },
        {
            "tasks": [{"id": "a", "handler": "echo"}],
            "agents": {"w": {**MOCK_AGENT, "max_concurrency": 0}},
        },
        {"tasks": [{"id": "a", "handler": "echo"}], "agents": {"a b": MOCK_AGENT}},
        {
            "tasks": [{"id": "a", "handler": "echo"}],
            "concurrency_limits": {"k": {"rpm": 0}},
        },
        {
            "tasks": [{"id": "a", "handler": "echo"}],
            "concurrency_limits": {"k": {"bogus": 1}},
        },
        {"tasks": [{"id": "a", "handler": "echo"}], "concurrency_limits": {"a b": {}}},
    ]:
        assert not validator.is_valid(bad), bad


def test_the_run_spec_schema_accepts_swarm_options(doc: dict[str, Any]) -> None:
    spec = {
        "agents": {
            "w": {
                **MOCK_AGENT,
                "max_output_tokens": 50,
                "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.4},
            }
        },
        "budget": {"max_tokens": 1000, "max_cost_usd": 0.5},
        "max_parallel": 2,
        "concurrency_limits": {
            "provider:mock": {"max_concurrency": 2, "rpm": 60, "tpm": 10000}
        },
        "tasks": [
            {
                "id": "a",
                "handler": "agent",
                "agent": "w",
                "concurrency_key": "provider:mock",
                "budget": {"max_tokens": 100},
            },
        ],
    }
    _run_spec_validator(doc).validate(spec)


def test_the_agent_schema_rejects_what_the_server_rejects(doc: dict[str, Any]) -> None:
    validator = _schema_validator(doc, "AgentSpec")
    assert validator.is_valid(MOCK_AGENT)
    for bad in [
        {"provider": "mock"},
        {**MOCK_AGENT, "base_url": "http://127.0.0.1:9/v1"},
        {**MOCK_AGENT, "api_key_env": "DATABASE_URL"},
        {**MOCK_AGENT, "temperature": -0.1},
        {**MOCK_AGENT, "max_output_tokens": 0},
        {**MOCK_AGENT, "price": {"input_per_mtok": -1, "output_per_mtok": 0}},
        {**MOCK_AGENT, "colour": "red"},
    ]:
        assert not validator.is_valid(bad), bad
