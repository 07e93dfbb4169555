"""Input files checked before anything opens or loads them: a path that is not a regular file (a
FIFO, whose ``open`` blocks forever; a device such as ``/dev/zero``, which never ends; a socket) is
refused by its kind, and a numpy ``.npy``/``.npz`` file's headers are read, without loading any
data, so an array that could never fit in memory (a lying header, or a file from a bigger machine)
is refused by its declared size instead of ending in a ``MemoryError``.

Each check returns ``None`` when all is well, else one line naming the file and the problem; the
library loaders raise it as a ``ValueError`` and the entry points prefix their flag.
numpy is imported only by the array checks (this package depends on nothing).
"""

from __future__ import annotations

import errno
import os
import stat
import tokenize
import zipfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtmsm_cli import checks

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _stat_problem(path: Path, what: str) -> tuple[os.stat_result | None, str | None]:
    """``os.stat`` of ``path`` (following links), or why it cannot be had."""
    try:
        return os.stat(path), None
    except FileNotFoundError:
        if path.is_symlink():
            return None, f"{what} {path} is a broken link (its target does not exist)"
        return None, f"{what} not found: {path}"
    except PermissionError:
        return None, f"cannot reach {what} {path}: permission denied"
    except NotADirectoryError:
        return None, f"{what} not found: {path} (a folder on its path is a file)"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return None, f"{what} {path} is a loop of symbolic links"
        return None, f"cannot reach {what} {path}: {error.strerror or error}"


def input_file_problem(path: str | Path, what: str = "file") -> str | None:
    """Why ``path`` cannot be read as a regular file (``None`` if it can), found without opening it:
    not found, a folder, a FIFO, device or socket (also behind a symbolic link), or unreadable.
    ``what`` names the file in the message (``"image file"``, ``"rollouts file"``)."""
    path = Path(path)
    info, problem = _stat_problem(path, what)
    if info is None:
        return problem
    if stat.S_ISDIR(info.st_mode):
        return f"{what} {path} is a folder; give a file"
    if not stat.S_ISREG(info.st_mode):
        return f"{what} {path} is {_kind(info.st_mode)}, not a regular file"
    if not os.access(path, os.R_OK):
        return f"{what} {path} is not readable: permission denied"
    return None


def input_folder_problem(path: str | Path, what: str = "folder") -> str | None:
    """Why ``path`` cannot be listed as a folder (``None`` if it can), without opening anything
    that is not a folder."""
    path = Path(path)
    info, problem = _stat_problem(path, what)
    if info is None:
        return problem
    if not stat.S_ISDIR(info.st_mode):
        kind = "a file" if stat.S_ISREG(info.st_mode) else _kind(info.st_mode)
        return f"{what} {path} is {kind}, not a folder"
    if not os.access(path, os.R_OK | os.X_OK):
        return f"{what} {path} is not readable: permission denied"
    return None


def special_file_kind(path: str | Path) -> str | None:
    """What ``path`` is when it is neither a regular file nor a folder (``"a FIFO (named pipe)"``,
    ``"a character device"``, ...), else ``None``; links are followed, broken ones are ``None``."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return _kind(mode)


# --------------------------------------------------------------------------- numpy array files


def unreadable_reason(error: BaseException) -> str:
    """Why numpy could not read a file, in our words (numpy's own text advises ``allow_pickle``,
    which we never do)."""
    text = str(error)
    if "allow_pickle" in text or "pickled" in text:
        return "it is not a numpy .npy/.npz file, or it holds pickled objects (never loaded)"
    lines = [line for line in text.splitlines() if line.strip()]
    return f"corrupt or truncated ({type(error).__name__}: {lines[0][:120] if lines else 'no details'})"


# A damaged archive fails in many ways: a bad zip, a bad deflate stream (zlib.error), an encrypted
# or unsupported member (RuntimeError, NotImplementedError), a garbled header numpy's parser chokes
# on (SyntaxError, tokenize.TokenError, ValueError), a short read (EOFError, OSError).
_DAMAGED = (OSError, EOFError, ValueError, SyntaxError, zipfile.BadZipFile, RuntimeError,
            NotImplementedError, zlib.error, tokenize.TokenError)

_ZIP_PREFIXES = (b"PK\x03\x04", b"PK\x05\x06")  # how np.load tells an .npz from an .npy


@dataclass(frozen=True)
class DeclaredArray:
    """One array of a ``.npy``/``.npz`` file as its header declares it (no data read).
    ``dtype`` is ``None`` for an ``.npz`` member that is not a ``.npy`` (numpy loads it as bytes);
    ``stored`` is how many bytes the file really holds for it (``None`` where unknown)."""

    name: str
    shape: tuple[int, ...]
    dtype: Any
    nbytes: int
    stored: int | None

    def text(self) -> str:
        """``"images (123456789, 32, 32, 3) uint8"``."""
        if self.dtype is None:
            return f"{self.name} (raw bytes)"
        return f"{self.name} {self.shape} {self.dtype}"


class ArrayHeaderError(ValueError):
    """A header that declares what can never be loaded (objects, negative sizes); the message is
    final (no numpy wording to translate)."""


class DamagedMemberError(ValueError):
    """An ``.npz`` member whose header cannot be read; ``name`` is the member, ``__cause__`` what
    numpy or :mod:`zipfile` raised."""

    def __init__(self, name: str) -> None:
        super().__init__(f"could not read array {name!r}")
        self.name = name


def _read_npy_header(handle: Any, name: str, stored: int | None) -> DeclaredArray:
    """The header at ``handle``'s position; ``stored`` counts the bytes from the magic string on."""
    import numpy as np
    from numpy.lib import format as npy

    version = npy.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(handle)
    else:  # (2, 0), or (3, 0): version 2's layout with utf-8 field names (sizes read the same)
        shape, _, dtype = npy.read_array_header_2_0(handle)
    shape = tuple(int(side) for side in shape)
    if any(side < 0 for side in shape):
        raise ArrayHeaderError(f"array {name!r} declares a negative size {shape} (corrupt header)")
    if dtype.hasobject:
        raise ArrayHeaderError(f"array {name!r} holds objects of dtype {dtype}, which load only by "
                               "unpickling: pickled objects (never loaded)")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    data = None if stored is None else stored - handle.tell()
    return DeclaredArray(name, shape, dtype, nbytes, data)


