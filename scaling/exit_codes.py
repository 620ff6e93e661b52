"""The trainer's exit codes: the contract between `scaling.train` and the launchers that read them
(experiments.study_dir turns each into a run state)."""

EXIT_OK = 0
EXIT_CONFIG = 2  # invalid config or input, found before training: retrying cannot help
EXIT_DIVERGED = 3  # the loss went non-finite or blew up; run.json says where
EXIT_INTERRUPTED = 143  # 128 + SIGTERM: stopped (preempted) after saving a checkpoint; resumable
