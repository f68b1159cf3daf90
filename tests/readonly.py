"""A read-only folder that holds even for root, for the read-only cache tests.

A user's processes get EACCES from the kernel after chmod a-w; root ignores permission bits, so for root every
call that would write under the folder fails with EROFS as on a read-only mount, raised at the os/open call.

    python tests/readonly.py FOLDER SCRIPT [ARGS...]   runs SCRIPT as __main__ with FOLDER read-only
    with read_only(folder, monkeypatch): ...           the same in this process
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import runpy
import stat
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

WRITING_OS_CALLS = ("mkdir", "rmdir", "unlink", "remove", "rename", "replace", "truncate", "utime", "chmod", "link")


def refuse_writes_under(folder: str | os.PathLike, patch: Callable[[Any, str, Any], None]) -> None:
    """Make each writing os call and each open for writing under `folder` raise EROFS; `patch` is setattr or
    monkeypatch.setattr."""
    root = os.path.realpath(folder)

    def inside(path: Any) -> bool:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False  # a file descriptor
        resolved = os.path.realpath(os.fsdecode(path))
        return resolved == root or resolved.startswith(root + os.sep)

    def guard(call: Callable, writes: Callable[..., bool]) -> Callable:
        def guarded(path: Any, *args: Any, **kwargs: Any) -> Any:
            if inside(path) and writes(*args, **kwargs):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
            return call(path, *args, **kwargs)

        return guarded

    def open_writes(mode: str = "r", *args: Any, **kwargs: Any) -> bool:
        return any(c in mode for c in "wax+")

    def os_open_writes(flags: int, *args: Any, **kwargs: Any) -> bool:
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))

    guarded_open = guard(builtins.open, open_writes)
    patch(builtins, "open", guarded_open)
    patch(io, "open", guarded_open)
    patch(os, "open", guard(os.open, os_open_writes))
    for name in WRITING_OS_CALLS:
        patch(os, name, guard(getattr(os, name), lambda *args, **kwargs: True))


def tree(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under `folder` with its mode, size and mtime: equal before and after means nothing was written."""
    return {str(p.relative_to(folder)): (p.stat().st_mode, p.stat().st_size, p.stat().st_mtime_ns)
            for p in [folder, *folder.rglob("*")]}


@contextmanager
def read_only(folder: Path, monkeypatch: Any = None) -> Iterator[None]:
    """`folder` read-only. For a user: chmod a-w, restored afterwards. For root: EROFS in this process when
    `monkeypatch` is given, and in the children started through read_only_command."""
    if os.geteuid() == 0:
        with monkeypatch.context() if monkeypatch else nullcontext() as m:
            if m is not None:
                refuse_writes_under(folder, m.setattr)
            yield
        return
    paths = [folder, *folder.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    for p in paths:
        p.chmod(modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield
    finally:
        for p in paths:
            p.chmod(modes[p])


def read_only_command(folder: Path, command: list[str]) -> list[str]:
    """`command` (python SCRIPT ARGS...) to run inside read_only(folder): for root, through this file."""
    if os.geteuid() == 0:
        return [command[0], __file__, str(folder), *command[1:]]
    return command


if __name__ == "__main__":
    refuse_writes_under(sys.argv[1], setattr)
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
