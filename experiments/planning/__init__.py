"""The IsoFLOP planner's parts, one job each; `experiments.plan` is the command that chains them.

    study.py     the `study` config section as a validated record (Study), StudyError
    grid.py      budgets x ladder sizes -> solved (C, N, steps) points or the reason each is dropped
    specs.py     points -> RunSpec records (independent runs, WSD trunks and cooldown branches)
    law_sections.py, law_runs.py  the data_constrained and annealing modes: their sections and runs
    estimate.py  epoch size of the training split, wall time per run (probe or assumed FLOP/s)
    table.py     the plan as the researcher reads it
    build.py     the whole Plan record, computed and validated; nothing written
    lr_fit.py, lr_transfer.py (+ _table, _figure)  what an lr_sweep measured: the lr rule across sizes;
                 whether lr* moves with width under SP and muP (mup_transfer_cpu)
"""
