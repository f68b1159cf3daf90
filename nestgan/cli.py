"""Shared command-line plumbing: user errors become one line on stderr and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

import click

from nestgan.errors import ConfigError, NestganError

Number = TypeVar("Number", int, float)

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


def number_list(text: str, flag: str, kind: Callable[[str], Number] = float) -> list[Number]:
    """A flag's comma-separated numbers ('10,25,50'); anything else is a ConfigError naming the flag."""
    try:
        return [kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise ConfigError(f"{flag} takes comma-separated {what}, e.g. 10,25,50; got '{text}'") from None
