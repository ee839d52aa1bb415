"""Helpers of the operations tests: requests, metrics parsing, a load generator."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from _server import ServerProcess

TOKEN = "ops-s3cret-token-4711"


def mgmt(server: ServerProcess, method: str, path: str, body: Any = None
         ) -> tuple[int, Any]:
    """A management call: (status, decoded JSON body)."""
    data = None if body is None else orjson.dumps(body)
    status, _, raw = server.request(method, path, data, port=server.management_port)
    return status, orjson.loads(raw) if raw else None


def infer_body(model: str) -> bytes:
    if model in ("digits", "spare", "hot"):
        inputs = [{"name": "input__0", "shape": [1, 64], "datatype": "FP32",
                   "data": [0.5] * 64}]
    elif model == "slow":
        inputs = [{"name": "n", "shape": [1], "datatype": "INT64", "data": [150]}]
    else:  # versioned, pinned: x + version
        inputs = [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}]
    return orjson.dumps({"inputs": inputs})


def infer(server: ServerProcess, model: str, version: str | None = None,
          body: bytes | None = None) -> tuple[int, Any]:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    status, _, raw = server.request("POST", path, body or infer_body(model),
                                    {"Content-Type": "application/json"})
    return status, orjson.loads(raw)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
             server: ServerProcess | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}"
                         + (f"\n{server.log()}" if server is not None else ""))


def metric_samples(server: ServerProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, _, raw = server.request("GET", "/metrics")
    assert status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(raw.decode())
            for s in family.samples}


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class LoadGenerator:
    """Threads sending inference requests on keep-alive connections until stopped."""

    def __init__(self, server: ServerProcess, model: str, threads: int = 2,
                 check: Callable[[Any], bool] | None = None) -> None:
        self.server = server
        self.model = model
        self.check = check
        self.body = infer_body(model)
        self.ok = 0
        self.failures: list[str] = []
        self.answers: list[Any] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> LoadGenerator:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        path = f"/v2/models/{self.model}/infer"
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            try:
                conn.request("POST", path, self.body, headers)
                resp = conn.getresponse()
                data = resp.read()
                doc = orjson.loads(data)
                good = resp.status == 200 and (self.check is None or self.check(doc))
            except Exception as exc:  # any failure is counted
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
                continue
            with self._lock:
                if good:
                    self.ok += 1
                    self.answers.append(doc)
                else:
                    self.failures.append(f"{resp.status}: {data[:200]!r}")
        conn.close()

    def wait_ok(self, n: int, timeout: float = 30.0) -> None:
        wait_for(lambda: self.ok >= n, timeout, f"{n} answers from {self.model}")
