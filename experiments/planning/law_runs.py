"""Runs of the modes that measure laws beyond Chinchilla's form (law_sections.py: their sections).

Both take their sizes from their section, as lr_sweep does (no prior, no window): the grid solves
each (budget, size) to whole steps as for an IsoFLOP point, then each point becomes
    data_constrained: one run per unique-token limit (data.unique_tokens; run id ...-U<limit>,
        ...-Uall for the whole split), role data_constrained;
    annealing: one run per schedule (train.schedule; run id ...-<schedule>), role annealing, or
        annealing_heldout for study.annealing.held_out's schedules.
Runs of one point share steps, batch, peak lr and warmup, so they differ only in what the mode varies.
"""
from __future__ import annotations

from experiments import ladder as ladder_lib
from experiments.planning import law_sections
from experiments.planning.errors import StudyError
from experiments.planning.grid import Point
from experiments.planning.specs import make_spec, run_id, warmup_steps
from experiments.planning.study import Study
from experiments.spec import RunSpec

MODES = law_sections.MODES


def rungs(recipe: ladder_lib.Recipe, base_model, study: Study) -> tuple[ladder_lib.Rung, ...]:
    """The section's sizes as ladder rungs (each target through the recipe's shape rule)."""
    shapes = {recipe.shape(t, base_model) for t in study.law_runs.sizes}
    return tuple(sorted((ladder_lib.rung(recipe, m, study.flop_convention) for m in shapes),
                        key=lambda r: r.params.total))


def check_epoch(study: Study, epoch_tokens: int) -> None:
    """Every unique-token limit fits in the training split (the trainer would refuse it)."""
    if study.mode != "data_constrained":
        return
    too_big = [u for u in study.law_runs.unique_tokens if u > epoch_tokens]
    if too_big:
        raise StudyError(f"study.data_constrained.unique_tokens: {too_big} exceed the training split's "
                         f"{epoch_tokens:,} tokens; lower them (0: the whole split)")


def _unique_id(u: int) -> str:
    return "Uall" if u == 0 else f"U{u:.3g}"


def data_constrained_runs(points: list[Point], study: Study, config_file: str, base: dict
                          ) -> tuple[list[RunSpec], dict[str, float]]:
    recipe = ladder_lib.RECIPES[study.recipe]
    runs = []
    for p in points:
        warmup = warmup_steps(p.rung, p.steps, recipe, p.global_batch)
        for u in study.law_runs.unique_tokens:
            runs.append(make_spec(p, study, config_file, base, warmup, role="data_constrained",
                                  run_id=f"{run_id(p.C, p.rung.params.total)}-{_unique_id(u)}",
                                  overrides={"data.unique_tokens": u}))
    return runs, {r.run_id: r.flops for r in runs}


def annealing_runs(points: list[Point], study: Study, config_file: str, base: dict
                   ) -> tuple[list[RunSpec], dict[str, float]]:
    recipe = ladder_lib.RECIPES[study.recipe]
    section = study.law_runs
    runs = []
    for p in points:
        warmup = warmup_steps(p.rung, p.steps, recipe, p.global_batch)
        for schedule in section.schedules:
            role = "annealing_heldout" if schedule in section.held_out else "annealing"
            runs.append(make_spec(p, study, config_file, base, warmup, role=role,
                                  run_id=f"{run_id(p.C, p.rung.params.total)}-{schedule}",
                                  overrides={"train.schedule": schedule}))
    return runs, {r.run_id: r.flops for r in runs}


MAKERS = {"data_constrained": data_constrained_runs, "annealing": annealing_runs}
