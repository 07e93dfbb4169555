"""Atomic file writes: a file a run writes is either its old self or complete, never half-written.

Every artefact (checkpoints, datasets, metrics JSON, plots, GIFs) is written to a temporary file in
the target's folder, flushed to disk, given the mode a plain ``open`` would give, and renamed over
the target in one step. An exception (a full disk, Ctrl-C) removes the temporary file and leaves the
target as it was. A write the file system refuses (full disk, no permission, read-only) raises
:class:`WriteError`, whose message names the target and the reason (``cannot write checkpoint
runs/s1/checkpoint.pt: no space left on device (ENOSPC)``), never a temporary name.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

WRITE_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "EFBIG", "EIO") if hasattr(errno, name))
"""The errors of a file system that refuses a write (rather than of a wrong path)."""


class WriteError(OSError):
    """A write the file system refused; ``str()`` is the one-line message alone (no ``[Errno N]``)."""

    def __str__(self) -> str:
        return str(self.strerror)


def os_error_reason(error: OSError) -> str:
    """``error``'s cause in words and by its symbolic name: ``no space left on device (ENOSPC)``."""
    code = error.errno
    if code is None:
        return str(error.strerror or error)
    return f"{os.strerror(code).lower()} ({errno.errorcode.get(code, code)})"


def write_error(path: str | Path, error: OSError, what: str = "") -> OSError:
    """``error`` (from writing ``path``) as a :class:`WriteError` naming ``path`` (and ``what`` it is)
    when the file system refused the write; any other ``OSError`` unchanged."""
    if isinstance(error, WriteError) or error.errno not in WRITE_ERRNOS:
        return error
    return WriteError(error.errno, f"cannot write {what + ' ' if what else ''}{path}: {os_error_reason(error)}")


def umask_mode() -> int:
    """The permission bits a plain ``open(path, "w")`` would give under the user's umask."""
    mask = os.umask(0)  # the umask can only be read by setting it; set it straight back
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path, what: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same folder, same suffix, so writers that infer the
    format from the suffix still work); when the block ends normally, the temporary file is synced
    and renamed over ``path``; when it raises, it is removed and ``path`` is untouched. ``what``
    names the file in a :class:`WriteError` (``"checkpoint"``)."""
    path = Path(path)
    try:
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                                            dir=path.parent)
    except OSError as error:
        raise write_error(path, error, what) from None
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, umask_mode())  # mkstemp creates 0600; an artefact is an ordinary file
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise write_error(path, error, what) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_all(target: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to the file ``target`` (the one place bytes reach the disk, so tests can fake
    a full disk here)."""
    with open(target, "wb") as handle:
        handle.write(data)


def write_text(path: str | Path, text: str, what: str = "") -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    write_bytes(path, text.encode("utf-8"), what)


def write_bytes(path: str | Path, data: bytes | memoryview, what: str = "") -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, what) as tmp:
        _write_all(tmp, data)


@contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder inside ``folder`` (created if missing). When the block ends
    normally, every file written there is synced and renamed over its namesake in ``folder``;
    when it raises, they are all removed and ``folder`` is as it was (a folder made here is
    removed again). A set of files written this way is all new or all old, never a mix."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging.", dir=folder))
    done = False
    try:
        yield stage
        written = sorted(item for item in stage.iterdir() if item.is_file())
        for item in written:
            with open(item, "rb+") as handle:
                os.fsync(handle.fileno())
        for item in written:
            os.replace(item, folder / item.name)
        done = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not done:
            try:
                folder.rmdir()
            except OSError:
                pass
