"""Kill-safety by phase: the trainer killed (SIGKILL) or stopped (SIGTERM) at every named point of
`plumbing.faults`, then restarted, ends exactly where an uninterrupted run ends.

The faults fire at named points, not after a delay, so no test here depends on timing. Each chain
walks several phases in one workdir (every restart resumes what the previous attempt left), which
tests the phases together in a few processes; `bench/kill_soak.py` takes each point on its own and
random kills.
"""
from __future__ import annotations

import pathlib
import signal

import jax
import numpy as np
import pytest

from plumbing import faults
from scaling.data.prefetch import Prefetcher
import train_helpers as th

# Each attempt resumes what the previous one left, so the order puts each point where it has
# something to break (which async saves had landed at a kill varies; the end state may not).
KILL_CHAIN = (
    "before_run_json:kill",         # nothing trained yet
    "compile:kill",                 # run.json says running, no checkpoint
    "write:metrics.jsonl:kill@4",   # a torn line (arrivals: the rewrite at start, steps 4, 8, 12)
    "restore:kill",                 # while restoring the newest checkpoint
    "mid_step:kill@10",             # steps dispatched, not fetched
    "checkpoint_write:kill",        # a save in flight
    "write:run.json:kill",          # run.json's rewrite at the start, not yet renamed over
    "final_eval:kill",              # the loop done, step 40 saved, evaluating
    "after_last_checkpoint:kill",   # evaluated and saved, never marked completed (the old hang)
)
TERM_CHAIN = (
    ("compile:term", 143),          # stops after one step, saved
    ("mid_step:term@5", 143),       # stops at the next step, saved
    ("final_eval:term", 143),       # the final eval given up, the last step saved
    ("after_last_checkpoint:term", 0),  # nothing left to stop: it completes
)


def _assert_same_as_reference(workdir: pathlib.Path, reference: pathlib.Path) -> None:
    record, want = th.run_json(workdir), th.run_json(reference)
    assert record["status"] == "completed"
    assert record["final_eval_loss"] == want["final_eval_loss"]
    assert record["final_train_loss"] == want["final_train_loss"]
    (step_a, ref), (step_b, got) = th.final_state(reference), th.final_state(workdir)
    assert step_a == step_b == 40
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    # Each logged step once, as in the uninterrupted run; no temp file of a killed write left over.
    steps = [r["step"] for r in th.metrics(workdir) if "train_loss" in r]
    assert steps == [r["step"] for r in th.metrics(reference) if "train_loss" in r]
    assert not [p.name for p in workdir.glob(".*.tmp")]
    assert not [p.name for p in (workdir / "checkpoints").iterdir() if "tmp" in p.name]


@pytest.mark.slow
def test_sigkill_at_every_trainer_phase_resumes_bitwise(tmp_path, data_dir, reference):
    workdir = tmp_path / "killed"
    for fault in KILL_CHAIN:
        result = th.train(workdir, data_dir, *th.STEPS, fault=fault, timeout=120)
        assert result.returncode == -signal.SIGKILL, (fault, result.returncode, result.stderr[-2000:])
        assert not (workdir / "run.json").exists() or th.run_json(workdir)["status"] == "running", fault
    result = th.train(workdir, data_dir, *th.STEPS, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_as_reference(workdir, reference)


@pytest.mark.slow
def test_sigterm_at_each_phase_exits_143_saved_and_resumes_bitwise(tmp_path, data_dir, reference):
    workdir = tmp_path / "stopped"
    for fault, code in TERM_CHAIN:
        result = th.train(workdir, data_dir, *th.STEPS, fault=fault, timeout=120)
        assert result.returncode == code, (fault, result.returncode, result.stderr[-2000:])
        if code == 143:
            assert th.run_json(workdir)["status"] == "interrupted", fault
            assert "preempted: saved step" in result.stdout, fault
    _assert_same_as_reference(workdir, reference)


def test_fault_spec_is_checked_and_off_by_default(monkeypatch):
    assert faults._parse(None) is None and faults._parse("") is None
    assert faults._parse("mid_step:term@3") == ("mid_step", "term", 3)
    assert faults._parse("write:run.json:kill") == ("write:run.json", "kill", 1)
    for bad in ("mid_step", "nowhere:kill", "mid_step:explode"):
        with pytest.raises(ValueError):
            faults._parse(bad)
    monkeypatch.setattr(faults, "_ARMED", None)
    faults.point("mid_step")  # off: nothing happens
    assert faults.without({"SCALING_FAULT": "x", "A": "1"}) == {"A": "1"}


def test_prefetcher_empty_range_is_empty_and_never_blocks():
    with Prefetcher(lambda i: i, 60, 60) as batches:
        assert len(batches) == 0
        with pytest.raises(IndexError):
            batches.peek()
        with pytest.raises(IndexError):
            batches.get(60)


class _SilentProducer(Prefetcher):
    def _produce(self, make, start, stop):  # ends without delivering an item or an error
        return


def test_prefetcher_consumer_is_woken_when_the_producer_dies_silently():
    with _SilentProducer(lambda i: i, 0, 5) as batches:
        with pytest.raises(RuntimeError, match="ended without delivering"):
            batches.peek()
