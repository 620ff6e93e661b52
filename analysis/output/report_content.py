"""The report's sections, from fits.json, the runs table, the figures and (when there is one) the
study directory. Every number is read or recomputed from those inputs; the only constants are the
published values the results are compared with (Hoffmann et al. 2022, Table 2)."""
from __future__ import annotations

import dataclasses
import glob
import os
import time

import numpy as np

from analysis.laws import allocation
from analysis.output.report_render import Bullets, Image, Section, Table
from analysis.output.report_study import StudyInfo
from analysis.tables import tables
from analysis.uncertainty import parametric

PF_DAY = 1e15 * 86400
# Hoffmann et al. 2022, Table 2: a, b with their 10th-90th percentile bootstrap ranges.
TABLE2 = (("Approach 1 (training-curve envelope)", "approach1", (0.50, 0.488, 0.502), (0.50, 0.501, 0.512)),
          ("Approach 2 (IsoFLOP profiles)", "approach2", (0.49, 0.462, 0.534), (0.51, 0.483, 0.529)),
          ("Approach 3 (parametric fit)", "approach3", (0.46, 0.454, 0.455), (0.54, 0.542, 0.543)),
          ("Kaplan et al. (2020)", "kaplan", (0.73, None, None), (0.27, None, None)))
LAW_KEYS = ("E", "A", "B", "alpha", "beta", "a", "b", "G")
FIGURES = (("chinchilla_fig2", "Chinchilla Fig. 2: training curves, their envelope, and N_opt, D_opt from it (Approach 1)"),
           ("chinchilla_fig3", "Chinchilla Fig. 3: IsoFLOP profiles and the power laws through their minima (Approach 2); "
                               "stars: the projection at each target budget with its interval"),
           ("chinchilla_fig4", "Chinchilla Fig. 4: the fitted L(N, D) over (C, N), the efficient frontier (eq. 4), "
                               "IsoFLOP slices through it (Approach 3)"),
           ("kaplan_fig1", "Kaplan et al. 2020, Fig. 1: loss against compute, data and parameters"))


@dataclasses.dataclass(frozen=True)
class Inputs:
    results: str
    curves: str | None
    fits: dict  # fits.json
    runs: tables.Runs  # the rows the fits used
    n_rows: int  # rows in the results table
    figures_dir: str
    targets: tuple[float, ...]
    study: StudyInfo | None
    device_rate: float | None  # training FLOP/s per device for device-hours (None: unknown)
    rate_source: str
    level: float
    n_boot: int
    seed: int
    dropped_by_analysis: tuple[str, ...]  # run ids left out by --drop-highest
    approach2_projection: dict  # {("N"|"D", C): (lo, hi)} from figures.projection_intervals
    approach2_laws: object | None  # Approach2Result, or None when the table has no IsoFLOP budgets


def g(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)) and abs(v) < 1e6:
        return f"{v:,}"
    if isinstance(v, (int, float, np.floating, np.integer)):
        return f"{v:.{digits}g}"
    return str(v)


OUTSIDE = "†"


def with_interval(v, iv) -> str:
    """`v [lo, hi]`, marked † when the estimate lies outside its own interval (see OUTSIDE_NOTE)."""
    if iv is None or iv[0] is None:
        return g(v)
    out = isinstance(v, (int, float)) and iv[1] is not None and np.isfinite(v) and not iv[0] <= v <= iv[1]
    return f"{g(v)} [{g(iv[0], 3)}, {g(iv[1], 3)}]" + (f" {OUTSIDE}" if out else "")


def outside_note(rows) -> list[str]:
    """The footnote for a table with a † cell: a percentile interval of resampled estimates that
    does not contain the full fit's estimate is a finding (a skewed or biased resampling), not an error."""
    if not any(OUTSIDE in str(cell) for row in rows for cell in row):
        return []
    return [f"{OUTSIDE} the estimate lies outside its own interval: the resampled estimates are skewed or "
            f"biased against the full fit's, so the interval is not centred on it; read both, and treat the "
            f"interval as approximate."]


def approaches(fits: dict) -> dict[str, dict]:
    """Keys of fits.json that are fits (CONTRACTS.md: a dict with an "approach" field)."""
    return {k: v for k, v in fits.items() if isinstance(v, dict) and "approach" in v}


# --- what was run ----------------------------------------------------------------------------------------

