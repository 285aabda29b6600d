"""The Grafana dashboard imports as is, and cannot drift from the code: every metric and label its
queries (and the alert rules') use is checked against ``/metrics`` of a real server that streamed speech."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp.test_utils import TestServer
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from support import API_KEY, base_url, make_settings, read_pcm16, silence, skip_or_fail, to_bytes

from streamer.client import StreamerClient
from streamer.edge.handshake import SERVICES

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "streamer.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# labels Prometheus adds to every scraped series (the job name is the deployment's, see alerts.yml)
TARGET_LABELS = {"instance", "job"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
# what a server shows after one spoken utterance and one refused upgrade: these series must exist, and
# these counts must have moved (an unlabelled series is exported at 0 before anything happens)
MUST_EXIST = {"streamer_active_sessions", "streamer_queue_depth", "streamer_breaker_open", "streamer_ready"}
MUST_HAVE_MOVED = {
    "streamer_audio_seconds_total",
    "streamer_sessions_total",
    "streamer_final_latency_seconds_count",
    "streamer_first_partial_latency_seconds_count",
    "streamer_inference_seconds_count",
    "streamer_batch_size_count",
    "streamer_refusals_total",
    "streamer_state_backend_up",
    "streamer_model_work_seconds_total",
    "streamer_model_window_seconds_total",
    "streamer_event_loop_lag_seconds_count",
}


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(where, PromQL)`` for every panel target and every query variable."""
    out = [
        (f"panel {p['title']!r} {t['refId']}", t["expr"])
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    ]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["query"]["query"])
            assert m, f"variable {var['name']}: only label_values(metric, label) is checked"
            out.append((f"variable {var['name']}", f"max by ({m[2]}) ({m[1]})"))
    return out


def alert_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(f"alert {r['alert']}", r["expr"]) for g in groups for r in g["rules"]]


def as_promql(expr: str) -> str:
    """Grafana's variables replaced by values Prometheus would see."""
    return expr.replace("$__rate_interval", "1m").replace("$instance", "streamer-1:8080")


@dataclass
class Query:
    selectors: list[tuple[str, set[str]]] = field(default_factory=list)  # (series name, matcher labels)
    grouping: set[str] = field(default_factory=set)  # labels in by/without/on/ignoring


def parse(expr: str) -> Query:
    """The series names and label names a PromQL expression uses (enough PromQL for these files)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', as_promql(expr))  # no identifiers inside strings
    query = Query()
    for m in GROUPING.finditer(text):
        query.grouping |= {label.strip() for label in m[1].split(",") if label.strip()}
    text = GROUPING.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range durations
    for m in re.finditer(r"([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?", text):
        name, matchers, call = m.groups()
        if call or name.lower() in KEYWORDS:
            continue
        query.selectors.append((name, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers or ""))))
    return query


@dataclass
class Exposition:
    """Series names in a scrape, with the label names seen on their samples."""

    labels: dict[str, set[str]]
    with_data: set[str]  # series names with at least one sample
    moved: set[str] = field(default_factory=set)  # ... and one that is not 0


SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exposition(text: str, collectors: list[MetricWrapperBase]) -> Exposition:
    """From the scrape: every family and its samples' labels. A labelled family with no child yet has
    no samples to read labels from; its declared label names come from the server's own collectors."""
    declared = {c._name: set(c._labelnames) for c in collectors}
    labels: dict[str, set[str]] = {}
    with_data: set[str] = set()
    moved: set[str] = set()
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ()):
            names = set(declared.get(family.name, set()))
            if suffix == "_bucket":
                names.add("le")
            labels[family.name + suffix] = names
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
            with_data.add(sample.name)
            if sample.value:
                moved.add(sample.name)
    return Exposition(labels, with_data, moved)


def problems(where: str, expr: str, live: Exposition) -> list[str]:
    query = parse(expr)
    found: list[str] = []
    used: set[str] = set()
    for name, matchers in query.selectors:
        if name == "up":
            continue  # Prometheus's own series for the scrape
        if name not in live.labels:
            found.append(f"{where}: no series {name}")
            continue
        used |= live.labels[name]
        for label in matchers - TARGET_LABELS - live.labels[name]:
            found.append(f"{where}: {name} has no label {label!r}")
    if not query.selectors:
        found.append(f"{where}: no series found in {expr!r}")
    for label in query.grouping - TARGET_LABELS - used:
        found.append(f"{where}: no series in the query has label {label!r}")
    return found


# --- the dashboard as Grafana's JSON model


