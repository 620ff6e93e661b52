"""Run entry points under tcmalloc where it is installed (Debian: `apt install libtcmalloc-minimal4`).

XLA:CPU allocates a step's temporaries afresh on every call (1.3 GB for the 10M-parameter bench
step). glibc's malloc serves a block that size with mmap and gives it back with munmap, so every
step faults its whole temporary buffer in again: 350K page faults and 0.5 s of kernel time per
1.6 s step on the 2-core CPU. tcmalloc keeps freed memory for reuse: 0.13 s of kernel time, and
the bench's step 1.28 s against 1.52-1.54 s under glibc (bench/train_throughput.py). glibc's
tunables measured no better: mmap_max=0 still left 321K faults a step; with arena_max=1 as well,
the heap fragmented and grew 4.4 GB over five steps (158K faults, 0.83 s of kernel time);
hugetlb=1, 24K faults but 0.43 s (zeroing). MaxText's setup preloads tcmalloc too.

An allocator is chosen when a process starts (LD_PRELOAD), so `reexec()` replaces the process with
itself under tcmalloc, once, as an entry point's first act; launchers pass `preload_env()` to the
processes they start. SCALING_MALLOC=system keeps glibc's malloc. Without tcmalloc nothing changes.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping, MutableMapping

LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
SEARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
               "/usr/local/lib")
SWITCH = "SCALING_MALLOC"  # "system": leave the allocator alone
_DONE = "SCALING_MALLOC_REEXEC"  # set in the re-executed process: never re-execute twice


class AllocatorError(ValueError):
    """SCALING_MALLOC names no allocator we know."""


def _elf_kind(path: str) -> bytes | None:
    """ELF class, byte order and machine of a binary (None if not ELF): what ld.so must match."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    return head[4:6] + head[18:20] if head[:4] == b"\x7fELF" and len(head) == 20 else None


def find_tcmalloc(dirs=SEARCH_DIRS) -> str | None:
    """Path of an installed tcmalloc shared library built for this interpreter's machine, or None
    (a multiarch host may hold another architecture's, which ld.so would refuse to preload)."""
    want = _elf_kind(sys.executable)
    for d in dirs:
        for name in LIBRARIES:
            path = os.path.join(d, name)
            if os.path.isfile(path) and (want is None or _elf_kind(os.path.realpath(path)) in (want, None)):
                return path
    return None


def preload_env(environ: Mapping[str, str] = os.environ, library: str | None = None) -> dict[str, str]:
    """A copy of `environ` whose processes start under tcmalloc, where it is found and wanted."""
    env = dict(environ)
    choice = env.get(SWITCH, "tcmalloc")
    if choice not in ("tcmalloc", "system"):
        raise AllocatorError(f"{SWITCH}={choice!r}: use 'tcmalloc' (the default: where installed) or 'system'")
    if choice == "system" or not sys.platform.startswith("linux"):
        return env
    library = library or find_tcmalloc()
    preloaded = env.get("LD_PRELOAD", "")
    if library and "malloc" not in preloaded:  # a user's own allocator (jemalloc, mimalloc) stays
        env["LD_PRELOAD"] = f"{library} {preloaded}".strip()
    return env


def reexec(environ: MutableMapping[str, str] = os.environ) -> None:
    """Replace this process (same pid, same command line) with itself under tcmalloc, if found.

    Returns where there is nothing to do: tcmalloc absent, already loaded, or SCALING_MALLOC=system.
    """
    if environ.get(_DONE):
        return
    try:
        env = preload_env(environ)
    except AllocatorError as e:  # bad input: one line and exit 2, as the trainer's config errors
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if env.get("LD_PRELOAD") == environ.get("LD_PRELOAD"):
        return
    env[_DONE] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
