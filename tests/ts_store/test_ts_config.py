"""TorchServe's start line and config.properties (ts_config.py, cli.py): every key,
command-line flags winning, TS_* variables, and malformed files naming the line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastserve.cli import parse_config
from fastserve.ts_config import TsConfigError, read_properties, resolve

from ts_archives import manifest, write_zip

SNAPSHOT = ('{"name":"startup.cfg","modelCount":1,"models":{"mnist":{"1.0":{"defaultVersion":'
            'true,"marName":"mnist.mar","minWorkers":2,"maxWorkers":5,"batchSize":4,'
            '"maxBatchDelay":10,"responseTimeout":60}}}}')


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "model-store"
    root.mkdir()
    for name in ("mnist", "other"):
        write_zip(root / f"{name}.mar", {"MAR-INF/MANIFEST.json": manifest(name)})
    return root


def properties(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.properties"
    path.write_text(text)
    return path


def test_kserve_config_properties(tmp_path: Path, store: Path, monkeypatch) -> None:
    """KServe's pytorch layout: /mnt/models/config/config.properties + model-store/."""
    monkeypatch.setenv("TS_SERVICE_ENVELOPE", "kservev2")
    cfg = properties(tmp_path, f"""# KServe's example
inference_address=http://0.0.0.0:8085
management_address=http://0.0.0.0:8085
metrics_address=http://0.0.0.0:8082
grpc_inference_port=7070
grpc_management_port=7071
enable_metrics_api=true
metrics_format=prometheus
number_of_netty_threads=4
job_queue_size=10
enable_envvars_config=true
install_py_dep_per_model=false
model_store={store}
model_snapshot={SNAPSHOT}
""")
    config = parse_config(["--ts-config", str(cfg), "--port", "8080"])
    assert config.models == store.resolve()
    assert (config.host, config.port) == ("0.0.0.0", 8080)  # the flag wins over the file
    # The file gives both APIs one address (TorchServe then serves them on one port); the
    # --port flag moved inference off it, so management keeps the file's.
    assert (config.management_host, config.management_port) == ("0.0.0.0", 8085)
    assert (config.metrics_host, config.metrics_port) == ("0.0.0.0", 8082)
    assert (config.grpc_port, config.grpc_management_port) == (7070, 7071)
    assert parse_config(["--ts-config", str(cfg), "--grpc-port", "9001"]).grpc_port == 9001
    settings = config.store
    assert settings.selection == ("mnist.mar",) and settings.names == {"mnist.mar": "mnist"}
    assert settings.job_queue_size == 10 and settings.envelope == "kservev2"
    assert settings.per_model("mnist", "1.0")["batchSize"] == 4
    assert settings.default_version("mnist") == "1.0"
    notes = " ".join(config.ts_notes)
    for key in ("enable_metrics_api", "metrics_format", "number_of_netty_threads"):
        assert key in notes
    shared = parse_config(["--ts-config", str(cfg)])
    assert (shared.host, shared.port) == (shared.management_host, shared.management_port) == (
        "0.0.0.0", 8085)
    with pytest.raises(SystemExit):  # --workers N share the inference port only
        parse_config(["--ts-config", str(cfg), "--workers", "2"])
    same_metrics = properties(tmp_path, "inference_address=http://127.0.0.1:9085\n"
                                        "metrics_address=http://127.0.0.1:9085\n"
                                        f"model_store={store}\n")
    config = parse_config(["--ts-config", str(same_metrics)])
    assert config.metrics_port is None  # /metrics answers on the inference port itself
    assert any("metrics_address is the inference address" in n for n in config.ts_notes)


def test_start_line_selection(store: Path) -> None:
    config = parse_config(["--model-store", str(store), "--models", "m2=mnist.mar,other.mar"])
    assert config.store.selection == ("mnist.mar", "other.mar")
    assert config.store.names == {"mnist.mar": "m2"}
    spaced = parse_config(["--model-store", str(store), "--models", "mnist.mar", "other.mar",
                           "--ncs", "--foreground", "--disable-token-auth"])
    assert spaced.store.selection == ("mnist.mar", "other.mar")
    assert any("--ncs" in n for n in spaced.ts_notes)
    assert parse_config(["--model-store", str(store)]).store.selection == ()
    assert parse_config(["--model-store", str(store), "--models", "all"]).store.selection == (
        "all",)


