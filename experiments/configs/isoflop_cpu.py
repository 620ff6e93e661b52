"""IsoFLOP study on the embedded stdlib corpus that trains within an hour on a 2-core CPU.

    python -m experiments.study --config=experiments/configs/isoflop_cpu.py    # plan ... report
    (or step by step: python -m experiments.plan --config=...; python -m experiments.launch
     --study=studies/isoflop_cpu; experiments.collect; analysis.fit --approach all --curves ...)

Design: 4 budgets 1.5e11-4.8e12 (1.5 decades), the `cpu` ladder (experiments/ladder.py: width-only,
lr and b2 calibrated by lr_sweep_cpu.py), 8-9 sizes per budget spanning >= +-0.4 decades around the
prior N_opt(C) that calibration measured, >= 500 steps per run (batch 8, halved to 4 where needed),
seeds 0 and 1 at the 2 points nearest each prior optimum: 42 runs, 7.0e13 FLOPs.
Measured 2026-12-01 (python -m experiments.study, 2 workers, load 10-13 falling to 5 from other work
on the machine, another study running for the first half hour): training 47.0 min, 48.7 min to the
report; every minimum interior, within 0.07 decades of the prior; Approach 2 a = 0.504 [0.420, 0.546]
(half-width 0.063; the planner's forecast at the measured seed noise: +-0.043), Approach 3 a = 0.520,
held-out largest budget N_opt -0.078 decades, losses 0.57% (median); seed noise pooled std 0.022 nats
(8 points, heavy-tailed: 6 of 8 pairs differ by 0.008-0.021, two by 0.04 and 0.07).

`get_config()` is a complete run config (scaling.config.default_config() plus what this study changes)
with one more section, `study`, that the trainer ignores and the planner and launcher read. Every run
of the plan is `python -m scaling.train --config=<this file> --config.<key>=<value> ...` with the keys
of its RunSpec.overrides (shape, steps, batch, lr, warmup, schedule). This file documents every field
of the `study` section; the other presets start from `study_section()` and change what they need.
"""
import ml_collections

from scaling.config import default_config


