"""The command line (CONTRACT.md §1): flags, bad arguments, and the process lifecycle.

The argument tests run ``python -m fastserve`` and never import torch. Two short-lived
servers of their own: an empty repository (SIGINT), and a drain on SIGTERM with a
request in flight.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import fastserve
from fastserve.config import parse_size

from models_factory import build_repository, load_model, model_file

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastserve", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_help():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: fastserve")
    for flag in ("--models", "--host", "--port", "--management-host", "--management-port",
                 "--workers", "--device", "--torch-threads", "--log-level", "--access-log",
                 "--log-format", "--max-request-size", "--poll-interval", "--drain-timeout",
                 "--allow-shared-memory", "--auth-token-file"):
        assert flag in result.stdout, flag


@pytest.mark.parametrize(("flag", "default"), [
    ("--host", "127.0.0.1"), ("--port", "8080"), ("--management-host", "127.0.0.1"),
    ("--management-port", "8081"), ("--workers", "1"), ("--device", "auto"),
    ("--log-level", "info"), ("--log-format", "text"), ("--max-request-size", "100MB"),
    ("--poll-interval", "off"), ("--drain-timeout", "30.0"), ("--grpc-port", "8001"),
    ("--grpc-management-port", "0"),
])
def test_help_shows_defaults(flag, default):
    text = " ".join(run_cli("--help").stdout.split())
    options = text[text.index("options:"):]
    start = options.index(f" {flag} ") + len(flag) + 2
    paragraph = options[start:options.find(" --", start)]
    assert f"(default: {default})" in paragraph, (flag, paragraph)


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"fastserve {fastserve.__version__}"


def test_strict_readiness_flag(tmp_path):
    from fastserve.cli import parse_config
    from fastserve.workers import config_to_argv

    assert not parse_config(["--models", str(tmp_path)]).strict_readiness
    config = parse_config(["--models", str(tmp_path), "--strict-readiness"])
    assert config.strict_readiness
    assert parse_config(config_to_argv(config)).strict_readiness  # --workers pass it on


def test_models_is_required():
    result = run_cli()
    assert result.returncode == 2
    assert "--models" in result.stderr.strip().splitlines()[-1]


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_missing_models_dir(tmp_path):
    missing = tmp_path / "nowhere"
    one_line_error(run_cli("--models", str(missing)), str(missing))


def test_models_dir_is_a_file(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("not a folder")
    one_line_error(run_cli("--models", str(path)), str(path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_unreadable_models_dir(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0)
    try:
        one_line_error(run_cli("--models", str(folder)), str(folder))
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("size", ["12XB", "lots", "-5MB", "1.5.2MB", ""])
def test_bad_size(tmp_path, size):
    result = run_cli("--models", str(tmp_path), f"--max-request-size={size}")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "--max-request-size" in last and repr(size) in last, last


@pytest.mark.parametrize("text, value", [
    ("123", 123), ("64KB", 64_000), ("100MB", 100_000_000), ("1GB", 1_000_000_000),
    ("64kb", 64_000), ("1KiB", 1024), ("2MiB", 2 * 1024**2), ("1.5MB", 1_500_000),
])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("flag, value", [("--port", "70000"), ("--port", "http"),
                                         ("--workers", "0"), ("--log-level", "loud"),
                                         ("--log-format", "xml")])
def test_bad_flag_values(tmp_path, flag, value):
    result = run_cli("--models", str(tmp_path), f"{flag}={value}")
    assert result.returncode == 2
    assert flag in result.stderr.strip().splitlines()[-1]


# Servers of their own


def test_empty_models_dir(tmp_path, spawn_server):
    """DIR holds no model: ready 200, any model 404; 413 past the size limit; SIGINT exits 0."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "typo").mkdir()  # a folder holding no model: DIR still holds none
    srv = spawn_server(empty, "--max-request-size", "1KB")
    srv.wait_ready(30)
    r = srv.get("/v2/health/ready")
    assert r.status == 200 and r.json() == {"ready": True}
    # One line of effective settings, and a warning: a wrong --models must not go unnoticed.
    log = srv.log()
    line = next(x for x in log.splitlines() if " fastserve serving " in x)
    assert f"inference http://127.0.0.1:{srv.port}," in line
    assert f"management http://127.0.0.1:{srv.management_port}," in line
    assert "gRPC off, workers 1, device auto, 0 model(s) found" in line
    assert f"WARNING fastserve: no model found in {empty.resolve()}" in log
    assert srv.get("/v2/health/live").json() == {"live": True}
    for path in ("/v2/models/digits/ready", "/v2/models/digits/versions/1/ready",
                 "/v2/models/digits"):
        r = srv.get(path)
        assert r.status == 404 and "error" in r.json(), (path, r.body)
    r = srv.post("/v2/models/digits/infer", {"inputs": []})
    assert r.status == 404 and "error" in r.json()
    assert srv.get("/v2").json()["name"] == "fastserve"
    # --max-request-size 1KB: a bigger body gets 413 with the v2 error shape
    r = srv.post("/v2/models/digits/infer", b"[" + b"0.0," * 600 + b"0.0]")
    assert r.status == 413 and "error" in r.json(), r.body
    r = srv.post("/v2/models/digits/infer", b"{}")
    assert r.status == 404, r.body
    assert srv.process is not None
    srv.process.send_signal(signal.SIGINT)
    assert srv.process.wait(15) == 0, srv.log()