def declared_arrays(path: str | Path) -> list[DeclaredArray]:
    """Every array of the ``.npy`` or ``.npz`` file ``path`` as its headers declare it, read without
    loading (or, in an ``.npz``, decompressing) any data; never unpickles. Raises what numpy's
    parser or :mod:`zipfile` raises for a damaged file, :class:`DamagedMemberError` for a damaged
    ``.npz`` member and :class:`ArrayHeaderError`."""
    from numpy.lib import format as npy

    path = Path(path)
    with open(path, "rb") as handle:
        prefix = handle.read(4)
    if prefix in _ZIP_PREFIXES:
        arrays = []
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                try:
                    with archive.open(info) as member:
                        is_npy = member.read(len(npy.MAGIC_PREFIX)) == npy.MAGIC_PREFIX
                    if not is_npy:  # numpy hands such a member back as bytes
                        arrays.append(DeclaredArray(name, (info.file_size,), None, info.file_size, None))
                        continue
                    with archive.open(info) as member:
                        arrays.append(_read_npy_header(member, name, info.file_size))
                except ArrayHeaderError:
                    raise
                except _DAMAGED as error:
                    raise DamagedMemberError(name) from error
        return arrays
    with open(path, "rb") as handle:
        return [_read_npy_header(handle, path.stem, os.fstat(handle.fileno()).st_size)]


_UNITS = ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"))


def size_text(nbytes: float) -> str:
    """``2.7e15`` -> ``"2.7 PB"`` (decimal units, as the memory checks word them)."""
    for scale, unit in _UNITS:
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def array_file_problem(
    path: str | Path,
    what: str = "array file",
    keys: Collection[str] | None = None,
    available: float | None = None,
) -> str | None:
    """Why the ``.npy``/``.npz`` file ``path`` cannot be loaded (``None`` if it can), found before
    any array is: not a regular file (:func:`input_file_problem`), an unreadable or damaged header,
    object arrays, data shorter than declared, or arrays that together declare more bytes than
    ``available`` (default: this machine's memory). ``keys``: only these ``.npz`` members will be
    loaded (``None``: all of them)."""
    problem = input_file_problem(path, what)
    if problem is not None:
        return problem
    try:
        arrays = declared_arrays(path)
    except ArrayHeaderError as error:
        return f"{what} {path}: {error}"
    except DamagedMemberError as error:
        return f"{error} of {what} {path} (corrupt?): {unreadable_reason(error.__cause__ or error)}"
    except _DAMAGED as error:
        return f"could not read {what} {path} (corrupt?): {unreadable_reason(error)}"
    if keys is not None:
        arrays = [array for array in arrays if array.name in keys]
    available = checks.physical_memory() if available is None else available
    total = sum(array.nbytes for array in arrays)
    if available is not None and total > available:
        largest = max(arrays, key=lambda array: array.nbytes)
        return (f"{what} {path} declares {'an array' if len(arrays) == 1 else 'arrays'} of "
                f"{size_text(total)} ({largest.text()}); this machine has {size_text(available)} of memory")
    for array in arrays:
        if array.stored is not None and array.nbytes > array.stored:
            return (f"could not read {what} {path} (corrupt?): truncated ({array.text()} declares "
                    f"{array.nbytes} bytes but the file holds {max(array.stored, 0)})")
    return None
