#!/usr/bin/env python3
"""Offline validation of everything in deploy/. Run through deploy/validate.sh, which
installs the tools first (into deploy/.venv); nothing here uses the network.

What is checked, each a PASS or FAIL line:
  yaml        every YAML file parses
  k8s         every Kubernetes object against the Kubernetes OpenAPI schemas shipped in
              the kubernetes-validate package (strict: unknown fields fail), for the
              oldest and newest Kubernetes versions in KUBE_VERSIONS
  keda        every KEDA ScaledObject and TriggerAuthentication against the schemas in
              schemas/ (written for Apex from KEDA's documented spec)
  kustomize   every kustomization renders (`kubectl kustomize`, when kubectl is
              installed) and what it renders passes the k8s and keda checks
  compose     docker-compose.yml against the Compose Specification schema shipped in
              the check-jsonschema package
  prometheus  alert rules against schemas/prometheus-rules.schema.json, and with
              promtool (from Debian's prometheus package): check rules, the unit tests
              in alerts.test.yml, check config
  grafana     the dashboard's structure, its variables, and that its queries name only
              metrics Apex emits, covering every documented one
  tracing     the OTel Collector config (deploy/otel/) is complete and the same in
              compose and Kubernetes, every endpoint Apex is pointed at is the
              collector's receiver, the collector forwards to Tempo's receiver, and the
              dashboard's trace link opens the provisioned Tempo on an attribute Apex
              sets
  promql      the same metric-name check for alert rules, KEDA and adapter queries
  docker      hadolint on both Dockerfiles, plus: exec-form ENTRYPOINT, non-root USER,
              every COPY source present in the build context
  consistency what must agree across files: worker grace periods, stream and group
              names, queue names, env variable names, probes, ports, selectors
  security    Redis is not a trusted channel: every Redis URL carries credentials from a
              secret, Redis is started with the password (and, when redis-server is
              installed, really refuses clients without it), KEDA authenticates from
              the same Secret, Postgres and Redis are reachable only by the services
              that use them (compose networks, NetworkPolicies evaluated per variant)

The names of the metrics and environment variables Apex really uses are read from the
sources (orchestrator/src, python-workers/apex_worker) when they are there, so a rename
on either side fails here; the lists below are the fallback.
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import yaml

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
VENV_BIN = DEPLOY / ".venv" / "bin"

KUBE_VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]

# The metrics documented for Apex (DESIGN / the deployment issue): the dashboard must
# show each of them that the orchestrator still emits.
DOCUMENTED_METRICS = {
    "apex_queue_depth": "gauge",
    "apex_tasks_running": "gauge",
    "apex_workers_active": "gauge",
    "apex_workers_desired": "gauge",
    "apex_task_attempts_total": "counter",
    "apex_task_duration_seconds": "histogram",
    "apex_runs_submitted_total": "counter",
    "apex_runs_finished_total": "counter",
    "apex_commit_seconds": "histogram",
    "apex_write_retries_total": "counter",
    "apex_dead_letters_total": "counter",
    "apex_stale_reports_total": "counter",
    "apex_runs_in_memory": "gauge",
}
# Series Prometheus makes itself (scrapes) or gets from the blackbox exporter (/readyz).
NON_APEX_SERIES = {
    "up": "scrape health of job apex",
    "scrape_duration_seconds": "duration of the scrape of /metrics",
    "probe_success": "blackbox probe of /readyz",
    "probe_duration_seconds": "blackbox probe of /readyz",
}
FALLBACK_ORCHESTRATOR_ENV = {
    "APEX_BIND",
    "DATABASE_URL",
    "REDIS_URL",
    "APEX_REDIS_PREFIX",
    "APEX_API_TOKEN",
    "APEX_MAX_BODY_BYTES",
    "APEX_MAX_TASKS",
    "APEX_DASHBOARD_DIR",
    "APEX_WORKER_LOST_AFTER_S",
    "APEX_LOG",
}
FALLBACK_WORKER_ENV = {
    "APEX_QUEUES",
    "APEX_CONCURRENCY",
    "APEX_IMPORTS",
    "REDIS_URL",
    "APEX_REDIS_PREFIX",
    "APEX_WORKER_ID",
    "APEX_HEARTBEAT_INTERVAL",
    "APEX_LEASE_INTERVAL",
    "APEX_SHUTDOWN_GRACE",
    "APEX_MAX_OUTPUT_BYTES",
    "APEX_BURST",
    "APEX_LOG_LEVEL",
}
# Not read by the programs: the parts REDIS_URL is built from in the manifests
# (`redis://:$(REDIS_PASSWORD)@$(REDIS_ADDRESS)`); KEDA's redis-streams triggers also
# resolve addressFromEnv: REDIS_ADDRESS from the worker container's environment.
URL_PART_ENV = {"REDIS_PASSWORD", "REDIS_ADDRESS"}
# Seconds a worker needs after its shutdown grace to cancel, report and exit.
MIN_DRAIN_MARGIN_S = 10
WORKER_DEPLOYMENT = "apex-worker"
ORCHESTRATOR_DEPLOYMENT = "apex-orchestrator"
COLLECTOR = "otel-collector"  # deploy/k8s/tracing
CONSUMER_GROUP = "workers"  # worker-protocol/PROTOCOL.md


class Failure(Exception):
    """A check failed; the message says why."""


# --------------------------------------------------------------------------- running


class Report:
    def __init__(self, verbose: bool) -> None:
        self.passed = 0
        self.failed = 0
        self.verbose = verbose

    def run(self, name: str, fn: Callable[[], str | None]) -> None:
        try:
            detail = fn()
        except Failure as e:
            self.failed += 1
            print(f"FAIL {name}: {e}")
        except Exception as e:  # noqa: BLE001 - a bug here must fail loudly, not pass
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            if self.verbose:
                traceback.print_exc()
        else:
            self.passed += 1
            print(f"PASS {name}" + (f" ({detail})" if detail else ""))

    def note(self, text: str) -> None:
        print(f"NOTE {text}")


def rel(p: Path) -> str:
    return str(p.relative_to(DEPLOY))


def yaml_files() -> list[Path]:
    return sorted(
        p
        for p in DEPLOY.rglob("*")
        if p.suffix in {".yml", ".yaml"} and ".venv" not in p.parts and p.is_file()
    )


@functools.cache
def load_docs(path: Path) -> list[Any]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s_docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in yaml_files():
        if DEPLOY / "k8s" not in path.parents:
            continue
        for doc in load_docs(path):
            if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
                yield path, doc


def find(kind: str, name: str | None = None, root: Path | None = None) -> list[dict[str, Any]]:
    out = []
    for path, doc in k8s_docs():
        if root is not None and root not in path.parents:
            continue
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
            out.append(doc)
    return out


def one(kind: str, name: str, root: Path | None = None) -> dict[str, Any]:
    docs = find(kind, name, root)
    if len(docs) != 1:
        raise Failure(f"expected one {kind} {name}, found {len(docs)}")
    return docs[0]


# ------------------------------------------------------------- what Apex really uses


def source_files(pattern: str, under: str) -> list[Path]:
    root = REPO / under
    return sorted(root.rglob(pattern)) if root.is_dir() else []


@functools.cache
def apex_metrics() -> tuple[dict[str, str], str]:
    """Metric name -> kind, from the orchestrator's source when present."""
    found: dict[str, str] = {}
    for path in source_files("*.rs", "orchestrator/src"):
        text = path.read_text()
        for kind, name in re.findall(r'metrics::(counter|gauge|histogram)!\(\s*"(apex_\w+)"', text):
            found[name] = kind
        # api/health.rs sets the queue gauges through a helper: gauge("apex_…", "field").
        for name in re.findall(r'\bgauge\(\s*"(apex_\w+)"', text):
            found[name] = "gauge"
    if found:
        return found, "from orchestrator/src"
    return dict(DOCUMENTED_METRICS), "built-in list (orchestrator/src not found)"


def series_names(metrics: dict[str, str]) -> set[str]:
    names = set(NON_APEX_SERIES)
    for name, kind in metrics.items():
        names.add(name)
        if kind == "histogram":
            # Rendered as a summary today (name{quantile}, _sum, _count); as a histogram
            # (_bucket, _sum, _count) if buckets are ever configured.
            names |= {f"{name}_sum", f"{name}_count", f"{name}_bucket"}
    return names


