"""``.tar.gz`` archives (torch-model-archiver --archive-format tgz) are read and extracted
like a ``.mar``, and hostile ones FAIL with the reason, nothing written outside."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastserve.core.archive import ArchiveError, is_archive, read_archive
from fastserve.core.archive_extract import prepare
from fastserve.core.ts_store import StoreSettings, failed_name

from ts_archives import HANDLER_PY, build_mar, manifest, write_tar

MANIFEST = "MAR-INF/MANIFEST.json"


def test_the_archivers_tgz_reads_and_extracts_as_its_model_folder(tmp_path: Path) -> None:
    source = build_mar(tmp_path, tmp_path / "store", "tiny", "2.5", fmt="tgz",
                       config_yaml="batchSize: 3\n")
    assert source.name == "tiny.tar.gz" and is_archive(source)
    archive = read_archive(source)
    assert (archive.name, archive.version, archive.model_yaml) == ("tiny", "2.5",
                                                                   {"batchSize": 3})
    folder = prepare(source, into=tmp_path / "out")
    # The archiver packs everything below a folder named after the model: that folder.
    assert {p.name for p in folder.iterdir()} >= {"MAR-INF", "handler.py", "model.py",
                                                  "weights.pt", "model-config.yaml"}
    assert read_archive(folder).version == "2.5"
    assert prepare(source, into=tmp_path / "out") == folder  # extracted once


def test_a_tgz_with_the_manifest_at_its_top_and_the_tgz_suffix(tmp_path: Path) -> None:
    source = write_tar(tmp_path / "flat.tgz", {MANIFEST: manifest("flat", "1.0"),
                                               "handler.py": HANDLER_PY.encode()})
    assert is_archive(source) and read_archive(source).name == "flat"
    assert (prepare(source, into=tmp_path / "out") / "handler.py").is_file()
    assert failed_name(source, StoreSettings()) == "flat"


HOSTILE = {
    "slip": ({"m/" + MANIFEST: manifest("slip"), "m/../../escaped.py": b"x"}, {},
             "outside the model's folder"),
    "absolute": ({MANIFEST: manifest("absolute"), "/tmp/fastserve-tar-escape.py": b"x"}, {},
                 "outside the model's folder"),
    "symlink": ({MANIFEST: manifest("symlink")}, {"links": {"evil": "/etc/passwd"}}, "link"),
    "hardlink": ({MANIFEST: manifest("hardlink")}, {"hardlinks": {"evil": "/etc/passwd"}},
                 "link"),
    "fifo": ({MANIFEST: manifest("fifo")}, {"fifo": "pipe"}, "not a file or folder"),
    "huge": ({MANIFEST: manifest("huge")}, {"declared": {"weights.bin": 3_000_000}},
             "inflates to more than"),
    "nomanifest": ({"m/handler.py": b"x"}, {}, "no MAR-INF/MANIFEST.json"),
    "two-folders": ({"a/" + MANIFEST: manifest("a"), "b/handler.py": b"x"}, {},
                    "no MAR-INF/MANIFEST.json"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tgz_is_refused_and_nothing_is_written_outside(tmp_path: Path,
                                                               case: str) -> None:
    members, extra, reason = HOSTILE[case]
    (tmp_path / "store").mkdir()
    source = write_tar(tmp_path / "store" / f"{case}.tar.gz", members, **extra)
    out = tmp_path / "out"
    with pytest.raises(ArchiveError) as read_error:
        read_archive(source, max_size=1_000_000)
    assert reason in read_error.value.message
    with pytest.raises(ArchiveError) as extract_error:
        prepare(source, max_size=1_000_000, into=out)
    assert reason in extract_error.value.message
    assert not (tmp_path / "escaped.py").exists()
    assert not Path("/tmp/fastserve-tar-escape.py").exists()
    assert list(out.iterdir()) == []  # no partial folder left behind


def test_a_corrupt_tgz_fails_with_a_message(tmp_path: Path) -> None:
    source = tmp_path / "bad.tar.gz"
    source.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(ArchiveError, match="not a valid model archive"):
        read_archive(source)
