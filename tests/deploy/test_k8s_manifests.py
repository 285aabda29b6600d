"""deploy/k8s/*.yaml: valid against the Kubernetes schemas (offline, kubernetes-validate bundles them) and
consistent with the app, the image and each other: probe paths the app serves, the port it listens on,
a grace period that covers the drain, settings that exist, selectors that select."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import kubernetes_validate
import pytest
import yaml
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import ServerFactory

from streamer.config import Settings
from streamer.guards.admission import AdmissionLimits

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# Kubernetes versions the manifests must validate against: an older supported one and the newest bundled
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
# `streamer serve` waits this long past STREAMER_DRAIN_TIMEOUT_S for handlers to finish (streamer/cli.py)
SHUTDOWN_MARGIN_S = 5


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


DOCS = _documents()


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in DOCS if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _streamer_container() -> dict[str, Any]:
    containers = _one("Deployment", "streamer")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "streamer")


def _environment() -> dict[str, str]:
    """What the streamer container sees: its ConfigMap, its Secret, then its own env entries."""
    container = _streamer_container()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_one("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update(_one("Secret", source["secretRef"]["name"])["stringData"])
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


def _setting_names() -> set[str]:
    # dataclass today; pydantic-settings keeps the field names (and so the variable names)
    model_fields: dict[str, Any] | None = getattr(Settings, "model_fields", None)
    if model_fields is not None:
        return set(model_fields)
    return {f.name for f in dataclasses.fields(Settings)}  # type: ignore[arg-type]


def test_there_are_manifests() -> None:
    kinds = {d["kind"] for _, d in DOCS}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
    assert {"ConfigMap", "Secret", "StatefulSet"} <= kinds


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("source", "doc"), DOCS, ids=[f"{f}:{d['kind']}" for f, d in DOCS])
def test_manifest_is_valid_kubernetes(source: str, doc: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{source}: {doc['kind']} {doc['metadata']['name']} is invalid for {version}: {e}")


def test_the_validator_rejects_a_broken_manifest() -> None:
    # the check above can fail: a misspelt field in a copy of the Deployment is refused
    broken = yaml.safe_load(yaml.safe_dump(_one("Deployment", "streamer")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_every_streamer_variable_is_a_setting() -> None:
    names = _setting_names()
    unknown = [k for k in _environment() if k.startswith("STREAMER_") and k[9:].lower() not in names]
    assert not unknown, f"not settings of streamer.config: {unknown}"


def test_ports_match_the_image_and_the_app() -> None:
    container = _streamer_container()
    env = _environment()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    dockerfile = (ROOT / "Dockerfile").read_text()
    image_port = re.search(r"STREAMER_PORT=(\d+)", dockerfile)
    assert image_port is not None
    assert ports["http"] == int(env["STREAMER_PORT"]) == int(image_port.group(1))
    assert f"EXPOSE {ports['http']}" in dockerfile
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in (ports["http"], "http"), probe
    service = _one("Service", "streamer")
    assert service["spec"]["ports"][0]["targetPort"] in (ports["http"], "http")
    # the image runs as this user; the pod must not ask for another
    user = re.search(r"^USER (\d+)", dockerfile, re.MULTILINE)
    assert user is not None
    spec = _one("Deployment", "streamer")["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsUser"] == int(user.group(1))


async def test_probes_and_autoscaling_metric_are_what_the_app_serves(make_server: ServerFactory) -> None:
    container = _streamer_container()
    server: TestServer = await make_server(asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:

        async def status(path: str) -> int:
            async with http.get(server.make_url(path)) as r:
                return r.status

        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert await status(container[probe]["httpGet"]["path"]) == 200, probe
        async with http.get(server.make_url("/metrics")) as r:
            exposition = await r.text()
    hpa = _one("HorizontalPodAutoscaler", "streamer")
    for entry in hpa["spec"]["metrics"]:
        metric = entry["pods"]["metric"]["name"]
        assert re.search(rf"^# TYPE {metric} gauge$", exposition, re.MULTILINE), metric
        # the series the adapter reads is what the app exports, a gauge (averaging a counter is a rate)
        series = _series_name(_adapter_rule(metric)["seriesQuery"])
        assert re.search(rf"^# TYPE {series} gauge$", exposition, re.MULTILINE), series


def _adapter_rules() -> list[dict[str, Any]]:
    """The rules of the Prometheus adapter's configuration (deploy/k8s/prometheus-adapter.yaml)."""
    config = _one("ConfigMap", "prometheus-adapter-streamer")["data"]["config.yaml"]
    rules: list[dict[str, Any]] = yaml.safe_load(config)["rules"]
    return rules