def test_dashboard_is_an_importable_grafana_model() -> None:
    dashboard = load_dashboard()
    assert dashboard["id"] is None and dashboard["uid"] and dashboard["title"]  # new on import
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    instance = variables["instance"]
    assert instance["type"] == "query" and instance["datasource"] == DATASOURCE
    assert instance["multi"] and instance["includeAll"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"] and target["refId"]
    # per-instance rows: one repeated row whose panels each pin one instance
    rows = [i for i, p in enumerate(dashboard["panels"]) if p["type"] == "row"]
    repeated = [i for i in rows if dashboard["panels"][i].get("repeat") == "instance"]
    assert len(repeated) == 1
    start = repeated[0] + 1
    end = min([i for i in rows if i > repeated[0]], default=len(dashboard["panels"]))
    assert end > start
    for panel in dashboard["panels"][start:end]:
        for target in panel["targets"]:
            assert 'instance="$instance"' in target["expr"], panel["title"]


def test_the_dashboard_covers_what_an_operator_asks() -> None:
    used = {name for _, expr in dashboard_queries(load_dashboard()) for name, _ in parse(expr).selectors}
    wanted = {
        "streamer_active_sessions",  # live sessions
        "streamer_audio_seconds_total",  # speech seconds per second
        "streamer_final_latency_seconds_bucket",  # final p50/p95/p99
        "streamer_first_partial_latency_seconds_bucket",
        "streamer_inference_seconds_sum",  # model busy share
        "streamer_batch_size_bucket",
        "streamer_queue_depth",
        "streamer_partials_dropped_total",
        "streamer_warnings_total",  # lost-sentence warnings
        "streamer_refusals_total",
        "streamer_breaker_open",
        "streamer_state_backend_up",  # Redis health
        "streamer_ready",  # per-instance readiness
        "streamer_model_work_seconds_total",  # where the model's time went
        "streamer_event_loop_lag_seconds_bucket",
    }
    assert wanted <= used, wanted - used


def test_the_query_parser_finds_series_and_labels() -> None:
    query = parse(
        'histogram_quantile(0.95, sum by (instance, le) (rate(streamer_x_bucket{code="a", '
        'instance=~"$instance"}[$__rate_interval]))) > 1.5 and on (instance) up{job="streamer"} == 0'
    )
    assert query.selectors == [("streamer_x_bucket", {"code", "instance"}), ("up", {"job"})]
    assert query.grouping == {"instance", "le"}
    live = Exposition({"streamer_x_bucket": {"le", "kind"}}, {"streamer_x_bucket"})
    assert problems("q", "sum by (kind) (streamer_x_bucket)", live) == []
    assert problems("q", 'streamer_x_bucket{code="a"}', live) == ["q: streamer_x_bucket has no label 'code'"]
    assert problems("q", "sum by (reason) (rate(streamer_y_total[5m]))", live) == [
        "q: no series streamer_y_total",
        "q: no series in the query has label 'reason'",
    ]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each dashboard query (as a recording rule), with Grafana's variables filled in."""
    promtool = shutil.which("promtool")
    if promtool is None:
        skip_or_fail("promtool is not installed (apt-get install prometheus)")
    assert promtool is not None
    rules = [
        {"record": f"dashboard:query_{i}", "expr": as_promql(expr)}
        for i, (_, expr) in enumerate(dashboard_queries(load_dashboard()))
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- against a live server


async def _stream_speech(client: StreamerClient) -> list[dict[str, Any]]:
    """One utterance, paced at 4x real time so partials come, then session.close."""
    pcm = to_bytes(silence(0.3)) + to_bytes(read_pcm16("en_utt1.wav")) + to_bytes(silence(1.0))
    stream = await client.connect({"language": "en", "interim_results": True})

    async def send() -> None:
        for i in range(0, len(pcm), 3200):
            await stream.ws.send_bytes(pcm[i : i + 3200])
            await asyncio.sleep(0.025)
        await stream.close_session()

    sender = asyncio.create_task(send())
    events = []
    async with asyncio.timeout(60):
        while (event := await stream.receive()) is not None:
            events.append(event)
    await sender
    return events


async def _scrape(server: TestServer) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url(server)}/metrics") as r:
        assert r.status == 200
        return await r.text()


async def test_every_query_uses_metrics_and_labels_the_server_exports(make_server: Any) -> None:
    server = await make_server(make_settings())
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        events = await _stream_speech(client)
        async with client.http.get(f"{base_url(server)}/v1/stream?token=not-a-token") as r:  # type: ignore[union-attr]
            assert r.status == 401  # a refusal, by reason
    kinds = [e["type"] for e in events]
    assert "transcript.partial" in kinds and "transcript.final" in kinds, kinds

    collectors = [c for c in vars(server.app[SERVICES].metrics).values() if isinstance(c, MetricWrapperBase)]
    live = exposition(await _scrape(server), collectors)
    assert live.with_data >= MUST_EXIST, MUST_EXIST - live.with_data
    assert live.moved >= MUST_HAVE_MOVED, MUST_HAVE_MOVED - live.moved

    found = [
        problem
        for where, expr in dashboard_queries(load_dashboard()) + alert_queries()
        for problem in problems(where, expr, live)
    ]
    assert found == []
