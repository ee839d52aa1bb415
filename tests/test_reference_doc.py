"""docs/reference.md is the user's reference (a clone has no ../shared): it must keep up
with the code -- every flag with its default, every config.toml key -- and the README
must point to it rather than to files outside the project."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from fastserve.cli import build_parser
from fastserve.core.model_config import parse_model_config

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
MIGRATING = (ROOT / "docs" / "migrating-from-torchserve.md").read_text(encoding="utf-8")


def _flags() -> list[argparse.Action]:
    return [a for a in build_parser()._actions if a.option_strings
            and a.option_strings[0] not in ("-h", "--version")]


@pytest.mark.parametrize("action", _flags(), ids=lambda a: a.option_strings[0])
def test_every_flag_is_documented(action: argparse.Action) -> None:
    flag = action.option_strings[0]
    assert f"`{flag}" in REFERENCE or flag in MIGRATING, flag
    row = re.search(rf"^\| `{re.escape(flag)}[^|]*\| ([^|]*) \|", REFERENCE, re.MULTILINE)
    if row is None:
        return  # a TorchServe start-line flag: documented in migrating-from-torchserve.md
    shown = row.group(1)
    default = action.default
    if isinstance(default, (int, float, str)) and not isinstance(default, bool) \
            and flag != "--auth-token-file":
        text = f"{default:g}" if isinstance(default, (int, float)) else default
        assert f"`{text}`" in shown, (flag, shown, default)


def test_every_config_toml_key_is_documented(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.toml").write_text("bogus = 1\n", encoding="utf-8")
    with pytest.raises(Exception) as info:
        parse_model_config(tmp_path / "m")
    known = info.value.message.split("known keys are ")[1].split(", ")
    section = REFERENCE.split("### `config.toml` keys")[1].split("###")[0]
    for key in known:
        assert f"`{key}`" in section or f"[[{key}]]" in section or f"[{key}]" in section, key


def test_readme_links_the_reference_not_outside_the_project() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/reference.md)" in readme
    assert "../shared" not in readme
    for path in (ROOT / "docs").glob("*.md"):
        links = re.findall(r"\]\(([^)]+)\)", path.read_text(encoding="utf-8"))
        assert not [x for x in links if x.startswith("../shared")], path.name


USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "examples").rglob("README.md")), ROOT / "benchmarks" / "README.md"]


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_stay_inside_the_project(path: Path) -> None:
    """A clone has only the repository: every relative link resolves to a file in it, and
    no page sends the reader to the team's workspace (../shared, /work/...)."""
    text = path.read_text(encoding="utf-8")
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:|#", link):
            continue
        target = (path.parent / link.split("#")[0]).resolve()
        assert target.is_relative_to(ROOT) and target.exists(), link
    assert not re.findall(r"\.\./shared\b|/work/\w+", text)


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_say_when_a_named_page_is_not_in_the_project(path: Path) -> None:
    """A page cited by name (PEERS.md) that a clone does not have is said to be outside
    the repository, so a reader does not hunt for it."""
    text = path.read_text(encoding="utf-8")
    repo_pages = {p.name for p in ROOT.rglob("*.md")}
    for page in set(re.findall(r"\b([A-Z][A-Z_]+\.md)\b", text)) - repo_pages:
        assert re.search(rf"{re.escape(page)} \([^)]*not in this repository", text), page
