"""`study.validation`: the runs that test the study's own prediction beyond its grid, planned from
the grid's first fit (fields documented in experiments/configs/isoflop_cpu.py).

At each validation budget C the fit predicts N*(C) (analysis.laws.predict, eq. 4 of the fitted law);
the runs are N* and, with sizes = 3, its neighbours `spread` decades either side, each rounded onto
the recipe's ladder rung nearest in log N, trained for D = C / (FLOPs per token at that shape) with
the batch and lr of the same recipe and rules as the grid's runs (planning.grid.solve, specs.make_spec),
role "validation" so the grid's fit never reads them. `plan_validation` is a pure function of the
fit and the study: nothing trains and nothing is written here.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from analysis.laws import predict
from experiments import ladder as ladder_lib
from experiments.planning.errors import StudyError
from experiments.spec import RunSpec

ROLE = "validation"


@dataclasses.dataclass(frozen=True)
class Validation:
    """The parsed `study.validation` section (no budgets: no validation)."""
    decades: tuple[float, ...] = ()  # budgets as offsets in decades above the grid's largest budget
    budgets: tuple[float, ...] = ()  # and/or absolute budgets in FLOPs
    sizes: int = 3  # 1: the predicted N* only; 3: N* and its neighbours `spread` decades either side
    spread: float = 0.3
    seeds: tuple[int, ...] = (0,)
    approach: str = predict.DEFAULT_APPROACH  # the fit that makes the prediction ("auto": the report's lead)

    @classmethod
    def from_config(cls, v) -> "Validation":
        if v is None:
            return cls()
        approach = str(v.get("approach", "auto"))
        out = cls(decades=tuple(float(x) for x in v.get("decades", ())),
                  budgets=tuple(float(x) for x in v.get("budgets", ())), sizes=int(v.get("sizes", 3)),
                  spread=float(v.get("spread", 0.3)), seeds=tuple(int(s) for s in v.get("seeds", (0,))),
                  approach=predict.DEFAULT_APPROACH if approach == "auto" else approach)
        checks = [(all(d > 0 for d in out.decades), "decades", f"{out.decades} must be positive decades"),
                  (all(b > 0 for b in out.budgets), "budgets", f"{out.budgets} must be positive FLOP counts"),
                  (out.sizes in (1, 3), "sizes", f"{out.sizes} must be 1 (N* only) or 3 (N* and neighbours)"),
                  (out.spread > 0, "spread", f"{out.spread} must be > 0 decades"),
                  (bool(out.seeds) and len(set(out.seeds)) == len(out.seeds) and min(out.seeds) >= 0, "seeds",
                   f"{out.seeds} must be distinct non-negative integers"),
                  (out.approach in predict.APPROACHES, "approach",
                   f"{approach!r} must be auto or one of {predict.APPROACHES}")]
        for ok, name, message in checks:
            if not ok:
                raise StudyError(f"study.validation.{name}={message}")
        return out

    @property
    def enabled(self) -> bool:
        return bool(self.decades or self.budgets)

    @property
    def rule(self) -> str:
        return predict.DEFAULT_RULE if self.approach == predict.DEFAULT_APPROACH else f"{self.approach}: set in study.validation.approach"

    def targets(self, grid_budgets: Sequence[float]) -> tuple[float, ...]:
        top = max(grid_budgets)
        return tuple(sorted({float(f"{top * 10 ** d:.4g}") for d in self.decades} | set(self.budgets)))

    def flops(self, grid_budgets: Sequence[float]) -> float:
        """Exact: each validation run spends its budget."""
        return sum(self.targets(grid_budgets)) * self.sizes * len(self.seeds)

    def describe(self, grid_budgets: Sequence[float], estimated: str) -> str:
        """The plan table's line: what the validation will train once the grid's first fit says where
        (its runs cannot be listed before that fit). `estimated`: its training time, as the table says it."""
        targets = self.targets(grid_budgets)
        where = "N*" if self.sizes == 1 else f"N* and N* x 10^+-{self.spread:g}"
        return (f"validation (planned after the grid's first fit, frozen in DIR/prediction.json): {where} at "
                f"C = {', '.join(f'{c:.3g}' for c in targets)}, seed {', '.join(map(str, self.seeds))}: "
                f"{self.sizes * len(self.seeds) * len(targets)} runs, {self.flops(grid_budgets):.3g} FLOPs, "
                f"estimated {estimated} more one run at a time; predicted by {self.approach}")


@dataclasses.dataclass(frozen=True)
class RunPrediction:
    run_id: str
    C: float
    N: int
    D: int
    seed: int
    offset_dex: float  # log10(N / N*): where the rung sits against the predicted optimum
    loss: predict.LossPrediction

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "C": self.C, "N": self.N, "D": self.D, "seed": self.seed,
                "offset_dex": self.offset_dex, "predicted": self.loss.loss.to_json(),
                "param_sd": self.loss.param_sd, "noise_sd": self.loss.noise_sd}


@dataclasses.dataclass(frozen=True)
class ValidationPlan:
    runs: tuple[RunSpec, ...]
    predictions: tuple[RunPrediction, ...]
    budgets: tuple[predict.AllocationPrediction, ...]
    dropped: tuple  # planning.grid.Dropped: a size that cannot train at that budget, with why


def run_id(C: float, n: int, seed: int) -> str:
    from experiments.planning import specs
    return "val-" + specs.run_id(C, n, seed)


def nearest_rung(rungs: Sequence[ladder_lib.Rung], n: float) -> ladder_lib.Rung:
    return min(rungs, key=lambda r: abs(math.log(r.params.total / n)))


def plan_validation(predictor: predict.Predictor, rungs: Sequence[ladder_lib.Rung], study, v: Validation,
                    config_file: str, base: dict, epoch_tokens: int) -> ValidationPlan:
    """The validation runs at each of v's budgets, with the prediction each will be judged against.
    `rungs`: the recipe's ladder, reaching past the largest N* (+ spread) the fit predicts."""
    from experiments.planning import grid as grid_lib, specs  # they import the Study record, which imports this
    recipe = ladder_lib.RECIPES[study.recipe]
    offsets = (0.0,) if v.sizes == 1 else (-v.spread, 0.0, v.spread)
    runs, preds, allocs, dropped = [], [], [], []
    for C in v.targets(study.budgets):
        alloc = predictor.allocation(C)
        allocs.append(alloc)
        chosen = {nearest_rung(rungs, alloc.N.mid * 10 ** o).params.total: nearest_rung(rungs, alloc.N.mid * 10 ** o)
                  for o in offsets}
        for rung in sorted(chosen.values(), key=lambda r: r.params.total):
            p = grid_lib.solve(C, rung, study, epoch_tokens)
            if isinstance(p, grid_lib.Dropped):
                dropped.append(p)
                continue
            warmup = specs.warmup_steps(rung, p.steps, recipe, p.global_batch)
            for s in v.seeds:
                spec = specs.make_spec(p, study, config_file, base, warmup, seed=s, role=ROLE,
                                       run_id=run_id(C, rung.params.total, s))
                runs.append(spec)
                preds.append(RunPrediction(spec.run_id, C, spec.params, spec.tokens, s,
                                           math.log10(spec.params / alloc.N.mid), predictor.loss(spec.params, spec.tokens)))
    if not runs:
        raise StudyError("study.validation: no validation run can train: "
                         + "; ".join(f"C={d.C:.3g} N={d.N:,}: {d.reason}" for d in dropped))
    return ValidationPlan(tuple(runs), tuple(preds), tuple(allocs), tuple(dropped))


