"""Shared command-line plumbing: user errors become one line on stderr and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Callable

import click

from nestgan.errors import ConfigError, NestganError

if TYPE_CHECKING:
    import torch

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


def resolve_device(name: str) -> torch.device:
    """--device auto | cpu | cuda -> a torch.device (auto: CUDA when torch sees one); CUDA without one is an error."""
    import torch

    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got '{name}'")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but torch sees no CUDA device; use --device cpu")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")
