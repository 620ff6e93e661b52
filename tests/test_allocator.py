"""scaling/allocator.py: entry points restart themselves under tcmalloc where it is installed.

The logic (finding the library, building LD_PRELOAD) runs against fake library files in tmp_path, so it
is tested on hosts without tcmalloc too; only the re-exec end to end needs a real library.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaling import allocator

REPO = Path(__file__).resolve().parents[1]
OTHER = "/opt/lib/libother.so"  # someone else's preload, which must survive
find_tcmalloc_unpatched = allocator.find_tcmalloc


def fake_library(d: Path, name: str = "libtcmalloc_minimal.so.4") -> str:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(b"")
    return str(d / name)


def test_find_tcmalloc_searches_the_given_dirs(tmp_path):
    empty, lib = tmp_path / "empty", tmp_path / "lib"
    empty.mkdir()
    assert allocator.find_tcmalloc([str(empty)]) is None
    assert allocator.find_tcmalloc([str(tmp_path / "missing")]) is None
    path = fake_library(lib, "libtcmalloc.so.4")
    assert allocator.find_tcmalloc([str(empty), str(lib)]) == path
    # The minimal build is preferred: tcmalloc's heap profiler is not wanted in a trainer.
    minimal = fake_library(lib)
    assert allocator.find_tcmalloc([str(lib)]) == minimal
    (lib / "libtcmalloc_minimal.so.4").unlink()
    (lib / "libtcmalloc_minimal.so.4").mkdir()  # a directory of that name is not a library
    assert allocator.find_tcmalloc([str(lib)]) == path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is only set on Linux")
def test_preload_env_adds_tcmalloc_once_and_keeps_other_preloads(tmp_path):
    lib = fake_library(tmp_path)
    environ = {"PATH": "/bin", "LD_PRELOAD": OTHER}
    env = allocator.preload_env(environ, library=lib)
    assert env["LD_PRELOAD"].split() == [lib, OTHER] and env["PATH"] == "/bin"
    assert environ == {"PATH": "/bin", "LD_PRELOAD": OTHER}  # the caller's mapping is not touched
    assert allocator.preload_env(env, library=lib) == env  # already preloaded: not added twice
    assert allocator.preload_env({}, library=lib) == {"LD_PRELOAD": lib}
    assert allocator.preload_env({"LD_PRELOAD": "  "}, library=lib) == {"LD_PRELOAD": lib}
    system = {allocator.SWITCH: "system", "LD_PRELOAD": OTHER}
    assert allocator.preload_env(system, library=lib) == system


def test_preload_env_without_tcmalloc_changes_nothing(tmp_path, monkeypatch):
    # The default search, pointed at a directory that holds no tcmalloc (as on CI), then one that does.
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: find_tcmalloc_unpatched([str(tmp_path)]))
    environ = {"LD_PRELOAD": OTHER, "HOME": "/root"}
    assert allocator.preload_env(environ) == environ
    assert "LD_PRELOAD" not in allocator.preload_env({})
    lib = fake_library(tmp_path)  # now "installed": found through the default search
    if sys.platform.startswith("linux"):
        assert allocator.preload_env({})["LD_PRELOAD"] == lib

# ------------------------------------------------------------------------------------------------------
# reexec, end to end: a real process replaces itself under the installed tcmalloc
# ------------------------------------------------------------------------------------------------------

PROBE = """\
import os
from scaling import allocator
{prelude}
print("before", os.getpid())
allocator.reexec()
mapped = any("tcmalloc" in line for line in open("/proc/self/maps"))
print("after", os.getpid(), mapped, repr(os.environ.get("LD_PRELOAD", "")))
"""


def run_probe(tmp_path: Path, prelude: str = "", **extra: str) -> tuple[list[list[str]], list[str]]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE.format(prelude=prelude))
    # Without PYTHONUNBUFFERED stdout to a pipe is block-buffered, as under a launcher: what was printed
    # before the exec is lost unless reexec flushes it.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", allocator.SWITCH, allocator._DONE, "PYTHONPATH", "PYTHONUNBUFFERED")}
    env.update(PYTHONPATH=str(REPO), **extra)
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [line.split(" ", 3) for line in out.stdout.splitlines()]
    return lines, [line[0] for line in lines]


needs_tcmalloc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or allocator.find_tcmalloc() is None,
    reason="needs an installed tcmalloc (apt install libtcmalloc-minimal4) to re-execute under")


@needs_tcmalloc
def test_reexec_restarts_once_under_tcmalloc_with_the_same_pid(tmp_path):
    lines, kinds = run_probe(tmp_path, LD_PRELOAD=OTHER)
    # "before" twice: printed (and flushed into the pipe by reexec) by the first process, then again by
    # the re-executed one, which returned from reexec without a third start.
    assert kinds == ["before", "before", "after"], lines
    pids = {line[1] for line in lines}
    assert len(pids) == 1, lines  # execve: the same process, so a launcher's pid and signals still hold
    assert lines[2][2] == "True", lines  # tcmalloc mapped into the process
    assert eval(lines[2][3]).split() == [allocator.find_tcmalloc(), OTHER]
    # A trainer started by a launcher (preload_env) already has tcmalloc: it does not restart.
    lines, kinds = run_probe(tmp_path, LD_PRELOAD=allocator.find_tcmalloc())
    assert kinds == ["before", "after"] and lines[1][2] == "True", lines


# The cases where reexec must return, run on every host: with tcmalloc here they would restart if the
# check were missing; without it (CI) they check reexec is harmless there.

def test_reexec_keeps_the_system_allocator_when_asked(tmp_path):
    lines, kinds = run_probe(tmp_path, **{allocator.SWITCH: "system"})
    assert kinds == ["before", "after"], lines
    assert lines[0][1] == lines[1][1] and lines[1][2] == "False" and eval(lines[1][3]) == "", lines


def test_reexec_never_restarts_a_restarted_process(tmp_path):
    # The guard for a loader that drops LD_PRELOAD (secure execution): the marker alone stops a restart.
    lines, kinds = run_probe(tmp_path, **{allocator._DONE: "1"})
    assert kinds == ["before", "after"] and lines[1][2] == "False", lines


def test_reexec_without_tcmalloc_returns(tmp_path):
    lines, kinds = run_probe(tmp_path, prelude="allocator.find_tcmalloc = lambda: None  # a host without it")
    assert kinds == ["before", "after"] and lines[1][2] == "False" and eval(lines[1][3]) == "", lines


# ------------------------------------------------------------------------------------------------------
# Launchers hand preload_env to the trainers they start
# ------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is only set on Linux")
def test_local_executor_slots_start_trainers_under_tcmalloc(tmp_path, monkeypatch):
    from experiments.executors.local import LocalExecutor
    from experiments.planning.study import Study
    from experiments.study_dir import Plan
    lib = fake_library(tmp_path / "lib")
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: find_tcmalloc_unpatched([str(tmp_path / "lib")]))
    monkeypatch.setenv("LD_PRELOAD", OTHER)
    monkeypatch.delenv(allocator.SWITCH, raising=False)
    plan = Plan(study=Study(), runs=(), hash="0")
    slots = LocalExecutor(tmp_path, plan, 2, trainer="scaling.train", max_retries=0).slots
    assert [s.env["LD_PRELOAD"].split() for s in slots] == [[lib, OTHER]] * 2
    assert os.environ["LD_PRELOAD"] == OTHER  # the launcher's own environment is not changed
    monkeypatch.setenv(allocator.SWITCH, "system")
    slots = LocalExecutor(tmp_path, plan, 2, trainer="scaling.train", max_retries=0).slots
    assert [s.env["LD_PRELOAD"] for s in slots] == [OTHER] * 2


def test_an_unknown_allocator_choice_is_a_one_line_error():
    with pytest.raises(ValueError, match="SCALING_MALLOC='jemalloc'.*'system'"):
        allocator.preload_env({"SCALING_MALLOC": "jemalloc"})


def test_reexec_of_an_unknown_allocator_choice_exits_2_with_one_line(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text("from scaling import allocator\nallocator.reexec()\nprint('ran')\n")
    env = {k: v for k, v in os.environ.items() if k not in (allocator._DONE, "PYTHONPATH")}
    env.update(PYTHONPATH=str(REPO), **{allocator.SWITCH: "jemalloc"})
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and out.stdout == "", out
    assert out.stderr.strip().splitlines() == [
        "error: SCALING_MALLOC='jemalloc': use 'tcmalloc' (the default: where installed) or 'system'"], out


def test_a_library_built_for_another_machine_is_not_preloaded(tmp_path):
    # ld.so refuses (with an error line in every process) a library of another architecture.
    header = bytearray(Path(sys.executable).read_bytes()[:20])
    header[18:20] = (183 if header[18:20] != (183).to_bytes(2, "little") else 62).to_bytes(2, "little")
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(bytes(header) + b"\0" * 64)
    assert allocator.find_tcmalloc((str(tmp_path),)) is None
    header[18:20] = Path(sys.executable).read_bytes()[18:20]
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(bytes(header) + b"\0" * 64)
    assert allocator.find_tcmalloc((str(tmp_path),)) == str(tmp_path / "libtcmalloc_minimal.so.4")


def test_a_users_own_preloaded_allocator_is_kept():
    env = allocator.preload_env({"LD_PRELOAD": "/opt/lib/libjemalloc.so.2"}, library="/x/libtcmalloc_minimal.so.4")
    assert env["LD_PRELOAD"] == "/opt/lib/libjemalloc.so.2"
