"""System shared-memory regions (Triton's extension): clients pass tensors by name.

A region is a client's POSIX shared-memory object mapped once at registration;
inputs are views into it (no copy) and outputs are written into it. Every offset
and size from the wire is checked against the region before use.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Any

from ..errors import ForbiddenError, InvalidInputError

try:
    # NOTE: multiprocessing.shared_memory would register the client's object with the
    # resource tracker, which unlinks it when we exit; _posixshmem.shm_open does not.
    from _posixshmem import shm_open
except ImportError:  # pragma: no cover - not POSIX
    shm_open = None


@dataclass
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    mapping: mmap.mmap

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "offset": self.offset,
                "byte_size": self.byte_size}


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInputError(f"{what} must be a non-negative integer, got {value!r}")
    return value


class SharedMemoryRegistry:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.regions: dict[str, Region] = {}
        self._retired: list[mmap.mmap] = []  # still viewed by a request in flight

    def _check_enabled(self) -> None:
        if not self.enabled:
            raise ForbiddenError("shared memory is off on this server; start it with "
                                 "--allow-shared-memory to let local clients use it")

    def register(self, name: str, key: Any, offset: Any, byte_size: Any) -> None:
        self._check_enabled()
        if name in self.regions:
            raise InvalidInputError(f"shared memory region '{name}' is already registered")
        if not isinstance(key, str) or not key or "/" in key[1:] or "\0" in key:
            raise InvalidInputError(f"shared memory key must be a name like '/data', got {key!r}")
        offset = _int(offset, "offset")
        byte_size = _int(byte_size, "byte_size")
        if shm_open is None:  # pragma: no cover
            raise InvalidInputError("POSIX shared memory is not available on this platform")
        try:
            fd = shm_open(key if key.startswith("/") else "/" + key, os.O_RDWR, 0)
        except OSError as exc:
            raise InvalidInputError(f"cannot open shared memory '{key}': {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if byte_size == 0 or offset + byte_size > size:
                raise InvalidInputError(
                    f"region '{name}': offset {offset} + byte_size {byte_size} does not fit the "
                    f"{size}-byte shared memory object '{key}'")
            mapping = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.regions[name] = Region(name, key, offset, byte_size, mapping)

    def unregister(self, name: str | None = None) -> None:
        self._check_enabled()
        names = list(self.regions) if name is None else [name]
        for n in names:
            region = self.regions.pop(n, None)
            if region is None:
                continue  # Triton: unregistering an unknown region is not an error
            try:
                region.mapping.close()
            except BufferError:
                self._retired.append(region.mapping)
        self._retired = [m for m in self._retired if not _try_close(m)]

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        self._check_enabled()
        if name is None:
            return [r.status() for r in self.regions.values()]
        region = self.regions.get(name)
        if region is None:
            raise InvalidInputError(f"unable to find system shared memory region '{name}'")
        return [region.status()]

    def view(self, tensor: str, params: dict[str, Any]) -> memoryview:
        """The slice of a region a tensor's parameters name, bounds-checked."""
        self._check_enabled()
        name = params.get("shared_memory_region")
        region = self.regions.get(name) if isinstance(name, str) else None
        if region is None:
            raise InvalidInputError(f"'{tensor}': unknown shared memory region {name!r}")
        if "shared_memory_byte_size" not in params:
            raise InvalidInputError(f"'{tensor}': shared_memory_region needs "
                                    "shared_memory_byte_size")
        size = _int(params["shared_memory_byte_size"], f"'{tensor}': shared_memory_byte_size")
        offset = _int(params.get("shared_memory_offset", 0), f"'{tensor}': shared_memory_offset")
        if offset + size > region.byte_size:
            raise InvalidInputError(
                f"'{tensor}': offset {offset} + byte_size {size} is past the end of region "
                f"'{region.name}' ({region.byte_size} bytes)")
        start = region.offset + offset
        return memoryview(region.mapping)[start:start + size]

    def close(self) -> None:
        if self.enabled:
            self.unregister()


def _try_close(mapping: mmap.mmap) -> bool:
    try:
        mapping.close()
    except BufferError:
        return False
    return True