def test_load_models_and_models_map(tmp_path: Path, store: Path) -> None:
    cfg = properties(tmp_path, "load_models=other.mar\nmodels={\"other\": {\"1.0\": "
                     "{\"batchSize\": 2}}}\ndefault_workers_per_model=3\n"
                     "default_response_timeout=30\nmax_request_size=1000\n")
    config = parse_config(["--model-store", str(store), "--ts-config", str(cfg)])
    assert config.store.selection == ("other.mar",)
    assert config.store.workers == 3 and config.store.response_timeout == 30
    assert config.max_request_size == 1000
    flagged = parse_config(["--model-store", str(store), "--ts-config", str(cfg),
                            "--max-request-size", "2KB", "--models", "mnist.mar"])
    assert flagged.max_request_size == 2000 and flagged.store.selection == ("mnist.mar",)


def test_ts_variables_only_with_enable_envvars_config(tmp_path: Path, store: Path) -> None:
    env = {"TS_INFERENCE_ADDRESS": "http://127.0.0.1:9999", "TS_JOB_QUEUE_SIZE": "7"}
    off = resolve(str(store), None, str(properties(tmp_path, "job_queue_size=5\n")), set(), env)
    assert "port" not in off.server and off.settings.job_queue_size == 5
    on = resolve(str(store), None, str(properties(
        tmp_path, "enable_envvars_config=true\njob_queue_size=5\n")), set(), env)
    assert on.server["port"] == 9999 and on.settings.job_queue_size == 7
    via_env = resolve(str(store), None, None, set(),
                      {"TS_CONFIG_FILE": str(properties(tmp_path, "job_queue_size=4\n"))})
    assert via_env.settings.job_queue_size == 4


def test_properties_syntax(tmp_path: Path) -> None:
    keys = read_properties(properties(tmp_path, "! comment\na = 1\nb: two\n"
                                      "d=http\\://x\\\n  :1\n"))
    assert {k: e.value for k, e in keys.items()} == {"a": "1", "b": "two", "d": "http://x:1"}


@pytest.mark.parametrize("text, words", [
    ("inference_address=http://0.0.0.0:8080\njust_a_key\n", "line 2"),
    ("job_queue_size=lots\n", "line 1: expected an integer"),
    ("\n\ninference_address=https://0.0.0.0:8443\n", "line 3"),
    ("inference_address=http://0.0.0.0\n", "needs a port"),
    ("models={not json\n", "line 1: not valid JSON"),
    ("service_envelope=soap\n", "service_envelope must be one of"),
    ("enable_envvars_config=maybe\n", "expected true or false"),
    ("a=1\nb=2\\\n", "line 2"),
    ("# ok\nc three\n", "line 2: expected key=value"),
])
def test_malformed_config_names_the_line(tmp_path: Path, store: Path, text: str,
                                         words: str) -> None:
    with pytest.raises(TsConfigError, match=words):
        resolve(str(store), None, str(properties(tmp_path, text)), set(), {})


def test_malformed_config_exits_non_zero_with_one_line(tmp_path: Path, store: Path) -> None:
    cfg = properties(tmp_path, "inference_address=http://127.0.0.1:8080\nbad line here\n")
    result = subprocess.run([sys.executable, "-m", "fastserve", "--model-store", str(store),
                             "--ts-config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "line 2" in result.stderr and str(cfg) in result.stderr


@pytest.mark.parametrize("models, words", [
    ("missing.mar", "not an archive or model folder"),
    ("https://example.com/a.mar", "no downloads"),
    ("../escape.mar", "not an archive or model folder"),
])
def test_bad_selection_exits(store: Path, models: str, words: str) -> None:
    with pytest.raises(SystemExit, match=words):
        parse_config(["--model-store", str(store), "--models", models])


def test_without_models_or_store_is_an_error() -> None:
    with pytest.raises(SystemExit):
        parse_config([])


def test_models_naming_the_store_itself_selects_nothing(tmp_path: Path, store: Path) -> None:
    cfg = properties(tmp_path, "load_models=other.mar\n")
    config = parse_config(["--models", str(store), "--model-store", str(store),
                           "--ts-config", str(cfg)])
    assert config.store.selection == ("other.mar",)
