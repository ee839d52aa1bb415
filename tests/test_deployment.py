"""Deployment files: parsed and checked here, since no Docker engine or cluster runs in CI."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

from fastserve.app import App  # noqa: E402
from fastserve.cli import parse_config  # noqa: E402

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"]


def _load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / "kserve" / name).read_text())


def test_deployment_serving_runtime_has_what_kserve_requires(tmp_path: Path) -> None:
    runtime = _load("servingruntime.yaml")
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert runtime["kind"] in ("ServingRuntime", "ClusterServingRuntime")
    assert runtime["metadata"]["name"]
    spec = runtime["spec"]
    assert "v2" in spec["protocolVersions"]
    assert any(f["name"] == "pytorch" for f in spec["supportedModelFormats"])
    (container,) = spec["containers"]
    # KServe finds the model server by this container name.
    assert container["name"] == "kserve-container"
    assert container["securityContext"]["runAsNonRoot"] is True
    port = container["ports"][0]["containerPort"]
    # The args are a valid fastserve command line serving the storage initializer's folder.
    models = tmp_path / "mnt-models"
    models.mkdir()
    args = [a.replace("/mnt/models", str(models)) for a in container["args"]]
    config = parse_config(args)
    assert config.port == port and config.host == "0.0.0.0"
    # The probes point at endpoints that exist on that port.
    app = App(config)
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == port
        route, _ = app.router.resolve("GET", get["path"])
        assert route.template == get["path"]
    assert app.router.resolve("GET", "/v2/health/ready")[0].handler.__name__ == "ready"


def test_deployment_inference_service_uses_the_runtime() -> None:
    runtime = _load("servingruntime.yaml")
    service = _load("inferenceservice.yaml")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["kind"] == "InferenceService"
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert re.match(r"^(pvc|gs|s3|https?)://", model["storageUri"])


def _instructions(name: str) -> list[tuple[str, str]]:
    text = (DEPLOY / name).read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", DOCKERFILES)
def test_deployment_dockerfile_shape(name: str) -> None:
    steps = _instructions(name)
    ops = [op for op, _ in steps]
    assert ops[0] == "FROM"
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert ops.index("USER") < ops.index("ENTRYPOINT")
    expose = " ".join(arg for op, arg in steps if op == "EXPOSE").split()
    assert {"8080", "8081"} <= set(expose)
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert "torch==2.13.0" in runs
    entry = [arg for op, arg in steps if op == "ENTRYPOINT"][0]
    assert "fastserve" in entry
    cmd = shlex.split([arg for op, arg in steps if op == "CMD"][-1].strip("[]").replace(",", " "))
    assert "--models" in cmd and "/models" in cmd


@pytest.mark.parametrize("name", DOCKERFILES)
def test_deployment_dockerfile_hadolint(name: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) \
        or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed")
    result = subprocess.run([hadolint, str(DEPLOY / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
