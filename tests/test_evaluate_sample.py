"""`python -m scaling.evaluate` and `python -m scaling.sample` on a tiny trained run."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from scaling import evaluate, sample
import train_helpers as th

# Batches of 8 so the in-process calls below (8 CPU devices, mesh (-1, 1, 1)) can shard them.
RUN = ["--config.train.global_batch=8", "--config.eval.batch=8", "--config.train.steps=20",
       "--config.checkpoint.every_steps=10", "--config.eval.every_steps=0", "--config.log.every_steps=10"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    result = th.train(workdir, tmp_path_factory.mktemp("tfds"), *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def _cli(module, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=th.ROOT, env=th.env(),
                          timeout=timeout, capture_output=True, text=True)


def _error(capsys, main, *args) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_scoring_the_validation_split_reproduces_the_runs_final_eval_loss(run_dir):
    # The CLI as a user runs it: one device, like the training run.
    result = _cli("scaling.evaluate", f"--workdir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.strip().splitlines()) == 1
    out = json.loads((run_dir / "evals" / "validation-step20.json").read_text())
    record = th.run_json(run_dir)
    assert out["step"] == 20 and out["tokens"] == 512
    assert out["loss"] == pytest.approx(record["final_eval_loss"], rel=1e-9)
    assert out["loss_se"] == pytest.approx(record["final_eval_loss_se"], rel=1e-6)
    assert out["bits_per_byte"] == pytest.approx(record["final_eval_bits_per_byte"], rel=1e-9)
    assert out["perplexity"] == pytest.approx(math.exp(out["loss"]))
    assert out["run_final_eval_loss"] == record["final_eval_loss"]
    assert f"loss {out['loss']:.4f}" in result.stdout


def test_an_earlier_step_and_a_text_file(run_dir, tmp_path, capsys):
    assert evaluate.main([f"--workdir={run_dir}", "--step=10", "--tokens=256"]) == 0
    early = json.loads((run_dir / "evals" / "validation-step10.json").read_text())
    final = th.run_json(run_dir)["final_eval_loss"]
    assert early["tokens"] == 256 and early["loss"] > final  # 10 more steps of training help
    assert capsys.readouterr().out.startswith("step 10 of ")
    text = b"def add(a, b):\n    return a + b\n" * 5
    (tmp_path / "code.py").write_bytes(text)
    out_path = tmp_path / "score.json"
    assert evaluate.main([f"--workdir={run_dir}", f"--text-file={tmp_path / 'code.py'}",
                          f"--output={out_path}"]) == 0
    line = capsys.readouterr().out.strip()
    assert len(line.splitlines()) == 1 and "bits/byte" in line
    out = json.loads(out_path.read_text())
    # One document: EOD, its bytes, EOD -> every byte and the closing EOD are targets.
    assert (out["tokens"], out["bytes"]) == (len(text) + 1, len(text))
    assert out["bits_per_byte"] == pytest.approx(out["loss"] * out["tokens"] / out["bytes"] / math.log(2))


def test_evaluate_input_errors_are_one_line(run_dir, tmp_path, capsys):
    assert "has no run.json" in _error(capsys, evaluate.main, f"--workdir={tmp_path}")
    (tmp_path / "run.json").write_text((run_dir / "run.json").read_text())
    assert f"no checkpoint in {tmp_path}/checkpoints" in _error(capsys, evaluate.main, f"--workdir={tmp_path}")
    assert "available steps: [10, 20]" in _error(capsys, evaluate.main, f"--workdir={run_dir}", "--step=7")
    assert "--tokens=99999999 exceeds" in _error(capsys, evaluate.main, f"--workdir={run_dir}",
                                                 "--tokens=99999999")
    assert "not allowed with" in _error(capsys, evaluate.main, f"--workdir={run_dir}", "--dataset=stdlib",
                                        "--text-file=x")
    assert "--text-file=nope.txt does not exist" in _error(capsys, evaluate.main, f"--workdir={run_dir}",
                                                          "--text-file=nope.txt")


def _samples(capsys, run_dir, tmp_path, *args):
    """(texts from the --output JSON, the record, stdout)."""
    path = tmp_path / "samples.json"
    assert sample.main([f"--workdir={run_dir}", "--max-new-tokens=12", f"--output={path}", *args]) == 0
    out = capsys.readouterr().out
    record = json.loads(path.read_text())
    return [s["prompt"] + s["completion"] for s in record["samples"]], record, out


def test_same_seed_same_text_other_seed_other_text(run_dir, capsys, tmp_path):
    a, record, out = _samples(capsys, run_dir, tmp_path, "--prompt=def ", "--num-samples=3", "--seed=0")
    b, _, _ = _samples(capsys, run_dir, tmp_path, "--prompt=def ", "--num-samples=3", "--seed=0")
    c, _, _ = _samples(capsys, run_dir, tmp_path, "--prompt=def ", "--num-samples=3", "--seed=1")
    assert a == b and a != c and len(set(a)) > 1
    assert out.strip().splitlines()[-1].startswith("3 samples from step 20")
    assert out.count("--- sample ") == 3 and all(text in out for text in a)
    assert all(s["new_tokens"] <= 12 and s["stop"] in ("eod", "length") for s in record["samples"])


def test_greedy_samples_are_all_the_same_and_follow_every_prompt(run_dir, capsys, tmp_path):
    texts, _, out = _samples(capsys, run_dir, tmp_path, "--prompt=import ", "--prompt=class",
                             "--temperature=0", "--num-samples=2", "--seed=5")
    assert "greedy" in out.splitlines()[-1]
    assert texts[0] == texts[1] and texts[2] == texts[3] and texts[0] != texts[2]
    assert texts[0].startswith("import ") and texts[2].startswith("class")
    other_seed, _, _ = _samples(capsys, run_dir, tmp_path, "--prompt=import ", "--temperature=0",
                                "--num-samples=1")
    assert other_seed[0] == texts[0]


def test_sample_input_errors_are_one_line(run_dir, tmp_path, capsys):
    err = _error(capsys, sample.main, f"--workdir={run_dir}", "--prompt=" + "x" * 30, "--max-new-tokens=5")
    assert "prompt (31 tokens" in err and "seq_len=32" in err and "--max-new-tokens to 2" in err
    assert "--top-k=-1" in _error(capsys, sample.main, f"--workdir={run_dir}", "--top-k=-1")
    assert "no checkpoint" in _error(capsys, sample.main, f"--workdir={run_dir}", "--step=3")
    assert "prompt (1 token with" in _error(capsys, sample.main, f"--workdir={run_dir}", "--max-new-tokens=33")
    assert "has no run.json" in _error(capsys, sample.main, f"--workdir={tmp_path}")
    # Through `python -m`: the exit code and the one line, before any compute.
    result = _cli("scaling.sample", f"--workdir={run_dir}", "--max-new-tokens=40", "--prompt=abc")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "need 43 positions" in result.stderr
