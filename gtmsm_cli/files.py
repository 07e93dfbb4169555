"""Atomic file writes: a file a run writes is either its old self or complete, never half-written.

Every artefact (checkpoints, datasets, metrics JSON, plots, GIFs) is written to a temporary file in
the target's folder, flushed to disk, given the mode a plain ``open`` would give, and renamed over
the target in one step. An exception (a full disk, Ctrl-C) removes the temporary file and leaves the
target as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def umask_mode() -> int:
    """The permission bits a plain ``open(path, "w")`` would give under the user's umask."""
    mask = os.umask(0)  # the umask can only be read by setting it; set it straight back
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same folder, same suffix, so writers that infer the
    format from the suffix still work); when the block ends normally, the temporary file is synced
    and renamed over ``path``; when it raises, it is removed and ``path`` is untouched."""
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                                        dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, umask_mode())  # mkstemp creates 0600; an artefact is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
