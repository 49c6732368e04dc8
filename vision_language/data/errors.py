"""Errors and warnings of the data layer.

Bad input data should stop a run with a message a person can act on at once, so every
message is one line that names the file (and the line or shard member) and the problem.
"""

from __future__ import annotations


class DataError(ValueError):
    """Unusable input data: the message names the file and what is wrong with it."""


class DataWarning(UserWarning):
    """Recoverable problems in input data (for example rows skipped for an empty caption)."""
