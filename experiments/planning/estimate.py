"""What a plan costs before it runs: tokens in one epoch of the training split, wall time per run."""
from __future__ import annotations

from typing import Callable, Sequence

import ml_collections

from experiments.planning.specs import run_config
from experiments.planning.errors import StudyError
from experiments.planning.study import Study
from experiments.spec import RunSpec

Throughput = Callable[[ml_collections.ConfigDict], float]  # run config -> training tokens/s


def epoch_tokens(config: ml_collections.ConfigDict, study: Study) -> int:
    """Target tokens in one pass over the training split: the study field, else scaling.data's count."""
    if study.train_tokens_per_epoch:
        return study.train_tokens_per_epoch
    from scaling import data
    try:
        pipe = data.load(config.data, config.model.seq_len, config.seed, config.train.global_batch,
                         config.eval.tokens, config.eval.batch)
    except data.DataError as e:
        raise StudyError(f"{e} (or set study.train_tokens_per_epoch)") from None
    return pipe.train_tokens_per_epoch


def estimate_seconds(runs: Sequence[RunSpec], trained_flops: dict[str, float], config, study: Study,
                     throughput: Throughput | None) -> tuple[dict[str, float], str]:
    """Wall time per run: measured tokens/s of its shape when a probe is given, else assumed FLOP/s."""
    if throughput is None:
        rate, label = assumed_rate(config, study)
        return {r.run_id: trained_flops[r.run_id] / rate for r in runs}, label
    by_shape: dict[int, float] = {}
    seconds = {}
    for r in runs:
        if r.params not in by_shape:
            by_shape[r.params] = throughput(run_config(config, r))
        tokens = trained_flops[r.run_id] / r.flops * r.tokens  # a branch trains only its cooldown
        seconds[r.run_id] = tokens / by_shape[r.params]
    return seconds, "probe"


def plans_for_this_device(study: Study) -> bool:
    """Whether the runs will train on this machine's kind of device (study.device_kind, "" = yes):
    only then does a throughput probe here measure them."""
    import jax
    return not study.device_kind or study.device_kind == jax.devices()[0].device_kind


def run_backend(study: Study) -> str:
    """The JAX platform the runs will train on: this machine's, unless study.device_kind names
    another kind of device (NVIDIA and AMD kinds are 'gpu', TPU kinds 'tpu')."""
    import jax
    if plans_for_this_device(study):
        return jax.default_backend()
    kind = study.device_kind.lower()
    if kind.startswith(("nvidia", "amd", "tesla")):
        return "gpu"
    if "tpu" in kind:
        return "tpu"
    if kind == "cpu":
        return "cpu"
    raise StudyError(f"study.device_kind={study.device_kind!r}: not a device kind this planner knows "
                     "(JAX's device_kind, e.g. 'NVIDIA H100 80GB HBM3', 'TPU v5 lite' or 'cpu')")


def assumed_rate(config, study: Study) -> tuple[float, str]:
    """FLOP/s of one run without a probe: study.assumed_mfu of the peak of study.device_kind's
    devices (scaling.flops.PEAK_FLOPS) when both are known, else study.assumed_flops_per_second."""
    from scaling import flops
    kind, mfu, devices = study.device_kind, study.assumed_mfu, study.devices_per_run
    peak = flops.peak_flops(kind, str(config.model.dtype)) if kind else None
    if peak and mfu > 0:
        return (mfu * peak * devices,
                f"assumed {mfu:.0%} MFU of {devices} x {kind} ({peak:.3g} FLOP/s {config.model.dtype})")
    return study.assumed_flops_per_second, f"assumed {study.assumed_flops_per_second:.3g} FLOP/s"


def probe(mode: str) -> Throughput | None:
    """The throughput probe for --probe=auto|on|off (auto: when scaling.probe exists)."""
    import importlib.util
    available = importlib.util.find_spec("scaling.probe") is not None
    if mode == "on" and not available:
        raise StudyError("--probe=on: scaling.probe is not available; use --probe=off (assumed FLOP/s)")
    if mode == "off" or not available:
        return None
    from scaling import probe as probe_lib
    return probe_lib.tokens_per_second
