"""The report's "Sensitivity to the lr law" section, from analysis.diagnostics.lr_sensitivity's record."""
from __future__ import annotations

from analysis.diagnostics.lr_sensitivity import LrSensitivity
from analysis.output.report_render import Bullets, Section, Table

TITLE = "Sensitivity to the lr law"


def section(sens: LrSensitivity) -> Section:
    if sens.reason:
        return Section(TITLE, [sens.reason + "."])
    law = sens.law
    head = ["lr law exponent", "end", "largest lr error", "largest loss rise",
            *(f"a, {k.replace('approach', 'Approach ')}" for k in sens.headline)]
    rows = [["headline", "–", "–", "–", *(f"{v:.3f}" for v in sens.headline.values())]]
    rows += [[f"{e.exponent}: {e.value:+.3f} (estimate {law.exponents[e.exponent]:+.3f})", e.side,
              f"x{e.max_factor:.2f}", f"+{100 * e.max_rise:.2f}%",
              *("–" if e.a.get(k) is None else f"{e.a[k]:.3f}" for k in sens.headline)] for e in sens.ends]
    pivot = ", ".join(f"{k} = {v:.3g}" for k, v in law.pivot.items())
    text = (f"The runs took their lr from the fitted law in {law.source}. Had an exponent of that law been at an "
            f"end of its 95% interval, a run would have trained at an lr off by (N / N_pivot)^delta (delta = end - "
            f"estimate; for the D exponent (D / D_pivot)^delta), pivoting at {pivot}: {law.pivot_source}. Its loss "
            f"then rises by {100 * law.penalty_x2:.2f}% (the sweep's measured rise for a factor 2 in lr) x (log10 "
            f"factor / log10 2)^2, and Approaches 2 and 3 are refitted, without resampling, on each such table.")
    caveat = ("The law is taken as right: each measured loss is already its size's optimum, so the perturbation "
              "only ever raises losses. The rise is a bowl in log N centred on the pivot whichever way the N "
              "exponent is off: it pulls every budget's optimum toward the pivot, so both ends lower a; the D "
              "exponent's bowl sits at D = D_pivot, which moves with the budget, and raises a. The spread is what "
              "the law's own uncertainty could do to a, not a correction of it.")
    return Section(TITLE, [text, Bullets(sens.lines()), Table(head, rows), caveat])