def study_section() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.name = "isoflop_cpu"
    s.dir = "studies/isoflop_cpu"  # study directory: plan.json, runs/<run_id>/, results (--study overrides)

    # --- the grid (read by the planner) ---
    s.budgets = (1.5e11, 4.8e11, 1.5e12, 4.8e12)  # compute budgets C in FLOPs under flop_convention (1.5 decades)
    s.recipe = "cpu"  # experiments.ladder.RECIPES: shape, batch, lr and warmup rules
    s.ladder = ml_collections.ConfigDict()
    s.ladder.min_params = 7e3  # ladder targets min_params * growth**i up to max_params (total params)
    s.ladder.max_params = 6e5
    s.ladder.growth = 1.41  # at most this ratio between neighbouring rungs (0.15 decades; below ~3e4
    # one width step of the `cpu` recipe is less than that, so every width is a rung there)
    # The named prior the grid is centred on (experiments/planning/prior.py documents every field).
    s.prior = ml_collections.ConfigDict()
    s.prior.kind = "law"  # law: N_opt = params * (C / budget)^a | tokens_per_param | none
    # Measured: lr_sweep_cpu's best loss per size at C = 6e11 (sizes 1.3e4, 3.6e4, 9.0e4) has its
    # IsoFLOP vertex at N = 3.97e4, 0.088 nats deep 0.4 decades out; a = 0.5 assumed (Hoffmann et al.).
    s.prior.source = "lr_sweep_cpu: N_opt(6e11) = 3.97e4 measured, a = 0.5 (Hoffmann et al. 2022)"
    s.prior.budget = 6e11
    s.prior.params = 3.97e4
    s.prior.a = 0.5  # Hoffmann et al. 2022: a ~ 0.5
    s.prior.tokens_per_param = 0.0  # kind tokens_per_param: D/N at the optimum (Hoffmann et al.: 20)
    s.prior.alpha = 0.34  # the forecast law's N exponent (Hoffmann et al. 2022 eq. 10)
    s.prior.depth = 0.088  # nats the profile rises 0.4 decades either side of its optimum (measured)
    s.prior.E = 0.0
    # Sizes per budget: every ladder rung within `span` decades of the prior's N_opt(C); fewer than
    # `count` of them is an error (minima interior by design).
    s.sizes = ml_collections.ConfigDict()
    s.sizes.span = 0.4
    s.sizes.count = 7
    # Repeated seeds (init and data order): every seed at the `seed_points` points of each budget
    # nearest its prior N_opt (run ids end in -s<seed>); seeds[0] elsewhere.
    s.seeds = (0, 1)
    s.seed_points = 2
    # Forecast (experiments/planning/forecast.py): Monte Carlo studies of Approach 2 on this grid under
    # the prior law; per-run noise from noise_from (a previous points.csv/results.csv) else noise.
    s.simulations = 200
    # nats, std of one run's final eval loss across seeds: measured by this study (pooled over its 8
    # repeated points; 0.01 was assumed before); noise_from=<study>/points.csv reads a study's own.
    s.noise = 0.022
    s.noise_from = ""
    # (low, high) bounds on D/N (N total); outside: dropped (a sanity bound; the window decides).
    s.tokens_per_param = (1.0, 2000.0)
    s.min_steps = 500  # fewer optimiser steps than this: the batch is halved (recipe.min_batch), else dropped
    s.flop_convention = "chinchilla"  # scaling.flops.CONVENTIONS; C is counted in it, all are recorded
    s.schedule = "cosine"  # cosine | wsd | constant (the train.schedule of every run)
    s.mode = "independent"  # independent: one run per (C, N) | wsd_branches: trunk + cooldown branches
    # | lr_sweep: study.lr_sweep (lr_sweep_cpu.py) | hparam_sweep: study.hparam_sweep, lr x batch (x beta2)
    # at several sizes and budgets for experiments.planning.hparam_fit (hparam_sweep_cpu.py documents it)
    s.wsd = ml_collections.ConfigDict()
    s.wsd.cooldown_frac = 0.2  # wsd_branches: cooldown length as a fraction of each branch's steps
    s.wsd.checkpoint_every = 50  # wsd_branches: trunk checkpoint interval; branches start on its multiples
    # lr and batch (and beta2) per run from fitted laws instead of the recipe's rules: a hparam_fit.json
    # (python -m experiments.planning.hparam_fit --study <an hparam_sweep study>, e.g.
    # experiments/configs/hparam_sweep_cpu.py). Each run's lr = lr*(N, D) and batch = B*(N, D) at its N
    # (total params) and D = C / FLOPs per token, the batch rounded to a multiple of the recipe's
    # min_batch and halved to reach min_steps, the lr moved by sqrt(batch / B*) when the batch had to
    # differ (experiments/planning/grid.py, law_batch); plan.json's study.hparams_law records the law
    # applied (path, sha256, exponents, intervals). "": the recipe's rules.
    s.hparams = ""
    s.train_tokens_per_epoch = 0  # 0: ask scaling.data for one epoch of the training split
    s.assumed_flops_per_second = 6e10  # wall-time estimate when no throughput probe is available
    # Where the runs train (experiments/planning/memory_fit.py, estimate.py). device_kind "": this
    # machine's kind; a different kind skips the throughput probe and assumes assumed_mfu of that
    # kind's peak (scaling.flops.PEAK_FLOPS). device_memory_gb 0: the planning device's memory on
    # an accelerator, no limit on CPU; each run gets train.grad_accum and model.remat to fit it.
    s.device_kind = ""
    s.device_memory_gb = 0.0
    s.devices_per_run = 1  # devices of one run (its mesh's -1 axis)
    s.assumed_mfu = 0.0
    # The study tests its own prediction (experiments/planning/validation.py): after the grid's first
    # fit, the fit's predicted N*(C) at budgets beyond the grid is trained and its measured loss
    # compared with the frozen prediction (DIR/prediction.json, written before they train; the
    # report's "Prediction test"). These runs have role "validation": the grid's fit never reads them.
    s.validation = ml_collections.ConfigDict()
    s.validation.decades = (0.5,)  # budgets this many decades above the largest grid budget; () with
    # budgets=() turns the validation off
    s.validation.budgets = ()  # and/or absolute budgets (FLOPs, under flop_convention)
    s.validation.sizes = 3  # 3: N* and its neighbours `spread` decades either side (tests where the
    # optimum is as well as its loss); 1: N* only. Each rounded onto the recipe's nearest ladder rung.
    s.validation.spread = 0.3
    s.validation.seeds = (0,)
    s.validation.approach = "auto"  # the fit that predicts; auto: the report's lead, Approach 3 (the
    # only fit with a loss; the rule is recorded in prediction.json)

    # --- execution (read by the launcher, experiments.launch) ---
    s.executor = "local"  # local | slurm
    s.workers = 2  # local: concurrent runs; CPU threads are split between them, one run per GPU
    s.max_retries = 2  # a failed run is retried this many times, then left as failed
    s.slurm = ml_collections.ConfigDict()
    s.slurm.partition = ""  # "" = the cluster's default partition
    s.slurm.time_minutes = 60  # per array task
    s.slurm.gpus_per_task = 0
    s.slurm.cpus_per_task = 2
    s.slurm.mem_gb = 8
    s.slurm.array_parallelism = 8  # tasks of the job array running at once
    # Also read when set (experiments.planning.study.Slurm): signal_delay_s (120: the trainer's warning
    # before the time limit) and additional (a dict of more sbatch parameters).
    return s


def get_config() -> ml_collections.ConfigDict:
    c = default_config()
    c.model.seq_len = 128
    c.data.dataset = "stdlib"
    # End-of-run evaluation on a fixed 262,144 tokens, one mid-run point for the curves; checkpoints
    # sparse enough that saving stays a small part of a minutes-long run.
    c.eval.every_steps = 500
    c.eval.tokens = 262_144  # on the 20% validation split: eval SE 0.022 clustered by file, 0.0032 between two runs
    c.eval.batch = 16
    c.checkpoint.every_steps = 500
    c.log.every_steps = 25
    c.study = study_section()
    return c
