"""Writes that a reader never sees half done: whole-file replacement (atomic_write) and whole-line appends
(append_line) with their reader (read_records), and the rule for leftovers of writers that were killed (abandoned)."""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

from nestgan.errors import DiskFullError

STALE_S = 24 * 3600  # a temporary file or staging folder untouched this long is abandoned, whoever made it
# .<name>.<16 hex>.<host>-<pid>.tmp: the owner in the name lets a later writer tell a killed one's file from a live one's.
_TEMPORARY = re.compile(r"^[0-9a-f]{16}\.(?P<host>.+)-(?P<pid>\d+)\.tmp$")


def owner() -> str:
    """host-pid of this process, for the names of temporary files and folders."""
    return f"{socket.gethostname()}-{os.getpid()}"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def abandoned(host: str | None, pid: int | None, touched: float) -> bool:
    """Leftovers of a writer that no longer runs: this host's whose process is gone, or any untouched for STALE_S
    (another host's, whose process cannot be asked, or one whose name does not say its owner)."""
    dead = host == socket.gethostname() and pid is not None and not process_alive(pid)
    return dead or time.time() - touched > STALE_S


def remove_abandoned_temporaries(path: Path) -> None:
    """Remove the temporary files of earlier writes of `path` whose writer was killed (SIGKILL, a crash): their
    names start with a dot, so no reader takes them for data, and this keeps them from piling up."""
    prefix = f".{path.name}."
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        match = _TEMPORARY.match(tmp.name[len(prefix):])
        try:
            stale = abandoned(match and match["host"], match and int(match["pid"]), tmp.stat().st_mtime)
            if stale and tmp.is_file():
                tmp.unlink()
        except OSError:  # removed meanwhile by its owner or another cleaner
            continue


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], size_bytes: int | None = None) -> None:
    """Create or replace `path` with what `write(file)` writes: a reader sees the old file or the complete new
    one, never a part.

    The bytes go to a temporary file in the same directory (a dot file naming its owner), are fsynced, then
    renamed over `path`. Any failure removes the temporary file; one for want of space (a full disk, a quota,
    ulimit -f) is a DiskFullError naming `path` and, when the caller knows it, `size_bytes`. Temporary files of
    earlier writes of `path` killed before they could clean up are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temporaries(path)
    with DiskFullError.raised_for(path, size_bytes):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.{owner()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask sets the mode, as for open()
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append `line` and a newline to a text file (a .jsonl log), whole or not at all: after a failed write (a full
    disk) the file is cut back to its old size, so no half line breaks the parsing of the lines before and after."""
    data = (line + "\n").encode()
    with DiskFullError.raised_for(path, len(data)):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            start = os.fstat(fd).st_size
            try:
                written = 0
                while written < len(data):  # short at the file size limit; the next write then raises
                    written += os.write(fd, data[written:])
            except BaseException:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl log, oldest first; none for a missing file. A line that is not a whole object
    (the one a live run is writing, one a crash cut) is skipped: readers follow runs while they train."""
    if not os.path.isfile(path):
        return []
    records = []
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
