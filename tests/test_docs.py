"""The code blocks of README.md and docs/*.md, run against a live server.

Every ```bash / ```sh / ```python block runs, with localhost:8080 and :8081 (and gRPC's
:8001 and :8002) pointing at a server on the example models; a block preceded by
``<!-- no test -->`` (docker, kubectl, pip installs) is skipped. curl fails the block on
an HTTP error unless the block is preceded by ``<!-- test: errors shown -->``.

The outputs the docs show are checked too, not only the exit status: a one-line command
(or a ``print(...)``) with a trailing ``# {...}`` / ``# [...]`` comment must print that
value, and in a session shown with ``$ `` prompts each command must print the lines shown
after it. ``...`` stands for anything; a number shown matches one that starts with its
digits (0.1518 matches 0.15183); whitespace is not compared; prose after the value
(``# {"ready":true} once models are loaded``) and ``  # notes`` on output lines are not
part of it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _server import ServerProcess, free_port

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
    with ServerProcess(ROOT / "examples" / "models", "--grpc-port", str(free_port()),
                       "--grpc-management-port", str(free_port())) as s:
        yield s


TRAILING = re.compile(r"^(?P<code>\S.*?\S)\s+# (?P<shown>[\[{].*)$")
NOTE = re.compile(r"\s{2,}#\s.*$")  # "  # [1, 8, 8]: C x H x W" after a shown output
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _value(comment: str) -> str:
    """The value at the start of a comment: up to its balancing bracket (prose dropped)."""
    depth = 0
    for i, ch in enumerate(comment):
        depth += (ch in "[{") - (ch in "]}")
        if depth == 0:
            return comment[: i + 1]
    return comment


def _matches(shown: str, printed: str) -> bool:
    """Whether a shown output fits the real one (whitespace ignored on both sides).

    ``...`` is anything; a number shown with k decimals is the real one rounded to k."""
    parts, numbers = [], []
    for piece in re.split(r"(\.\.\.|-?\d+(?:\.\d+)?)", "".join(shown.split())):
        if piece == "...":
            parts.append(".*?")
        elif NUMBER.fullmatch(piece):
            parts.append(r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")
            numbers.append(piece)
        else:
            parts.append(re.escape(piece))
    m = re.fullmatch("".join(parts), "".join(printed.split()), re.DOTALL)
    if m is None:
        return False
    for want, got in zip(numbers, m.groups(), strict=True):
        decimals = len(want.partition(".")[2])
        if decimals == 0 and "." not in got and "e" not in got.lower():
            if int(want) != int(got):
                return False
        elif abs(float(got) - float(want)) > 0.5 * 10.0 ** -decimals * (1 + 1e-9):
            return False
    return True


def _begin(i: int, lang: str) -> str:
    return f'print("@@{i}@@")' if lang == "python" else f'echo "@@{i}@@"'


def _end(i: int, lang: str) -> str:
    return f'print("\\n@@/{i}@@")' if lang == "python" else f'echo; echo "@@/{i}@@"'


def _instrument(code: str, lang: str) -> tuple[str, dict[int, str]]:
    """The block with markers around each command whose output it shows; the outputs.

    A shell session with "$ " prompts keeps its commands; the lines after each are what
    it prints. Elsewhere a one-line command (or a top-level print) with a trailing
    ``# {...}`` or ``# [...]`` comment shows its output there.
    """
    lines = code.splitlines()
    shown: dict[int, str] = {}
    out: list[str] = []
    if lang != "python" and any(line.startswith("$ ") for line in lines):
        i, n = 0, 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            command = [lines[i][2:]]
            while command[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                command.append(lines[i])
            i += 1
            printed = []
            while i < len(lines) and not lines[i].startswith("$ "):
                printed.append(NOTE.sub("", lines[i]))
                i += 1
            if any(p.strip() for p in printed):
                shown[n] = "\n".join(printed)
                out += [_begin(n, lang), *command, _end(n, lang)]
                n += 1
            else:
                out += command
        return "\n".join(out), shown
    continued = False
    for n, line in enumerate(lines):
        m = TRAILING.match(line)
        single = not continued and not line.rstrip().endswith("\\")
        continued = line.rstrip().endswith("\\")
        if m and single and (lang != "python" or line.startswith("print(")):
            shown[n] = _value(m.group("shown"))
            out += [_begin(n, lang), m.group("code"), _end(n, lang)]
        else:
            out.append(line)
    return "\n".join(out), shown


def _check_outputs(where: str, stdout: str, shown: dict[int, str]) -> None:
    for n, expected in shown.items():
        m = re.search(f"@@{n}@@\n(.*?)@@/{n}@@", stdout, re.DOTALL)
        assert m is not None, f"{where}: no output captured for {expected!r}"
        assert _matches(expected, m.group(1)), (
            f"{where}: the docs show {expected!r}, the command printed {m.group(1)[:500]!r}")


def _localise(code: str, server: ServerProcess) -> str:
    for host in ("localhost", "127.0.0.1"):
        code = code.replace(f"{host}:8080", f"127.0.0.1:{server.port}")
        code = code.replace(f"{host}:8081", f"127.0.0.1:{server.management_port}")
        code = code.replace(f"{host}:8001", f"127.0.0.1:{server.grpc_port}")
        code = code.replace(f"{host}:8002", f"127.0.0.1:{server.grpc_management_port}")
    return code


@pytest.mark.parametrize(("where", "lang", "code", "marker"), BLOCKS,
                         ids=[b[0] for b in BLOCKS])
def test_docs_block_runs(server: ServerProcess, where: str, lang: str, code: str,
                         marker: str) -> None:
    code, shown = _instrument(_localise(code, server), lang)
    if lang == "python":
        cmd = [sys.executable, "-c", code]
    else:
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
    _check_outputs(where, result.stdout, shown)


@pytest.mark.parametrize(("shown", "printed", "matches"), [
    ('{"ready":true}', '{"ready": true}\n', True),
    ('{"status":"Healthy",...}', '{"status":"Healthy","health":"healthy!"}', True),
    ("[6 3 7 7]", "[6 3 7 7]\n", True),
    ("[6 3 7 7]", "[6 3 7 1]\n", False),
    ("[-0.0,0.1518,...]", "[-0.0,0.15183,0.2]", True),
    ("[-0.0,0.7010,...]", "[0.0,0.70096236,0.2]", True),  # rounded as shown
    ("[-0.0,0.1518,...]", "[-0.0,0.1519,0.2]", False),
    ("[1.5]", "[1.5e-3]", False),
    ('{"ready":true}', '{"ready":false}', False),
])
def test_shown_output_patterns(shown: str, printed: str, matches: bool) -> None:
    assert _matches(shown, printed) is matches


def test_instrument_finds_shown_outputs() -> None:
    code, shown = _instrument('curl -s x/ready   # {"ready":true} once loaded\n'
                              "curl -s x \\\n   -d y   # a list of two\n", "bash")
    assert shown == {0: '{"ready":true}'} and code.count("@@") == 4
    code, shown = _instrument("$ curl a\n[1, 2]    # [2]: a note\n$ curl b\n", "sh")
    assert shown == {0: "[1, 2]"} and "curl b" in code
