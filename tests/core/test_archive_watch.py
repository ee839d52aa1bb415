"""--poll-interval watches TorchServe archives too: a .mar (or an archive folder) added,
replaced or removed in DIR is loaded, reloaded or unloaded, once its file held still."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ts_store"))

from fastserve.core.entries import State  # noqa: E402
from fastserve.core.repository import ModelRepository  # noqa: E402
from fastserve.core.watcher import RepositoryWatcher  # noqa: E402

from ts_archives import manifest, write_zip  # noqa: E402

HANDLER = b"def handle(data, context):\n    return data\n"


def write_mar(path: Path, name: str, version: str, mtime: int | None = None) -> Path:
    """An archive of model ``name`` (the fake loader never opens it), written elsewhere
    and renamed in place, as a copy tool that is careful does."""
    staging = path.with_name(f".{path.name}.part")
    write_zip(staging, {"MAR-INF/MANIFEST.json": manifest(name, version),
                        "handler.py": HANDLER})
    if mtime is not None:
        os.utime(staging, (mtime, mtime))
    os.replace(staging, path)
    return path


def states(repo: ModelRepository) -> dict[str, dict[str, str]]:
    return {name: {k: v.state.value for k, v in entry.versions.items()}
            for name, entry in repo.models.items()}


def test_archives_added_replaced_and_removed_follow_the_store(
        tmp_path: Path, fake_loader, run_async, wait_until) -> None:
    write_mar(tmp_path / "a.mar", "a", "1.0", mtime=1_000_000)
    loader = fake_loader()
    repo = ModelRepository(tmp_path, loader)
    watcher = RepositoryWatcher(repo, 60.0)

    async def settled() -> None:
        await watcher.poll()  # sees the change
        await watcher.poll()  # held still: acts
        await wait_until(lambda: all(v.state is not State.LOADING
                                     for e in repo.models.values()
                                     for v in e.versions.values()))

    async def main() -> None:
        import asyncio

        repo.scan()
        repo.start_loading(asyncio.get_running_loop())
        await wait_until(lambda: not repo.loading)
        await watcher.poll()  # records what is there
        await watcher.poll()
        assert [c[:2] for c in loader.calls] == [("a", "a.mar")]  # nothing loaded twice

        write_mar(tmp_path / "b.mar", "b", "1.0")
        folder = tmp_path / "c-extracted"  # an extracted archive (a folder)
        (folder / "MAR-INF").mkdir(parents=True)
        (folder / "MAR-INF" / "MANIFEST.json").write_bytes(manifest("c", "3.0"))
        (folder / "handler.py").write_bytes(HANDLER)
        await settled()
        assert states(repo) == {"a": {"1.0": "READY"}, "b": {"1.0": "READY"},
                                "c": {"3.0": "READY"}}

        # Importing an archive folder's handler writes __pycache__ there: no reload.
        calls = len(loader.calls)
        (folder / "__pycache__").mkdir()
        (folder / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")
        await settled()
        assert len(loader.calls) == calls

        write_mar(tmp_path / "a.mar", "a", "2.0")  # replaced by a new version
        (tmp_path / "b.mar").unlink()
        await settled()
        assert states(repo) == {"a": {"2.0": "READY"}, "c": {"3.0": "READY"}}
        assert repo.entry("a").default.version == "2.0"

        # A copy still being written is not loaded until its size and mtime hold still.
        partial = tmp_path / "d.mar"
        write_mar(partial, "d", "1.0")
        await watcher.poll()
        with partial.open("ab") as f:
            f.write(b"\0" * 10)
        await watcher.poll()
        assert "d" not in repo.models
        await watcher.poll()
        await wait_until(lambda: "d" in repo.models and repo.entry("d").default.ready)

        # Unloaded through the API: a changed archive does not bring it back.
        await repo.unload_model("c")
        (folder / "handler.py").write_bytes(HANDLER + b"# changed\n")
        await settled()
        assert "c" not in repo.models
        for entry in repo.models.values():
            for v in entry.versions.values():
                if v.batcher is not None:
                    v.batcher.close()

    run_async(main)


def test_a_broken_archive_replaced_by_a_good_one_loads(tmp_path: Path, fake_loader,
                                                       run_async, wait_until) -> None:
    (tmp_path / "m.mar").write_bytes(b"PK\x03\x04 not a zip")
    repo = ModelRepository(tmp_path, fake_loader())
    watcher = RepositoryWatcher(repo, 60.0)

    async def main() -> None:
        import asyncio

        repo.scan()
        assert repo.entry("m").error  # FAILED: not a valid model archive
        repo.start_loading(asyncio.get_running_loop())
        await wait_until(lambda: not repo.loading)
        await watcher.poll()
        write_mar(tmp_path / "m.mar", "m", "1.0")
        await watcher.poll()
        await watcher.poll()
        await wait_until(lambda: repo.entry("m").versions
                         and repo.entry("m").default.ready)
        assert not repo.entry("m").error
        (tmp_path / "m.mar").unlink()
        await watcher.poll()
        await wait_until(lambda: "m" not in repo.models)

    run_async(main)