def _hours(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min"


def run_section(inp: Inputs) -> Section:
    s = inp.study
    if s is None:
        return Section("What was run", [
            f"Results table {inp.results}: {inp.n_rows} rows, {len(inp.runs)} used by the fits "
            f"(C in the '{inp.runs.convention}' convention)" + (f"; curves from {inp.curves}." if inp.curves else "."),
            "No study directory was given (--study), so the plan, devices, versions and commit are not known."])
    head = ["run", "role", "C", "N", "D", "D/N", "steps", "batch", "lr", "status", "final eval loss", "wall"]
    rows = []
    for spec in s.plan:
        rj = s.records.get(spec["run_id"], {})
        status = rj.get("status") or "not started"
        rows.append([spec["run_id"], spec.get("role", "isoflop"), g(spec["budget"], 3), f"{spec['params']:,}",
                     g(spec["tokens"], 3), f"{spec['tokens'] / spec['params']:.1f}", str(spec["steps"]),
                     str(spec["global_batch"]), f"{spec['lr']:.2e}", status, g(rj.get("final_eval_loss")),
                     _hours(rj["wall_time_s"]) if rj.get("wall_time_s") else "–"])
    done = sum(1 for rj in s.records.values() if rj.get("status") == "completed")
    if s.first_launch and s.last_finish:
        elapsed = f"; {_hours(s.last_finish - s.first_launch)} from the first launch to the last run's end"
    elif s.first_launch:
        elapsed = f"; {_hours(time.time() - s.first_launch)} since the first launch (runs still to finish)"
    else:
        elapsed = ""
    facts = [f"{len(s.plan)} runs planned, {done} completed; planned compute {s.planned_flops:.3g} FLOPs "
             f"({s.convention}) = {s.planned_flops / PF_DAY:.3g} PF-days; trained {s.spent_flops():.3g} FLOPs",
             f"training wall time, summed over runs: {_hours(s.train_seconds())}{elapsed}",
             "devices: " + ("; ".join(s.devices()) or "–"),
             "packages: " + (", ".join(f"{k} {v}" for k, v in s.packages().items()) or "–"),
             "git commit: " + ("; ".join(s.commits()) or "–")]
    if inp.device_rate:
        facts.append(f"measured training rate: {inp.device_rate:.3g} FLOP/s per device ({inp.rate_source})")
    return Section(f"What was run: study {s.name}", [Bullets(facts), Table(head, rows)])


# --- fits and Table 2 ------------------------------------------------------------------------------------

def fits_section(fits: dict, level: float, analysis_notes: list[str] = ()) -> Section:
    fs = approaches(fits)
    head = ["fit", "runs", *LAW_KEYS, "objective"]
    rows, notes, extra = [], [], []
    for key, f in fs.items():
        ivs = f.get("intervals") or {}
        if any(k in f for k in LAW_KEYS):
            rows.append([key, g(f.get("n_runs")), *(with_interval(f[k], ivs.get(k)) if k in f else "–" for k in LAW_KEYS),
                         g(f.get("objective"))])
        others = [k for k, v in f.items() if k not in (*LAW_KEYS, "approach", "objective", "n_runs")
                  and isinstance(v, (int, float)) and not isinstance(v, bool)]
        if others:
            extra.append(Table(["fit", "parameter", "value [interval]"],
                               [[key, k, with_interval(f[k], ivs.get(k))] for k in others]))
        notes += [f"{key}: {n}" for n in f.get("notes") or []]
    notes += list(analysis_notes)
    notes += convention_range(fits)
    notes += outside_note(rows + [r for t in extra for r in t.rows])
    blocks = [f"Values with their {level:.0%} bootstrap intervals in brackets (where the fit has them); FLOPs counted as "
              f"'{fits.get('convention', '?')}'.", Table(head, rows), *extra]
    if notes:
        blocks.append(Bullets(notes))
    return Section("Fitted laws", blocks)


def convention_range(fits: dict) -> list[str]:
    """The range of a over the parameter counts (total, non-embedding) and FLOP conventions the table
    counts (diagnostics' conventions audit), beside the headline's: not in any interval, and at small
    scale often wider than them (embeddings are a large, N-dependent share of small models)."""
    rows = (fits.get("diagnostics") or {}).get("conventions") or []
    out = []
    for key, label in (("a_approach2", "Approach 2"), ("a_approach3", "Approach 3")):
        got = [(r[key], f"{r.get('name', r.get('convention'))}, N {r.get('N')}") for r in rows
               if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])]
        if len(got) > 1:
            (lo, lo_at), (hi, hi_at) = min(got), max(got)
            out.append(f"{label}'s a over the parameter counts and FLOP conventions this table counts: {lo:.3f} "
                       f"({lo_at}) to {hi:.3f} ({hi_at}); the headline counts '{fits.get('convention', '?')}' and "
                       "total N. This range is in no interval (diagnostics: conventions).")
    return out