@functools.cache
def env_names() -> tuple[set[str], set[str], str]:
    orch: set[str] = set()
    for path in source_files("*.rs", "orchestrator/src"):
        text = path.read_text()
        orch |= set(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
        orch |= set(re.findall(r'from_env\(\s*"([A-Z][A-Z0-9_]*)"', text))
    worker: set[str] = set()
    for path in source_files("*.py", "python-workers/apex_worker"):
        worker |= set(re.findall(r'_env\(\s*"([A-Z][A-Z0-9_]*)"', path.read_text()))
    # The standard OpenTelemetry variables each program reads (its telemetry module).
    for path in source_files("*.rs", "orchestrator/src/telemetry"):
        orch |= set(re.findall(r'"(OTEL_[A-Z0-9_]+)"', path.read_text()))
    for path in source_files("telemetry.py", "python-workers/apex_worker"):
        worker |= set(re.findall(r'"(OTEL_[A-Z0-9_]+)"', path.read_text()))
    source = "from the sources"
    if not orch:
        orch, source = set(FALLBACK_ORCHESTRATOR_ENV), "built-in lists"
    if not worker:
        worker, source = set(FALLBACK_WORKER_ENV), "built-in lists"
    return orch, worker, source


PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
    "start",
    "end",
}


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression selects. Good enough for the queries in deploy/: it
    drops strings, label matchers, ranges, grouping clauses, Grafana variables and
    function names, and returns the identifiers left."""
    e = re.sub(r"\$\{?\w+\}?", "0", expr)  # Grafana variables ($__rate_interval, $queue)
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', e)
    e = re.sub(r"\{[^{}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if word.lower() in PROMQL_KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def check_promql(expr: str, where: str) -> set[str]:
    metrics, _ = apex_metrics()
    allowed = series_names(metrics)
    names = promql_metrics(expr)
    if not names:
        raise Failure(f"{where}: no metric found in {expr!r}")
    unknown = names - allowed
    if unknown:
        raise Failure(
            f"{where}: {', '.join(sorted(unknown))} is not a metric Apex emits "
            f"(or a scrape/probe series): {expr!r}"
        )
    return names


def base_metric(series: str) -> str:
    return re.sub(r"_(sum|count|bucket)$", "", series)


# ------------------------------------------------------------------------------ yaml


def check_yaml(r: Report) -> None:
    for path in yaml_files():

        def parse(path: Path = path) -> str:
            try:
                docs = load_docs(path)
            except yaml.YAMLError as e:
                raise Failure(str(e).replace("\n", " ")) from None
            if not docs:
                raise Failure("no YAML document in the file")
            return f"{len(docs)} document{'s' if len(docs) > 1 else ''}"

        r.run(f"yaml: {rel(path)}", parse)


# ------------------------------------------------------------------------ kubernetes

# validate() re-reads ~1 MB of schema definitions per call; read each file once.
kv_utils.schema_contents = functools.cache(kv_utils.schema_contents)


def k8s_validate(doc: dict[str, Any]) -> str:
    versions = []
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.path)
            raise Failure(f"Kubernetes {e.version}: {e.message} at {path or '(root)'}") from None
        except kubernetes_validate.SchemaNotFoundError:
            raise Failure(
                f"no Kubernetes {version} schema for {doc['apiVersion']} {doc['kind']}"
            ) from None
        versions.append(kv_utils.major_minor(version))
    return f"Kubernetes {', '.join(versions)}, strict"


@functools.cache
def keda_validator(kind: str = "ScaledObject") -> jsonschema.Draft202012Validator:
    name = {
        "ScaledObject": "keda-scaledobject",
        "TriggerAuthentication": "keda-triggerauthentication",
    }[kind]
    schema = json.loads((DEPLOY / "schemas" / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def schema_errors(validator: jsonschema.Draft202012Validator, doc: dict[str, Any]) -> None:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        path = "/".join(str(p) for p in e.absolute_path)
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise Failure(f"{e.message} at {path or '(root)'}{more}")


def keda_auth_validate(doc: dict[str, Any]) -> str:
    schema_errors(keda_validator("TriggerAuthentication"), doc)
    refs = [
        (src, ref["parameter"])
        for src in ("secretTargetRef", "configMapTargetRef", "env")
        for ref in doc["spec"].get(src, [])
    ]
    params = [p for _, p in refs]
    if len(params) != len(set(params)):
        raise Failure(f"a parameter is set twice: {params}")
    return f"parameters {', '.join(params)}, schemas/keda-triggerauthentication.schema.json"


def keda_validate(doc: dict[str, Any]) -> str:
    schema_errors(keda_validator(), doc)
    spec = doc["spec"]
    lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if lo > hi:
        raise Failure(f"minReplicaCount {lo} > maxReplicaCount {hi}")
    if "fallback" in spec and spec["fallback"]["replicas"] > hi:
        raise Failure("fallback.replicas exceeds maxReplicaCount")
    names = [t.get("name") for t in spec["triggers"] if t.get("name")]
    if len(names) != len(set(names)):
        raise Failure(f"trigger names repeat: {names}")
    return f"{len(spec['triggers'])} trigger(s), schemas/keda-scaledobject.schema.json"


def validate_object(doc: dict[str, Any]) -> str:
    if doc["kind"] == "ScaledObject":
        return keda_validate(doc)
    if doc["kind"] == "TriggerAuthentication":
        return keda_auth_validate(doc)
    return k8s_validate(doc)


def check_k8s(r: Report) -> None:
    for path, doc in k8s_docs():
        if doc["kind"] in ("Kustomization", "Component"):
            continue  # rendered by the kustomize check
        label = f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
        family = "keda" if doc["kind"] in KEDA_KINDS else "k8s"
        r.run(f"{family}: {rel(path)} {label}", lambda doc=doc: validate_object(doc))

    def strict_rejects_typos() -> str:
        bad = copy.deepcopy(one("Deployment", WORKER_DEPLOYMENT))
        bad["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 150
        try:
            k8s_validate(bad)
        except Failure:
            return "a misspelt field in a Deployment is rejected"
        raise Failure("a Deployment with a misspelt field passed: the check is vacuous")

    r.run("k8s: strict validation catches unknown fields", strict_rejects_typos)

    def keda_rejects_mistakes() -> str:
        good = next(
            (
                d
                for d in find("ScaledObject")
                if any(t["type"] == "redis-streams" for t in d["spec"].get("triggers", []))
            ),
            None,
        )
        if good is None:
            raise Failure("no ScaledObject with a redis-streams trigger to spoil")
        mistakes: dict[str, Callable[[dict[str, Any]], None]] = {
            "number instead of string": lambda d: d["spec"]["triggers"][0]["metadata"].update(
                lagCount=100
            ),
            "misspelt parameter": lambda d: d["spec"]["triggers"][0]["metadata"].update(
                lagcount="100"
            ),
            "lagCount with pendingEntriesCount": lambda d: d["spec"]["triggers"][0][
                "metadata"
            ].update(pendingEntriesCount="5"),
            "no stream": lambda d: d["spec"]["triggers"][0]["metadata"].pop("stream"),
            "no address": lambda d: d["spec"]["triggers"][0]["metadata"].pop("addressFromEnv"),
            "unknown spec field": lambda d: d["spec"].update(maxReplicas=3),
        }
        for what, spoil in mistakes.items():
            bad = copy.deepcopy(good)
            spoil(bad)
            if not list(keda_validator().iter_errors(bad)):
                raise Failure(f"the schema accepts a ScaledObject with {what}")
        auth = one("TriggerAuthentication", "apex-redis")
        auth_mistakes: dict[str, Callable[[dict[str, Any]], None]] = {
            "misspelt source": lambda d: d["spec"].update(
                secretTargetRefs=d["spec"].pop("secretTargetRef")
            ),
            "no key": lambda d: d["spec"]["secretTargetRef"][0].pop("key"),
            "no Secret name": lambda d: d["spec"]["secretTargetRef"][0].pop("name"),
            "unknown field in a reference": lambda d: d["spec"]["secretTargetRef"][0].update(
                secret="apex-redis"
            ),
            "no source at all": lambda d: d.update(spec={}),
        }
        for what, spoil in auth_mistakes.items():
            bad = copy.deepcopy(auth)
            spoil(bad)
            if not list(keda_validator("TriggerAuthentication").iter_errors(bad)):
                raise Failure(f"the schema accepts a TriggerAuthentication with {what}")
        return f"{len(mistakes)} ScaledObject and {len(auth_mistakes)} TriggerAuthentication mistakes rejected"

    r.run("keda: schema rejects known mistakes", keda_rejects_mistakes)


def check_kustomize(r: Report) -> None:
    kubectl = shutil.which("kubectl")
    for kfile in sorted((DEPLOY / "k8s").rglob("kustomization.yaml")):
        kdir = kfile.parent

        def render(kdir: Path = kdir, kfile: Path = kfile) -> str:
            if kubectl is None:
                for res in load_docs(kfile)[0].get("resources", []):
                    if not (kdir / res).exists():
                        raise Failure(f"resource {res} does not exist")
                return "kubectl not installed: resources exist, not rendered"
            with tempfile.TemporaryDirectory() as tmp:
                target = kdir
                if load_docs(kfile)[0].get("kind") == "Component":
                    # A component is applied on top of the default variant, as the
                    # `components:` line in deploy/k8s/kustomization.yaml applies it.
                    top = {
                        "apiVersion": "kustomize.config.k8s.io/v1beta1",
                        "kind": "Kustomization",
                        # kustomize takes no absolute paths.
                        "resources": [os.path.relpath(DEPLOY / "k8s", tmp)],
                        "components": [os.path.relpath(kdir, tmp)],
                    }
                    # What the default variant's own file sets for its components.
                    root = load_docs(DEPLOY / "k8s" / "kustomization.yaml")[0]
                    top |= {k: root[k] for k in ("namespace", "labels") if k in root}
                    (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(top))
                    target = Path(tmp)
                proc = subprocess.run(
                    [kubectl, "kustomize", str(target)],
                    check=False,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
            if proc.returncode != 0:
                raise Failure(proc.stderr.strip() or f"kubectl kustomize exited {proc.returncode}")
            docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
            for doc in docs:
                try:
                    validate_object(doc)
                except Failure as e:
                    raise Failure(
                        f"rendered {doc['kind']}/{doc['metadata']['name']}: {e}"
                    ) from None
                ns = doc["metadata"].get("namespace")
                if doc["kind"] != "Namespace" and ns != "apex":
                    raise Failure(
                        f"{doc['kind']}/{doc['metadata']['name']} is in namespace {ns}, not apex"
                    )
            scalers = [
                d
                for d in docs
                if d["kind"] in {"ScaledObject", "HorizontalPodAutoscaler"}
                and d["spec"]["scaleTargetRef"]["name"] == WORKER_DEPLOYMENT
            ]
            expected = 0 if kdir.name == "base" else 1
            if len(scalers) != expected:
                raise Failure(
                    f"{len(scalers)} autoscalers target {WORKER_DEPLOYMENT}, expected {expected}"
                )
            # The security checks read the kustomizations' files themselves: they must
            # list exactly what kustomize renders.
            listed = {(d["kind"], d["metadata"]["name"]) for d in kustomization_docs(kdir)}
            rendered = {(d["kind"], d["metadata"]["name"]) for d in docs}
            if listed != rendered:
                raise Failure(
                    f"the files list {sorted(listed ^ rendered)} differently from the render"
                )
            for so in (d for d in docs if d["kind"] == "ScaledObject"):
                for t in so["spec"]["triggers"]:
                    ref = t.get("authenticationRef")
                    if (
                        ref
                        and (ref.get("kind", "TriggerAuthentication"), ref["name"]) not in rendered
                    ):
                        raise Failure(
                            f"trigger {t.get('name')}: authenticationRef {ref['name']} is not in this kustomization"
                        )
            if "NetworkPolicy" not in {k for k, _ in rendered}:
                raise Failure("no NetworkPolicy: every variant must include base's")
            kinds = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
            return f"{len(docs)} objects valid: {kinds}"

        r.run(f"kustomize: {rel(kdir)}", render)


# --------------------------------------------------------------------------- compose


def compose_schema() -> dict[str, Any]:
    ref = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(ref.read_text())


def parse_duration(text: str) -> float:
    """Compose/Go duration: 45s, 1m30s, 2m, 1h."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text))
    if not parts or "".join(a + b for a, b in parts) != str(text):
        raise Failure(f"cannot read the duration {text!r}")
    return sum(float(a) * units[b] for a, b in parts)


def check_compose(r: Report) -> None:
    path = DEPLOY / "docker-compose.yml"

    def schema() -> str:
        s = compose_schema()
        validator = jsonschema.validators.validator_for(s)(s)
        errors = list(validator.iter_errors(load_docs(path)[0]))
        if errors:
            # The spec nests schemas deeply: report the most specific (deepest) cause.
            def leaves(e: jsonschema.ValidationError) -> Iterator[jsonschema.ValidationError]:
                yield e
                for c in e.context or []:
                    yield from leaves(c)

            e = max(
                (leaf for err in errors for leaf in leaves(err)), key=lambda x: len(x.absolute_path)
            )
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            raise Failure(f"{e.message} at {where} ({len(errors)} error(s))")
        return "Compose Specification schema from check-jsonschema"

    r.run("compose: docker-compose.yml against the Compose Specification", schema)

    def builds() -> str:
        services = load_docs(path)[0]["services"]
        built = []
        for name, svc in services.items():
            if "build" not in svc:
                continue
            ctx = (path.parent / svc["build"]["context"]).resolve()
            dockerfile = ctx / svc["build"]["dockerfile"]
            if not dockerfile.is_file():
                raise Failure(f"{name}: {dockerfile} does not exist")
            if ctx != REPO:
                raise Failure(f"{name}: build context {ctx} is not the repository root")
            built.append(name)
        for mount_owner, svc in services.items():
            for vol in svc.get("volumes", []):
                src = vol.split(":")[0]
                if src.startswith(".") and not (path.parent / src).exists():
                    raise Failure(f"{mount_owner}: mounted {src} does not exist")
        return f"build contexts and mounted files exist ({', '.join(built)})"

    r.run("compose: builds and mounts", builds)


# ------------------------------------------------------------------------ prometheus


def promtool() -> str | None:
    p = VENV_BIN / "promtool"
    if p.exists():
        return str(p)
    return shutil.which("promtool")


def run_promtool(args: list[str], cwd: Path) -> str:
    tool = promtool()
    assert tool is not None
    proc = subprocess.run(
        [tool, *args], check=False, capture_output=True, text=True, cwd=cwd, timeout=120
    )
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise Failure(" | ".join(line.strip() for line in out.splitlines() if line.strip())[:2000])
    return out


