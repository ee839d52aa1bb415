"""Operations tests (issue #7): management API, /metrics, hot reload, access log.

One server for most of them (``ops``: access log in JSON, polling every 0.25 s) on a
repository written at test time (ops_models), plus ``spare`` and ``pinned`` copies for
the tests that unload, register and pin. Tests that change a model put it back as they
found it. Helpers live in ops_helpers (a conftest cannot be imported by name: every
test folder has one).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from _server import ServerProcess

POLL = "0.25"


@pytest.fixture(scope="session")
def ops_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ops_models import build

    root = tmp_path_factory.mktemp("ops") / "repo"
    build(root)
    shutil.copytree(root / "digits", root / "spare")
    shutil.copytree(root / "versioned", root / "pinned")
    return root


@pytest.fixture(scope="session")
def ops(ops_repo: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(ops_repo, "--access-log", "--log-format", "json",
                           "--poll-interval", POLL)
    with server:
        yield server
