"""nestgan.atomic: a temporary file left by a writer killed mid-write is never taken for data and is cleaned up by
the next write of the same file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from nestgan.atomic import STALE_S, atomic_write


def test_a_temporary_file_of_a_killed_write_is_removed_by_the_next_write_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "stats.pt"
    # A real write killed by SIGKILL while its temporary file is open.
    code = ("import sys, time; from nestgan.atomic import atomic_write\n"
            "def write(f):\n    f.write(b'part'); f.flush(); print('writing', flush=True); time.sleep(60)\n"
            f"atomic_write({str(target)!r}, write)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    [killed] = tmp_path.glob(".stats.pt.*.tmp")
    assert list(tmp_path.glob("*.pt")) == list(tmp_path.glob("[!.]*")) == []  # a dot file ending .tmp: no data
    host = socket.gethostname()
    live = tmp_path / f".stats.pt.{'a' * 16}.{host}-{os.getpid()}.tmp"  # this process: still writing
    other_host = tmp_path / f".stats.pt.{'b' * 16}.elsewhere-{child.pid}.tmp"
    old_unnamed = tmp_path / f".stats.pt.{'c' * 16}.tmp"  # an owner it does not say, untouched for long
    for path in (live, other_host, old_unnamed):
        path.write_bytes(b"part")
    os.utime(old_unnamed, (time.time() - STALE_S - 60,) * 2)

    atomic_write(target, lambda f: f.write(b"whole"))
    assert target.read_bytes() == b"whole"
    assert not killed.exists() and not old_unnamed.exists()
    assert live.exists() and other_host.exists()
