"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

A process killed mid-write (SIGKILL, node loss) must not leave a half-written run.json,
metrics.jsonl, plan.json or fits.json behind, since the launcher, the collector and the analysis
read them to decide what is done. The recipe: write a temp file in the same directory (same
filesystem, so the rename is atomic), flush and fsync it, `os.replace` it over the target, then fsync
the directory so the rename itself is durable.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
from typing import IO, Any, Iterator

from plumbing import faults


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, parents: bool = False) -> Iterator[IO]:
    """A file object whose contents replace `path` only if the block completes.

    `parents`: create missing parent directories (the analysis writes into output folders it names);
    otherwise a missing directory is an error, so a run directory moved away is not recreated.
    """
    path = pathlib.Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600: others on a cluster could not read results
        faults.point(f"write:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        # Never leave a stray temp file next to the target, whatever went wrong.
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes, *, parents: bool = False) -> None:
    with atomic_open(path, "wb", parents=parents) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str, *, parents: bool = False) -> None:
    write_bytes(path, text.encode("utf-8"), parents=parents)


def write_json(path: str | os.PathLike, obj: Any, *, parents: bool = False) -> None:
    # allow_nan=False: NaN/Infinity are not JSON; a diverged loss must be stored as null by the caller
    # rather than produce a file that strict readers (jq, JS) reject.
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n", parents=parents)


def sweep_temps(directory: str | os.PathLike) -> list[str]:
    """Delete the temp files a killed `atomic_open` left in `directory` (`.NAME.*.tmp`); their names.
    Call it only where no other process may be writing the same directory (a run's own start)."""
    d = pathlib.Path(directory)
    stale = [p for p in d.glob(".*.tmp") if p.is_file()] if d.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return [p.name for p in stale]


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename/creation inside `directory` durable (POSIX needs the directory itself synced)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some filesystems/platforms do not allow opening directories; nothing more to do
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import: os.umask can only be read by setting it, which would race other threads.
_UMASK = _read_umask()
