"""Check a whole run config against the devices before anything is compiled.

Each failure is a `ConfigError` whose message is one line naming the field and the fix; the CLI turns
it into exit code 2.
"""
from __future__ import annotations

import pathlib
import tempfile

import ml_collections

from models.config import ConfigError, ModelConfig
from scaling.config import COOLDOWN_SHAPES, SCHEDULES, default_config
from scaling.sharding import MESH_AXES, resolve_mesh_shape, rules_dict

# Sections a config file may carry that a single run ignores (a study's plan lives in `study`).
IGNORED_SECTIONS = ("study",)
TOKENIZER_VOCAB = 257  # byte-level: 256 bytes + end-of-document


def _unknown_fields(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict,
                    prefix: str = "") -> None:
    for key in config.keys():
        if not prefix and key in IGNORED_SECTIONS:
            continue
        if key not in reference:
            raise ConfigError(f"{prefix}{key} is not a config field; known: {sorted(reference.keys())}")
        value, ref = config[key], reference[key]
        if isinstance(ref, ml_collections.ConfigDict) and key != "model":
            if not isinstance(value, ml_collections.ConfigDict):
                raise ConfigError(f"{prefix}{key} must be a section, got {value!r}")
            _unknown_fields(value, ref, f"{prefix}{key}.")


def model_config(config: ml_collections.ConfigDict) -> ModelConfig:
    return ModelConfig.from_dict(config.model.to_dict())


def check(config: ml_collections.ConfigDict, device_count: int, process_count: int = 1) -> ModelConfig:
    _unknown_fields(config, default_config())
    cfg = model_config(config)
    if cfg.vocab_size < TOKENIZER_VOCAB:
        raise ConfigError(f"model.vocab_size={cfg.vocab_size} is smaller than the tokenizer's "
                          f"{TOKENIZER_VOCAB} ids: raise it to at least {TOKENIZER_VOCAB}")

    shape = dict(zip(MESH_AXES, resolve_mesh_shape(config.mesh.shape, device_count)))
    rules = rules_dict(config.mesh.rules)
    for name in ("heads", "mlp"):
        size = cfg.n_heads if name == "heads" else cfg.d_ff
        field = "model.n_heads" if name == "heads" else "model.d_ff"
        for axis in rules.get(name, ()):
            if size % shape[axis]:
                raise ConfigError(f"{field}={size} is not divisible by the mesh's {axis} axis "
                                  f"({shape[axis]}): change {field} or mesh.shape")

    t = config.train
    if t.steps <= 0:
        raise ConfigError(f"train.steps={t.steps} must be positive")
    if t.lr <= 0:
        raise ConfigError(f"train.lr={t.lr} must be positive")
    if not 0 <= t.warmup_steps < max(t.steps, 1):
        raise ConfigError(f"train.warmup_steps={t.warmup_steps} must be in [0, train.steps={t.steps})")
    if t.schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule={t.schedule!r} is not one of {SCHEDULES}")
    if t.cooldown_shape not in COOLDOWN_SHAPES:
        raise ConfigError(f"train.cooldown_shape={t.cooldown_shape!r} is not one of {COOLDOWN_SHAPES}")
    if t.schedule == "wsd" and not 0 < t.cooldown_frac <= 1:
        raise ConfigError(f"train.cooldown_frac={t.cooldown_frac} must be in (0, 1]")
    if t.grad_accum <= 0 or t.global_batch % t.grad_accum:
        raise ConfigError(f"train.grad_accum={t.grad_accum} must divide train.global_batch={t.global_batch}")
    shards = batch_shards_from(shape, rules)
    micro = t.global_batch // t.grad_accum
    if micro % shards:
        raise ConfigError(f"train.global_batch={t.global_batch} (/{t.grad_accum} accumulation steps) is "
                          f"not divisible by the {shards} data shards of mesh.shape: change either")
    if t.global_batch % process_count:
        raise ConfigError(f"train.global_batch={t.global_batch} is not divisible by the "
                          f"{process_count} processes")
    if config.eval.batch % shards or config.eval.batch % process_count:
        raise ConfigError(f"eval.batch={config.eval.batch} must be divisible by the {shards} data "
                          f"shards and {process_count} processes")
    if config.eval.tokens <= 0:
        raise ConfigError(f"eval.tokens={config.eval.tokens} must be positive")
    for field in ("checkpoint.every_steps", "log.every_steps", "eval.every_steps"):
        section, key = field.split(".")
        if config[section][key] < 0:
            raise ConfigError(f"{field}={config[section][key]} must be >= 0")
    unique = config.data.unique_tokens
    if not isinstance(unique, int) or isinstance(unique, bool) or unique < 0:
        raise ConfigError(f"data.unique_tokens={unique!r} must be an integer >= 0 (0: the whole training split)")
    dataset = config.data.dataset
    if dataset == "synthetic:markov":
        from scaling.data.errors import DataError
        from scaling.data.markov_corpus import MarkovParams
        try:
            MarkovParams.from_config(config.data.get("markov"))
        except DataError as e:
            raise ConfigError(str(e)) from None
    elif dataset != "stdlib" and not (dataset.startswith("tfds:") and len(dataset) > 5):
        raise ConfigError(f"data.dataset={dataset!r} is unknown: use 'stdlib' (the embedded corpus), "
                          "'synthetic:markov' or 'tfds:<name>[/<config>]'")
    return cfg


def batch_shards_from(shape: dict, rules: dict) -> int:
    n = 1
    for axis in rules.get("batch", ()):
        n *= shape[axis]
    return n


def check_workdir(workdir: str) -> pathlib.Path:
    path = pathlib.Path(workdir).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(f"--workdir={workdir} is not writable ({e.strerror}): choose another directory")
    return path


def check_config_file(argv: list[str], example: str) -> None:
    """--config=FILE[:arg] names a file that exists: one line naming it, before absl parses anything
    (ml_collections reports a missing file as a traceback)."""
    for i, a in enumerate(argv[1:], 1):
        value = a.split("=", 1)[1] if a.startswith("--config=") else (
            argv[i + 1] if a == "--config" and i + 1 < len(argv) else None)
        if value is not None and not pathlib.Path(value.split(":")[0]).is_file():
            raise ConfigError(f"--config={value}: no such file; e.g. {example}")


__all__ = ["check", "check_workdir", "model_config", "ConfigError", "check_config_file"]
