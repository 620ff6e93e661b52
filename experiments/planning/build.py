"""The whole plan of a study, computed and validated (nothing written): the `Plan` record
(experiments.study_dir, which also reads it back from plan.json)."""
from __future__ import annotations

import dataclasses
import math
import os

import ml_collections

from experiments import ladder as ladder_lib
from experiments.planning import estimate, forecast as forecast_lib, grid as grid_lib, law_runs, memory_fit, specs
from experiments.planning.errors import StudyError
from experiments.planning.hparams import SECTION_KEY as HPARAMS_LAW_KEY
from experiments.planning.prior import NO_PRIOR
from experiments.planning.study import Study
from experiments.study_dir import Plan, plan_hash
from models.config import ConfigError
from scaling import validate


def make_plan(config: ml_collections.ConfigDict, config_file: str, *, base_overrides: dict | None = None,
              epoch: int | None = None, throughput: estimate.Throughput | None = None) -> Plan:
    """The whole plan, computed and validated; nothing is written."""
    study = record = Study.from_config(config.study)  # `study` narrows for lr_sweep; the Plan keeps `record`
    try:
        base_model = validate.model_config(config)
    except ConfigError as e:
        raise StudyError(str(e)) from None
    recipe = ladder_lib.RECIPES[study.recipe]
    if study.mode in ("lr_sweep", "hparam_sweep"):
        sweep = study.sweep if study.mode == "lr_sweep" else study.hparam_sweep
        rungs = _sweep_rungs(recipe, base_model, sweep, study.flop_convention)
        budgets = sweep.budgets if study.mode == "hparam_sweep" else (sweep.budget,) if sweep.budget else ()
        study = dataclasses.replace(study, budgets=budgets, prior=NO_PRIOR)
    elif study.mode in law_runs.MODES:  # the section's sizes at every budget
        rungs = law_runs.rungs(recipe, base_model, study)
        study = dataclasses.replace(study, prior=NO_PRIOR)
    else:
        rungs = ladder_lib.ladder(recipe, base_model, study.min_params, study.max_params, study.growth,
                                  study.flop_convention)
    if not rungs:
        raise StudyError(f"study.ladder: no {study.recipe!r} shape between {study.min_params:.3g} and "
                         f"{study.max_params:.3g} parameters; widen the range")
    epoch = estimate.epoch_tokens(config, study) if epoch is None else epoch
    law_runs.check_epoch(study, epoch)
    solver = (grid_lib.sweep_grid if study.mode == "hparam_sweep"
              else grid_lib.tokens_grid if study.mode == "lr_sweep" and study.sweep.tokens else grid_lib.grid)
    points, dropped = solver(rungs, study, epoch)
    make = {"wsd_branches": specs.wsd_runs, "lr_sweep": specs.sweep_runs,
            "hparam_sweep": specs.hparam_sweep_runs, **law_runs.MAKERS}.get(study.mode, specs.independent_runs)
    runs, trained = make(points, study, os.path.abspath(config_file), dict(base_overrides or {}))
    # Micro-batches and remat so each run fits its device (scaling.memory), or the run is dropped.
    runs, too_big, memory_gb, memory_note = memory_fit.fit_runs(config, study, runs)
    trained = {r.run_id: trained[r.run_id] for r in runs}
    dropped = [*dropped, *too_big]
    specs.check_runs(config, runs)
    if throughput is not None and not estimate.plans_for_this_device(study):
        throughput = None  # a probe on another kind of device measures the wrong machine
    seconds, source = estimate.estimate_seconds(runs, trained, config, study, throughput)
    study_dict = config.study.to_dict()
    if study.hparam_law is not None:  # the law applied, as read (path, sha256, intervals): plan.json's record
        study_dict[HPARAMS_LAW_KEY] = study.hparam_law.to_json()
    study_dict["hash"] = plan_hash(study_dict, runs)
    return Plan(study=record, section=study_dict, runs=tuple(runs), hash=study_dict["hash"], dropped=tuple(dropped),
                seconds=seconds, seconds_source=source, cosine_equivalent_flops=sum(p.flops for p in points),
                total_flops=sum(trained.values()),
                prior=study.prior.describe() if study.prior.kind != "none" else "",
                windows=tuple(_window_line(C, points, study) for C in study.budgets
                              if study.prior.kind != "none"),
                memory_gb=memory_gb, memory_note=memory_note, **_forecast(runs, study))


def _sweep_rungs(recipe: ladder_lib.Recipe, base_model, sweep, convention: str) -> tuple[ladder_lib.Rung, ...]:
    """The sweep's sizes (ladder targets through the recipe's shape rule), or its explicit widths: the
    recipe's width-only shapes at the sweep's depth (the recipe's own when it gives none)."""
    if getattr(sweep, "widths", ()):
        if not recipe.n_layer:
            raise StudyError(f"study.lr_sweep.widths: recipe {recipe.name!r} has no width-only family; use a "
                             "recipe with fixed depth and heads (cpu) or give sizes")
        recipe = dataclasses.replace(recipe, n_layer=sweep.n_layer or recipe.n_layer)
        try:
            shapes = {recipe.width_shape(w, base_model) for w in sweep.widths}
        except ConfigError as e:
            raise StudyError(f"study.lr_sweep.widths={sweep.widths}: {e}") from None
    else:
        shapes = {recipe.shape(t, base_model) for t in sweep.sizes}
    return tuple(sorted((ladder_lib.rung(recipe, m, convention) for m in shapes), key=lambda r: r.params.total))


def _window_line(C: float, points, study: Study) -> str:
    sizes = sorted(p.rung.params.total for p in points if p.C == C)
    centre = study.prior.n_opt(C)
    lo, hi = (math.log10(n / centre) for n in (sizes[0], sizes[-1]))
    return (f"C={C:.3g}: prior N_opt={centre:.3g}; {len(sizes)} sizes {sizes[0]:,}..{sizes[-1]:,} "
            f"({lo:+.2f}..{hi:+.2f} decades)")


def _forecast(runs, study: Study) -> dict:
    """The forecast, or the note saying why the grid has none (a grid the analysis cannot fit
    is worth printing, not an error: the table still shows what would train)."""
    if not study.simulations or study.prior.kind == "none" or study.mode in ("lr_sweep", "hparam_sweep"):
        return {}
    noise, source = forecast_lib.noise_level(study.noise, study.noise_from)
    try:
        return {"forecast": forecast_lib.forecast(runs, study.prior, noise, source, study.simulations)}
    except StudyError as e:
        return {"forecast_note": f"forecast: none ({e})"}
