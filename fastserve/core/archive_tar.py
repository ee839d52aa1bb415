"""``.tar.gz`` / ``.tgz`` model archives (torch-model-archiver ``--archive-format tgz``),
read and extracted under the same rules as a ``.mar``.

The archiver writes every file below one folder named after the model
(``mnist/MAR-INF/MANIFEST.json``, ``mnist/handler.py``, ...); TorchServe serves that
folder. An archive with ``MAR-INF/MANIFEST.json`` at its top is taken as it is.

Refused, so the model FAILS with the reason: absolute names and ``..`` (checked here
and again by tarfile's ``data`` filter), symbolic and hard links, devices and FIFOs,
more than ``MAX_MEMBERS`` members, and more bytes than the size bound (the members'
declared sizes, which are exactly what tarfile writes). A tar lists its members only
by reading it through, so reading the manifest decompresses the archive once.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .archive import MANIFEST, MAX_MEMBERS, ArchiveError, inflated, member_path


class TarListing:
    """An opened archive's checked members, by their name below the model's folder."""

    def __init__(self, tf: tarfile.TarFile, label: str, max_size: int) -> None:
        self.tf, self.label = tf, label
        members: list[tarfile.TarInfo] = []
        total = 0
        for info in tf:
            if len(members) >= MAX_MEMBERS:
                raise ArchiveError(f"{label} holds more than {MAX_MEMBERS} members; refused")
            member_path(info.name, label)
            if info.issym() or info.islnk():
                raise ArchiveError(f"{label}: member {info.name!r} is a link; archives with "
                                   "links are refused")
            if not (info.isfile() or info.isdir()):
                raise ArchiveError(f"{label}: member {info.name!r} is not a file or folder; "
                                   "refused")
            total = inflated(total, info.size, max_size, label)
            members.append(info)
        self.size = total
        self.prefix = _model_folder(members, label)
        self.members = {m.name.removeprefix("./")[len(self.prefix):]: m for m in members
                        if len(m.name.removeprefix("./")) > len(self.prefix)}

    def read(self, member: str) -> bytes:
        info = self.members.get(member)
        if info is None or not info.isfile():
            raise ArchiveError(f"{self.label}: the manifest names {member}, which is not in "
                               "the archive")
        data = self.tf.extractfile(info)
        assert data is not None  # a regular file
        return data.read()


def _model_folder(members: list[tarfile.TarInfo], label: str) -> str:
    """'' when the manifest is at the top, else the one folder that holds it ('mnist/')."""
    names = {m.name.removeprefix("./") for m in members}
    if MANIFEST in names:
        return ""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1:
        prefix = f"{tops.pop()}/"
        if prefix + MANIFEST in names:
            return prefix
    raise ArchiveError(f"{label}: no {MANIFEST} in the archive (at its top or in its one "
                       "folder): build it with torch-model-archiver (0.12)")


T = TypeVar("T")


def open_tar(source: Path, max_size: int, use: Callable[[TarListing], T]) -> T:
    """``use(listing)`` on the checked archive. Raises ArchiveError."""
    try:
        with tarfile.open(source, "r:*") as tf:
            return use(TarListing(tf, source.name, max_size))
    except tarfile.FilterError as exc:  # what the checks let through, the data filter refused
        raise ArchiveError(f"{source.name}: {exc}; refused") from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ArchiveError(f"{source.name} is not a valid model archive (a .tar.gz written by "
                           f"torch-model-archiver --archive-format tgz): {exc}") from None


def extract_tar(source: Path, folder: Path, max_size: int) -> None:
    """Write the model's folder of ``source`` into ``folder`` (tarfile's data filter)."""

    def extract(listing: TarListing) -> None:
        chosen = [info.replace(name=name, deep=False) for name, info in listing.members.items()]
        listing.tf.extractall(folder, members=chosen, filter="data")

    open_tar(source, max_size, extract)
