"""--access-log: one line per request, text or JSON; tracebacks for 5xx only; no token."""

from __future__ import annotations

import re
import time

import orjson
import pytest

from _server import ServerProcess
from ops_helpers import TOKEN

pytestmark = pytest.mark.slow  # every test here uses a server process of its own

FRAGILE_OK = b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}'
FRAGILE_RAISES = (b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", '
                  b'"data": [-1, 2]}]}')
INFER = "/v2/models/fragile/infer"


def _requests(server: ServerProcess, token: str | None = None) -> None:
    """200, 500 (the model raises), 400 (bad JSON), 404, and a wrong token (401 with auth)."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    json = {"Content-Type": "application/json", **auth}
    assert server.request("POST", INFER, FRAGILE_OK, json)[0] == 200
    assert server.request("POST", INFER, FRAGILE_RAISES, json)[0] == 500
    assert server.request("POST", INFER, b"{not json", json)[0] == 400
    assert server.request("GET", "/v2/models/nope", None, auth)[0] == 404
    if token:
        wrong = {"Authorization": "Bearer wrong-token-0815"}
        assert server.request("GET", "/v2/models/fragile", None, wrong)[0] == 401
        assert server.request("GET", "/models", None, auth,
                              port=server.management_port)[0] == 200


def _log_text(server: ServerProcess, until: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        text = server.log_path.read_text(errors="replace")
        if until in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


@pytest.fixture(scope="module")
def text_server(ops_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("logs") / "repo"
    repo.mkdir()
    (repo / "fragile").symlink_to(ops_repo / "fragile", target_is_directory=True)
    token_file = repo.parent / "token"
    token_file.write_text(TOKEN + "\n")
    with ServerProcess(repo, "--access-log", "--auth-token-file", str(token_file)) as server:
        yield server


def test_access_log_text(text_server):
    _requests(text_server, TOKEN)
    log = _log_text(text_server, '"GET /models" 200')
    access = [line for line in log.splitlines() if " fastserve.access: " in line
              and "/health/" not in line]
    pattern = re.compile(r' fastserve\.access: 127\.0\.0\.1:\d+ "(\w+) (\S+)" (\d{3}) '
                         r"(\d+\.\d{3})ms model=(\S+)$")
    parsed = [pattern.search(line).groups() for line in access]
    got = [(m, p, int(s), model) for m, p, s, _, model in parsed]
    assert got == [
        ("POST", INFER, 200, "fragile"), ("POST", INFER, 500, "fragile"),
        ("POST", INFER, 400, "fragile"), ("GET", "/v2/models/nope", 404, "nope"),
        ("GET", "/v2/models/fragile", 401, "-"), ("GET", "/models", 200, "-"),
    ]
    assert TOKEN not in log and "wrong-token-0815" not in log
    # One traceback: the 500's (the model raised); none for 400, 401 or 404.
    assert log.count("Traceback (most recent call last)") == 1
    assert "fragile: negative input" in log


def test_access_log_json(ops):
    _requests(ops)
    log = _log_text(ops, '"path":"/v2/models/nope"')
    records = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [r for r in records if r["logger"] == "fastserve.access"
              and r["path"] in (INFER, "/v2/models/nope")]
    assert [(r["method"], r["path"], r["status"], r["model"]) for r in access[-4:]] == [
        ("POST", INFER, 200, "fragile"), ("POST", INFER, 500, "fragile"),
        ("POST", INFER, 400, "fragile"), ("GET", "/v2/models/nope", 404, "nope"),
    ]
    assert all(isinstance(r["latency_ms"], float) and r["time"].endswith("Z") for r in access)
    errors = [r for r in records if r["level"] == "ERROR" and "exc_info" in r]
    assert any("fragile: negative input" in r["exc_info"] for r in errors)
    assert all("Traceback" not in r.get("exc_info", "") for r in records
               if r["level"] != "ERROR")


def test_client_mistakes_log_warning_with_request_id(text_server):
    """A 4xx logs one WARNING line carrying the request id (the client's X-Request-ID, or
    one the answer gives back), never ERROR; ragged data says which input is ragged."""
    json = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    given = text_server.request("POST", INFER, b"{not json", {**json, "X-Request-ID": "rq-4711"})
    assert given.status == 400 and given.header("x-request-id") == "rq-4711"
    ragged = (b'{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", '
              b'"data": [[1, 2], [3]]}]}')
    made = text_server.request("POST", INFER, ragged, json)
    assert made.status == 400, made.body
    error = orjson.loads(made.body)["error"]
    assert "input 'x'" in error and "ragged" in error and "inhomogeneous" not in error
    rid = made.header("x-request-id")
    assert rid and rid != "rq-4711"
    log = _log_text(text_server, f"[request {rid}]")
    for request in ("rq-4711", rid):
        lines = [line for line in log.splitlines() if f"[request {request}]" in line]
        assert len(lines) == 1 and " WARNING " in lines[0] and "-> 400" in lines[0], lines
