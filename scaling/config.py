"""The run config: every field a training run reads, with its default.

Configs under `experiments/configs/` start from `default_config()` and change what they need; the
command line overrides any field (`--config.model.d_model=256`). `validate()` checks the whole config
against the devices before anything is compiled and raises `ConfigError` with one line naming the field.
"""
from __future__ import annotations

import dataclasses

import ml_collections

from models.config import ConfigError, ModelConfig

SCHEDULES = ("cosine", "wsd", "constant")
COOLDOWN_SHAPES = ("linear", "1-sqrt")

# Logical axis -> mesh axes. One table: switching FSDP to tensor parallelism is an edit here.
# 'batch' and 'length' name activation axes only; the others name weight dimensions and the same
# axes of activations (models/constraints.py). Each mesh axis shards at most one dimension of an
# array, first come first served: under FSDP an activation's batch takes 'fsdp', so its embed
# axis stays whole while the weights' embed axis is split.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("head_dim", None),
    ("norm", None),
    ("layers", None),
)


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Raw defaults (head_dim=0, d_ff=0 mean 'derive'), so overriding d_model re-derives them.
    c.model = ml_collections.ConfigDict({f.name: f.default for f in dataclasses.fields(ModelConfig)})

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "stdlib"  # the embedded corpus, "synthetic:markov", or "tfds:<name>[/<config>]"
    c.data.text_key = "text"  # feature holding the text in a TFDS dataset
    c.data.data_dir = ""  # "" -> $SCALING_DATA_DIR or ~/.cache/scaling/tfds
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    # Train on a fixed, seeded subset of this many tokens of the training split, repeated as many
    # epochs as the run needs (scaling/data/subset.py); 0: the whole split.
    c.data.unique_tokens = 0
    # synthetic:markov only (scaling/data/markov_corpus.py): the chain; its hash names the dataset.
    c.data.markov = ml_collections.ConfigDict()
    c.data.markov.order = 4  # k: a symbol depends on the k before it
    c.data.markov.alphabet = 12  # symbols (printable bytes)
    c.data.markov.concentration = 6.0  # hierarchical Dirichlet alpha: small = few successors, each order informative
    c.data.markov.mean_doc_len = 512.0  # geometric document lengths (symbols)
    c.data.markov.seed = 0  # the chain and the text; independent of the run's seed
    c.data.markov.train_tokens = 20_000_000
    c.data.markov.validation_tokens = 1_000_000

    c.train = ml_collections.ConfigDict()
    c.train.steps = 100
    c.train.global_batch = 8  # sequences per optimiser step, summed over accumulation micro-steps
    c.train.grad_accum = 1
    c.train.lr = 3e-3  # peak learning rate
    c.train.schedule = "cosine"
    c.train.warmup_steps = 10
    c.train.final_lr_frac = 0.1  # cosine ends at this fraction of peak (Chinchilla: 10x decay)
    c.train.cooldown_frac = 0.2  # wsd: fraction of steps spent cooling down
    c.train.cooldown_shape = "1-sqrt"
    c.train.weight_decay = 0.1
    c.train.wd_exclude = ("norm",)  # logical axis names whose weights get no weight decay
    c.train.b1 = 0.9
    c.train.b2 = 0.95
    c.train.eps = 1e-8
    c.train.clip_norm = 1.0  # global-norm clipping; 0 disables
    c.train.z_loss = 0.0  # coefficient of log(Z)^2 (PaLM); 0 disables

    c.eval = ml_collections.ConfigDict()
    c.eval.every_steps = 50  # 0: only at the end
    c.eval.tokens = 16384  # fixed number of validation tokens per evaluation
    c.eval.batch = 8

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 50
    c.checkpoint.keep = 2
    c.checkpoint.async_save = True

    c.log = ml_collections.ConfigDict()
    c.log.every_steps = 10

    c.mesh = ml_collections.ConfigDict()
    c.mesh.shape = (-1, 1, 1)  # (data, fsdp, tensor); one entry may be -1: it takes the rest
    c.mesh.rules = DEFAULT_RULES
    return c


__all__ = ["ConfigError", "default_config", "SCHEDULES", "COOLDOWN_SHAPES", "DEFAULT_RULES"]