def kaplan_ab(f: dict) -> tuple[float, float] | None:
    """a, b of Kaplan's joint law L(N, D) (their eq. 1.5) minimised under C = 6ND:
    N_opt ∝ C^(alpha_D/(alpha_N+alpha_D)). Kaplan's own 0.73 comes from their early-stopped
    compute frontier (Sec. 6), not from eq. 1.5, so the two need not agree."""
    an, ad = f.get("joint_alpha_N"), f.get("joint_alpha_D")
    if not an or not ad:
        return None
    return ad / (an + ad), an / (an + ad)


def table2_section(fits: dict) -> Section:
    fs = approaches(fits)
    head = ["approach", "a (Hoffmann et al.)", "a (this table)", "b (Hoffmann et al.)", "b (this table)"]
    rows = []
    paper = lambda t: f"{t[0]:.2f}" + (f" ({t[1]:.3f}, {t[2]:.3f})" if t[1] is not None else "")
    for label, key, pa, pb in TABLE2:
        f = fs.get(key)
        if f is None:
            ours_a = ours_b = "not fitted"
        elif key == "kaplan":
            ab = kaplan_ab(f)
            ours_a, ours_b = (f"{ab[0]:.3f} (joint law, eq. 1.5)", f"{ab[1]:.3f}") if ab else ("–", "–")
        else:
            iv = f.get("intervals") or {}
            ours_a, ours_b = with_interval(f.get("a"), iv.get("a")), with_interval(f.get("b"), iv.get("b"))
        rows.append([label, paper(pa), ours_a, paper(pb), ours_b])
    if "approach3_ml" in fs:
        f = fs["approach3_ml"]
        rows.append(["Approach 3, maximum likelihood (Besiroglu et al. 2024)", "–", g(f.get("a")), "–", g(f.get("b"))])
    return Section("Beside Hoffmann et al. 2022, Table 2", [
        "N_opt ∝ C^a, D_opt ∝ C^b. The paper's ranges are 10th-90th percentiles of a bootstrap over 80% of its "
        "runs; ours are the fit's own bootstrap intervals. Kaplan's row: the paper's a = 0.73 is Kaplan et al.'s "
        "compute-efficient frontier; ours is implied by the joint L(N, D) fitted here.", Table(head, rows),
        *outside_note(rows)])


# --- diagnostics (CONTRACTS.md: checks, then tables of flat dicts) ------------------------------------

def diagnostics_section(fits: dict) -> Section:
    diag = fits.get("diagnostics")
    if not isinstance(diag, dict) or not diag:
        return Section("Diagnostics", ["fits.json has no diagnostics section."])
    blocks: list = []
    checks = diag.get("checks") or []
    if checks:
        mark = {True: "✓ holds", False: "✗ fails", None: "– not computable"}
        blocks.append(Bullets([f"{mark.get(c.get('holds'), '?')} [{c.get('kind', 'test')}]: {c.get('name')}: "
                               f"{c.get('detail', '')}" for c in checks]))
        blocks.append("Kinds: test, a test of the law whose threshold comes from its resampled null (fails a correct "
                      "law ~5% of the time); target, a precision this study aims for (missed by a design too small, "
                      "not by a wrong law); health, the data and the fit are usable.")
    for name, rows in diag.items():
        if name == "checks":
            continue
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            keys = list(dict.fromkeys(k for r in rows for k in r))
            blocks += [f"{name.replace('_', ' ')}:", Table(keys, [[g(r.get(k)) for k in keys] for r in rows])]
        elif isinstance(rows, list) and rows:
            blocks += [f"{name.replace('_', ' ')}:", Bullets([str(r) for r in rows])]
        elif rows and not isinstance(rows, list):
            blocks.append(f"{name.replace('_', ' ')}: {rows}")
    return Section("Diagnostics", blocks or ["(empty)"])


# --- figures ---------------------------------------------------------------------------------------------

def figures_section(figures_dir: str, notes: list[str]) -> Section:
    blocks: list = []
    for name, caption in FIGURES:
        path = os.path.join(figures_dir, f"{name}.png")
        if os.path.exists(path):
            blocks.append(Image(path, caption))
    others = sorted(set(glob.glob(os.path.join(figures_dir, "*.png"))) - {os.path.join(figures_dir, f"{n}.png") for n, _ in FIGURES})
    blocks += [Image(p, os.path.basename(p)) for p in others]
    if notes:
        blocks.append(Bullets(notes))
    return Section("Figures", blocks or ["No figure could be drawn from this table."])


# --- compute-optimal allocation at the target budgets -------------------------------------------------

def _approach3_law(fits: dict) -> allocation.LawParams | None:
    f = approaches(fits).get("approach3")
    if not f or any(f.get(k) is None for k in ("E", "A", "B", "alpha", "beta")):
        return None
    return allocation.LawParams(f["E"], f["A"], f["B"], f["alpha"], f["beta"])


