"""Plan an IsoFLOP study: `python -m experiments.plan --config=experiments/configs/isoflop_cpu.py`.

For every budget C and ladder size N the planner solves an integer number of steps so the run's
counted FLOPs (under `study.flop_convention`, every convention recorded in the runs' run.json) land
within ±1% of C, drops the candidates that cannot train well (too few steps, tokens per parameter out
of bounds, more tokens than one epoch of the training split) with their reason, prints the table and
writes `<study dir>/plan.json` atomically (`--study=DIR`, alias `--study_dir`, default study.dir):

    {"study": {...the study section..., "hash": the plan's hash (experiments.study_dir.plan_hash)},
     "runs": [RunSpec.to_dict(), ...], "dropped": [{"C": .., "N": .., "reason": ..}, ...]}

Each RunSpec's `config_file` is the study config file (whose `get_config()` is also a valid run config)
and its `overrides` are the dotted run-config keys that make that run, so
`python -m scaling.train --config=<config_file> --workdir=DIR --config.<k>=<v> ...` trains it.

`study.mode = "wsd_branches"` plans warmup-stable-decay cooldown branches (Hägele et al. 2024): per size
one constant-LR trunk, and one cooldown per grid point branching from the trunk's checkpoint, so one
trunk yields every D that size needs. `study.mode = "hparam_sweep"` plans lr x batch (x beta2) at several
sizes and budgets for experiments.planning.hparam_fit; `study.hparams = FILE` takes every run's lr and
batch from that fit's laws (experiments/configs/isoflop_cpu.py documents both). `study.mode =
"data_constrained"` and `"annealing"` plan the runs that measure those laws
(experiments/planning/law_runs.py: sizes x unique-token limits, sizes x schedules). Bad input exits 2
with one line, before anything is written.

This module is the command; the planning itself lives in experiments/planning/ (one job per module).
"""
from __future__ import annotations

import pathlib
import sys
from typing import Any

import ml_collections

from experiments.planning.build import Plan, make_plan
from experiments.planning.errors import StudyError
from experiments.planning.estimate import probe as _probe
from experiments.planning.study import Study, check_study_dir
from experiments.planning.table import format_table
from models.config import ConfigError
from plumbing import atomic
from plumbing.cli import one_line
from scaling import validate, xla_flags


def write_plan(study_dir: pathlib.Path, plan: Plan) -> pathlib.Path:
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / "plan.json"
    atomic.write_json(path, plan.to_json())
    return path


def load_file_config(config_file: str) -> ml_collections.ConfigDict:
    """get_config() of a config file."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_study_config", config_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def command_line_overrides(config: ml_collections.ConfigDict, config_file: str) -> dict[str, Any]:
    """Run-config keys changed on the planner's command line: every run must carry them too."""
    file_values = _flatten(load_file_config(config_file).to_dict())
    return {k: v for k, v in _flatten(config.to_dict()).items()
            if not k.startswith("study.") and file_values.get(k) != v}


def _flags(argv: list[str]):
    from absl import flags as absl_flags
    from ml_collections import config_flags

    fv = absl_flags.FlagValues()
    # sys_argv: config_flags finds the --config.<field> overrides there, not in what fv() parses.
    config_flags.DEFINE_config_file("config", None, "Study config file (get_config() with a `study` "
                                    "section).", flag_values=fv, lock_config=True, sys_argv=argv)
    absl_flags.DEFINE_string("study", None, "Study directory (default: study.dir).", flag_values=fv)
    absl_flags.DEFINE_alias("study_dir", "study", flag_values=fv)
    absl_flags.DEFINE_enum("probe", "auto", ["auto", "on", "off"], "Wall-time estimate from a measured "
                           "throughput probe per size (auto: when scaling.probe exists).", flag_values=fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    from absl import flags as absl_flags
    from ml_collections import config_flags

    xla_flags.for_planner()  # before the first jax.devices(): the trainer's flags, no GPU held
    argv = sys.argv if argv is None else argv
    fv = _flags(argv)
    try:
        validate.check_config_file(argv, "experiments/configs/isoflop_cpu.py")
        fv(argv)
        if fv["config"].value is None:
            raise StudyError("--config is required: e.g. experiments/configs/isoflop_cpu.py")
        config, config_file = fv.config, config_flags.get_config_filename(fv["config"])
        if "study" not in config:
            raise StudyError(f"--config={config_file} has no `study` section: it is not a study config")
        study = Study.from_config(config.study)
        study_dir = check_study_dir(fv.study or study.dir)
        plan = make_plan(config, config_file, base_overrides=command_line_overrides(config, config_file),
                         throughput=_probe(fv.probe))
    except (StudyError, ConfigError, absl_flags.Error, AttributeError, KeyError, TypeError,
            ValueError, FileNotFoundError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    try:
        path = write_plan(study_dir, plan)
    except OSError as e:  # a directory that passes os.access but refuses files: /proc, a read-only mount
        print(f"error: study.dir={study_dir} cannot be written ({one_line(e)}): pass --study or set "
              "study.dir to a writable directory", file=sys.stderr)
        return 2
    print(format_table(plan))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
