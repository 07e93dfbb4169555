"""Problems a run would hit, found before it starts: unwritable outputs, too little memory, too
many threads, repeated values. Each function returns ``None`` when all is well, else one line
that says what is wrong (the entry point prefixes the flag and exits with status 2).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gtmsm_cli.flags import error_text

# --------------------------------------------------------------------------- output paths
# Checked before the work whose result they will hold, so a typo never costs a run.


def _write_probe(folder: Path) -> str | None:
    """Why nothing can be written in existing ``folder`` (a real probe: os.access says yes to root
    even on read-only file systems and in /proc)."""
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".gtmsm-write-probe.")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        return f"cannot write in folder {folder}: {error_text(error)}"
    return None


def output_file_problem(path: str | Path, suffixes: Sequence[str] = ()) -> str | None:
    """Why a file cannot be written at ``path`` (``None`` if it can): a wrong suffix, an existing
    folder, a read-only file, or a nearest existing ancestor that is a file or not writable.
    Missing parent folders are fine (writers create them)."""
    out = Path(path)
    if not out.name or str(path).endswith(("/", os.sep)):
        return f"must name a file, got {str(path)!r}"
    if suffixes and out.suffix.lower() not in suffixes:
        return f"{out} must end in {' or '.join(suffixes)}"
    if out.is_dir():
        return f"{out} is a folder; give a file path"
    from gtmsm_cli.inputs import special_file_kind  # here: inputs reads this module's memory check

    kind = special_file_kind(out)
    if kind is not None:  # a FIFO would block the writer, a device or socket cannot hold the file
        return f"{out} exists and is {kind}, not a regular file; give a file path"
    if out.exists() and not os.access(out, os.W_OK):
        return f"{out} exists and is not writable"
    return _creatable_problem(out.parent)


def _creatable_problem(folder: Path) -> str | None:
    """Why ``folder`` (existing or not) could not be made or written in: its nearest existing
    ancestor is a file, or cannot be written in."""
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot create a folder under {parent}: it is a file"
    return _write_probe(parent)


def output_stem_problem(stem: str | Path, suffixes: Sequence[str]) -> str | None:
    """Why the files ``stem`` + each suffix cannot be written (``None`` if they can): the reports
    a benchmark writes as OUT.md, OUT.json, ..."""
    if str(stem).endswith(("/", os.sep)) and Path(stem).name:
        return (f"{stem} is a folder; give a path stem ({', '.join('OUT' + s for s in suffixes)} are "
                "written)")
    if not Path(stem).name:
        return f"must name a path stem ({', '.join('OUT' + s for s in suffixes)} are written), got {str(stem)!r}"
    for suffix in suffixes:
        problem = output_file_problem(Path(stem).with_suffix(suffix), (suffix,))
        if problem is not None:
            return problem
    return None


def output_dir_problem(path: str | Path, create: bool = True) -> str | None:
    """Why ``path`` cannot serve as an output folder (``None`` if it can). ``create``: make it (and
    its parents) now, the surest test; an empty folder is then the only trace a failed check can
    leave. Without, probe the nearest existing ancestor instead and leave nothing behind."""
    out = Path(path)
    if not str(path).strip():
        return "must name a folder, got ''"
    if out.exists() and not out.is_dir():
        return f"{out} exists and is not a folder"
    if not create:
        return _creatable_problem(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create folder {out}: {error_text(error)}"
    return _write_probe(out)


def physical_memory() -> int | None:
    """Bytes of RAM on this machine (``None`` where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None

def threads_problem(threads: int | None, flag: str = "--threads") -> str | None:
    """Why ``threads`` CPU threads cannot run here (``None`` if they can; 0/None mean the default).
    ``flag`` names the setting: an entry point's flag, or a library's ```field```."""
    cores = os.cpu_count() or 1
    if threads and threads > cores:
        return f"{flag} {threads} is more than this machine's {cores} CPU cores"
    return None


def duplicates_problem(flag: str, values: Sequence[Any]) -> str | None:
    """Why the list ``values`` of ``flag`` repeats itself (``None`` if every value is distinct)."""
    seen: list[Any] = []
    for value in values:
        if value in seen:
            return f"{flag} {' '.join(map(str, values))}: {value} is given more than once"
        seen.append(value)
    return None


GB = 1e9


def memory_problem(needs: Mapping[str, tuple[str, float]], available: float | None = None) -> str | None:
    """Why a run cannot fit in this machine's memory (``None`` if it can, or the OS does not say),
    naming the flags that ask for most. ``needs`` maps flags to (what, bytes)."""
    available = physical_memory() if available is None else available
    total = sum(size for _, size in needs.values())
    if available is None or total <= available:
        return None
    flags = max(needs, key=lambda name: needs[name][1])
    what, size = needs[flags]
    return (f"{flags}: this run needs about {total / GB:.1f} GB of memory ({size / GB:.1f} GB for "
            f"{what}); this machine has {available / GB:.1f} GB")
