"""CPU threads: as many torch threads as there are CPUs that other processes leave free.

Why: PyTorch ends every parallel op in a barrier where each of its threads waits for the others. With more threads
than free cores (a second job on a 2-core laptop or a shared node), the thread it waits for has been put off the
CPU, so the barrier lasts a scheduler time slice, and a training step is made of thousands of such ops. Measured on
2 cores: the embedded default's step ran at 113 img/s alone with 2 threads, at 9 img/s with 2 threads beside another
2-thread job, and at 62 img/s with 1 thread beside it. Letting idle threads sleep instead of spin
(OMP_WAIT_POLICY=PASSIVE) only reached 14 img/s there and halved the speed alone.

So, unless the user fixed the count (--threads, or OMP_NUM_THREADS as torchrun sets it), a process takes one thread
per CPU it may run on (affinity mask and cgroup quota: taskset, Slurm, containers) that other processes left idle
when it started, and training re-checks that at every tick.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable, Iterable


def usable_cpus() -> set[int]:
    """CPUs this process may run on (its affinity mask), as ids; all of them where the OS has no affinity."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def cpu_quota() -> int | None:
    """Whole CPUs allowed by a cgroup v2 quota (containers, Slurm), or None where there is none."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        return None if quota == "max" else max(1, math.floor(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def _busy_seconds(cpus: set[int]) -> float | None:
    """CPU-seconds the given CPUs have spent not idle since boot (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            lines = [line.split() for line in f if line.startswith("cpu") and line[3].isdigit()]
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = 0
    for fields in lines:
        if int(fields[0][3:]) in cpus:
            ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy / hz


def _omp_num_threads() -> int:
    """The thread count OMP_NUM_THREADS fixes ("4", or "4,2" for nested levels: 4), or 0 where unset or unreadable."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0]))
    except ValueError:
        return 0


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _waited_children_seconds() -> float:
    t = os.times()
    return t.children_user + t.children_system


def process_cpu_seconds(pid: int) -> float:
    """CPU-seconds process `pid` has used so far, all its threads and waited-for children (Linux /proc); 0 once
    it is gone or where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    except (OSError, IndexError):
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


class OtherLoad:
    """CPUs that other processes keep busy between two calls of `measure()`: the busy time of the usable CPUs minus
    this process's and, with `children`, its children's. Children still running are named by `pids` (read from
    /proc); finished ones count through os.times once waited for, so a child ending between two calls is counted
    once."""

    def __init__(self, pids: Callable[[], Iterable[int]] = tuple, children: bool = True) -> None:
        self.cpus = usable_cpus()
        self.pids = pids
        self.children = children
        self.restart()

    @property
    def measurable(self) -> bool:
        return self._last[0] is not None

    def restart(self) -> None:
        """The next measurement starts now."""
        self._last = self._sample()

    def _sample(self) -> tuple[float | None, float, float]:
        ours = _own_seconds()
        if self.children:
            ours += _waited_children_seconds() + sum(map(process_cpu_seconds, self.pids()))
        return _busy_seconds(self.cpus), ours, time.monotonic()

    def measure(self, min_interval: float = 0.0) -> float | None:
        """CPUs kept busy by other processes since the previous call (or since this was made); None where it cannot
        be measured (no /proc/stat) or less than `min_interval` seconds have passed."""
        now = self._sample()
        (busy0, ours0, t0), (busy1, ours1, t1) = self._last, now
        self._last = now
        if busy0 is None or busy1 is None or t1 <= t0 or t1 - t0 < min_interval:
            return None
        return max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / (t1 - t0))


class ThreadGovernor:
    """Keeps torch's thread count at the usable CPUs that other processes leave free (inactive when fixed).

    `adjust()` measures, since its previous call, how many CPUs other processes kept busy (all CPU time on our CPUs
    minus our own), and sets torch's threads to the rest, at least one. Returns the change as (old, new), or None.
    """

    def __init__(self, threads: int = 0) -> None:
        self.fixed = threads or _omp_num_threads()
        self.limit = all_cores()
        self.load = OtherLoad(children=False)  # subtracts this process only, not its children

    @property
    def active(self) -> bool:
        return not self.fixed and self.load.measurable

    def others_busy(self) -> float:
        """CPUs kept busy by other processes since the previous measurement (0 where it cannot be measured)."""
        return self.load.measure(min_interval=0.05) or 0.0

    def adjust(self) -> tuple[int, int] | None:
        import torch

        if not self.active:
            if self.fixed and torch.get_num_threads() != self.fixed:
                torch.set_num_threads(self.fixed)
            return None
        free = self.limit - self.others_busy()
        threads = max(1, min(self.limit, int(free + 0.5)))
        old = torch.get_num_threads()
        if threads == old:
            return None
        torch.set_num_threads(threads)
        return old, threads

    def start(self, settle_s: float = 0.3) -> tuple[int, int] | None:
        """The first choice, from what the other processes do during `settle_s` seconds of our idling."""
        if self.active:
            self.load.restart()
            time.sleep(settle_s)
        return self.adjust()


def all_cores() -> int:
    """The usable CPUs (affinity mask and cgroup quota): the threads of a run that has the machine to itself."""
    cpus = len(usable_cpus())
    return min(cpus, cpu_quota() or cpus)


def choose_threads(threads: int | None) -> int:
    """For a command's --threads: that many, or with None one per free usable CPU now; returns the count."""
    import torch

    if threads is not None and threads < 1:
        from nestgan.errors import ConfigError

        raise ConfigError(f"--threads must be positive, got {threads}")
    ThreadGovernor(threads or 0).start()
    return torch.get_num_threads()
