"""A real one-node SLURM cluster on localhost for tests: munged + slurmctld + slurmd, all state in a tmp dir.

Debian's `slurm-wlm` and `munge` packages (`.ci/slurm_setup.sh`) provide the daemons. Everything the
cluster writes (munge key and socket, slurm.conf, state and spool directories, logs) lives under one
directory; clients find it through `SLURM_CONF`, which `SlurmCluster.env()` returns and `start()` also
exports into this process so submitit's `sbatch`/`squeue` calls see it. Daemons are stopped by their PIDs.

    with SlurmCluster(tmp_dir) as cluster:   # or python tests/slurm_cluster.py DIR to keep one up
        subprocess.run(["sbatch", "--wrap", "true"], env=cluster.env())
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
PARTITION = "ci"


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def skip_reason() -> str | None:
    """Why a real cluster cannot start here, or None when it can."""
    missing = missing_binaries()
    if missing:
        return f"SLURM not installed (missing {', '.join(missing)}); run .ci/slurm_setup.sh as root"
    if os.geteuid() != 0:
        return "starting slurmd needs root (it runs jobs as their submitting user)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Daemons get SIGTERM if the test process dies without stop() (e.g. pytest killed by a timeout)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    def __init__(self, root: Path, cpus: int | None = None):
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 1
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self._procs: dict[str, subprocess.Popen] = {}
        self._saved_env: dict[str, str | None] = {}

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_conf(self) -> None:
        state, spool, log = (self.root / d for d in ("state", "spool", "log"))
        for d in (state, spool, log):
            d.mkdir(parents=True, exist_ok=True)
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        # KillWait: seconds between the SIGTERM of scancel/time-limit and SIGKILL; the trainer saves a
        # checkpoint in that window, so it is kept short but non-zero.
        self.conf.write_text(f"""\
ClusterName=scalingci
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={state}
SlurmdSpoolDir={spool}/%n
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={log}/slurmctld.log
SlurmdLogFile={log}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
KillWait=10
MinJobAge=300
InactiveLimit=0
SchedulerParameters=sched_interval=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""")

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        self._procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                             start_new_session=True, preexec_fn=_die_with_parent)

    def start(self, timeout_s: float = 60) -> "SlurmCluster":
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # munged refuses group/world-writable parents of its files
        self._write_conf()
        munge = self.root / "munge"
        munge.mkdir(mode=0o700, exist_ok=True)
        key = munge / "munge.key"
        if not key.exists():
            subprocess.run([_which("mungekey"), "-c", "-k", str(key)], check=True, capture_output=True)
        self._start("munged", [_which("munged"), "-F", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={munge}/munged.pid",
                               f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"])
        self._wait(lambda: self.munge_socket.exists(), timeout_s, "munged socket")
        self._start("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._start("slurmd", [_which("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)])
        self._wait(self._node_idle, timeout_s, "node localhost idle")
        self._saved_env = {"SLURM_CONF": os.environ.get("SLURM_CONF")}
        os.environ["SLURM_CONF"] = str(self.conf)
        return self

    def _node_idle(self) -> bool:
        out = subprocess.run([_which("sinfo"), "-h", "-N", "-o", "%T"], env=self.env(),
                             capture_output=True, text=True)
        return out.returncode == 0 and out.stdout.strip().startswith("idle")

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            dead = [n for n, p in self._procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                logs = "\n".join(f"--- {f.name}\n{f.read_text()[-2000:]}" for f in sorted((self.root / "log").glob("*")))
                raise RuntimeError(f"SLURM test cluster: {what} not reached (exited: {dead})\n{logs}")
            time.sleep(0.3)

    def stop(self) -> None:
        # Reverse start order: slurmd first so running jobs' steps are reaped while munge still answers.
        for name in reversed(list(self._procs)):
            proc = self._procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # keep a cluster up by hand: python tests/slurm_cluster.py /tmp/slurm
    with SlurmCluster(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/scaling-slurm")) as c:
        print(f"export SLURM_CONF={c.conf}   # Ctrl-C stops the cluster", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
