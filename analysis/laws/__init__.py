"""Laws and their fits: Approaches 1-3 (Hoffmann et al. 2022), Kaplan et al. 2020, the allocation they
imply, and `fitters.fit(runs, FitOptions) -> FitResult`, the one entry point."""
