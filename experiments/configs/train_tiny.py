"""A run that finishes in under a minute on a 2-core CPU: for tests and for checking an install.

python -m scaling.train --config=experiments/configs/train_tiny.py --workdir=/tmp/tiny
"""
from scaling.config import default_config


def get_config():
    c = default_config()
    c.model.n_layer = 2
    c.model.d_model = 64
    c.model.n_heads = 4
    c.model.seq_len = 64
    c.train.steps = 60
    c.train.global_batch = 8
    c.train.warmup_steps = 6
    c.train.lr = 3e-3
    c.eval.every_steps = 30
    c.eval.tokens = 4096
    c.eval.batch = 8
    c.checkpoint.every_steps = 20
    c.log.every_steps = 10
    return c