def approach3_predictions(inp: Inputs, law: allocation.LawParams, k: float) -> dict:
    """{C: {"N": (mid, lo, hi), "D": ..., "L": ...}} with percentile intervals over the fit's own
    resampling (analysis.uncertainty.parametric, as fits.json's intervals)."""
    mid = allocation.optimal_allocation(law, np.asarray(inp.targets), k)
    out = {t: {"N": [mid.N_opt[i]], "D": [mid.D_opt[i]], "L": [mid.loss[i]]} for i, t in enumerate(inp.targets)}
    if inp.n_boot:
        x = [np.log(law.A), np.log(law.B), np.log(law.E), law.alpha, law.beta]
        s = parametric.approach3(inp.runs, x, inp.n_boot, inp.seed).values
        lo, hi = 50 * (1 - inp.level), 50 * (1 + inp.level)
        draws = [allocation.optimal_allocation(allocation.LawParams(*p), np.asarray(inp.targets), k)
                 for p in zip(s["E"], s["A"], s["B"], s["alpha"], s["beta"]) if np.all(np.isfinite(p))]
        for i, t in enumerate(inp.targets):
            for key, attr in (("N", "N_opt"), ("D", "D_opt"), ("L", "loss")):
                v = np.array([getattr(d, attr)[i] for d in draws])
                out[t][key] += [float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))]
    return out


def _resampling(runs) -> str:
    p = parametric.plan(runs)
    return f"{p.kind}, noise: {p.source}"


def _mid_iv(triple) -> str:
    return with_interval(triple[0], triple[1:] if len(triple) == 3 else None)


def targets_section(inp: Inputs) -> Section:
    k = allocation.flops_per_param_token(inp.runs.C, inp.runs.N, inp.runs.D)
    head = ["target C", "PF-days", "device-hours", "approach", "N*", "D*", "D*/N*", "predicted loss"]
    rows = []
    law = _approach3_law(inp.fits)
    pred = approach3_predictions(inp, law, k) if law is not None else {}
    for t in inp.targets:
        hours = g(t / inp.device_rate / 3600, 3) if inp.device_rate else "–"
        cost = [g(t, 3), g(t / PF_DAY, 3), hours]
        if t in pred:
            p = pred[t]
            rows.append([*cost, "3 (eq. 4)", _mid_iv(p["N"]), _mid_iv(p["D"]), g(p["D"][0] / p["N"][0], 3), _mid_iv(p["L"])])
        if inp.approach2_laws is not None:
            n, d = float(inp.approach2_laws.n_law(t)), float(inp.approach2_laws.d_law(t))
            rows.append([*cost, "2 (power laws)", with_interval(n, inp.approach2_projection.get(("N", t))),
                         with_interval(d, inp.approach2_projection.get(("D", t))), g(d / n, 3), "–"])
    rate = (f"device-hours at the measured {inp.device_rate:.3g} FLOP/s per device ({inp.rate_source})"
            if inp.device_rate else "device-hours need a rate: give --mfu and --peak-flops, or a --study with measured runs")
    return Section("Compute-optimal allocation at the target budgets", [
        f"Targets {', '.join(g(t, 3) for t in inp.targets)} FLOPs. Approach 3: eq. 4 of the fitted law with "
        f"C = {k:.3g}·N·D (this table's FLOPs per parameter per token); Approach 2: its power laws extrapolated. "
        f"Intervals: {inp.level:.0%} percentiles over {inp.n_boot} resamples, drawn as the fit draws them "
        f"({_resampling(inp.runs)}). 1 PF-day = 8.64e19 FLOPs; {rate}.",
        Table(head, rows) if rows else "No fit gives an allocation (neither Approach 2 nor 3 was fitted).",
        *outside_note(rows)])


# --- what was left out -------------------------------------------------------------------------------------

def left_out_section(inp: Inputs, table_status: dict[str, str]) -> Section:
    head = ["run", "status", "reason"]
    rows = []
    if inp.study is not None:
        rows += [[rid, (inp.study.records.get(rid) or {}).get("status", "not started"), why]
                 for rid, why in inp.study.reasons.items()]
        rows += [[f"C={d.get('C', 0):.3g} N={d.get('N', 0):,}", "dropped by the planner", d.get("reason", "")]
                 for d in inp.study.planner_dropped]
    else:
        rows += [[rid, st, "status in the results table"] for rid, st in table_status.items()]
    rows += [[rid, "left out by the analysis", "--drop-highest: among the highest losses"] for rid in inp.dropped_by_analysis]
    blocks: list = [Table(head, rows) if rows else "Every run of the table entered the fits."]
    if inp.runs.notes:
        blocks.append(Bullets(list(inp.runs.notes)))
    return Section("Runs left out: dropped, diverged, failed", blocks)
