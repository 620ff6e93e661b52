"""The planner's one error type."""


class StudyError(ValueError):
    """Bad study input; the message is one line naming the field and the fix (the CLI exits 2)."""