def check_prometheus(r: Report) -> None:
    pdir = DEPLOY / "prometheus"
    rules = pdir / "alerts.yml"

    def rules_schema() -> str:
        schema = json.loads((DEPLOY / "schemas" / "prometheus-rules.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(load_docs(rules)[0]))
        if errors:
            e = errors[0]
            raise Failure(f"{e.message} at {'/'.join(str(p) for p in e.absolute_path)}")
        n = sum(len(g["rules"]) for g in load_docs(rules)[0]["groups"])
        return f"{n} rules, schemas/prometheus-rules.schema.json"

    r.run("prometheus: alerts.yml against the rule-file schema", rules_schema)

    def rule_metrics() -> str:
        seen: set[str] = set()
        names = set()
        for group in load_docs(rules)[0]["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                if name in names:
                    raise Failure(f"rule {name} is defined twice")
                names.add(name)
                seen |= check_promql(rule["expr"], name)
        return f"{len(names)} rules use {len(seen)} known series"

    r.run("promql: alert rules name only metrics Apex emits", rule_metrics)

    if promtool() is None:
        r.note(
            "promtool unavailable (Debian's prometheus package could not be fetched): "
            "rules checked against the schema only"
        )
        return

    r.run(
        "prometheus: promtool check rules alerts.yml",
        lambda: run_promtool(["check", "rules", "alerts.yml"], pdir).splitlines()[-1].strip(),
    )
    r.run(
        "prometheus: promtool test rules alerts.test.yml",
        lambda: run_promtool(["test", "rules", "alerts.test.yml"], pdir).splitlines()[-1].strip(),
    )
    r.run(
        "prometheus: promtool check config prometheus.yml",
        lambda: run_promtool(["check", "config", "prometheus.yml"], pdir).splitlines()[-1].strip(),
    )

    def k8s_config() -> str:
        # Debian builds promtool without Kubernetes service discovery, so check a copy
        # without kubernetes_sd_configs: everything else (relabelling included) is
        # checked as written.
        cfg = load_docs(pdir / "prometheus-kubernetes.yml")[0]
        stripped = copy.deepcopy(cfg)
        had_sd = 0
        for job in stripped["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                had_sd += 1
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "prometheus.yml").write_text(yaml.safe_dump(stripped))
            shutil.copy(rules, Path(tmp) / "alerts.yml")
            run_promtool(["check", "config", "prometheus.yml"], Path(tmp))
        return f"valid; {had_sd} kubernetes_sd_configs block(s) left out for Debian's promtool"

    r.run("prometheus: promtool check config prometheus-kubernetes.yml", k8s_config)


# --------------------------------------------------------------------------- grafana


def check_grafana(r: Report) -> None:
    path = DEPLOY / "grafana" / "apex-dashboard.json"
    state: dict[str, Any] = {}

    def parse() -> str:
        try:
            state["dash"] = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise Failure(str(e)) from None
        return f"{len(state['dash'].get('panels', []))} panels"

    r.run("grafana: apex-dashboard.json parses", parse)
    if "dash" not in state:
        return
    dash = state["dash"]

    def structure() -> str:
        for key in ("uid", "title", "panels", "schemaVersion", "templating"):
            if key not in dash:
                raise Failure(f"no {key!r}")
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        ds = [v for v in variables.values() if v["type"] == "datasource"]
        if len(ds) != 1 or ds[0].get("query") != "prometheus":
            raise Failure("needs exactly one datasource variable of type prometheus")
        ids = set()
        occupied: set[tuple[int, int]] = set()
        for p in dash["panels"]:
            if p["id"] in ids:
                raise Failure(f"panel id {p['id']} repeats")
            ids.add(p["id"])
            g = p["gridPos"]
            if g["x"] < 0 or g["w"] < 1 or g["x"] + g["w"] > 24 or g["h"] < 1:
                raise Failure(f"panel {p['title']!r}: gridPos {g} is off the 24-column grid")
            cells = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            if cells & occupied:
                raise Failure(f"panel {p['title']!r} overlaps another")
            occupied |= cells
            if p["type"] == "row":
                continue
            if not p.get("targets"):
                raise Failure(f"panel {p['title']!r} has no query")
            refs = [t["refId"] for t in p["targets"]]
            if len(refs) != len(set(refs)):
                raise Failure(f"panel {p['title']!r}: refIds repeat")
            for holder in [p, *p["targets"]]:
                uid = holder.get("datasource", {}).get("uid")
                if uid != "${" + ds[0]["name"] + "}":
                    raise Failure(f"panel {p['title']!r} does not use the datasource variable")
            for t in p["targets"]:
                for used in re.findall(r"\$(\w+)", t["expr"]):
                    if not used.startswith("__") and used not in variables:
                        raise Failure(f"panel {p['title']!r} uses undefined variable ${used}")
        return f"{len(ids)} panels, variables: {', '.join(variables)}"

    r.run("grafana: dashboard structure", structure)

    def metrics() -> str:
        metrics, source = apex_metrics()
        used: set[str] = set()
        n = 0
        for p in dash["panels"]:
            for t in p.get("targets", []):
                used |= check_promql(t["expr"], f"panel {p['title']!r}")
                n += 1
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
                m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q)
                if not m:
                    raise Failure(f"variable {v['name']}: unexpected query {q!r}")
                used |= check_promql(m.group(1), f"variable {v['name']}")
        shown = {base_metric(s) for s in used}
        missing = sorted(set(DOCUMENTED_METRICS) & set(metrics) - shown)
        if missing:
            raise Failure(f"no panel shows {', '.join(missing)}")
        extra = sorted(set(metrics) - shown)
        if extra:
            r.note(f"grafana: metrics emitted but not on the dashboard: {', '.join(extra)}")
        gone = sorted(set(DOCUMENTED_METRICS) - set(metrics))
        if gone:
            r.note(f"documented metrics no longer in orchestrator/src: {', '.join(gone)}")
        return f"{n} queries, {len(shown & set(metrics))} Apex metrics, names {source}"

    r.run("grafana: every query names only metrics Apex emits", metrics)

    def provisioning() -> str:
        prov = DEPLOY / "grafana" / "provisioning"
        ds = load_docs(prov / "datasources" / "prometheus.yml")[0]["datasources"]
        if not any(d["type"] == "prometheus" and d.get("isDefault") for d in ds):
            raise Failure("no default Prometheus datasource provisioned")
        providers = load_docs(prov / "dashboards" / "apex.yml")[0]["providers"]
        compose = load_docs(DEPLOY / "docker-compose.yml")[0]["services"]["grafana"]
        mounts = {v.split(":")[1] for v in compose["volumes"]}
        paths = {p["options"]["path"] for p in providers}
        if not any(any(m.startswith(pth + "/") for m in mounts) for pth in paths):
            raise Failure(f"the dashboard is not mounted under a provider path {paths}")
        return "datasource and dashboard provider match the compose mounts"

    r.run("grafana: provisioning for compose", provisioning)


# --------------------------------------------------------------------------- tracing


def collector_problems(conf: dict[str, Any]) -> list[str]:
    """What is wrong with an OTel Collector config: pipelines naming components that
    are not defined, defined ones that no pipeline uses, no traces pipeline."""
    problems = []
    pipelines = conf.get("service", {}).get("pipelines", {})
    if "traces" not in pipelines:
        problems.append("no traces pipeline")
    for section in ("receivers", "processors", "exporters"):
        defined = set(conf.get(section) or {})
        used = {c for p in pipelines.values() for c in p.get(section, [])}
        problems += [f"pipeline uses undefined {section[:-1]} {c}" for c in sorted(used - defined)]
        problems += [f"{section[:-1]} {c} is defined but unused" for c in sorted(defined - used)]
    defined = set(conf.get("extensions") or {})
    for e in conf.get("service", {}).get("extensions", []):
        if e not in defined:
            problems.append(f"undefined extension {e}")
    return problems


def http_port(url: str) -> int:
    m = re.fullmatch(r"https?://[^:/]+:(\d+)/?", url)
    if not m:
        raise Failure(f"{url!r} is not http://host:port")
    return int(m.group(1))


def check_tracing(r: Report) -> None:
    conf_path = DEPLOY / "otel" / "collector.yaml"
    conf = load_docs(conf_path)[0]

    def collector() -> str:
        problems = collector_problems(conf)
        if problems:
            raise Failure("; ".join(problems))
        # The check must be able to fail: a pipeline naming a missing exporter.
        bad = copy.deepcopy(conf)
        bad["service"]["pipelines"]["traces"]["exporters"].append("otlp/nowhere")
        if not collector_problems(bad):
            raise Failure("a pipeline with an undefined exporter passed: the check is vacuous")
        http = conf["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        return f"traces: {conf['service']['pipelines']['traces']}, OTLP/HTTP on {http}"

    r.run("tracing: otel/collector.yaml is a complete collector config", collector)

    def endpoints() -> str:
        listen = int(conf["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1])
        compose = load_docs(DEPLOY / "docker-compose.yml")[0]["services"]
        svc = compose[COLLECTOR]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        config_arg = next(a for a in svc["command"] if a.startswith("--config="))
        mounted = mounts.get(config_arg.split("=", 1)[1])
        if mounted is None or (DEPLOY / mounted).resolve() != conf_path:
            raise Failure(f"compose {COLLECTOR} does not run with {rel(conf_path)}")
        for name in ("orchestrator", "worker"):
            value = compose[name]["environment"].get("OTEL_EXPORTER_OTLP_ENDPOINT")
            if value != "${OTEL_EXPORTER_OTLP_ENDPOINT:-}":
                raise Failure(f"compose {name}: OTEL_EXPORTER_OTLP_ENDPOINT must pass the shell's, empty by default")
        documented = re.findall(r"OTEL_EXPORTER_OTLP_ENDPOINT=(\S+)", (DEPLOY / "docker-compose.yml").read_text())
        for url in documented:
            if not url.startswith(f"http://{COLLECTOR}:") or http_port(url) != listen:
                raise Failure(f"compose documents {url}, but the collector listens on {COLLECTOR}:{listen}")
        # Tempo receives what the collector forwards.
        tempo = load_docs(DEPLOY / "otel" / "tempo.yaml")[0]
        grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        backend = svc["environment"]["TRACES_BACKEND_ENDPOINT"]
        if backend != f"tempo:{grpc.rsplit(':', 1)[1]}" or "tempo" not in compose:
            raise Failure(f"the collector forwards to {backend}; Tempo receives OTLP/gRPC on {grpc}")
        # Kubernetes: the same config, and the endpoint Apex is given is the Service's.
        kdocs = kustomization_docs(DEPLOY / "k8s" / "tracing")
        cm = named(kdocs, "ConfigMap", COLLECTOR)
        if cm["data"]["config.yaml"] != conf_path.read_text():
            raise Failure(f"ConfigMap {COLLECTOR} differs from {rel(conf_path)}")
        patches = load_docs(DEPLOY / "k8s" / "tracing" / "kustomization.yaml")[0]["patches"]
        ops = [op for p in patches for op in yaml.safe_load(p["patch"])]
        url = next(o["value"] for o in ops if o["path"] == "/data/OTEL_EXPORTER_OTLP_ENDPOINT")
        svc_k8s = named(kdocs, "Service", COLLECTOR)
        host = re.match(r"https?://([^:/.]+)", url)
        if not host or host.group(1) != svc_k8s["metadata"]["name"]:
            raise Failure(f"k8s: {url} does not name Service {COLLECTOR}")
        port = next((p for p in svc_k8s["spec"]["ports"] if p["port"] == http_port(url)), None)
        if port is None:
            raise Failure(f"k8s: Service {COLLECTOR} has no port {http_port(url)}")
        dep = named(kdocs, "Deployment", COLLECTOR)
        c = dep["spec"]["template"]["spec"]["containers"][0]
        target = next(p["containerPort"] for p in c["ports"] if p["name"] == port["targetPort"])
        if target != listen:
            raise Failure(f"k8s: Service {COLLECTOR} targets {target}, the receiver listens on {listen}")
        for name in (ORCHESTRATOR_DEPLOYMENT, WORKER_DEPLOYMENT):
            env = {e["name"]: e for e in container(named(kdocs, "Deployment", name))["env"]}
            ref = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", {}).get("valueFrom", {}).get("configMapKeyRef", {})
            if ref.get("name") != "apex-config" or ref.get("key") != "OTEL_EXPORTER_OTLP_ENDPOINT" or not ref.get("optional"):
                raise Failure(f"k8s {name}: OTEL_EXPORTER_OTLP_ENDPOINT must come from apex-config, optional")
        return f"compose and k8s send to the collector on {listen}; it forwards to Tempo on {grpc}"

    r.run("tracing: compose and Kubernetes wire Apex to the collector", endpoints)

    def trace_link() -> str:
        ds = load_docs(DEPLOY / "grafana" / "provisioning" / "datasources" / "tempo.yml")[0]
        tempo = [d for d in ds["datasources"] if d["type"] == "tempo"]
        if len(tempo) != 1:
            raise Failure("no Tempo datasource provisioned")
        compose_tempo = load_docs(DEPLOY / "otel" / "tempo.yaml")[0]["server"]["http_listen_port"]
        if tempo[0]["url"] != f"http://tempo:{compose_tempo}":
            raise Failure(f"the Tempo datasource points at {tempo[0]['url']}")
        dash = json.loads((DEPLOY / "grafana" / "apex-dashboard.json").read_text())
        links = [link for link in dash.get("links", []) if "/explore" in link.get("url", "")]
        if not links:
            raise Failure("the dashboard has no trace link")
        panes = json.loads(
            urllib.parse.unquote(
                urllib.parse.parse_qs(urllib.parse.urlsplit(links[0]["url"]).query)["panes"][0]
            )
        )
        (pane,) = panes.values()
        if pane["datasource"] != tempo[0]["uid"]:
            raise Failure(f"the link opens datasource {pane['datasource']}, not Tempo")
        query = pane["queries"][0]["query"]
        variables = {v["name"] for v in dash["templating"]["list"]}
        used = re.findall(r"\$\{(\w+)", query)
        if not used or not set(used) <= variables:
            raise Failure(f"the trace query {query!r} uses no dashboard variable")
        attr = re.search(r"span\.([\w.]+)", query)
        emitted = " ".join(p.read_text() for p in source_files("*.rs", "orchestrator/src/telemetry"))
        if not attr or f'"{attr.group(1)}"' not in emitted:
            raise Failure(f"the trace query names an attribute the orchestrator does not set: {query!r}")
        return f"{links[0]['title']!r} opens Tempo on {query}"

    r.run("tracing: Grafana's trace link opens the provisioned Tempo", trace_link)


# ---------------------------------------------------------------------------- docker


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def check_docker(r: Report) -> None:
    hadolint = VENV_BIN / "hadolint"
    for name in ("Dockerfile.orchestrator", "Dockerfile.worker"):
        path = DEPLOY / name

        def lint(path: Path = path) -> str:
            if not hadolint.exists():
                raise Failure("hadolint is not installed in deploy/.venv (run validate.sh)")
            proc = subprocess.run(
                [
                    str(hadolint),
                    "--no-color",
                    "--config",
                    str(DEPLOY / ".hadolint.yaml"),
                    str(path),
                ],
                check=False,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if proc.returncode != 0:
                raise Failure((proc.stdout + proc.stderr).strip().replace("\n", " | "))
            return "hadolint clean"

        r.run(f"docker: hadolint {name}", lint)

        def rules(path: Path = path) -> str:
            ins = dockerfile_instructions(path)
            stages = {
                m.group(1)
                for w, a in ins
                if w == "FROM"
                for m in [re.search(r"\bAS\s+(\S+)", a, re.IGNORECASE)]
                if m
            }
            entry = [a for w, a in ins if w == "ENTRYPOINT"]
            if not entry or not entry[-1].startswith("["):
                raise Failure(
                    "ENTRYPOINT must use the exec form so the process is PID 1 and gets SIGTERM"
                )
            users = [a for w, a in ins if w == "USER"]
            if not users or users[-1].split(":")[0] in {"root", "0"}:
                raise Failure("the image must end with a non-root USER")
            ignore = path.with_name(path.name + ".dockerignore")
            ignored = (
                {ln.strip() for ln in ignore.read_text().splitlines()} if ignore.exists() else set()
            )
            for must in ("target", "**/node_modules", ".git"):
                if must not in ignored:
                    raise Failure(f"{ignore.name} must exclude {must}")
            copied = 0
            for w, a in ins:
                if w not in {"COPY", "ADD"}:
                    continue
                args = [x for x in a.split() if not x.startswith("--")]
                if "--from=" in a:
                    src_stage = re.search(r"--from=(\S+)", a).group(1)
                    if src_stage not in stages:
                        raise Failure(f"COPY --from={src_stage}: no such stage")
                    continue
                for src in args[:-1]:
                    if not (REPO / src).exists():
                        raise Failure(f"COPY {src}: not in the build context (the repository root)")
                    copied += 1
            return f"exec-form ENTRYPOINT, USER {users[-1]}, {copied} COPY sources present"

        r.run(f"docker: {name} conventions", rules)

    def orchestrator_image() -> str:
        ins = dockerfile_instructions(DEPLOY / "Dockerfile.orchestrator")
        env = " ".join(a for w, a in ins if w == "ENV")
        # The dashboard is compiled into the binary (orchestrator/src/api/dashboard.rs
        # embeds dashboard/dist): its build must be in place before cargo runs.
        copied = next(
            (
                i
                for i, (w, a) in enumerate(ins)
                if w == "COPY" and "--from=" in a and a.split()[-1] == "dashboard/dist"
            ),
            None,
        )
        built = next((i for i, (w, a) in enumerate(ins) if w == "RUN" and "cargo build" in a), None)
        if copied is None or built is None or copied > built:
            raise Failure(
                "the dashboard build must be copied to dashboard/dist before `cargo build`"
            )
        if "APEX_BIND=0.0.0.0:" not in env:
            raise Failure("a container must bind 0.0.0.0 (the binary defaults to 127.0.0.1)")
        cmd = [a for w, a in ins if w == "CMD"]
        entry = [a for w, a in ins if w == "ENTRYPOINT"]
        if (
            not entry
            or not cmd
            or not entry[-1].startswith("[")
            or not cmd[-1].startswith("[")
            or json.loads(entry[-1]) != ["apex"]
            or json.loads(cmd[-1]) != ["serve"]
        ):
            raise Failure("must run `apex serve`")
        return "runs `apex serve`, dashboard/dist in place before cargo build (embedded), binds 0.0.0.0"

    r.run("docker: orchestrator image settings", orchestrator_image)

    def worker_image() -> str:
        ins = dockerfile_instructions(DEPLOY / "Dockerfile.worker")
        froms = [a for w, a in ins if w == "FROM"]
        if not froms[-1].startswith("python:3.11-slim"):
            raise Failure("the worker image must be python:3.11-slim")
        runs = " ".join(a for w, a in ins if w == "RUN")
        extras = re.search(r"python-workers\[([a-z,]+)\]", runs)
        if not extras or not {"fast", "otel"} <= set(extras.group(1).split(",")):
            raise Failure("must pip install python-workers[fast,otel]")
        entry = [a for w, a in ins if w == "ENTRYPOINT"]
        if not entry or not entry[-1].startswith("[") or json.loads(entry[-1]) != ["apex-worker"]:
            raise Failure("ENTRYPOINT must be apex-worker")
        return "python:3.11-slim, python-workers[fast,otel], ENTRYPOINT apex-worker"

    r.run("docker: worker image settings", worker_image)


# ---------------------------------------------------------------------- consistency


def container(deploy: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    cs = deploy["spec"]["template"]["spec"]["containers"]
    return cs[0] if name is None else next(c for c in cs if c["name"] == name)


def resolve_env(c: dict[str, Any]) -> dict[str, str | None]:
    """Env of a container; values from the ConfigMap resolved, secrets as None."""
    out: dict[str, str | None] = {}
    for e in c.get("env", []):
        if "value" in e:
            out[e["name"]] = str(e["value"])
        elif "configMapKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["configMapKeyRef"]
            cm = one("ConfigMap", ref["name"])
            if ref["key"] not in cm["data"] and ref.get("optional"):
                continue  # Kubernetes leaves the variable unset
            if ref["key"] not in cm["data"]:
                raise Failure(f"ConfigMap {ref['name']} has no key {ref['key']}")
            out[e["name"]] = cm["data"][ref["key"]]
        else:
            out[e["name"]] = None
    return out


def check_consistency(r: Report) -> None:
    orch_env, worker_env, env_source = env_names()
    compose = load_docs(DEPLOY / "docker-compose.yml")[0]["services"]

    def drain_k8s() -> str:
        w = one("Deployment", WORKER_DEPLOYMENT)
        env = resolve_env(container(w))
        grace = float(env.get("APEX_SHUTDOWN_GRACE") or 30)
        term = w["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        if term < grace + MIN_DRAIN_MARGIN_S:
            raise Failure(
                f"terminationGracePeriodSeconds {term} must exceed APEX_SHUTDOWN_GRACE {grace:g} "
                f"by at least {MIN_DRAIN_MARGIN_S} s, or scale-downs kill workers mid-task"
            )
        if "replicas" in w["spec"]:
            raise Failure("the worker Deployment sets replicas, which fights the autoscaler")
        return f"terminationGracePeriodSeconds {term} > APEX_SHUTDOWN_GRACE {grace:g} + {MIN_DRAIN_MARGIN_S}"

    r.run("consistency: k8s workers drain before SIGKILL", drain_k8s)

    def drain_compose() -> str:
        w = compose["worker"]
        grace = float(w["environment"].get("APEX_SHUTDOWN_GRACE", 30))
        stop = parse_duration(w.get("stop_grace_period", "10s"))
        if stop < grace + MIN_DRAIN_MARGIN_S:
            raise Failure(
                f"stop_grace_period {stop:g}s must exceed APEX_SHUTDOWN_GRACE {grace:g} "
                f"by at least {MIN_DRAIN_MARGIN_S} s"
            )
        replicas = w.get("deploy", {}).get("replicas")
        if replicas != 2:
            raise Failure(f"worker replicas {replicas}, expected 2")
        return f"stop_grace_period {stop:g}s > APEX_SHUTDOWN_GRACE {grace:g} + {MIN_DRAIN_MARGIN_S}, 2 replicas"

    r.run("consistency: compose workers drain before SIGKILL", drain_compose)

    def env_names_used() -> str:
        problems = []
        for path, doc in k8s_docs():
            if doc["kind"] != "Deployment":
                continue
            name = doc["metadata"]["name"]
            if name not in {ORCHESTRATOR_DEPLOYMENT, WORKER_DEPLOYMENT}:
                continue  # not an Apex program (Redis)
            allowed = (orch_env if name == ORCHESTRATOR_DEPLOYMENT else worker_env) | URL_PART_ENV
            for c in doc["spec"]["template"]["spec"]["containers"]:
                env = c.get("env", [])
                for i, e in enumerate(env):
                    if e["name"] not in allowed:
                        problems.append(f"{rel(path)} {c['name']}: {e['name']}")
                    elif e["name"] in URL_PART_ENV and not any(
                        f"$({e['name']})" in str(later.get("value", "")) for later in env[i + 1 :]
                    ):
                        problems.append(
                            f"{rel(path)} {c['name']}: {e['name']} (only there to build another "
                            "variable, and no later one uses $(" + e["name"] + "))"
                        )
        for svc, allowed in (("orchestrator", orch_env), ("worker", worker_env)):
            for name in compose[svc]["environment"]:
                if name not in allowed:
                    problems.append(f"docker-compose.yml {svc}: {name}")
        if problems:
            raise Failure("environment variables the program does not read: " + "; ".join(problems))
        return f"every APEX_*/DATABASE_URL/REDIS_URL name is one the program reads ({env_source}); REDIS_PASSWORD/REDIS_ADDRESS only build REDIS_URL"

    r.run("consistency: environment variable names", env_names_used)

    def redis_settings() -> str:
        cm = one("ConfigMap", "apex-config")["data"]
        if not re.fullmatch(r"[a-z0-9.-]+:\d+", cm.get("REDIS_ADDRESS", "")):
            raise Failure(f"REDIS_ADDRESS must be host:port, not {cm.get('REDIS_ADDRESS')!r}")
        if "REDIS_URL" in cm:
            raise Failure(
                "REDIS_URL in the ConfigMap: it is built in each Deployment from the Secret"
            )
        urls = {}
        for name in (ORCHESTRATOR_DEPLOYMENT, WORKER_DEPLOYMENT):
            env = resolve_env(container(one("Deployment", name)))
            urls[name] = next(
                (
                    e.get("value")
                    for e in container(one("Deployment", name))["env"]
                    if e["name"] == "REDIS_URL"
                ),
                None,
            )
            if env.get("REDIS_ADDRESS") != cm["REDIS_ADDRESS"]:
                raise Failure(f"{name}: REDIS_ADDRESS does not come from the ConfigMap")
        if len(set(urls.values())) != 1:
            raise Failure(f"the orchestrator and the workers build REDIS_URL differently: {urls}")
        if (
            compose["worker"]["environment"]["REDIS_URL"]
            != compose["orchestrator"]["environment"]["REDIS_URL"]
        ):
            raise Failure("compose: orchestrator and workers use different REDIS_URLs")
        prefixes = {
            compose[s]["environment"]["APEX_REDIS_PREFIX"] for s in ("orchestrator", "worker")
        }
        if len(prefixes) != 1:
            raise Failure(f"compose: different APEX_REDIS_PREFIX values {prefixes}")
        return f"k8s: both build REDIS_URL from REDIS_ADDRESS {cm['REDIS_ADDRESS']}; compose services agree"

    r.run("consistency: Redis settings agree", redis_settings)

    def autoscalers() -> str:
        w = one("Deployment", WORKER_DEPLOYMENT)
        env = resolve_env(container(w))
        prefix = one("ConfigMap", "apex-config")["data"]["APEX_REDIS_PREFIX"]
        queues = [q.strip() for q in (env.get("APEX_QUEUES") or "default").split(",")]
        concurrency = int(env.get("APEX_CONCURRENCY") or 200)
        streams = {f"{prefix}:queue:{q}" for q in queues}
        checked = 0
        for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
            for so in find(kind):
                name = so["metadata"]["name"]
                if so["spec"]["scaleTargetRef"]["name"] != WORKER_DEPLOYMENT:
                    raise Failure(f"{kind} {name} targets {so['spec']['scaleTargetRef']['name']}")
                for t in so["spec"].get("triggers", []):
                    md = t["metadata"]
                    if t["type"] == "redis-streams":
                        if md["stream"] not in streams:
                            raise Failure(
                                f"{name}/{t.get('name')}: stream {md['stream']} is not one the workers read {sorted(streams)}"
                            )
                        if md.get("consumerGroup") != CONSUMER_GROUP:
                            raise Failure(
                                f"{name}/{t.get('name')}: consumerGroup must be {CONSUMER_GROUP!r}"
                            )
                        env_ref = md.get("addressFromEnv")
                        if env_ref and env_ref not in env:
                            raise Failure(
                                f"{name}/{t.get('name')}: addressFromEnv {env_ref} is not in the worker's env"
                            )
                        if (
                            "pendingEntriesCount" in md
                            and int(md["pendingEntriesCount"]) >= concurrency
                        ):
                            raise Failure(
                                f"{name}/{t.get('name')}: pendingEntriesCount {md['pendingEntriesCount']} "
                                f"must be below APEX_CONCURRENCY {concurrency}"
                            )
                    elif t["type"] == "prometheus":
                        check_promql(md["query"], f"{name}/{t.get('name')}")
                        qs = set(re.findall(r'queue="([^"]+)"', md["query"]))
                        if not qs or not qs <= set(queues):
                            raise Failure(
                                f"{name}: query selects queues {qs}, workers serve {queues}"
                            )
                    checked += 1
                for metric in so["spec"].get("metrics", []):
                    ext = metric["external"]["metric"]
                    check_promql(ext["name"], f"{kind} {name}")
                    q = ext.get("selector", {}).get("matchLabels", {}).get("queue")
                    if q not in queues:
                        raise Failure(f"{kind} {name}: selects queue {q}, workers serve {queues}")
                    checked += 1
        adapter = load_docs(
            DEPLOY / "k8s" / "alternatives" / "hpa" / "prometheus-adapter-rules.yaml"
        )[0]
        for rule in adapter["rules"]["external"]:
            check_promql(rule["seriesQuery"], "prometheus-adapter seriesQuery")
            if rule["name"]["as"] not in {
                m["external"]["metric"]["name"]
                for h in find("HorizontalPodAutoscaler")
                for m in h["spec"]["metrics"]
            }:
                raise Failure(f"prometheus-adapter exposes {rule['name']['as']}, which no HPA uses")
            checked += 1
        return f"{checked} triggers/metrics: stream {', '.join(sorted(streams))}, group {CONSUMER_GROUP}, target {WORKER_DEPLOYMENT}"

    r.run("consistency: autoscalers watch the workers' queue", autoscalers)

    def orchestrator() -> str:
        d = one("Deployment", ORCHESTRATOR_DEPLOYMENT)
        if d["spec"].get("replicas") != 1:
            raise Failure("one orchestrator is active at a time: replicas must be 1")
        if d["spec"].get("strategy", {}).get("type") != "Recreate":
            raise Failure("strategy must be Recreate, so an update never runs two orchestrators")
        c = container(d)
        env = resolve_env(c)
        bind_port = int((env.get("APEX_BIND") or "127.0.0.1:8080").rsplit(":", 1)[1])
        if not (env.get("APEX_BIND") or "").startswith("0.0.0.0:"):
            raise Failure("APEX_BIND must listen on 0.0.0.0 in a pod")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        if bind_port not in ports.values():
            raise Failure(f"APEX_BIND port {bind_port} is not a containerPort {ports}")
        probes = {k: c[k]["httpGet"]["path"] for k in ("readinessProbe", "livenessProbe")}
        if probes != {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}:
            raise Failure(f"probes must be readiness /readyz and liveness /healthz, not {probes}")
        for k in ("readinessProbe", "livenessProbe", "startupProbe"):
            port = c.get(k, {}).get("httpGet", {}).get("port")
            if port is not None and port not in ports and port not in ports.values():
                raise Failure(f"{k} uses port {port}, not one of the container's {ports}")
        secret_keys = set(one("Secret", "apex-secrets")["stringData"])
        for e in c["env"]:
            if e["name"] in {"DATABASE_URL", "APEX_API_TOKEN"}:
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    raise Failure(f"{e['name']} must come from a Secret, not a literal")
                if ref["key"] not in secret_keys:
                    raise Failure(f"{e['name']}: secret.example.yaml has no key {ref['key']}")
        svc = one("Service", ORCHESTRATOR_DEPLOYMENT)
        labels = d["spec"]["template"]["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
            raise Failure("the Service selector does not match the orchestrator's pods")
        if any(labels.get(k) != v for k, v in d["spec"]["selector"]["matchLabels"].items()):
            raise Failure("the Deployment selector does not match its own pods")
        for p in svc["spec"]["ports"]:
            if p["targetPort"] not in ports and p["targetPort"] not in ports.values():
                raise Failure(f"Service targetPort {p['targetPort']} is not a container port")
        w = one("Deployment", WORKER_DEPLOYMENT)
        wl = w["spec"]["template"]["metadata"]["labels"]
        if any(wl.get(k) != v for k, v in w["spec"]["selector"]["matchLabels"].items()):
            raise Failure("the worker Deployment selector does not match its own pods")
        return "1 replica, Recreate, /readyz + /healthz on the bound port, secrets from apex-secrets, selectors match"

    r.run("consistency: orchestrator Deployment and Service", orchestrator)

    def compose_orchestrator() -> str:
        o = compose["orchestrator"]
        env = o["environment"]
        port = env["APEX_BIND"].rsplit(":", 1)[1]
        if not env["APEX_BIND"].startswith("0.0.0.0:"):
            raise Failure("APEX_BIND must listen on 0.0.0.0 in a container")
        if not any(str(p).endswith(f":{port}") for p in o["ports"]):
            raise Failure(f"no published port maps to APEX_BIND's {port}")
        for p in [*o["ports"], *(s for svc in compose.values() for s in svc.get("ports", []))]:
            if not str(p).startswith("127.0.0.1:"):
                raise Failure(f"published port {p} is not bound to 127.0.0.1")
        test = " ".join(o["healthcheck"]["test"])
        if f"127.0.0.1:{port}/readyz" not in test:
            raise Failure("the orchestrator's healthcheck must call /readyz")
        if "postgres://" not in env["DATABASE_URL"] or "@postgres:" not in env["DATABASE_URL"]:
            raise Failure("DATABASE_URL must point at the postgres service")
        if not str(env.get("APEX_API_TOKEN") or "").startswith("${APEX_API_TOKEN:?"):
            raise Failure("APEX_API_TOKEN must be required from the shell (${APEX_API_TOKEN:?...})")
        deps = o.get("depends_on", {})
        for s in ("postgres", "redis"):
            if deps.get(s, {}).get("condition") != "service_healthy":
                raise Failure(f"the orchestrator must wait for {s} to be healthy")
        return f"healthcheck /readyz on :{port}, ports on 127.0.0.1, waits for postgres and redis"

    r.run("consistency: compose orchestrator", compose_orchestrator)

    def scrape_jobs() -> str:
        wanted: set[str] = set()
        for group in load_docs(DEPLOY / "prometheus" / "alerts.yml")[0]["groups"]:
            for rule in group["rules"]:
                wanted |= set(re.findall(r'job="([^"]+)"', rule["expr"]))
        dash = json.loads((DEPLOY / "grafana" / "apex-dashboard.json").read_text())
        for p in dash["panels"]:
            for t in p.get("targets", []):
                wanted |= set(re.findall(r'job="([^"]+)"', t["expr"]))
        for name in ("prometheus.yml", "prometheus-kubernetes.yml"):
            cfg = load_docs(DEPLOY / "prometheus" / name)[0]
            have = {j["job_name"] for j in cfg["scrape_configs"]}
            if wanted - have:
                raise Failure(f"{name} has no scrape job {', '.join(sorted(wanted - have))}")
            if "alerts.yml" not in cfg.get("rule_files", []):
                raise Failure(f"{name} does not load alerts.yml")
        static = load_docs(DEPLOY / "prometheus" / "prometheus.yml")[0]["scrape_configs"]
        port = compose["orchestrator"]["environment"]["APEX_BIND"].rsplit(":", 1)[1]
        targets = {t for j in static for sc in j.get("static_configs", []) for t in sc["targets"]}
        if (
            f"orchestrator:{port}" not in targets
            or f"http://orchestrator:{port}/readyz" not in targets
        ):
            raise Failure(f"prometheus.yml must scrape orchestrator:{port} and probe its /readyz")
        return f"jobs {', '.join(sorted(wanted))} defined in both Prometheus configs"

    r.run("consistency: Prometheus jobs used by alerts and dashboard", scrape_jobs)


# -------------------------------------------------------------------------- security
#
# Redis is not a trusted channel (DESIGN.md, "Trust boundaries"): it must require a
# password everywhere, every client must send one that comes from a secret, and only the
# services that use Redis (and Postgres) may reach them.

# KEDA's redis-streams scaler: the parameters a TriggerAuthentication may set.
REDIS_AUTH_PARAMS = {"username", "password", "tls", "ca", "cert", "key", "keyPassword"}
# The namespace KEDA's operator runs in (Helm chart and release manifests).
KEDA_NAMESPACE = "keda"
# Pods a NetworkPolicy may select although Apex does not deploy them: you bring Postgres.
EXTERNAL_PODS = {"postgres": {"app.kubernetes.io/name": "postgres"}}
# Only the server needs the password in the clear; these are the checks' own values.
LIVE_PASSWORD = "apex-validate-0123456789abcdef"
WRONG_PASSWORD = "apex-validate-wrong-0123456789"

REF_RE = re.compile(r"\$\{[^}]*\}|\$\([A-Za-z_][A-Za-z0-9_]*\)")
# A Redis URL inside a string; a Compose ${VAR:?message} inside it may hold spaces.
REDIS_URL_RE = re.compile(r"rediss?://(?:\$\{[^}]*\}|[^\s\"'])*")


def walk_strings(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_strings(v, (*path, i))


def redis_url_parts(url: str) -> dict[str, str | None]:
    """user, password, host, port of a redis:// URL whose parts may be ${…} (Compose) or
    $(…) (Kubernetes) references; the references are kept as written."""
    refs: list[str] = []

    def mask(m: re.Match[str]) -> str:
        refs.append(m.group(0))
        return f"\x00{len(refs) - 1}\x00"

    masked = REF_RE.sub(mask, url)
    m = re.fullmatch(
        r"(rediss?)://(?:([^:@/]*)(?::([^@/]*))?@)?([^:/@]+)(?::([^/]+))?(?:/(\d+))?/?", masked
    )
    if not m:
        raise Failure(f"cannot read the Redis URL {url!r}")

    def unmask(text: str | None) -> str | None:
        if text is None:
            return None
        return re.sub(r"\x00(\d+)\x00", lambda x: refs[int(x.group(1))], text)

    return {
        "scheme": m.group(1),
        "user": unmask(m.group(2)),
        "password": unmask(m.group(3)),
        "host": unmask(m.group(4)),
        "port": unmask(m.group(5)),
    }


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of command, args and env values: `$$` is a literal `$`,
    `$(NAME)` is replaced when NAME is defined (for env, earlier in the list), anything
    else stays as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            j = text.find(")", i + 2)
            if j != -1:
                name = text[i + 2 : j]
                out.append(env[name] if name in env else text[i : j + 1])
                i = j + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


COMPOSE_VAR_RE = re.compile(
    r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


def compose_refs(text: str) -> list[tuple[str, str | None]]:
    """(variable, operator) of every interpolation in a Compose string; `$$` is none."""
    return [
        (m.group(2) or m.group(5), m.group(3))
        for m in COMPOSE_VAR_RE.finditer(text)
        if not m.group(1)
    ]


def compose_interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name, op, arg = m.group(2) or m.group(5), m.group(3), m.group(4)
        val = env.get(name)
        unset = val is None or (op is not None and op.startswith(":") and val == "")
        if op in (":?", "?") and unset:
            raise Failure(f"Compose would stop: {arg}")
        if op in (":-", "-") and unset:
            return arg or ""
        return val or ""

    return COMPOSE_VAR_RE.sub(sub, text)


def kustomization_docs(kdir: Path) -> list[dict[str, Any]]:
    """The objects a kustomization lists, read from its files (the kustomize check
    compares them with what `kubectl kustomize` renders)."""
    out: list[dict[str, Any]] = []
    k = load_docs(kdir / "kustomization.yaml")[0]
    if k.get("kind") == "Component":
        # A component is rendered on top of the default variant (see render_target).
        out += kustomization_docs(DEPLOY / "k8s")
    for res in k.get("resources", []):
        path = (kdir / res).resolve()
        if path.is_dir():
            out += kustomization_docs(path)
        else:
            out += [d for d in load_docs(path) if isinstance(d, dict) and "kind" in d]
    return out


def variants() -> list[Path]:
    """Every kustomization that deploys Apex (base is part of each)."""
    return sorted(
        k.parent for k in (DEPLOY / "k8s").rglob("kustomization.yaml") if k.parent.name != "base"
    )


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    if len(found) != 1:
        raise Failure(f"expected one {kind} {name}, found {len(found)}")
    return found[0]


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], set(e.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_groups(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployment name -> pod template (plus the pods Apex expects you to bring)."""
    groups = {d["metadata"]["name"]: d["spec"]["template"] for d in of_kind(docs, "Deployment")}
    for name, labels in EXTERNAL_PODS.items():
        groups.setdefault(name, {"metadata": {"labels": labels}, "spec": {"containers": []}})
    return groups


def secret_env(c: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Env name -> (Secret, key) for a container's secretKeyRef variables."""
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def secret_files(pod: dict[str, Any], c: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """File path -> (Secret, key) for the Secret volumes a container mounts."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    out = {}
    for m in c.get("volumeMounts", []):
        sec = volumes.get(m["name"], {}).get("secret")
        if not sec:
            continue
        items = sec.get("items")
        if items is None:
            # Every key of the Secret, as a file of the same name.
            keys = secret_example_keys().get(sec["secretName"], set())
            items = [{"key": k, "path": k} for k in keys]
        for it in items:
            out[f"{m['mountPath'].rstrip('/')}/{it['path']}"] = (sec["secretName"], it["key"])
    return out


@functools.cache
def secret_example_keys() -> dict[str, set[str]]:
    path = DEPLOY / "k8s" / "base" / "secret.example.yaml"
    return {
        d["metadata"]["name"]: set(d.get("stringData", {})) | set(d.get("data", {}))
        for d in load_docs(path)
        if d.get("kind") == "Secret"
    }


def resolved_env(
    c: dict[str, Any], cm: dict[str, str], secrets: dict[tuple[str, str], str]
) -> dict[str, str]:
    """A container's environment as Kubernetes builds it, in order."""
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = k8s_expand(str(e["value"]), env)
        elif "configMapKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["configMapKeyRef"]
            if ref["key"] in cm or not ref.get("optional"):
                env[e["name"]] = cm[ref["key"]]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets.get(
                (ref["name"], ref["key"]), f"secret-{ref['name']}-{ref['key']}"
            )
    return env


def redis_server_k8s(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Follow REDIS_ADDRESS to the Service, its pods and the container serving the port;
    return what starts it and where its password comes from."""
    cm = named(docs, "ConfigMap", "apex-config")["data"]
    host, _, port = cm["REDIS_ADDRESS"].rpartition(":")
    svc = named(docs, "Service", host.split(".")[0])
    sport = next((p for p in svc["spec"]["ports"] if str(p["port"]) == port), None)
    if sport is None:
        raise Failure(f"Service {svc['metadata']['name']} has no port {port} (REDIS_ADDRESS)")
    deps = [
        d
        for d in of_kind(docs, "Deployment")
        if selector_matches(
            {"matchLabels": svc["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"]
        )
    ]
    if len(deps) != 1:
        raise Failure(
            f"Service {svc['metadata']['name']} selects {len(deps)} Deployments, expected 1 (Redis)"
        )
    dep = deps[0]
    pod = dep["spec"]["template"]
    target = sport.get("targetPort", sport["port"])
    for c in pod["spec"]["containers"]:
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if target in ports or target in ports.values():
            cport = ports[target] if target in ports else target
            return {"deployment": dep, "pod": pod, "container": c, "port": cport, "service": svc}
    raise Failure(f"no container of Deployment {dep['metadata']['name']} serves port {target}")


def password_source_k8s(
    text: str, pod: dict[str, Any], c: dict[str, Any]
) -> tuple[str, str] | None:
    """The (Secret, key) a script reads the password from: a mounted file, or an env var
    from a secretKeyRef (`$(VAR)`, `$VAR`, `${VAR}`)."""
    for path, ref in secret_files(pod, c).items():
        if path in text:
            return ref
    for name, ref in secret_env(c).items():
        if re.search(rf"\$\(?{name}\b|\$\{{{name}\}}", text):
            return ref
    return None


def compose_secret_paths(svc: dict[str, Any]) -> dict[str, str]:
    """File path -> secret name for a Compose service's secrets."""
    out = {}
    for s in svc.get("secrets", []):
        source, target = (s, None) if isinstance(s, str) else (s["source"], s.get("target"))
        target = target or source
        out[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    return out


def compose_networks(svc: dict[str, Any]) -> set[str]:
    nets = svc.get("networks")
    if not nets:
        return {"default"}
    return set(nets) if isinstance(nets, (list, dict)) else {str(nets)}


def as_text(cmd: Any) -> str:
    return cmd if isinstance(cmd, str) else " ".join(str(x) for x in cmd)


# ---------------------------------------------------------- a real Redis, when installed


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resp(port: int, *commands: list[str]) -> list[str]:
    """Send commands to 127.0.0.1:port over one connection; the first line of each reply."""
    import socket

    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        f = s.makefile("rb")
        for cmd in commands:
            s.sendall(
                f"*{len(cmd)}\r\n".encode()
                + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in cmd)
            )
            out.append(f.readline().decode().rstrip("\r\n"))
    return out


def url_login(url: str, port: int) -> list[str]:
    """AUTH the way redis-py and redis-rs do for this URL (user:password, or password
    alone when the user is empty), then PING."""
    parts = redis_url_parts(url)
    from urllib.parse import unquote

    cmds: list[list[str]] = []
    if parts["password"] is not None:
        user, pw = unquote(parts["user"] or ""), unquote(parts["password"])
        cmds.append(["AUTH", user, pw] if user else ["AUTH", pw])
    cmds.append(["PING"])
    return resp(port, *cmds)


class LiveRedis:
    """Runs a Redis start-up script from the deploy files against the real redis-server,
    on a free loopback port: shims on PATH add --port/--bind (and -p for redis-cli),
    stand in for the image's entrypoint, and record the arguments redis-server gets."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.argv_log = tmp / "redis-server.argv"
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        (self.bin / "redis-server").write_text(
            f'#!/bin/sh\nprintf "%s\\n" "$@" > "{self.argv_log}"\n'
            f'exec "{server}" "$@" --port {self.port} --bind 127.0.0.1\n'
        )
        (self.bin / "redis-cli").write_text(f'#!/bin/sh\nexec "{cli}" -p {self.port} "$@"\n')
        (self.bin / "docker-entrypoint.sh").write_text('#!/bin/sh\nexec "$@"\n')
        for f in self.bin.iterdir():
            f.chmod(0o755)
        self.env = {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp)}

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        import socket
        import time

        proc = subprocess.Popen(
            argv,
            env=self.env,
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return proc
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return proc
            except OSError:
                time.sleep(0.05)
        proc.kill()
        raise Failure("Redis did not start listening within 10 s")

    def run(self, argv: list[str]) -> int:
        return subprocess.run(
            argv,
            env=self.env,
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        ).returncode


def exercise_redis(
    what: str,
    start: Callable[[Path], list[str]],
    probes: Callable[[Path], list[list[str]]],
    password_file: str,
    url: Callable[[str], str],
) -> str:
    """Start Redis the way `what` does with a password in a file, and check: it refuses
    a client without the password, accepts the clients' REDIS_URL, its health probes
    pass, fail with a wrong password, and the password is not in redis-server's
    arguments; a missing, short or unsafe password stops it from starting at all."""
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        live = LiveRedis(tmp)
        secret = tmp / "secret" / password_file.lstrip("/")
        secret.parent.mkdir(parents=True)
        for bad in ("", "short-password", "has space and é 0123456789", "pass@word/0123456789"):
            secret.write_text(bad)
            proc = live.start(start(tmp / "secret"))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                raise Failure(f"{what}: Redis started with the password {bad!r}; it must refuse it")
            if proc.returncode == 0:
                raise Failure(f"{what}: the start-up exited 0 with the password {bad!r}")
        secret.write_text(LIVE_PASSWORD)
        proc = live.start(start(tmp / "secret"))
        try:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise Failure(f"{what}: Redis exited {proc.returncode}: {out.strip()[-500:]}")
            anon = resp(live.port, ["PING"])[0]
            if not anon.startswith("-NOAUTH"):
                raise Failure(f"{what}: a client without the password got {anon!r}, not NOAUTH")
            replies = url_login(url(LIVE_PASSWORD), live.port)
            if replies[-1] != "+PONG":
                raise Failure(f"{what}: the clients' REDIS_URL does not log in: {replies}")
            argv = live.argv_log.read_text()
            if LIVE_PASSWORD in argv:
                raise Failure(f"{what}: the password is in redis-server's arguments (ps shows it)")
            checks = probes(tmp / "secret")
            if not checks:
                raise Failure(f"{what}: no health probe")
            for argv_ in checks:
                if live.run(argv_) != 0:
                    raise Failure(
                        f"{what}: the health probe fails against a healthy Redis: {argv_}"
                    )
            secret.write_text(WRONG_PASSWORD)
            for argv_ in checks:
                if live.run(argv_) == 0:
                    raise Failure(f"{what}: the health probe passes with a wrong password: {argv_}")
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        return f"NOAUTH without it, REDIS_URL logs in, {len(checks)} probe(s) pass, fail when wrong, not in argv; 4 bad passwords refused"


def check_security(r: Report) -> None:
    compose_doc = load_docs(DEPLOY / "docker-compose.yml")[0]
    compose = compose_doc["services"]
    state: dict[str, Any] = {}

    def compose_password_var() -> str:
        url = compose["orchestrator"]["environment"]["REDIS_URL"]
        refs = compose_refs(redis_url_parts(url)["password"] or "")
        if len(refs) != 1:
            raise Failure(f"compose REDIS_URL {url!r}: the password must be one variable")
        return refs[0][0]

    # -- every Redis URL carries credentials from a secret ------------------------------
    def urls_have_credentials() -> str:
        seen = 0
        required: dict[str, int] = {}
        for path in yaml_files():
            for doc in load_docs(path):
                for where, text in walk_strings(doc):
                    for m in REDIS_URL_RE.finditer(text):
                        url = m.group(0)
                        label = f"{rel(path)} {'/'.join(map(str, where))}"
                        parts = redis_url_parts(url)
                        pw = parts["password"]
                        if not pw:
                            raise Failure(f"{label}: {url!r} has no password")
                        seen += 1
                        if path.name == "docker-compose.yml":
                            refs = compose_refs(pw)
                            if len(refs) != 1 or REF_RE.fullmatch(pw) is None:
                                raise Failure(
                                    f"{label}: the password must be one ${{VAR:?…}}, not a literal in git"
                                )
                            var, op = refs[0]
                            if op != ":?":
                                raise Failure(
                                    f"{label}: ${{{var}}} must be required (${{{var}:?message}}) so Compose "
                                    "refuses to start without it"
                                )
                            required[var] = required.get(var, 0) + 1
                        else:
                            m2 = re.fullmatch(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", pw)
                            if not m2:
                                raise Failure(
                                    f"{label}: the password must be $(VAR) from a Secret, not a literal in git"
                                )
                            # Only a container's env is expanded, and only from earlier entries.
                            if not (
                                isinstance(doc, dict)
                                and doc.get("kind") == "Deployment"
                                and where[:5]
                                == ("spec", "template", "spec", "containers", where[4])
                                and where[5:6] == ("env",)
                                and where[7:] == ("value",)
                            ):
                                raise Failure(
                                    f"{label}: $(…) is expanded only in a container's env"
                                )
                            c = doc["spec"]["template"]["spec"]["containers"][where[4]]
                            before = c["env"][: where[6]]
                            src = {e["name"]: e for e in before}.get(m2.group(1))
                            if src is None:
                                raise Failure(
                                    f"{label}: {m2.group(1)} is not declared before {c['env'][where[6]]['name']}, "
                                    "so Kubernetes leaves $(…) as written"
                                )
                            ref = src.get("valueFrom", {}).get("secretKeyRef")
                            if not ref:
                                raise Failure(f"{label}: {m2.group(1)} must come from a Secret")
                            if ref["key"] not in secret_example_keys().get(ref["name"], set()):
                                raise Failure(
                                    f"{label}: secret.example.yaml has no Secret {ref['name']} key {ref['key']}"
                                )
        # The clients must be there to be checked.
        for svc in ("orchestrator", "worker"):
            if "REDIS_URL" not in compose[svc].get("environment", {}):
                raise Failure(f"compose {svc} has no REDIS_URL")
        for name in (ORCHESTRATOR_DEPLOYMENT, WORKER_DEPLOYMENT):
            if "REDIS_URL" not in {
                e["name"] for e in container(one("Deployment", name)).get("env", [])
            }:
                raise Failure(f"Deployment {name} has no REDIS_URL")
        return f"{seen} Redis URLs, passwords from ${{{', '.join(sorted(required))}:?…}} (compose) and Secrets (k8s)"

    r.run("security: every Redis URL carries credentials from a secret", urls_have_credentials)

    # -- compose: Redis requires the password, kept out of docker inspect ---------------
    def compose_redis() -> str:
        var = compose_password_var()
        host = redis_url_parts(compose["orchestrator"]["environment"]["REDIS_URL"])["host"]
        svc = compose.get(host)
        if svc is None:
            raise Failure(f"REDIS_URL names host {host}, which is no service")
        files = compose_secret_paths(svc)
        sources = compose_doc.get("secrets", {})
        file_ = next(
            (p for p, s in files.items() if sources.get(s, {}).get("environment") == var), None
        )
        if file_ is None:
            raise Failure(
                f"the {host} service mounts no secret made from ${var} (top-level secrets: "
                f"`environment: {var}`): the server would not know the clients' password"
            )
        command = as_text(svc.get("command", ""))
        if "requirepass" not in command or file_ not in command:
            raise Failure(f"the {host} service's command must set requirepass from {file_}")
        test = as_text(svc.get("healthcheck", {}).get("test", ""))
        if file_ not in test or "PONG" not in test:
            raise Failure(
                f"the {host} healthcheck must authenticate (read {file_}) and expect PONG: "
                "redis-cli exits 0 on NOAUTH"
            )
        for where, text in walk_strings(svc):
            if any(name == var for name, _ in compose_refs(text)):
                raise Failure(
                    f"{host} {'/'.join(map(str, where))} interpolates ${var}: it would show in docker inspect"
                )
        for p in svc.get("ports", []):
            if not str(p).startswith("127.0.0.1:"):
                raise Failure(f"{host} publishes {p} beyond loopback")
        state["compose_redis"] = (host, svc, file_, var)
        return f"requirepass from {file_} (secret from ${var}), authenticated healthcheck, not published"

    r.run("security: compose Redis requires the password", compose_redis)

    # -- compose: only the services that use them reach Postgres and Redis --------------
    def compose_isolation() -> str:
        nets = compose_doc.get("networks", {})
        out = []
        for target, allowed in (
            ("postgres", {"orchestrator"}),
            ("redis", {"orchestrator", "worker"}),
        ):
            mine = compose_networks(compose[target])
            reach = {
                s for s, svc in compose.items() if s != target and compose_networks(svc) & mine
            }
            if reach != allowed:
                raise Failure(
                    f"{target} is reachable from {sorted(reach)}, expected only {sorted(allowed)} "
                    "(give it a network of its own)"
                )
            for n in mine:
                if not (nets.get(n) or {}).get("internal"):
                    raise Failure(f"network {n} of {target} must be internal: true")
            if compose[target].get("ports"):
                raise Failure(f"{target} must not publish ports")
            out.append(f"{target} <- {', '.join(sorted(allowed))}")
        return "; ".join(out) + " (internal networks, nothing published)"

    r.run("security: compose networks isolate Postgres and Redis", compose_isolation)

    # -- k8s: Redis requires the password from the Secret --------------------------------
    def k8s_redis() -> str:
        docs = kustomization_docs(DEPLOY / "k8s" / "base")
        srv = redis_server_k8s(docs)
        c, pod = srv["container"], srv["pod"]
        script = k8s_expand(as_text([*c.get("command", []), *c.get("args", [])]), {})
        if "requirepass" not in script:
            raise Failure(
                f"Deployment {srv['deployment']['metadata']['name']} starts Redis without requirepass"
            )
        src = password_source_k8s(script, pod, c)
        if src is None:
            raise Failure(
                "requirepass must come from a Secret (a mounted file or a secretKeyRef env var)"
            )
        if src[1] not in secret_example_keys().get(src[0], set()):
            raise Failure(f"secret.example.yaml has no Secret {src[0]} key {src[1]}")
        if re.search(r"--requirepass\s+(?!\S*\$)\S+", script):
            raise Failure("a literal password in the manifest's args")
        for probe in ("readinessProbe", "livenessProbe"):
            cmd = as_text(c.get(probe, {}).get("exec", {}).get("command", []))
            if "PONG" not in cmd or password_source_k8s(cmd, pod, c) != src:
                raise Failure(f"{probe} must authenticate from {src[0]}/{src[1]} and expect PONG")
        # The clients use the same Secret and key.
        for name in (ORCHESTRATOR_DEPLOYMENT, WORKER_DEPLOYMENT):
            cc = container(named(docs, "Deployment", name))
            url = next(e["value"] for e in cc["env"] if e["name"] == "REDIS_URL")
            var = re.fullmatch(r"\$\(([A-Za-z_]\w*)\)", redis_url_parts(url)["password"] or "")
            if not var or secret_env(cc).get(var.group(1)) != src:
                raise Failure(
                    f"{name}: REDIS_URL's password is not {src[0]}/{src[1]}, the one Redis requires"
                )
        state["k8s_redis"] = (srv, src)
        return (
            f"Deployment {srv['deployment']['metadata']['name']}: requirepass from Secret "
            f"{src[0]}/{src[1]}, authenticated probes; orchestrator and workers use the same key"
        )

    r.run("security: k8s Redis requires the password from the Secret", k8s_redis)

    # -- k8s: the address KEDA and the clients use ----------------------------------------
    def k8s_redis_address() -> str:
        docs = kustomization_docs(DEPLOY / "k8s" / "base")
        ns = load_docs(DEPLOY / "k8s" / "base" / "kustomization.yaml")[0]["namespace"]
        srv = redis_server_k8s(docs)
        cm = named(docs, "ConfigMap", "apex-config")["data"]
        host = cm["REDIS_ADDRESS"].rpartition(":")[0]
        svc = srv["service"]["metadata"]["name"]
        if host not in {f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local"}:
            raise Failure(
                f"REDIS_ADDRESS host {host} must be {svc}.{ns}.svc: KEDA's operator resolves it "
                f"from namespace {KEDA_NAMESPACE}"
            )
        secrets = {("apex-redis", "password"): LIVE_PASSWORD}
        for name in (ORCHESTRATOR_DEPLOYMENT, WORKER_DEPLOYMENT):
            env = resolved_env(container(named(docs, "Deployment", name)), cm, secrets)
            parts = redis_url_parts(env.get("REDIS_URL", ""))
            if f"{parts['host']}:{parts['port'] or 6379}" != cm["REDIS_ADDRESS"]:
                raise Failure(
                    f"{name}: REDIS_URL expands to host {parts['host']}, not REDIS_ADDRESS"
                )
            if "$(" in env["REDIS_URL"]:
                raise Failure(
                    f"{name}: REDIS_URL keeps an unexpanded reference: {env['REDIS_URL']}"
                )
        return (
            f"REDIS_ADDRESS {cm['REDIS_ADDRESS']}: Service {svc} in {ns}; REDIS_URL expands to it"
        )

    r.run("security: k8s REDIS_URL and REDIS_ADDRESS name the Redis Service", k8s_redis_address)

    # -- KEDA authenticates from the same Secret ------------------------------------------
    def keda_auth() -> str:
        if "k8s_redis" not in state:
            raise Failure("needs the k8s Redis check to pass first")
        _, src = state["k8s_redis"]
        checked = 0
        for kdir in variants():
            docs = kustomization_docs(kdir)
            for so in of_kind(docs, "ScaledObject"):
                for t in so["spec"]["triggers"]:
                    if not t["type"].startswith("redis"):
                        continue
                    where = f"{rel(kdir)}: {so['metadata']['name']}/{t.get('name')}"
                    md = t["metadata"]
                    if "password" in md:
                        raise Failure(f"{where}: a literal password in the trigger")
                    ref = t.get("authenticationRef")
                    if not ref:
                        raise Failure(
                            f"{where}: no authenticationRef, so KEDA reads Redis without the password"
                        )
                    kind = ref.get("kind", "TriggerAuthentication")
                    if kind != "TriggerAuthentication":
                        raise Failure(
                            f"{where}: authenticationRef kind {kind}; expected a TriggerAuthentication here"
                        )
                    auth = named(docs, kind, ref["name"])
                    params = {
                        x["parameter"]: (x["name"], x["key"])
                        for x in auth["spec"].get("secretTargetRef", [])
                    }
                    unknown = set(params) - REDIS_AUTH_PARAMS
                    if unknown:
                        raise Failure(
                            f"{where}: {sorted(unknown)} are not redis-streams authentication parameters"
                        )
                    if params.get("password") != src:
                        raise Failure(
                            f"{where}: TriggerAuthentication {ref['name']} gives password from "
                            f"{params.get('password')}, Redis requires {src}"
                        )
                    checked += 1
        if not checked:
            raise Failure("no redis-streams trigger found")
        return (
            f"{checked} redis-streams triggers -> TriggerAuthentication -> Secret {src[0]}/{src[1]}"
        )

    r.run("security: KEDA's redis-streams triggers authenticate from the Secret", keda_auth)

    # -- NetworkPolicies, evaluated per variant --------------------------------------------
    def network_policies() -> str:
        summary = []
        for kdir in [DEPLOY / "k8s" / "base", *variants()]:
            docs = kustomization_docs(kdir)
            label = rel(kdir)
            groups = pod_groups(docs)
            policies = of_kind(docs, "NetworkPolicy")
            names = [p["metadata"]["name"] for p in policies]
            if len(names) != len(set(names)):
                raise Failure(f"{label}: NetworkPolicy names repeat: {names}")
            if not any(
                p["spec"].get("podSelector") in ({}, None)
                and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                and not p["spec"].get("ingress")
                for p in policies
            ):
                raise Failure(
                    f"{label}: no default-deny-ingress policy (podSelector {{}}, no rules)"
                )

            def matching(
                selector: dict[str, Any], groups: dict[str, dict[str, Any]] = groups
            ) -> set[str]:
                return {
                    g
                    for g, pod in groups.items()
                    if selector_matches(selector, pod["metadata"].get("labels", {}))
                }

            def port_of(
                group: str, port: Any, groups: dict[str, Any] = groups, label: str = label
            ) -> Any:
                if isinstance(port, int):
                    return port
                for c in groups[group]["spec"]["containers"]:
                    for p in c.get("ports", []):
                        if p.get("name") == port:
                            return p["containerPort"]
                raise Failure(f"{label}: named port {port!r} is not a port of {group}'s pods")

            allowed: dict[str, set[tuple[str, Any]]] = {g: set() for g in groups}
            for p in policies:
                spec = p["spec"]
                if "Ingress" not in spec.get("policyTypes", ["Ingress"]):
                    continue
                targets = matching(spec.get("podSelector") or {})
                if not targets:
                    raise Failure(f"{label}: NetworkPolicy {p['metadata']['name']} selects no pods")
                for rule in spec.get("ingress", []):
                    peers: set[str] = set()
                    for peer in rule.get("from") or [{}]:
                        if not peer:
                            peers.add("anyone")
                        elif "ipBlock" in peer:
                            peers.add(f"ip {peer['ipBlock']['cidr']}")
                        elif "namespaceSelector" in peer:
                            nsl = peer["namespaceSelector"].get("matchLabels", {})
                            ns = nsl.get(
                                "kubernetes.io/metadata.name", json.dumps(peer["namespaceSelector"])
                            )
                            pods = (
                                f" pods {json.dumps(peer['podSelector'])}"
                                if "podSelector" in peer
                                else ""
                            )
                            peers.add(f"namespace {ns}{pods}")
                        else:
                            found = matching(peer["podSelector"])
                            if not found - set(EXTERNAL_PODS):
                                raise Failure(
                                    f"{label}: NetworkPolicy {p['metadata']['name']} admits pods "
                                    f"{peer['podSelector']}, which no Deployment has"
                                )
                            peers |= found
                    for g in targets:
                        ports = [pp.get("port", "*") for pp in rule.get("ports") or [{}]]
                        allowed[g] |= {
                            (peer, port_of(g, port) if port != "*" else "*")
                            for peer in peers
                            for port in ports
                        }

            srv = redis_server_k8s(docs)
            redis_name = srv["deployment"]["metadata"]["name"]
            svc = named(docs, "Service", ORCHESTRATOR_DEPLOYMENT)
            api_port = port_of(ORCHESTRATOR_DEPLOYMENT, svc["spec"]["ports"][0]["targetPort"])
            db = re.search(
                r"@[^:/]+:(\d+)/",
                load_docs(DEPLOY / "k8s" / "base" / "secret.example.yaml")[0]["stringData"][
                    "database-url"
                ],
            )
            db_port = int(db.group(1)) if db else 5432
            keda = any(
                t["type"].startswith("redis")
                for so in of_kind(docs, "ScaledObject")
                for t in so["spec"]["triggers"]
            )
            expected: dict[str, set[tuple[str, Any]]] = {
                redis_name: {
                    (ORCHESTRATOR_DEPLOYMENT, srv["port"]),
                    (WORKER_DEPLOYMENT, srv["port"]),
                }
                | ({(f"namespace {KEDA_NAMESPACE}", srv["port"])} if keda else set()),
                "postgres": {(ORCHESTRATOR_DEPLOYMENT, db_port)},
                ORCHESTRATOR_DEPLOYMENT: {("anyone", api_port)},
                WORKER_DEPLOYMENT: set(),
            }
            if COLLECTOR in groups:
                # The tracing variant: spans from Apex's two programs, nothing else.
                otlp = port_of(COLLECTOR, "otlp-http")
                expected[COLLECTOR] = {(ORCHESTRATOR_DEPLOYMENT, otlp), (WORKER_DEPLOYMENT, otlp)}
            for g in groups:
                want = expected.get(g, set())
                if allowed[g] != want:
                    got = ", ".join(f"{a}:{b}" for a, b in sorted(allowed[g], key=str)) or "nobody"
                    exp = ", ".join(f"{a}:{b}" for a, b in sorted(want, key=str)) or "nobody"
                    raise Failure(f"{label}: {g} admits {got}; expected {exp}")
            summary.append(f"{label}: {len(policies)} policies")
        return (
            "redis <- orchestrator, workers (+ KEDA's namespace with the redis-streams triggers); "
            f"postgres <- orchestrator; orchestrator <- anyone on its API port; workers <- nobody; "
            f"{COLLECTOR} <- orchestrator, workers ({'; '.join(summary)})"
        )

    r.run("security: NetworkPolicies admit only what each pod needs", network_policies)

    # -- a real Redis, started as the deploy files start it --------------------------------
    if not (shutil.which("redis-server") and shutil.which("redis-cli") and shutil.which("sh")):
        r.note("redis-server/redis-cli not installed: the Redis start-up scripts were not run")
        return

    def live_compose() -> str:
        if "compose_redis" not in state:
            raise Failure("needs the compose Redis check to pass first")
        host, svc, file_, var = state["compose_redis"]
        cmd = svc["command"]
        argv = [
            compose_interpolate(a, {})
            for a in (cmd if isinstance(cmd, list) else ["sh", "-c", cmd])
        ]
        test = svc["healthcheck"]["test"]
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        if test[0] == "CMD-SHELL":
            probe = ["sh", "-c", compose_interpolate(test[1], {})]
        else:
            probe = [compose_interpolate(a, {}) for a in test[1:]]
        url = compose["orchestrator"]["environment"]["REDIS_URL"]

        def at(root: Path, args: list[str]) -> list[str]:
            return [a.replace(file_, str(root / file_.lstrip("/"))) for a in args]

        return exercise_redis(
            "compose",
            lambda root: at(root, argv),
            lambda root: [at(root, probe)],
            file_,
            lambda pw: compose_interpolate(url, {var: pw}),
        )

    r.run("security: compose Redis start-up, run with the real redis-server", live_compose)

    def live_k8s() -> str:
        if "k8s_redis" not in state:
            raise Failure("needs the k8s Redis check to pass first")
        srv, src = state["k8s_redis"]
        c, pod = srv["container"], srv["pod"]
        files = {p: ref for p, ref in secret_files(pod, c).items() if ref == src}
        if not files:
            raise Failure("the live run needs the password as a mounted file")
        file_ = next(iter(files))
        env = {e["name"]: str(e["value"]) for e in c.get("env", []) if "value" in e}
        argv = [k8s_expand(a, env) for a in [*c.get("command", []), *c.get("args", [])]]
        probes = [
            c[p]["exec"]["command"]
            for p in ("readinessProbe", "livenessProbe")
            if "exec" in c.get(p, {})
        ]
        docs = kustomization_docs(DEPLOY / "k8s" / "base")
        cm = named(docs, "ConfigMap", "apex-config")["data"]
        orch = container(named(docs, "Deployment", ORCHESTRATOR_DEPLOYMENT))

        def at(root: Path, args: list[str]) -> list[str]:
            return [a.replace(file_, str(root / file_.lstrip("/"))) for a in args]

        return exercise_redis(
            "k8s",
            lambda root: at(root, argv),
            lambda root: [at(root, p) for p in probes],
            file_,
            lambda pw: resolved_env(orch, cm, {src: pw})["REDIS_URL"],
        )

    r.run("security: k8s Redis start-up and probes, run with the real redis-server", live_k8s)


# ------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="tracebacks for unexpected errors")
    args = ap.parse_args()
    r = Report(args.verbose)
    metrics, source = apex_metrics()
    r.note(f"{len(metrics)} Apex metrics {source}; Kubernetes schemas {', '.join(KUBE_VERSIONS)}")
    for section in (
        check_yaml,
        check_k8s,
        check_kustomize,
        check_compose,
        check_prometheus,
        check_grafana,
        check_tracing,
        check_docker,
        check_consistency,
        check_security,
    ):
        try:
            section(r)
        except Exception as e:  # noqa: BLE001 - a section that cannot start is one failure
            r.failed += 1
            print(f"FAIL {section.__name__}: {type(e).__name__}: {e}")
            if args.verbose:
                traceback.print_exc()
    print(f"{r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