# How far past the grid's largest model a predicted N* may lie before the fit that predicts it is called
# degenerate: a validation budget a decade above the grid moves N* ~0.5 decades.
MAX_DECADES_PAST = 2.0


def ladder_for(recipe_name: str, base_model, study, largest_n: float, spread: float) -> tuple[ladder_lib.Rung, ...]:
    """The study's ladder extended past the largest predicted N* and its upper neighbour. Not below
    study.ladder.min_params: an N* predicted below it gets the smallest rung (prediction.json and the
    report show its offset from N*), rather than a model too small for the study's data and checks.
    An N* not finite or more than MAX_DECADES_PAST past study.ladder.max_params is a one-line error:
    a degenerate fit (e.g. alpha < 0) predicted it, and shaping models of 1e100 parameters hung the
    validate phase."""
    if not (math.isfinite(largest_n) and 0 < largest_n <= study.max_params * 10**MAX_DECADES_PAST):
        raise StudyError(f"the grid's fit predicts N* = {largest_n:.3g} at the validation budgets, more than "
                         f"{MAX_DECADES_PAST:g} decades past study.ladder.max_params={study.max_params:.3g} (or not "
                         "finite): a degenerate fit (see fits/fits.json); no validation planned")
    top = max(study.max_params, largest_n * 10 ** (spread + 0.2))
    return ladder_lib.ladder(ladder_lib.RECIPES[recipe_name], base_model, study.min_params, top, study.growth,
                             study.flop_convention)
