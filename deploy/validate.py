#!/usr/bin/env python3
"""Offline validation of everything in deploy/. Run through deploy/validate.sh, which
installs the tools first (into deploy/.venv); nothing here uses the network.

What is checked, each a PASS or FAIL line:
  yaml        every YAML file parses
  k8s         every Kubernetes object against the Kubernetes OpenAPI schemas shipped in
              the kubernetes-validate package (strict: unknown fields fail), for the
              oldest and newest Kubernetes versions in KUBE_VERSIONS
  keda        every KEDA ScaledObject against schemas/keda-scaledobject.schema.json
  kustomize   every kustomization renders (`kubectl kustomize`, when kubectl is
              installed) and what it renders passes the k8s and keda checks
  compose     docker-compose.yml against the Compose Specification schema shipped in
              the check-jsonschema package
  prometheus  alert rules against schemas/prometheus-rules.schema.json, and with
              promtool (from Debian's prometheus package): check rules, the unit tests
              in alerts.test.yml, check config
  grafana     the dashboard's structure, its variables, and that its queries name only
              metrics Apex emits, covering every documented one
  promql      the same metric-name check for alert rules, KEDA and adapter queries
  docker      hadolint on both Dockerfiles, plus: exec-form ENTRYPOINT, non-root USER,
              every COPY source present in the build context
  consistency what must agree across files: worker grace periods, stream and group
              names, queue names, env variable names, probes, ports, selectors

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
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
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
# Not read by the worker: KEDA's redis-streams trigger resolves addressFromEnv from the
# worker container's environment.
KEDA_HELPER_ENV = {"REDIS_ADDRESS"}
# Seconds a worker needs after its shutdown grace to cancel, report and exit.
MIN_DRAIN_MARGIN_S = 10
WORKER_DEPLOYMENT = "apex-worker"
ORCHESTRATOR_DEPLOYMENT = "apex-orchestrator"
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
def keda_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((DEPLOY / "schemas" / "keda-scaledobject.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def keda_validate(doc: dict[str, Any]) -> str:
    errors = sorted(keda_validator().iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        path = "/".join(str(p) for p in e.absolute_path)
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise Failure(f"{e.message} at {path or '(root)'}{more}")
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
    return k8s_validate(doc)


def check_k8s(r: Report) -> None:
    for path, doc in k8s_docs():
        if doc["kind"] == "Kustomization":
            continue  # rendered by the kustomize check
        label = f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
        family = "keda" if doc["kind"] == "ScaledObject" else "k8s"
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
            d
            for d in find("ScaledObject")
            if any(t["type"] == "redis-streams" for t in d["spec"]["triggers"])
        )
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
        return f"{len(mistakes)} kinds of mistake rejected"

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
            proc = subprocess.run(
                [kubectl, "kustomize", str(kdir)],
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
        if "APEX_DASHBOARD_DIR=/app/dashboard/dist" not in env:
            raise Failure("APEX_DASHBOARD_DIR must point at /app/dashboard/dist")
        if not any(w == "COPY" and a.endswith("/app/dashboard/dist") for w, a in ins):
            raise Failure("the dashboard build is not copied to /app/dashboard/dist")
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
        return "runs `apex serve`, serves /app/dashboard/dist, binds 0.0.0.0"

    r.run("docker: orchestrator image settings", orchestrator_image)

    def worker_image() -> str:
        ins = dockerfile_instructions(DEPLOY / "Dockerfile.worker")
        froms = [a for w, a in ins if w == "FROM"]
        if not froms[-1].startswith("python:3.11-slim"):
            raise Failure("the worker image must be python:3.11-slim")
        runs = " ".join(a for w, a in ins if w == "RUN")
        if "python-workers[fast]" not in runs:
            raise Failure("must pip install python-workers[fast]")
        entry = [a for w, a in ins if w == "ENTRYPOINT"]
        if not entry or not entry[-1].startswith("[") or json.loads(entry[-1]) != ["apex-worker"]:
            raise Failure("ENTRYPOINT must be apex-worker")
        return "python:3.11-slim, python-workers[fast], ENTRYPOINT apex-worker"

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
            allowed = (
                orch_env
                if doc["metadata"]["name"] == ORCHESTRATOR_DEPLOYMENT
                else worker_env | KEDA_HELPER_ENV
            )
            for c in doc["spec"]["template"]["spec"]["containers"]:
                for e in c.get("env", []):
                    if e["name"] not in allowed:
                        problems.append(f"{rel(path)} {c['name']}: {e['name']}")
        for svc, allowed in (("orchestrator", orch_env), ("worker", worker_env)):
            for name in compose[svc]["environment"]:
                if name not in allowed:
                    problems.append(f"docker-compose.yml {svc}: {name}")
        if problems:
            raise Failure("environment variables the program does not read: " + "; ".join(problems))
        return f"every APEX_*/DATABASE_URL/REDIS_URL name is one the program reads ({env_source})"

    r.run("consistency: environment variable names", env_names_used)

    def redis_settings() -> str:
        cm = one("ConfigMap", "apex-config")["data"]
        m = re.fullmatch(r"rediss?://(?:[^@/]*@)?([^:/]+)(?::(\d+))?(?:/\d+)?", cm["REDIS_URL"])
        if not m:
            raise Failure(f"cannot read REDIS_URL {cm['REDIS_URL']!r}")
        hostport = f"{m.group(1)}:{m.group(2) or 6379}"
        if cm["REDIS_ADDRESS"] != hostport:
            raise Failure(f"REDIS_ADDRESS {cm['REDIS_ADDRESS']} is not REDIS_URL's {hostport}")
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
        return f"REDIS_ADDRESS {hostport} matches REDIS_URL; compose services agree"

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
        check_docker,
        check_consistency,
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