def _series_name(series_query: str) -> str:
    found = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{", series_query)
    assert found, f"seriesQuery does not start with a metric name: {series_query!r}"
    return found.group(1)


def _served_name(rule: dict[str, Any]) -> str:
    """The name the adapter serves a rule's series under: ``name.matches`` rewritten by ``name.as``."""
    series = _series_name(rule["seriesQuery"])
    name = rule.get("name", {})
    found = re.search(name.get("matches", ".*"), series)
    assert found, f"{name} does not match the series {series}"
    template = name.get("as") or "${0}"
    return re.sub(r"\$\{?(\d+)\}?", lambda m: found.group(int(m.group(1))), template)


def _adapter_rule(metric: str) -> dict[str, Any]:
    serving = [r for r in _adapter_rules() if _served_name(r) == metric]
    assert len(serving) == 1, f"expected one adapter rule serving {metric}, found {len(serving)}"
    return serving[0]


def test_the_adapter_serves_the_hpas_metric_per_pod() -> None:
    hpa = _one("HorizontalPodAutoscaler", "streamer")
    for entry in hpa["spec"]["metrics"]:
        assert entry["type"] == "Pods", "only per-pod custom metrics are served by the adapter here"
        rule = _adapter_rule(entry["pods"]["metric"]["name"])
        # the HPA asks per pod in its namespace: the series must carry both, mapped to those resources
        overrides = rule["resources"]["overrides"]
        assert overrides["namespace"] == {"resource": "namespace"}
        assert overrides["pod"] == {"resource": "pod"}
        assert 'namespace!=""' in rule["seriesQuery"] and 'pod!=""' in rule["seriesQuery"]
        query = rule["metricsQuery"]
        for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "by (<<.GroupBy>>)"):
            assert placeholder in query, placeholder


def test_the_adapter_rule_check_can_fail() -> None:
    rule = {"seriesQuery": 'streamer_active_sessions{pod!=""}', "name": {"matches": "^(.*)_sessions$"}}
    assert _served_name(rule | {"name": {"matches": "^(.*)_sessions$", "as": "${1}_per_pod"}}) == (
        "streamer_active_per_pod"
    )
    with pytest.raises(AssertionError):
        _served_name(rule | {"name": {"matches": "^other$"}})


def test_the_autoscaler_targets_the_deployment() -> None:
    ref = _one("HorizontalPodAutoscaler", "streamer")["spec"]["scaleTargetRef"]
    target = _one(ref["kind"], ref["name"])
    assert target["apiVersion"] == ref["apiVersion"] and ref["kind"] == "Deployment"


def test_grace_period_covers_prestop_and_the_drain() -> None:
    spec = _one("Deployment", "streamer")["spec"]["template"]["spec"]
    command = _streamer_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    drain = float(_environment()["STREAMER_DRAIN_TIMEOUT_S"])
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + drain + SHUTDOWN_MARGIN_S


def test_sizing_is_consistent() -> None:
    container = _streamer_container()
    env = _environment()
    cpu = container["resources"]["requests"]["cpu"]
    cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    # one CTranslate2 thread per requested core, not one per core of the node
    assert int(env["STREAMER_ASR_THREADS"]) == cores
    hpa = _one("HorizontalPodAutoscaler", "streamer")
    targets = {
        m["pods"]["metric"]["name"]: _quantity(m["pods"]["target"]["averageValue"])
        for m in hpa["spec"]["metrics"]
    }
    # scale out before admission control starts refusing sessions: by their count (the capacity measured
    # on one CPU kind), and by the model load measured on each pod's own CPU (any kind)
    assert 0 < targets["streamer_active_sessions"] < int(env["STREAMER_MAX_SESSIONS"])
    assert 0 < targets["streamer_admission_load"] < _default(AdmissionLimits, "max_model_load")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "streamer"
    assert hpa["spec"]["minReplicas"] >= 2  # one pod draining must leave one serving (the PDB's budget)


def test_selectors_select_and_redis_is_reachable() -> None:
    pod_labels = _one("Deployment", "streamer")["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        doc = _one(kind, "streamer")
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= pod_labels.items(), kind
    redis = urlsplit(_environment()["STREAMER_REDIS_URL"])
    service = _one("Service", redis.hostname)
    assert redis.port in [p["port"] for p in service["spec"]["ports"]]
    redis_labels = _one("StatefulSet", redis.hostname)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= redis_labels.items()


def _default(cls: type, name: str) -> Any:
    """A dataclass field's default (what the server runs with unless configured otherwise)."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _quantity(value: str) -> float:
    """A Kubernetes quantity as a number (``"600m"`` is 0.6)."""
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def test_quantities_read_as_kubernetes_writes_them() -> None:
    assert _quantity("600m") == 0.6
    assert _quantity("18") == 18.0
