"""Start a real fastserve process on free ports for tests, and stop it with SIGTERM."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``with ServerProcess(models_dir) as server:`` — a ready server; ``server.request(...)``."""

    def __init__(self, models: Path | str, *args: str, ready_timeout: float = 90.0,
                 wait_ready: bool = True, env: dict[str, str] | None = None) -> None:
        self.models = Path(models)
        self.args = list(args)
        self.ready_timeout = ready_timeout
        self.wait_ready = wait_ready
        self.env = env
        self.port = free_port()
        self.management_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerProcess:
        env = dict(os.environ, **(self.env or {}))
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fastserve-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastserve", "--models", str(self.models),
             "--port", str(self.port), "--management-port", str(self.management_port),
             *self.args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        if self.wait_ready:
            self.wait_until_ready()
        return self

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _, _ = self.request("GET", "/v2/health/ready")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {self.ready_timeout} s:\n{self.log()}")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, port: int | None = None,
                timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
        """One request on a fresh connection: (status, lower-cased headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def json(self, method: str, path: str, obj: object = None, **kw: object
             ) -> tuple[int, object]:
        body = None if obj is None else orjson.dumps(obj)
        status, _, data = self.request(method, path, body,
                                       {"Content-Type": "application/json"}, **kw)  # type: ignore[arg-type]
        return status, orjson.loads(data) if data else None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is not None and self.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.returncode = self.proc.wait()
            self._log.close()
        return self.returncode  # type: ignore[return-value]

    def __exit__(self, *exc: object) -> None:
        self.stop()
