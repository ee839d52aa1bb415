"""The code blocks of README.md and docs/*.md, run against a live server.

Every ```bash / ```sh / ```python block runs, with localhost:8080 and :8081 pointing at a
server on the example models; a block preceded by ``<!-- no test -->`` (docker,
kubectl, pip installs) is skipped. curl fails the block on an HTTP error unless the
block is preceded by ``<!-- test: errors shown -->``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _server import ServerProcess

pytestmark = pytest.mark.slow  # every test here uses a server process of its own

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"(?P<marker><!--[^>]*-->\s*\n)?```(?P<lang>\w+)\n(?P<code>.*?)\n```",
                   re.DOTALL)


def _blocks() -> list[tuple[str, str, str, str]]:
    found = []
    for path in FILES:
        text = path.read_text()
        for m in FENCE.finditer(text):
            marker = m.group("marker") or ""
            if m.group("lang") not in ("bash", "sh", "python") or "no test" in marker:
                continue
            line = text[: m.start("code")].count("\n") + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", m.group("lang"),
                          m.group("code"), marker))
    return found


BLOCKS = _blocks()


@pytest.fixture(scope="module")
def server():
    with ServerProcess(ROOT / "examples" / "models") as s:
        yield s


def _commands(code: str) -> str:
    """A shell session shown with "$ " prompts: keep the commands, drop their output."""
    if not any(line.startswith("$ ") for line in code.splitlines()):
        return code
    kept, continued = [], False
    for line in code.splitlines():
        if line.startswith("$ ") or continued:
            kept.append(line[2:] if line.startswith("$ ") else line)
            continued = line.rstrip().endswith("\\")
    return "\n".join(kept)


def _localise(code: str, server: ServerProcess) -> str:
    for host in ("localhost", "127.0.0.1"):
        code = code.replace(f"{host}:8080", f"127.0.0.1:{server.port}")
        code = code.replace(f"{host}:8081", f"127.0.0.1:{server.management_port}")
    return code


@pytest.mark.parametrize(("where", "lang", "code", "marker"), BLOCKS,
                         ids=[b[0] for b in BLOCKS])
def test_docs_block_runs(server: ServerProcess, where: str, lang: str, code: str,
                         marker: str) -> None:
    code = _localise(code, server)
    if lang == "python":
        cmd = [sys.executable, "-c", code]
    else:
        code = _commands(code)
        strict = "errors shown" not in marker
        prelude = "set -e -o pipefail\n"
        if strict:
            prelude += 'curl() { command curl --fail-with-body "$@"; }\n'
        cmd = ["bash", "-c", prelude + code]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, (
        f"{where} failed ({result.returncode}):\n{code}\n--- stdout\n{result.stdout[-2000:]}"
        f"\n--- stderr\n{result.stderr[-2000:]}")
