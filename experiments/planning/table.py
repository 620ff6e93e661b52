"""The plan as the researcher reads it: one row per run, then totals and dropped candidates."""
from __future__ import annotations

from experiments.planning.build import Plan


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def format_table(plan: Plan) -> str:
    wsd = any(r.branch_from or r.run_id.startswith("trunk-") for r in plan.runs)
    head = ["run", "C", "N", "N_nonemb", "D", "D/N", "steps", "batch", "lr", "warmup", "wall"]
    head += ["branch@"] if wsd else []
    fitted = bool(plan.memory_gb)  # train.grad_accum / model.remat chosen to fit device memory
    head += ["accum", "remat", "GB/dev"] if fitted else []
    rows = [head]
    for r in plan.runs:
        row = [r.run_id, f"{r.budget:.3g}", f"{r.params:,}", f"{r.non_embedding_params:,}",
               f"{r.tokens:.3g}", f"{r.tokens_per_param:.1f}", str(r.steps), str(r.global_batch),
               f"{r.lr:.2e}", str(r.warmup_steps), duration(plan.seconds[r.run_id])]
        if wsd:
            row.append(f"{r.branch_step}" if r.branch_from else ("trunk" if r.run_id.startswith("trunk-") else "-"))
        if fitted:
            row += [str(r.overrides["train.grad_accum"]), "yes" if r.overrides["model.remat"] else "no",
                    f"{plan.memory_gb[r.run_id]:.1f}"]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.append(f"{len(plan.runs)} runs, {plan.total_flops:.3g} FLOPs ({plan.study.flop_convention}), "
                 f"estimated {duration(sum(plan.seconds.values()))} of training one run at a time "
                 f"[{plan.seconds_source}]")
    if wsd:
        saved = 1 - plan.total_flops / plan.cosine_equivalent_flops
        lines.append(f"WSD branches: {plan.total_flops:.3g} FLOPs against {plan.cosine_equivalent_flops:.3g} "
                     f"for one cosine run per point: {saved:.0%} of the compute saved")
    v = plan.study.validation
    if v.enabled and plan.study.mode in ("independent", "wsd_branches") and plan.total_flops > 0:
        rate = sum(plan.seconds.values()) / plan.total_flops  # the grid's estimated seconds per FLOP
        lines.append(v.describe(plan.study.budgets, duration(v.flops(plan.study.budgets) * rate)))
    if plan.memory_note:
        lines.append(plan.memory_note)
    if plan.study.hparam_law is not None:
        lines.append(plan.study.hparam_law.describe())
    if plan.study.mode == "hparam_sweep":
        s = plan.study.hparam_sweep
        lrs = (f"lr x {', '.join(f'{x:g}' for x in s.lr_multipliers)} of each run's base lr" if s.lr_multipliers
               else f"lr {', '.join(f'{x:.3g}' for x in s.lrs)}")
        lines.append(f"hparam sweep: {len({r.params for r in plan.runs})} sizes x {len(s.budgets)} budgets x "
                     f"batch {', '.join(map(str, s.batches))} x {lrs}"
                     + (f" x beta2 {', '.join(f'{b:g}' for b in s.beta2s)}" if s.beta2s else "")
                     + "; fit: python -m experiments.planning.hparam_fit --study DIR")
    if plan.study.mode == "lr_sweep" and plan.study.sweep.tokens:
        s = plan.study.sweep
        shapes = f"widths {', '.join(map(str, s.widths))}" if s.widths else f"{len(s.sizes)} sizes"
        lines.append(f"lr transfer sweep: {shapes} x lr {', '.join(f'{x:.3g}' for x in s.lrs)}"
                     + (f" x {', '.join(s.parametrizations)}" if s.parametrizations else "")
                     + f", {s.tokens:,} tokens per run; fit: python -m experiments.planning.lr_transfer --study DIR")
    for d in plan.dropped:
        lines.append(f"dropped C={d.C:.3g} N={d.N:,}: {d.reason}")
    if plan.prior:
        lines.append(plan.prior)
        lines += plan.windows
    repeats = sum(r.seed != 0 for r in plan.runs)
    if repeats:
        lines.append(f"seed repeats: {repeats} runs (run ids ending -s<seed>) at the points nearest each "
                     "budget's prior N_opt")
    if plan.forecast:
        lines.append(plan.forecast.describe())
    elif plan.forecast_note:
        lines.append(plan.forecast_note)
    return "\n".join(lines)
