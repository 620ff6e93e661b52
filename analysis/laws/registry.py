"""A registry of scaling laws fitted by one machinery (analysis.laws.law_fit).

Each law is a typed `Law`: its parameters in the paper's notation, each with a transform (a
positive scale such as A is searched as log A, which keeps it positive without bounds), a start
grid, the input columns it needs ("n", "d", "u": unique tokens; "s1", "s2": the lr areas of
loss curves, analysis.laws.schedule), and a vectorised jax prediction
of log-loss. Adding a law is one small file under analysis/laws/forms/ plus one line in LAWS.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Mapping

import numpy as np

from analysis.records import InputError

LOG, IDENTITY = "log", "identity"


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter: `name` in the paper's notation; `grid` holds starts in the search coordinate
    (log of the value for transform LOG)."""

    name: str
    grid: tuple[float, ...]
    transform: str = IDENTITY
    doc: str = ""

    def to_search(self, value: float) -> float:
        if self.transform == LOG:
            if not value > 0:
                raise InputError(f"--fix {self.name}={value:g}: {self.name} must be positive")
            return float(np.log(value))
        return float(value)

    def from_search(self, x):
        return np.exp(x) if self.transform == LOG else x


# predict_log(x, inputs, constants) -> (S, R) log-loss: x maps each parameter name to an (S, 1)
# array in its search coordinate (log A for a LOG parameter), inputs maps column keys to (R,) logs
# of the column values ("log_n", "log_d", "log_u"), constants are the law's fixed numbers.
Predict = Callable[[Mapping, Mapping, Mapping], object]


@dataclasses.dataclass(frozen=True, eq=False)  # identity hashing: one compiled program per law
class Law:
    name: str
    summary: str  # one line: the form and its source
    params: tuple[Param, ...]
    inputs: tuple[str, ...]  # column keys: "n", "d", "u"
    predict_log: Predict
    # Numbers fixed from the fitted table (e.g. the centre of log N), stored with the fit so a
    # prediction on another table uses the same ones.
    constants: Callable[[Mapping[str, np.ndarray]], dict] = lambda logs: {}
    # Quantities the paper reports, from the parameter values (natural units), the table's logs
    # and the constants; called on the estimate and on every resample.
    derived: Callable[[Mapping[str, float], Mapping[str, np.ndarray], Mapping], dict] = lambda v, logs, k: {}
    nested_in: str | None = None  # a law this one extends by extra parameters: compared by LR / AIC
    min_rows: int = 0  # default: parameters + 2

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def rows_needed(self, n_fixed: int = 0) -> int:
        return self.min_rows or len(self.params) - n_fixed + 2

    def grid(self) -> np.ndarray:
        return np.array(list(itertools.product(*(p.grid for p in self.params))), float)

    def values(self, x_P) -> dict[str, float]:
        return {p.name: float(p.from_search(v)) for p, v in zip(self.params, x_P)}


def parse_fix(text: str | None, law: Law) -> dict[str, float]:
    """`--fix NAME=VALUE,...` as {name: value in the paper's units}, checked against the law."""
    out: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in law.names:
            raise InputError(f"--fix {item.strip()!r}: expected NAME=VALUE with NAME one of "
                             f"{', '.join(law.names)} (law {law.name})")
        try:
            out[name] = float(value)
        except ValueError:
            raise InputError(f"--fix {item.strip()!r}: {value!r} is not a number") from None
    if len(out) == len(law.params):
        raise InputError(f"--fix: every parameter of {law.name} is fixed; leave at least one free")
    return out


def names() -> tuple[str, ...]:
    return tuple(_builders())


def get(name: str, untie: bool = False) -> Law:
    """The law called `name`; `untie` frees a law's tied exponents (data_constrained: beta)."""
    builders = _builders()
    if name not in builders:
        raise InputError(f"--law {name!r}: choose one of {', '.join(builders)}")
    return builders[name](untie)


def _builders() -> dict[str, Callable[[bool], Law]]:
    from analysis.laws.forms import annealing, broken_power, chinchilla, data_constrained, kaplan, overtraining
    return {"chinchilla": lambda untie: chinchilla.LAW,
            "kaplan": lambda untie: kaplan.LAW,
            "data_constrained": data_constrained.law,
            "overtraining": lambda untie: overtraining.LAW,
            "broken_power": lambda untie: broken_power.LAW,
            "annealing": lambda untie: annealing.LAW}
