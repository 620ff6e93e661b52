"""The one exception type for data problems a user can fix (bad field, missing data)."""


class DataError(ValueError):
    """The message is one line naming the config field (or command) that fixes it."""
