"""Fixtures for the deployment tests: instances behind HAProxy on one Redis (see cluster.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from support import skip_or_fail

from deploy.cluster import Cluster, redis_db, start_cluster

# Redis database of the cluster tests, apart from the other tests' (each cluster has its own API key too)
CLUSTER_REDIS_DB = 11

StartCluster = Callable[..., AbstractAsyncContextManager[Cluster]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "docker: builds and runs the container image (fails in CI when Docker cannot run)"
    )


@pytest.fixture
def haproxy() -> str:
    path = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(path).is_file():
        skip_or_fail("haproxy is not installed (apt-get install haproxy)")
    return path


@pytest.fixture
def make_cluster(haproxy: str, redis_url: str, tmp_path: Path) -> StartCluster:
    """``async with make_cluster(3) as cluster``: N ``streamer serve`` behind HAProxy on one Redis.

    Keyword arguments are extra STREAMER_* settings of every instance, e.g.
    ``make_cluster(3, STREAMER_RESUME_WINDOW_S="60")``.
    """

    def factory(n: int = 3, **extra_env: str) -> AbstractAsyncContextManager[Cluster]:
        return start_cluster(
            n, redis_url=redis_db(redis_url, CLUSTER_REDIS_DB), workdir=tmp_path, extra_env=extra_env
        )

    return factory