def test_start_line_lists_the_models_found(server):
    line = next(x for x in server.log().splitlines() if " fastserve serving " in x)
    assert f"inference http://127.0.0.1:{server.port}," in line and " INFO " in line
    assert "workers 1, device auto," in line
    assert "model(s) found (" in line and "digits" in line and "versioned" in line
    assert "no_version" not in line.split("found", 1)[1]  # a folder without a version
    assert "no model found" not in server.log()


def slow_body(x: np.ndarray, n: int) -> bytes:
    return json.dumps({"inputs": [
        {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()},
        {"name": "n", "shape": [1], "datatype": "INT64", "data": [n]}]}).encode()


def open_connection(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    return conn


def exchange(conn: http.client.HTTPConnection, method: str, path: str,
             body: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read()), dict(resp.getheaders())


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


IN_FLIGHT_S = 2.0
CALIBRATION_N = 200


def test_sigterm_drains(tmp_path, spawn_server):
    """Live at once while loading; on SIGTERM: not ready at once, no new connections, the
    request in flight finishes with its answer, and the process exits 0."""
    repo = tmp_path / "repo"
    build_repository(repo, ["digits", "slow"])
    # One intra-op thread: a matmul loop's duration is steady, so calibration holds.
    srv = spawn_server(repo, "--drain-timeout", "20", "--torch-threads", "1")

    # Models loading: live answers, ready does not (the ports bind before models load).
    srv.wait_live()
    loading = srv.get("/v2/health/ready")
    if loading.status == 503:
        assert loading.json() == {"ready": False}
        early = srv.post("/v2/models/slow/infer", slow_body(np.ones(2, np.float32), 1))
        still_loading = srv.get("/v2/health/ready").status == 503
        if still_loading:  # else loading ended between the two checks: nothing to conclude
            assert early.status == 503 and early.header("Retry-After"), early.body
    srv.wait_ready()

    x = np.linspace(-1, 1, 5, dtype=np.float32)
    model = load_model(model_file(repo, "slow"))
    with torch.inference_mode():
        expected = model(torch.from_numpy(x), torch.tensor([1])).numpy()
    # Calibrate on the server itself: n iterations that take about IN_FLIGHT_S there, so
    # the request is still running when SIGTERM arrives. The fastest of three (a busy
    # machine only makes the real request run longer); they also warm TorchScript up.
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        r = srv.post("/v2/models/slow/infer", slow_body(x, CALIBRATION_N))
        timings.append((time.perf_counter() - start) / CALIBRATION_N)
        assert r.status == 200, r.body
    per_iteration = min(timings)
    iterations = max(100, int(IN_FLIGHT_S / per_iteration))

    idle_ready, idle_infer = open_connection(srv.port), open_connection(srv.port)
    for conn in (idle_ready, idle_infer):  # keep-alive connections opened before SIGTERM
        assert exchange(conn, "GET", "/v2/health/ready")[0] == 200
    in_flight: dict[str, Any] = {}

    def slow_request() -> None:
        conn = open_connection(srv.port)
        try:
            in_flight["started"] = time.monotonic()
            in_flight["answer"] = exchange(conn, "POST", "/v2/models/slow/infer",
                                           slow_body(x, iterations))
        except Exception as exc:  # reported by the assertions below
            in_flight["error"] = exc
        finally:
            in_flight["ended"] = time.monotonic()
            conn.close()

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.2)  # the request is running on the model now
    assert srv.process is not None
    srv.process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        # "At once": within the few milliseconds the signal takes to reach the loop.
        deadline = time.monotonic() + 1.0
        status, body, _ = exchange(idle_ready, "GET", "/v2/health/ready")
        while status == 200 and time.monotonic() < deadline:
            time.sleep(0.01)
            status, body, _ = exchange(idle_ready, "GET", "/v2/health/ready")
        assert (status, body) == (503, {"ready": False})
        status, body, headers = exchange(idle_infer, "POST", "/v2/models/digits/infer",
                                         json.dumps({"inputs": [
                                             {"name": "input__0", "shape": [1, 64],
                                              "datatype": "FP32", "data": [0.0] * 64}]}).encode())
        assert status == 503 and "error" in body
        assert {k.lower() for k in headers} >= {"retry-after"}
        deadline = time.monotonic() + 5
        while not refused(srv.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refused(srv.port), "new connections are still accepted while draining"
    except http.client.RemoteDisconnected:
        worker.join(30)
        pytest.fail("the server closed an idle keep-alive connection while a request was in "
                    f"flight (that request ended {in_flight.get('ended', 0) - sent:.2f} s "
                    f"after SIGTERM: {in_flight.get('answer') or in_flight.get('error')!r})\n"
                    + srv.log()[-3000:])
    finally:
        idle_ready.close()
        idle_infer.close()
    worker.join(30)
    assert "error" not in in_flight, in_flight.get("error")
    assert in_flight["ended"] > sent, "the slow request ended before SIGTERM: make it slower"
    status, body, _ = in_flight["answer"]
    assert status == 200, body
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"]), expected, rtol=1e-6)
    assert srv.process.wait(15) == 0, srv.log()


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "fastserve"
    if not script.exists():
        pytest.skip("the fastserve console script is not installed in this environment")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and fastserve.__version__ in result.stdout
