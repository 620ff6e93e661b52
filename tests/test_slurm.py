"""The SLURM executor against a real one-node cluster (tests/slurm_cluster.py; CI installs it with
.ci/slurm_setup.sh). Skipped, with the reason, where the SLURM daemons are not installed."""
from __future__ import annotations

import json
import signal
import subprocess

import pytest

from slurm_cluster import PARTITION, SlurmCluster, skip_reason
from test_collect import collect, read_csv
from test_launch import assert_trained_once, launch, log, make_study, run_json, spec, start_launch, wait_for

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def slurm_study(path, runs):
    return make_study(path, runs, executor="slurm",
                      slurm={"partition": PARTITION, "time_minutes": 10, "cpus_per_task": 1, "array_parallelism": 2})


def job_ids(study) -> dict[str, str]:
    return {r: j["job_id"] for r, j in json.loads((study / "slurm" / "jobs.json").read_text()).items()}


def in_queue(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", job_id.split("_")[0]], capture_output=True, text=True)
    return job_id in out.stdout.split()


def test_grid_runs_as_a_job_array_and_is_collected(cluster, tmp_path):
    study = slurm_study(tmp_path / "s", [spec("a", steps=10), spec("b", steps=15), spec("c", steps=5)])
    out = launch(study, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    ids = job_ids(study)
    assert len({j.split("_")[0] for j in ids.values()}) == 1 and all("_" in j for j in ids.values())  # one array
    assert_trained_once(study, "abc")
    owners = [json.loads((study / "runs" / r / "attempts.json").read_text())[0]["owner"] for r in "abc"]
    assert sorted(owners) == sorted(f"slurm job {j}" for j in ids.values())
    assert collect(study).returncode == 0
    assert [r["status"] for r in read_csv(study / "results.csv")] == ["completed"] * 3


def test_relaunch_follows_a_running_job_instead_of_resubmitting(cluster, tmp_path):
    study = slurm_study(tmp_path / "s", [spec("long", steps=60, step_s=0.05)])
    first = start_launch(study)
    wait_for(lambda: len(log(study, "long", "metrics.jsonl")) >= 5, what="the job to train")
    first.send_signal(signal.SIGKILL)  # the launcher dies; its SLURM job does not
    first.wait()
    [job] = job_ids(study).values()
    out = launch(study, timeout=180)
    assert out.returncode == 0, out.stdout
    assert job_ids(study) == {"long": job}  # nothing resubmitted
    assert len(log(study, "long", "invocations.log")) == 1
    assert_trained_once(study, ["long"])


def test_scancel_then_relaunch_resumes_from_checkpoint(cluster, tmp_path):
    study = slurm_study(tmp_path / "s", [spec("long", steps=200, every=10, step_s=0.05)])
    first = start_launch(study)
    wait_for(lambda: len(log(study, "long", "metrics.jsonl")) >= 25, what="the job to train")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 143
    [job] = job_ids(study).values()
    assert in_queue(job)  # jobs outlive the launcher
    subprocess.run(["scancel", job], check=True)
    wait_for(lambda: not in_queue(job), timeout=60, what="scancel")
    assert run_json(study, "long")["status"] == "interrupted"  # the trainer saved on SLURM's SIGTERM
    out = launch(study, timeout=180)
    assert out.returncode == 0, out.stdout
    assert job_ids(study)["long"] != job
    first_try, second = log(study, "long", "invocations.log")
    assert second["start_step"] >= 20
    assert_trained_once(study, ["long"])
