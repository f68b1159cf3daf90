"""User-facing errors: the command-line scripts print these as one line and exit non-zero."""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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


class DiskFullError(NestganError):
    """A write failed for want of space: a full disk, a used-up quota, or the file size limit (ulimit -f).

    The writer has already removed its part-written file. `then` is how to go on once there is room; the caller
    that knows (training: `--resume latest`) sets it.
    """

    # errno -> (what happened, what frees room)
    CAUSES = {
        errno.ENOSPC: ("disk full", "free some space"),
        errno.EDQUOT: ("disk quota exceeded", "free some space"),
        errno.EFBIG: ("file size limit reached", "raise the file size limit (ulimit -f)"),
    }

    def __init__(self, path: str | os.PathLike, errno_: int, size_bytes: int | None = None, then: str = "try again"):
        super().__init__(path, errno_, size_bytes)
        self.path, self.errno, self.size_bytes, self.then = Path(path), errno_, size_bytes, then

    @property
    def what(self) -> str:
        """'disk full writing <path>: about 12 MB needed' (the size only where it is known)."""
        needed = f": about {file_size(self.size_bytes)} needed" if self.size_bytes else ""
        return f"{self.CAUSES[self.errno][0]} writing {self.path}{needed}"

    def __str__(self) -> str:
        return f"{self.what}, {self.CAUSES[self.errno][1]} and {self.then}"

    @classmethod
    def caused_by(
        cls, error: BaseException, path: str | os.PathLike, size_bytes: int | None = None
    ) -> DiskFullError | None:
        """The DiskFullError behind `error`, or None. Libraries wrap the OSError (torch.save raises a RuntimeError
        whose context it is), so the whole chain of causes is searched."""
        seen: set[int] = set()
        cause: BaseException | None = error
        while cause is not None and id(cause) not in seen:
            if isinstance(cause, DiskFullError):
                return cause
            if isinstance(cause, OSError) and cause.errno in cls.CAUSES:
                return cls(path, cause.errno, size_bytes)
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        return None

    @classmethod
    @contextmanager
    def raised_for(cls, path: str | os.PathLike, size_bytes: int | None = None) -> Iterator[None]:
        """Inside the block, a write that fails for want of space raises DiskFullError naming `path`."""
        try:
            yield
        except Exception as e:
            full = cls.caused_by(e, path, size_bytes)
            if full is None:
                raise
            raise full from None


def file_size(size_bytes: int) -> str:
    """A size for a message: '340 MB', '2.5 MB', '12 KB', '1 KB' (never 0)."""
    if size_bytes >= 10**7:
        return f"{size_bytes / 1e6:.0f} MB"
    if size_bytes >= 10**6:
        return f"{size_bytes / 1e6:.1f} MB"
    return f"{max(size_bytes / 1e3, 1):.0f} KB"
