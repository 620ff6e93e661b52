"""IsoFLOP study for accelerators, with budgets starting where Chinchilla's did (6e18 FLOPs).

Hoffmann et al. 2022 Figure 3 (Approach 2) uses nine budgets from 6e18 to 3e21; this preset takes the
first six (6e18 ... 3e20), which need models from ~50M to ~2B parameters and billions of tokens, so it
trains on a large TFDS corpus (c4/en, byte-level), prepared beforehand into data.data_dir:

    python -m experiments.plan --config=experiments/configs/isoflop_gpu.py
    python -m experiments.launch --study=studies/isoflop_gpu     # SLURM job array, one GPU per run

The `study` fields are documented in isoflop_cpu.py; only what differs is set here.
"""
from experiments.configs import isoflop_cpu


def get_config():
    c = isoflop_cpu.get_config()
    c.model.seq_len = 2048  # Chinchilla's context length
    c.model.dtype = "bfloat16"  # bf16 compute, f32 parameters
    # Unrolled: on an H200 the scanned 353M step ran 215.8 ms and held 57.2 GB, unrolled 180.1 ms and
    # 35.4 GB (bench/train_throughput.py --preset=gpu [--scan], 2026-12-04); compile time grows with depth.
    c.model.scan_layers = False
    c.data.dataset = "tfds:c4/en"
    c.data.text_key = "text"
    c.eval.every_steps = 1000
    c.eval.tokens = 1 << 20
    c.eval.batch = 32
    c.checkpoint.every_steps = 1000
    c.log.every_steps = 50

    s = c.study
    s.name = "isoflop_gpu"
    s.dir = "studies/isoflop_gpu"
    s.budgets = (6e18, 1e19, 3e19, 6e19, 1e20, 3e20)
    s.recipe = "standard"
    s.ladder.min_params = 3e7
    s.ladder.max_params = 8e9
    s.ladder.growth = 1.2  # every aspect-64 shape of the range: neighbouring rungs <= 0.15 decades apart
    s.prior.kind = "tokens_per_param"
    s.prior.source = "Hoffmann et al. 2022: ~20 tokens per parameter at the optimum (a = 0.5)"
    s.prior.tokens_per_param = 20.0
    s.prior.depth = 0.03  # their Figure 3 profiles rise ~0.03-0.05 nats 0.4 decades out
    s.noise = 0.002  # nats per run with 1M eval tokens; replace by noise_from a first study
    s.tokens_per_param = (1.5, 250.0)
    s.min_steps = 500
    s.wsd.checkpoint_every = 500
    s.train_tokens_per_epoch = 0  # from the prepared corpus (scaling.data)
    s.assumed_flops_per_second = 4e14  # ~40% of an H100's dense bf16 peak, until a probe measures it
    s.device_kind = "NVIDIA H100 80GB HBM3"  # planned elsewhere (a CPU login node): no probe here
    s.device_memory_gb = 80.0
    s.assumed_mfu = 0.4
    s.validation.decades = (1.0,)  # one decade beyond the grid (3e21), N* and its neighbours
    s.validation.sizes = 3
    s.executor = "slurm"
    s.workers = 8  # local executor on a multi-GPU host: one run per GPU
    s.slurm.time_minutes = 24 * 60
    s.slurm.gpus_per_task = 1
    s.slurm.cpus_per_task = 8
    s.slurm.mem_gb = 64
    s.slurm.array_parallelism = 64
    return c
