"""Fixtures shared by every test module, and the rule that server tests are ``slow``.

``server``: ONE fastserve process for the whole session, on a repository written by
``models_factory`` (each start pays ``import torch`` plus loading, ~5 s).
``ops``: one more for the management, metrics, reload and logging tests (access log in
JSON, polling every 0.25 s) on the repository of ``ops_models``.
``spawn_server``: a factory for the few tests that need a server of their own (CLI,
drain); each is terminated at the end of its test.
``local_model``: the same model files loaded with torch in the test process, so
expected answers are computed, never written down.

Every test that starts a server is ``slow`` (``pytest -m "not slow"`` is the quick
subset): a test using a server fixture is marked here; one that starts
``_server.ServerProcess`` itself must carry the mark, or the harness refuses to start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import _server
from _server import ServerProcess

# Generated inputs are checked for what they find, not for how fast they are drawn: on a
# busy machine one draw can take seconds, and a too_slow health check would fail the run.
settings.register_profile("fastserve", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fastserve")

# Fixtures that start a server process; a test depending on one, directly or not, is slow.
SERVER_FIXTURES = frozenset({"server", "spawn_server", "ops", "tf_server", "ts_server"})
OPS_POLL = "0.25"


def pytest_configure(config: pytest.Config) -> None:
    # Extracted TorchServe archives go to a cache of this run (the servers inherit it),
    # not to ~/.cache/fastserve/archives, where every run's temporary stores would pile up.
    if "FASTSERVE_ARCHIVE_CACHE" not in os.environ:
        cache = tempfile.mkdtemp(prefix="fastserve-test-archives-")
        os.environ["FASTSERVE_ARCHIVE_CACHE"] = cache
        config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before the test's fixtures run: they may start the server.
    _server.slow_allowed = item.get_closest_marker("slow") is not None
    _server.running_test = item.nodeid


def launch(models: Path, log_path: Path, args: list[str] | None = None) -> ServerProcess:
    """Start a server on free ports (it is live or loading when this returns: not waited)."""
    return ServerProcess(models, *(args or []), log_path=log_path).start()


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models_factory import build_repository

    root = tmp_path_factory.mktemp("models") / "repo"
    build_repository(root)
    return root


@pytest.fixture(scope="session")
def server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    """The session's fastserve, ready, on every model of models_factory."""
    log_path = tmp_path_factory.mktemp("server") / "fastserve.log"
    srv = launch(model_repository, log_path)
    try:
        srv.wait_ready()
    except BaseException:
        srv.terminate()
        raise
    yield srv
    code = srv.terminate()
    assert code == 0, f"fastserve exited with {code} after SIGTERM:\n{srv.log()}"


@pytest.fixture
def spawn_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start extra servers (not waited for); any still running are stopped afterwards."""
    started: list[ServerProcess] = []

    def spawn(models: Path, *args: str) -> ServerProcess:
        srv = launch(models, tmp_path / f"fastserve-{len(started)}.log", list(args))
        started.append(srv)
        return srv

    yield spawn
    for srv in started:
        srv.terminate()


@pytest.fixture(scope="session")
def local_model(model_repository: Path) -> Callable[..., Any]:
    """local_model(name, version="1") -> the model file loaded with torch (cached)."""
    from models_factory import load_model, model_file

    cache: dict[tuple[str, str], Any] = {}

    def get(name: str, version: str = "1") -> Any:
        key = (name, version)
        if key not in cache:
            cache[key] = load_model(model_file(model_repository, name, version))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def ops_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ops_models' repository, plus ``spare`` and ``pinned`` copies for the tests that
    unload, register and pin (a test that changes a model puts it back as it found it)."""
    from ops_models import build

    root = tmp_path_factory.mktemp("ops") / "repo"
    build(root)
    shutil.copytree(root / "digits", root / "spare")
    shutil.copytree(root / "versioned", root / "pinned")
    return root


@pytest.fixture(scope="session")
def ops(ops_repo: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(ops_repo, "--access-log", "--log-format", "json",
                           "--poll-interval", OPS_POLL)
    with server:
        yield server
