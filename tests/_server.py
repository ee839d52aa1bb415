"""The one harness for tests that need a real fastserve process (SIGTERM stops it).

``with ServerProcess(models_dir, *cli_args) as server:`` starts it on free ports and waits
until ``/v2/health/ready`` answers 200; ``server.get/post/request`` send one request on a
fresh connection and return an ``HttpResult`` (a ``(status, headers, body)`` tuple with
``.json()``; header names match in any case).

Starting a server costs seconds (``import torch`` plus loading), so a test that starts
one must carry the ``slow`` mark: tests/conftest.py tells this module whether the running
test does, and ``start()`` refuses otherwise. Share one server per module or session.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from fastserve.http.server import free_port

__all__ = ["HttpResult", "ServerProcess", "free_port", "http_request"]

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0

# Set by tests/conftest.py before each test's fixtures run: may this test start a server?
# (None outside pytest, e.g. when a helper is used from a shell.)
slow_allowed: bool | None = None
running_test = ""


class Headers(dict[str, str]):
    """Response headers: keys stored lower-cased, looked up in any case."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


class HttpResult(NamedTuple):
    status: int
    headers: Headers
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
        received = Headers()
        for name, value in resp.getheaders():
            received.setdefault(name.lower(), value)  # the first of repeats, as HTTPMessage
        return HttpResult(resp.status, received, resp.read())
    finally:
        conn.close()


class ServerProcess:
    """A ``python -m fastserve --models DIR`` on free ports; requests go to its inference port.

    As a context manager it starts the server and (unless ``wait_ready=False``) waits for
    readiness; ``start()``/``wait_live()``/``wait_ready()``/``terminate()`` do the steps one
    by one for tests that watch start-up or shutdown.
    """

    def __init__(self, models: Path | str, *args: str, ready_timeout: float = READY_TIMEOUT,
                 wait_ready: bool = True, env: dict[str, str] | None = None,
                 log_path: Path | None = None) -> None:
        self.models = Path(models)
        self.args = list(args)
        self.ready_timeout = ready_timeout
        self.wait_on_enter = wait_ready
        self.env = env
        self.port = free_port()
        self.management_port = free_port()
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"fastserve-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        # gRPC is off unless a test asks for it (--grpc-port N): parallel servers must
        # never meet on the default 8001.
        if "--grpc-port" in self.args:
            self.grpc_port = int(self.args[self.args.index("--grpc-port") + 1])
        else:
            self.grpc_port = 0
            self.args += ["--grpc-port", "0"]
        self.grpc_management_port = 0
        if "--grpc-management-port" in self.args:
            self.grpc_management_port = int(
                self.args[self.args.index("--grpc-management-port") + 1])
        self.returncode: int | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """host:port, as tritonclient wants it."""
        return f"127.0.0.1:{self.port}"

    # --- lifecycle

    def start(self) -> ServerProcess:
        if slow_allowed is False:
            raise RuntimeError(f"{running_test} starts a server: mark it @pytest.mark.slow "
                               "(or use a server fixture, which marks it)")
        cmd = [sys.executable, "-m", "fastserve", "--models", str(self.models),
               "--port", str(self.port), "--management-port", str(self.management_port),
               *self.args]
        env = dict(os.environ, **(self.env or {}))
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            env=env)
        return self

    def __enter__(self) -> ServerProcess:
        self.start()
        if self.wait_on_enter:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_live(self, timeout: float | None = None) -> None:
        self._wait("/v2/health/live", timeout or self.ready_timeout)

    def wait_ready(self, timeout: float | None = None) -> None:
        self._wait("/v2/health/ready", timeout or self.ready_timeout)

    wait_until_ready = wait_ready

    def _wait(self, path: str, timeout: float) -> None:
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fastserve exited with {self.process.returncode} before "
                                   f"{path} answered 200:\n{self.log()[-4000:]}")
            try:
                if self.request("GET", path, timeout=2.0).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{path} did not answer 200 within {timeout} s:\n{self.log()[-4000:]}")

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait for the exit; the exit code (-9 when it had to be killed)."""
        if self.process is not None and self.returncode is None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                    self.returncode = -9
                    return -9
            self.returncode = self.process.returncode
        return self.returncode  # type: ignore[return-value]

    stop = terminate

    # --- requests

    def request(self, method: str, path: str, body: bytes | str | dict | None = None,
                headers: dict[str, str] | None = None, port: int | None = None,
                timeout: float = 30.0) -> HttpResult:
        return http_request(port or self.port, method, path, body, headers, timeout)

    def get(self, path: str) -> HttpResult:
        return self.request("GET", path)

    def post(self, path: str, body: bytes | str | dict | None = None,
             headers: dict[str, str] | None = None) -> HttpResult:
        return self.request("POST", path, body, headers)

    def json(self, method: str, path: str, obj: object = None, **kw: Any) -> tuple[int, Any]:
        """Send ``obj`` as JSON; (status, decoded answer or None)."""
        body = None if obj is None else orjson.dumps(obj)
        status, _, data = self.request(method, path, body,
                                       {"Content-Type": "application/json"}, **kw)
        return status, orjson.loads(data) if data else None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
