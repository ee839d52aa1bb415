"""TorchServe API fixtures: the repository of _ts_support, ONE server for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _ts_support import MAX_REQUEST, SAMPLES, Local, build_repository, noise_image

from _server import ServerProcess  # tests/ is on sys.path (tests/conftest.py)


@pytest.fixture(scope="session")
def ts_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ts") / "models"
    root.mkdir()
    build_repository(root)
    return root


@pytest.fixture(scope="session")
def ts_server(ts_repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(ts_repo, "--max-request-size", str(MAX_REQUEST),
                       "--torch-threads", "1") as server:
        yield server


@pytest.fixture(scope="session")
def local(ts_repo: Path) -> Local:
    return Local(ts_repo)


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Request files for curl: the sample PNGs, a JPEG, a > 1 MB PNG, a broken image."""
    root = tmp_path_factory.mktemp("files")
    out = {p.stem: p for p in SAMPLES.glob("digit_*.png")}
    for name, data in (("photo.jpg", noise_image(40, 30, "JPEG", 1)),
                       ("big.png", noise_image(700, 600, "PNG", 2)),
                       ("broken.png", SAMPLES.joinpath("digit_7.png").read_bytes()[:40])):
        (root / name).write_bytes(data)
        out[name.split(".")[0]] = root / name
    return out
