"""Per-run locks that survive a crashed launcher, and atomic file writes.

A run is held by two things at once:
- an `fcntl.flock` on `<run>/.lock`. The kernel drops it when the last process holding the open file
  dies, so a SIGKILLed launcher never leaves a run locked. The trainer subprocess inherits the
  descriptor, so the run stays locked until the trainer itself has exited (e.g. while it saves a
  checkpoint after SIGTERM), even if the launcher that started it is already gone.
- a lease file `<run>/lease.json` (host, pids, heartbeat). flock is not honoured across hosts on every
  shared filesystem (NFSv3, Lustre without `-o flock`), so a process on another node also respects
  the lease while its heartbeat is fresh. On the holder's own host the flock alone decides: a lease
  left behind by a dead process is ignored there, so a reused pid can never wedge a run.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from plumbing import atomic

LOCK_NAME = ".lock"
LEASE_NAME = "lease.json"
STALE_AFTER_S = 120.0  # a lease from another host whose heartbeat is older than this is dead


def write_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a torn one."""
    atomic.write_text(path, text)


def write_json_atomic(path: Path, value) -> None:
    atomic.write_json(path, value)


def read_json(path: Path):
    """The parsed file, or None when it does not exist (atomic writers never leave it half-written)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


class LockBusy(Exception):
    """Another live process holds the run."""


@dataclasses.dataclass(frozen=True)
class Lease:
    host: str
    pids: tuple[int, ...]
    heartbeat: float  # time.time() of the last refresh
    token: str
    owner: str = ""  # free text: launcher / SLURM job id, for humans

    def binds(self, now: float, host: str, stale_after_s: float = STALE_AFTER_S) -> bool:
        """Whether a process on `host` that got the flock must still respect this lease."""
        return self.host != host and now - self.heartbeat < stale_after_s


def read_lease(run_dir: Path) -> Lease | None:
    raw = read_json(Path(run_dir) / LEASE_NAME)
    if raw is None:
        return None
    return Lease(raw["host"], tuple(raw["pids"]), raw["heartbeat"], raw["token"], raw.get("owner", ""))


class RunLock:
    """Exclusive hold of one run directory; `acquire()` raises LockBusy instead of waiting."""

    def __init__(self, run_dir: Path, owner: str = "", heartbeat_s: float = STALE_AFTER_S / 4):
        self.run_dir = Path(run_dir)
        self.owner = owner
        self.heartbeat_s = heartbeat_s
        self.fd: int | None = None
        self._token = uuid.uuid4().hex
        self._pids: tuple[int, ...] = (os.getpid(),)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockBusy(f"{self.run_dir.name} is locked by another process") from None
        lease = read_lease(self.run_dir)
        if lease is not None and lease.binds(time.time(), socket.gethostname()):
            os.close(fd)
            raise LockBusy(f"{self.run_dir.name} is leased by {lease.owner or lease.host} (pids {lease.pids})")
        self.fd = fd
        self._write_lease()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{self.run_dir.name}")
        self._thread.start()
        return self

    def add_pid(self, pid: int) -> None:
        """Record a child (the trainer) that keeps the run busy after this process dies."""
        self._pids = (*self._pids, pid)
        self._write_lease()

    def _write_lease(self) -> None:
        lease = Lease(socket.gethostname(), self._pids, time.time(), self._token, self.owner)
        write_json_atomic(self.run_dir / LEASE_NAME, dataclasses.asdict(lease))

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._write_lease()

    def release(self) -> None:
        if self.fd is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        lease = read_lease(self.run_dir)
        if lease is not None and lease.token == self._token:
            (self.run_dir / LEASE_NAME).unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_held(run_dir: Path) -> bool:
    """Whether some live process holds the run (a momentary shared flock probe plus the lease)."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    if path.exists():
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    lease = read_lease(run_dir)
    return lease is not None and lease.binds(time.time(), socket.gethostname())
