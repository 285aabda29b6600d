"""Several ``streamer serve`` processes on one Redis, behind HAProxy running deploy/haproxy/haproxy.cfg.

The harness for every test of instances behind a real load balancer: the ``start_cluster`` context
manager (and the ``make_cluster`` fixture in conftest.py) starts N instances on loopback ports with one
API key, one JWT secret and one Redis database, then HAProxy with the shipped configuration (addresses
through its environment variables), and waits until the balancer sees every instance up. Instances can be
signalled or killed one by one; their output and HAProxy's are kept in files named in assertion messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
SLOTS = 3  # `server` lines in haproxy.cfg, filled from INSTANCE_1..INSTANCE_3
STARTUP_TIMEOUT_S = 120.0  # three model loads on two shared cores
# a request line of haproxy.cfg's log-format (a WebSocket is logged when it closes)
ACCESS_LINE = re.compile(
    r"(?P<client>[\d.]+:\d+) \[[^]]+\] streamer streamer/(?P<server>\S+) "
    r'.* "(?P<request>\S+ \S+) HTTP/[\d.]+"$'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_db(url: str, db: int) -> str:
    """``url`` with its database number replaced (the cluster keeps its keys apart from other tests)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} is missing)"
    return f"--- {path}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Instance:
    """One ``streamer serve`` process; ``name`` is its ``server`` name in HAProxy (streamer1...)."""

    name: str
    port: int
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name} still running {timeout}s later\n{tail(self.log)}") from None

    async def readiness(self, http: aiohttp.ClientSession) -> int | str:
        """/readyz's status, or ``"refused"`` when nothing listens any more."""
        try:
            async with http.get(f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=5)) as r:
                return r.status
        except aiohttp.ClientConnectionError:
            return "refused"

    async def metric(self, http: aiohttp.ClientSession, name: str) -> float:
        """The value of an unlabelled Prometheus sample from this instance's /metrics."""
        async with http.get(f"{self.url}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r:
            text = await r.text()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return float(value)
        raise AssertionError(f"{self.name}: no sample {name} in /metrics")


@dataclass
class Cluster:
    """N instances behind one balancer. Talk to ``url`` (the balancer) as a client would."""

    url: str
    stats_url: str
    api_key: str
    instances: list[Instance]
    haproxy_log: Path

    def diagnostics(self) -> str:
        return "\n".join(tail(p) for p in [self.haproxy_log, *(i.log for i in self.instances)])

    def requests(self) -> list[tuple[str, str, str]]:
        """HAProxy's log of the ``streamer`` frontend: (client address:port, server, "METHOD path")."""
        found = []
        for line in self.haproxy_log.read_text(errors="replace").splitlines():
            match = ACCESS_LINE.search(line)
            if match:
                found.append((match["client"], match["server"], match["request"]))
        return found

    async def server_states(self, http: aiohttp.ClientSession) -> dict[str, str]:
        """HAProxy's view of each server of the ``streamer`` backend: UP, DOWN, ``UP 1/2``..."""
        async with http.get(f"{self.stats_url};csv", timeout=aiohttp.ClientTimeout(total=5)) as r:
            text = await r.text()
        rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "streamer" and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    async def wait_states(
        self, http: aiohttp.ClientSession, expected: Mapping[str, str], timeout: float = 20.0
    ) -> None:
        """Wait until HAProxy reports each named server's status (``"UP"``, ``"DOWN"``)."""
        deadline = time.monotonic() + timeout
        while True:
            states = await self.server_states(http)
            if all(states.get(name, "").split(" ")[0] == want for name, want in expected.items()):
                return
            if time.monotonic() > deadline:
                wanted = dict(expected)
                raise AssertionError(f"HAProxy states {states}, expected {wanted}\n{self.diagnostics()}")
            await asyncio.sleep(0.2)

    async def active_sessions(self, http: aiohttp.ClientSession) -> dict[str, int]:
        """``streamer_active_sessions`` of every running instance, by server name."""
        live = [i for i in self.instances if i.proc.returncode is None]
        values = await asyncio.gather(*(i.metric(http, "streamer_active_sessions") for i in live))
        return {i.name: int(v) for i, v in zip(live, values, strict=True)}

    async def wait_active(
        self, http: aiohttp.ClientSession, total: int, timeout: float = 10.0
    ) -> dict[str, int]:
        """``active_sessions`` once they add up to ``total`` (the gauges follow the sockets closely)."""
        deadline = time.monotonic() + timeout
        while sum((active := await self.active_sessions(http)).values()) != total:
            if time.monotonic() > deadline:
                raise AssertionError(f"active sessions {active}, expected {total} in all")
            await asyncio.sleep(0.1)
        return active


def instance_env(
    port: int, *, api_key: str, jwt_secret: str, redis_url: str, extra: Mapping[str, str]
) -> dict[str, str]:
    """The environment of one instance: only STREAMER_* variables differ from the test process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.update(
        {
            "STREAMER_HOST": "127.0.0.1",
            "STREAMER_PORT": str(port),
            "STREAMER_API_KEYS": api_key,
            "STREAMER_JWT_SECRET": jwt_secret,
            "STREAMER_REDIS_URL": redis_url,
            "STREAMER_ASR_MODEL": "tiny.en",
            "STREAMER_DEVICE": "cpu",
            "STREAMER_ASR_THREADS": "1",  # N instances share the machine's cores
            "STREAMER_DEMO": "false",
            # HAProxy forwards from loopback with X-Forwarded-For: limits per address apply to clients
            "STREAMER_TRUSTED_PROXIES": "127.0.0.1",
            "STREAMER_DRAIN_TIMEOUT_S": "10",
            # the tests send faster than real time, on a machine shared with other test runs
            "STREAMER_MAX_REALTIME_FACTOR": "20",
            "STREAMER_REALTIME_BURST_S": "30",
            "STREAMER_SATURATION_LATENCY_S": "10",
            # several instances share two cores here, so each sees the others as outside load and its
            # calibrated plan refuses a third session (predicted_overload): these tests are about the
            # balancer and the drain, not about admission's plan (tested in tests/guards)
            "STREAMER_ASR_CALIBRATE": "false",
            "STREAMER_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


async def _wait_ready(instance: Instance, http: aiohttp.ClientSession, deadline: float) -> None:
    while await instance.readiness(http) != 200:
        if instance.proc.returncode is not None:
            rc = instance.proc.returncode
            raise AssertionError(f"{instance.name} exited with {rc}\n{tail(instance.log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{instance.name} not ready in time\n{tail(instance.log)}")
        await asyncio.sleep(0.2)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


@contextlib.asynccontextmanager
async def start_cluster(
    n: int, *, redis_url: str, workdir: Path, extra_env: Mapping[str, str] | None = None
) -> AsyncIterator[Cluster]:
    """Start ``n`` (1 to 3) instances and HAProxy in front; everything is killed on exit.

    ``redis_url`` is used as given (pick a database of its own); ``extra_env`` adds or overrides
    STREAMER_* settings of every instance.
    """
    if not 1 <= n <= SLOTS:
        raise ValueError(f"deploy/haproxy/haproxy.cfg has {SLOTS} server slots; asked for {n} instances")
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    api_key, jwt_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    procs: list[asyncio.subprocess.Process] = []
    instances: list[Instance] = []
    try:
        for index in range(1, n + 1):
            port, log = free_port(), workdir / f"streamer{index}.log"
            env = instance_env(
                port, api_key=api_key, jwt_secret=jwt_secret, redis_url=redis_url, extra=extra_env or {}
            )
            with log.open("wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "streamer", "serve", env=env, cwd=ROOT, stdout=out, stderr=out
                )
            procs.append(proc)
            instances.append(Instance(f"streamer{index}", port, proc, log))
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            await asyncio.gather(*(_wait_ready(i, http, deadline) for i in instances))

            balancer, stats = free_port(), free_port()
            # slots without an instance point at a port nothing listens on; they are checked DOWN below
            slots = [i.port for i in instances] + [free_port() for _ in range(SLOTS - n)]
            lb_env = {
                **os.environ,
                "BALANCER_BIND": f"127.0.0.1:{balancer}",
                "BALANCER_STATS_BIND": f"127.0.0.1:{stats}",
                **{f"INSTANCE_{k}": f"127.0.0.1:{port}" for k, port in enumerate(slots, start=1)},
            }
            haproxy_log = workdir / "haproxy.log"
            with haproxy_log.open("wb") as out:
                lb = await asyncio.create_subprocess_exec(
                    haproxy, "-db", "-f", str(HAPROXY_CFG), env=lb_env, stdout=out, stderr=out
                )
            procs.append(lb)
            cluster = Cluster(
                url=f"http://127.0.0.1:{balancer}",
                stats_url=f"http://127.0.0.1:{stats}/stats",
                api_key=api_key,
                instances=instances,
                haproxy_log=haproxy_log,
            )
            await _wait_listening(stats, lb, haproxy_log)
            expected = {f"streamer{k}": "UP" if k <= n else "DOWN" for k in range(1, SLOTS + 1)}
            await cluster.wait_states(http, expected)
        yield cluster
    finally:
        for proc in procs:
            await _stop(proc)


async def _wait_listening(port: int, proc: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"HAProxy did not start\n{tail(log)}") from None
            await asyncio.sleep(0.1)
        else:
            writer.close()
            await writer.wait_closed()
            return
