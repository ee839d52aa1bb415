"""What a register or load call answers, shared by both management APIs."""

from __future__ import annotations

from ..core.info import LoadResult
from ..errors import BackendError


def raise_if_failed(loaded: LoadResult) -> None:
    """A register or load answers 2xx only when every version it loaded is READY; else
    500 naming each failed version and its error (the READY ones stay loaded)."""
    failed = [f"version {v}: {error}" for v, error in loaded.failed]
    if failed or not loaded.ready:
        kept = (f" (version(s) {', '.join(loaded.ready)} loaded and serving)"
                if loaded.ready else "")
        raise BackendError(f"model \"{loaded.name}\" failed to load: "
                           + ("; ".join(failed) or loaded.error) + kept)
