"""Real-server fixtures shared by every test module.

``server``: ONE fastserve process for the whole session, on a repository written by
``models_factory`` (each start pays ``import torch`` plus loading, ~5 s).
``spawn_server``: a factory for the few tests that need a server of their own (CLI,
drain); each is terminated at the end of its test.
``local_model``: the same model files loaded with torch in the test process, so
expected answers are computed, never written down.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class HttpResult:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def http_request(port: int, method: str, path: str, body: bytes | str | dict | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 30.0) -> HttpResult:
    """One request on a fresh connection (closed afterwards); dict bodies go as JSON."""
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return HttpResult(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


@dataclass
class ServerProcess:
    """A running ``python -m fastserve``; requests go to its inference port."""

    models: Path
    port: int
    management_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """host:port, as tritonclient wants it."""
        return f"127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | str | dict | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30.0) -> HttpResult:
        return http_request(self.port, method, path, body, headers, timeout)

    def get(self, path: str) -> HttpResult:
        return self.request("GET", path)

    def post(self, path: str, body: bytes | str | dict | None = None,
             headers: dict[str, str] | None = None) -> HttpResult:
        return self.request("POST", path, body, headers)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        cmd = [sys.executable, "-m", "fastserve", "--models", str(self.models),
               "--port", str(self.port), "--management-port", str(self.management_port),
               *self.args]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def wait_live(self, timeout: float = READY_TIMEOUT) -> None:
        self._wait("/v2/health/live", timeout)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        self._wait("/v2/health/ready", timeout)

    def _wait(self, path: str, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fastserve exited with {self.process.returncode} before "
                                   f"{path} answered 200:\n{self.log()}")
            try:
                if self.request("GET", path, timeout=2.0).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{path} did not answer 200 within {timeout} s:\n{self.log()}")

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait for the exit; return the exit code (killed: -9)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return -9
        return self.process.returncode


def launch(models: Path, log_path: Path, args: list[str] | None = None) -> ServerProcess:
    """Start a server on free ports (it is live or loading when this returns: not waited)."""
    server = ServerProcess(models, free_port(), free_port(), log_path, args=list(args or []))
    server.start()
    return server


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
