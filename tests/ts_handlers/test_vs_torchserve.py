"""The same archives and requests against real TorchServe 0.12 and fastserve, side by
side: status codes, content types and bodies equal (numbers within 1e-5).

Needs Java 17 and the torchserve package (skipped without them, and in CI). The
fastserve half alone, with answers computed by local torch, is
test_ts_handlers_served.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mar_cases import DIFFERENT, Case, cases, have_torchvision, same_body, send, server_env

from _server import ServerProcess, free_port, http_request

pytestmark = pytest.mark.slow

TORCHSERVE = shutil.which("torchserve") or str(Path(sys.executable).with_name("torchserve"))
if not shutil.which("java") or not Path(TORCHSERVE).exists():
    pytest.skip("needs Java 17 and torchserve 0.12", allow_module_level=True)
if os.environ.get("CI") and not os.environ.get("FASTSERVE_VS_TORCHSERVE"):
    # A JVM and its worker processes in CI's time budget, for a check that needs no
    # rerun per commit: run by hand (FASTSERVE_VS_TORCHSERVE=1 forces it in CI too).
    pytest.skip("TorchServe side by side runs by hand, not in CI", allow_module_level=True)

START_TIMEOUT = 240.0
# Messages that differ in words only: the status and TorchServe's error type are compared.
SAME_TYPE_ONLY = {"unknown-model"}


class TorchServe:
    """``torchserve --start --foreground --ncs`` on free ports, in its own folder."""

    def __init__(self, store: Path, folder: Path) -> None:
        self.port, self.management_port = free_port(), free_port()
        self.folder = folder
        config = folder / "config.properties"
        config.write_text(f"inference_address=http://127.0.0.1:{self.port}\n"
                          f"management_address=http://127.0.0.1:{self.management_port}\n"
                          f"metrics_address=http://127.0.0.1:{free_port()}\n"
                          f"grpc_inference_port={free_port()}\n"
                          f"grpc_management_port={free_port()}\n"
                          "default_workers_per_model=1\ninstall_py_dep_per_model=false\n"
                          "disable_token_authorization=true\n")
        # TMPDIR: TorchServe keeps a pid file there and will not start beside another one.
        (folder / "tmp").mkdir()
        self.env = env = dict(os.environ, **server_env(), TMPDIR=str(folder / "tmp"))
        self.log = (folder / "torchserve.log").open("wb")
        self.process = subprocess.Popen(
            [TORCHSERVE, "--start", "--foreground", "--ncs", "--disable-token-auth",
             "--model-store", str(store), "--models", "all", "--ts-config", str(config)],
            cwd=folder, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, models: list[str]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(models)
        while pending and time.monotonic() < deadline:
            assert self.process.poll() is None, (self.folder / "torchserve.log").read_text()
            try:
                answer = http_request(self.management_port, "GET", f"/models/{pending[0]}")
                if answer.status == 200 and b'"READY"' in answer.body:
                    pending.pop(0)
                    continue
            except OSError:
                pass
            time.sleep(0.5)
        assert not pending, f"TorchServe never had {pending} READY"

    def stop(self) -> None:
        subprocess.run([TORCHSERVE, "--stop"], cwd=self.folder, capture_output=True,
                       timeout=60, env=self.env)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def servers(ts_store: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[TorchServe, ServerProcess]]:
    torchserve = TorchServe(ts_store, tmp_path_factory.mktemp("torchserve"))
    try:
        with ServerProcess("all", "--model-store", str(ts_store), env=server_env()) as fast:
            torchserve.wait_ready(sorted(p.stem for p in ts_store.glob("*.mar")))
            yield torchserve, fast
    finally:
        torchserve.stop()


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_same_answer_as_torchserve(servers, case: Case) -> None:
    if case.model in ("mnist", "segmenter", "detector") and not have_torchvision():
        pytest.skip("the built-in image_classifier needs torchvision")
    torchserve, fast = servers
    theirs, ours = send(torchserve.port, case), send(fast.port, case)
    if case.id in DIFFERENT:  # a raising handler: 500 with its reason here, 503 there
        assert (theirs.status, theirs.json()) == (503, {
            "code": 503, "type": "InternalServerException", "message": "Prediction failed"})
        assert ours.status == 500 and ours.json()["type"] == "InternalServerException"
        return
    assert ours.status == theirs.status, (theirs, ours)
    assert ours.content_type == theirs.content_type, (theirs, ours)
    if case.id in SAME_TYPE_ONLY:
        assert ours.json()["code"] == theirs.json()["code"]
        assert ours.json()["type"] == theirs.json()["type"]
        return
    same_body(theirs.body, ours.body)
