"""nestgan.threads: torch threads follow the CPUs that other processes leave free, unless fixed."""

from __future__ import annotations

import os

import pytest
import torch

from nestgan import threads as threads_module
from nestgan.threads import OtherLoad, ThreadGovernor, process_cpu_seconds, usable_cpus


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class FakeMachine:
    """/proc/stat and our own CPU time, advanced by hand: `run(seconds, others, own)` CPU-seconds per second."""

    def __init__(self, monkeypatch) -> None:
        self.busy = self.own = self.clock = 0.0
        monkeypatch.setattr(threads_module, "usable_cpus", lambda: {0, 1, 2, 3})
        monkeypatch.setattr(threads_module, "cpu_quota", lambda: None)
        monkeypatch.setattr(threads_module, "_busy_seconds", lambda cpus: self.busy)
        monkeypatch.setattr(threads_module, "_own_seconds", lambda: self.own)
        monkeypatch.setattr(threads_module.time, "monotonic", lambda: self.clock)

    def run(self, seconds: float, others: float, own: float) -> None:
        self.clock += seconds
        self.busy += seconds * (others + own)
        self.own += seconds * own


def test_threads_follow_the_cpus_other_processes_leave_free(monkeypatch):
    machine = FakeMachine(monkeypatch)
    governor = ThreadGovernor()
    assert governor.active and governor.limit == 4
    machine.run(10, others=0.0, own=0.0)
    governor.adjust()
    assert torch.get_num_threads() == 4
    machine.run(10, others=2.1, own=1.9)  # another job arrived and holds two CPUs
    assert governor.adjust() == (4, 2) and torch.get_num_threads() == 2
    machine.run(10, others=2.0, own=2.0)
    assert governor.adjust() is None  # steady: no change
    machine.run(10, others=3.9, own=0.1)  # a busy machine still leaves one thread
    assert governor.adjust() == (2, 1)
    machine.run(10, others=0.0, own=1.0)  # the other jobs are gone
    assert governor.adjust() == (1, 4)


def test_other_load_leaves_out_this_process_and_its_children_running_or_waited_for(monkeypatch):
    """A child's CPU time is ours while it runs (read from /proc) and once it has been waited for (os.times), also
    when it ends between two measurements: a training the race runs is never taken for other load."""
    machine = FakeMachine(monkeypatch)
    child = {"running": 0.0, "waited": 0.0}
    monkeypatch.setattr(threads_module, "process_cpu_seconds", lambda pid: child["running"])
    monkeypatch.setattr(threads_module, "_waited_children_seconds", lambda: child["waited"])
    alive = [4242]
    load = OtherLoad(lambda: alive)
    child["running"] += 10 * 1.9
    machine.busy += 10 * 1.9
    machine.run(10, others=0.5, own=0.1)
    assert load.measure() == pytest.approx(0.5)
    child["waited"], child["running"] = child["running"] + 5 * 2.0, 0.0  # 5 s more on 2 CPUs, then ended and waited
    alive.clear()
    machine.busy += 5 * 2.0
    machine.run(5, others=1.0, own=0.0)
    assert load.measure() == pytest.approx(1.0)


def test_process_cpu_seconds_reads_proc_and_is_zero_for_a_process_that_is_gone():
    t = os.times()
    assert process_cpu_seconds(os.getpid()) == pytest.approx(t.user + t.system + t.children_user + t.children_system,
                                                             abs=0.1)
    assert process_cpu_seconds(2**22 + 12345) == 0.0  # above the largest pid Linux gives out


def test_a_cgroup_quota_caps_the_threads(monkeypatch):
    FakeMachine(monkeypatch)
    monkeypatch.setattr(threads_module, "cpu_quota", lambda: 3)
    assert ThreadGovernor().limit == 3


@pytest.mark.parametrize("fixed_by", ["argument", "OMP_NUM_THREADS"])
def test_a_fixed_thread_count_is_kept_whatever_the_load(monkeypatch, fixed_by):
    machine = FakeMachine(monkeypatch)
    if fixed_by == "OMP_NUM_THREADS":
        monkeypatch.setenv("OMP_NUM_THREADS", "3")  # as torchrun sets it for each process
    governor = ThreadGovernor(3 if fixed_by == "argument" else 0)
    assert not governor.active and governor.fixed == 3
    machine.run(10, others=3.5, own=0.5)
    assert governor.adjust() is None and torch.get_num_threads() == 3


def test_usable_cpus_are_this_process_affinity():
    cpus = usable_cpus()
    assert cpus and all(isinstance(c, int) for c in cpus)
    assert ThreadGovernor(1).limit <= len(cpus)


@pytest.mark.parametrize(("value", "fixed"), [("3", 3), ("4,2", 4), ("", 0), ("many", 0)])
def test_omp_num_threads_is_read_leniently(monkeypatch, value, fixed):
    FakeMachine(monkeypatch)
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert ThreadGovernor().fixed == fixed
