"""User-facing errors: the command-line scripts print these as one line and exit non-zero."""


class NestganError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class ConfigError(NestganError):
    """Unknown keys, wrong types or impossible combinations in a config or flags."""


class DataError(NestganError):
    """Missing, empty or unreadable datasets."""


class CheckpointError(NestganError):
    """Missing, truncated, foreign or untrusted checkpoints."""


class TrainingError(NestganError):
    """Training cannot go on: non-finite values that rolling back did not cure."""
