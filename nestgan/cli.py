"""Shared command-line plumbing: user errors become one line on stderr and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from typing import Callable

import click

from nestgan.errors import NestganError

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
    """Print one line naming the problem and exit with the user-error status."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USER_ERROR)


def user_errors_as_exit(fn: Callable) -> Callable:
    """Decorator for click commands: NestganError -> one line + exit 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NestganError as e:
            fail(str(e))

    return wrapper
