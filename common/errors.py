"""Errors a user can act on: each names the file or value and what was expected.

The command-line entry points print these as one line (no stack trace) and
exit with status 2; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from the user: a file, a value, a flag."""


class DataError(UserError):
    """A dataset file or sample that cannot be used."""


class DatasetUnavailableError(UserError):
    """A public dataset that is not on disk and cannot be downloaded."""
