"""deploy/kserve/servingruntime-torchserve.yaml: the runtime for KServe's `pytorch` model
format layout (/mnt/models/config/config.properties + /mnt/models/model-store/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastserve.app import App
from fastserve.backends import ts_envelope
from fastserve.cli import parse_config

from ts_archives import build_mar

yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parent.parent.parent / "deploy" / "kserve"
# KServe's published config.properties for a TorchServe predictor, as it is
CONFIG = """inference_address=http://0.0.0.0:8085
management_address=http://0.0.0.0:8085
metrics_address=http://0.0.0.0:8082
grpc_inference_port=7070
grpc_management_port=7071
enable_metrics_api=true
metrics_format=prometheus
number_of_netty_threads=4
job_queue_size=10
enable_envvars_config=true
install_py_dep_per_model=true
model_store=/mnt/models/model-store
model_snapshot={"name":"startup.cfg","modelCount":1,"models":{"mnist":{"1.0":{"defaultVersion":true,"marName":"mnist.mar","minWorkers":1,"maxWorkers":5,"batchSize":1,"maxBatchDelay":10,"responseTimeout":120}}}}
"""


def layout(root: Path) -> Path:
    """/mnt/models as KServe's storage initializer leaves it for the pytorch format."""
    mnt = root / "mnt-models"
    (mnt / "config").mkdir(parents=True)
    (mnt / "config" / "config.properties").write_text(
        CONFIG.replace("/mnt/models", str(mnt)))
    build_mar(root / "src", mnt / "model-store", "mnist", "1.0")
    return mnt


def test_runtime_args_serve_the_pytorch_format_layout(tmp_path: Path, monkeypatch) -> None:
    runtime = yaml.safe_load((DEPLOY / "servingruntime-torchserve.yaml").read_text())
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert any(f["name"] == "pytorch" for f in runtime["spec"]["supportedModelFormats"])
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    assert container["securityContext"]["runAsNonRoot"] is True
    envs = {e["name"]: e["value"] for e in container["env"]}
    mnt = layout(tmp_path)
    # KServe fills the envelope from the InferenceService label (empty without one).
    monkeypatch.setenv("TS_SERVICE_ENVELOPE", envs["TS_SERVICE_ENVELOPE"].replace(
        "{{.Labels.serving.kserve.io/wrapper}}", "kservev2"))
    args = [a.replace("/mnt/models", str(mnt)) for a in container["args"]]
    config = parse_config(args)
    port = container["ports"][0]["containerPort"]
    assert (config.host, config.port) == ("0.0.0.0", port)  # the flags win over 8085
    assert config.models == (mnt / "model-store").resolve()
    assert config.store.selection == ("mnist.mar",) and config.store.envelope == "kservev2"
    assert config.store.job_queue_size == 10 and config.metrics_port == 8082
    # App sets the process-wide envelope (kservev2): put the old one back afterwards, or
    # the handler tests that run later in this process get their handlers wrapped.
    monkeypatch.setattr(ts_envelope, "settings", ts_envelope.settings)
    app = App(config)
    entry = app.repository.entry("mnist")
    assert list(entry.versions) == ["1.0"] and entry.default is entry.versions["1.0"]
    assert entry.config is not None and entry.config.batch_delay_ms == 10.0
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == port
        route, _ = app.router.resolve("GET", get["path"])
        assert route.template == get["path"]
    monkeypatch.setenv("TS_SERVICE_ENVELOPE", "")  # no wrapper label: no envelope
    assert parse_config(args).store.envelope is None


def test_inference_service_names_the_runtime() -> None:
    runtime = yaml.safe_load((DEPLOY / "servingruntime-torchserve.yaml").read_text())
    service = yaml.safe_load((DEPLOY / "inferenceservice-torchserve.yaml").read_text())
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {f["name"] for f in
                                           runtime["spec"]["supportedModelFormats"]}
