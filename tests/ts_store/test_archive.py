"""Reading and extracting TorchServe archives (core/archive.py), and their settings."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from fastserve.core.archive import (
    ArchiveError,
    install_requirements,
    is_archive,
    read_archive,
)
from fastserve.core.archive_extract import prepare
from fastserve.core.files import version_key
from fastserve.core.ts_store import StoreSettings, archive_config

from ts_archives import build_mar, hostile_archives, manifest, write_zip

YAML = "minWorkers: 2\nmaxWorkers: 4\nbatchSize: 8\nmaxBatchDelay: 50\nresponseTimeout: 3\n" \
       "parallelType: pp\nhandler:\n  threshold: 0.5\n"


def test_archive_made_by_torch_model_archiver_reads_name_version_and_yaml(tmp_path: Path) -> None:
    mar = build_mar(tmp_path, tmp_path, "tiny", "1.0", config_yaml=YAML)
    archive = read_archive(mar)
    assert (archive.name, archive.version, archive.packed) == ("tiny", "1.0", True)
    assert archive.handler == "handler.py"
    assert archive.model["serializedFile"] == "weights.pt"
    assert archive.model_yaml["handler"] == {"threshold": 0.5}
    assert read_archive(mar, name="renamed").name == "renamed"
    config = archive_config(archive, StoreSettings())
    assert (config.name, config.handler, config.instances, config.max_batch_size) == (
        "tiny", "torchserve", 2, 8)
    assert (config.batch_delay_ms, config.timeout_ms, config.warmup) == (50.0, 3000.0, False)


def test_archive_extracts_into_its_own_folder_once(tmp_path: Path) -> None:
    mar = build_mar(tmp_path, tmp_path, "tiny", "2.0")
    folder = prepare(mar, into=tmp_path / "x")
    assert (folder / "MAR-INF" / "MANIFEST.json").is_file()
    assert {p.name for p in folder.iterdir()} >= {"handler.py", "model.py", "weights.pt",
                                                  "index_to_name.json"}
    assert prepare(mar, into=tmp_path / "x") == folder  # the same file is not extracted again
    assert read_archive(folder).version == "2.0"


def test_no_archive_folder_is_served_in_place(tmp_path: Path) -> None:
    folder = build_mar(tmp_path, tmp_path / "store", "plain", "3.1", fmt="no-archive")
    assert is_archive(folder) and not is_archive(tmp_path)
    assert prepare(folder) == folder
    assert read_archive(folder).version == "3.1"


def test_settings_defaults_and_models_map_layer_over_the_yaml(tmp_path: Path) -> None:
    archive = read_archive(build_mar(tmp_path, tmp_path, "tiny", "1.0", config_yaml=YAML))
    bare = read_archive(build_mar(tmp_path, tmp_path, "bare", "1.0"))
    settings = StoreSettings(workers=3, response_timeout=7, job_queue_size=10, models={
        "tiny": {"1.0": {"batchSize": 4, "minWorkers": 1, "marName": "tiny.mar"}}})
    tiny = archive_config(archive, settings)
    assert (tiny.max_batch_size, tiny.instances, tiny.batch_delay_ms) == (4, 1, 50.0)
    plain = archive_config(bare, settings)
    assert (plain.instances, plain.timeout_ms, plain.max_queue_size) == (3, 7000.0, 10)
    assert (plain.max_batch_size, plain.batch_delay_ms) == (1, 100.0)  # TorchServe's defaults


@pytest.mark.parametrize("yaml_text, words", [
    ("batchSize: many\n", "batchSize must be a number"),
    ("minWorkers: -1\n", "minWorkers must be >= 0"),
    ("- a list\n", "must be a mapping"),
    ("batchSize: [1\n", "not valid YAML"),
])
def test_bad_model_config_yaml_fails_with_the_key(tmp_path: Path, yaml_text: str,
                                                  words: str) -> None:
    mar = write_zip(tmp_path / "m.mar", {
        "MAR-INF/MANIFEST.json": manifest("m").replace(
            b'"handler"', b'"configFile":"model-config.yaml","handler"'),
        "model-config.yaml": yaml_text.encode()})
    with pytest.raises(ArchiveError, match=words):
        archive_config(read_archive(mar), StoreSettings())


def test_hostile_archives_fail_with_a_reason_and_write_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    expected = hostile_archives(store)
    for name, words in expected.items():
        (source,) = store.glob(f"{name}.*")  # name.mar, name.tar.gz or name.tgz
        with pytest.raises(ArchiveError, match=words):
            read_archive(source, max_size=1_000_000)
            prepare(source, max_size=1_000_000, into=tmp_path / "out")
    # Extraction checks on its own too (a caller that skipped read_archive).
    for name in ("slip", "absolute", "link", "huge"):
        with pytest.raises(ArchiveError):
            prepare(store / f"{name}.mar", max_size=1_000_000, into=tmp_path / "out")
    assert not (tmp_path / "escaped.py").exists()
    assert not Path("/tmp/fastserve-absolute-escape.py").exists()
    assert list((tmp_path / "out").iterdir()) == []  # partial folders are removed


def test_failed_archive_still_names_its_model_and_version(tmp_path: Path) -> None:
    write_zip(tmp_path / "s.mar", {"MAR-INF/MANIFEST.json": manifest("slipper", "4.2"),
                                   "a/../../x": b"1"})
    with pytest.raises(ArchiveError) as info:
        read_archive(tmp_path / "s.mar")
    assert (info.value.name, info.value.version) == ("slipper", "4.2")


def test_extraction_counts_the_bytes_it_writes(tmp_path: Path, monkeypatch) -> None:
    """Past the declared sizes (checked first), the bytes really written are bounded too."""
    import fastserve.core.archive as archive

    path = write_zip(tmp_path / "big.mar", {"MAR-INF/MANIFEST.json": manifest("big"),
                                            "w.bin": bytes(500_000)})
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("w.bin").file_size == 500_000
    with pytest.raises(ArchiveError, match="inflates"):  # the declared sizes
        prepare(path, max_size=400_000, into=tmp_path / "out")
    monkeypatch.setattr(archive, "check_members", lambda *args: 0)
    with pytest.raises(ArchiveError, match="inflates"):  # the written bytes
        prepare(path, max_size=400_000, into=tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_version_strings_sort_as_torchserve_numbers() -> None:
    assert sorted(["2.0", "1.10", "1.2", "10", "1", "beta"], key=version_key) == [
        "1", "1.2", "1.10", "2.0", "10", "beta"]


def _wheel(path: Path, module: str, source: str) -> Path:
    """A minimal pure-Python wheel (pip installs it offline)."""
    dist = f"{module}-0.1.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{module}.py", source)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: "
                    "true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return path


def test_requirements_install_into_the_archive_folder(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "MAR-INF").mkdir(parents=True)
    _wheel(folder / "tsdep_marker-0.1-py3-none-any.whl", "tsdep_marker", "VALUE = 42\n")
    (folder / "requirements.txt").write_text("./tsdep_marker-0.1-py3-none-any.whl\n")
    manifest = {"model": {"modelName": "m", "requirementsFile": "requirements.txt"}}
    install_requirements(folder, manifest)
    assert (folder / "tsdep_marker.py").read_text() == "VALUE = 42\n"
    install_requirements(folder, manifest)  # once per folder


def test_requirements_that_cannot_install_fail_with_pips_reason(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "requirements.txt").write_text("./missing-0.1-py3-none-any.whl\n")
    with pytest.raises(ArchiveError, match="installing requirements.txt failed"):
        install_requirements(folder, {"model": {"requirementsFile": "requirements.txt"}})
    with pytest.raises(ArchiveError, match="not in the archive"):
        install_requirements(folder, {"model": {"requirementsFile": "../../etc/passwd"}})


def test_a_folder_archive_cannot_point_its_manifest_outside(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "MAR-INF").mkdir(parents=True)
    (tmp_path / "secret.yaml").write_text("password: hunter2\n")
    (folder / "MAR-INF" / "MANIFEST.json").write_bytes(manifest("m").replace(
        b'"handler"', b'"configFile":"../secret.yaml","handler"'))
    with pytest.raises(ArchiveError, match="outside the archive's folder"):
        read_archive(folder)


def test_too_many_members_are_refused(tmp_path: Path, monkeypatch) -> None:
    import fastserve.core.archive as archive

    monkeypatch.setattr(archive, "MAX_MEMBERS", 3)
    path = write_zip(tmp_path / "many.mar", {"MAR-INF/MANIFEST.json": manifest("many"),
                                             **{f"f{i}": b"" for i in range(5)}})
    with pytest.raises(ArchiveError, match="more than 3"):
        read_archive(path)


def test_concurrent_loads_of_one_archive_extract_it_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    mar = write_zip(tmp_path / "c.mar", {"MAR-INF/MANIFEST.json": manifest("c"),
                                         "w.bin": bytes(200_000)})
    with ThreadPoolExecutor(4) as pool:
        folders = set(pool.map(lambda _: prepare(mar, into=tmp_path / "out"), range(8)))
    assert len(folders) == 1 and (folders.pop() / "w.bin").stat().st_size == 200_000
    assert len(list((tmp_path / "out").iterdir())) == 1
