"""--auth-token-file: bearer tokens on every endpoint but health and metrics."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from _server import ServerProcess

pytestmark = pytest.mark.slow  # every test here uses a server process of its own

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "models"
TOKEN = "s3cr3t-inference-token"
MANAGEMENT = "s3cr3t-management-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    key_file = tmp_path_factory.mktemp("auth") / "key_file.json"
    key_file.write_bytes(orjson.dumps({
        "inference": {"key": TOKEN, "expiration time": "never"},
        "management": {"key": MANAGEMENT, "expiration time": "never"},
        "API": {"key": "unused"},
    }))
    with ServerProcess(EXAMPLES, "--auth-token-file", str(key_file), "--access-log") as s:
        yield s


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_auth_health_and_metrics_stay_open(server: ServerProcess) -> None:
    assert server.request("GET", "/v2/health/live")[0] == 200
    assert server.request("GET", "/v2/health/ready")[0] == 200


@pytest.mark.parametrize("headers", [{}, _bearer("wrong"), _bearer(MANAGEMENT),
                                     {"Authorization": TOKEN}])
def test_auth_refuses_missing_or_wrong_token_with_401(server: ServerProcess,
                                                      headers: dict[str, str]) -> None:
    status, resp_headers, body = server.request("GET", "/v2/models/digits", headers=headers)
    assert status == 401
    assert resp_headers["www-authenticate"] == "Bearer"
    assert "error" in orjson.loads(body)
    assert TOKEN not in body.decode()


def test_auth_accepts_the_inference_token(server: ServerProcess) -> None:
    status, _, body = server.request("GET", "/v2/models/digits", headers=_bearer(TOKEN))
    assert status == 200, body
    assert orjson.loads(body)["name"] == "digits"
    infer = (EXAMPLES.parent / "samples" / "digits_v2.json").read_bytes()
    status, _, body = server.request("POST", "/v2/models/digits/infer", infer, _bearer(TOKEN))
    assert status == 200, body


def test_auth_management_port_takes_only_the_management_key(server: ServerProcess) -> None:
    port = server.management_port
    assert server.request("GET", "/models", port=port)[0] == 401
    assert server.request("GET", "/models", headers=_bearer(TOKEN), port=port)[0] == 401
    status = server.request("GET", "/models", headers=_bearer(MANAGEMENT), port=port)[0]
    assert status != 401


def test_auth_token_never_in_logs(server: ServerProcess) -> None:
    server.request("GET", "/v2/models/digits", headers=_bearer(TOKEN))
    server.request("GET", "/v2/models/digits", headers=_bearer("wrong-guess"))
    log = server.log()
    assert TOKEN not in log and MANAGEMENT not in log and "wrong-guess" not in log
