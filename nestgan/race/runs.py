"""The runs of a race: their snapshots (which is nearest a minute, whether a run is done), and their trainings: one
training command per run, alone or pinned side by side, with the other load on the machine watched before, during
and after it, and a stop signal passed on."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from nestgan.atomic import append_line, process_alive
from nestgan.checkpoint import load_checkpoint
from nestgan.race.plan import Job, Race, now, number, read_jsonl
from nestgan.threads import OtherLoad, all_cores, usable_cpus
from nestgan.training.guards import SignalRoute
from nestgan.training.rundir import RUN_NAME, snapshots

LOAD_PROBE_S = 2.0  # other load is measured this long before and after each training
LOAD_WINDOW_S = 30.0  # and over windows of this length while it trains
OTHER_LOAD_CPUS = 0.25  # CPUs kept busy by other processes that flag a run
POLL_S = 0.5


@dataclass(frozen=True)
class Snapshot:
    """A snapshot's place in its run, from its progress record."""

    path: Path
    images_seen: int
    train_s: float
    kimg_total: float  # the run's kimg, where it ends whatever the minutes

    @property
    def img_per_s(self) -> float:
        return self.images_seen / self.train_s if self.train_s else 0.0


def run_snapshots(outdir: Path) -> list[Snapshot]:
    """Every snapshot of one run, over its numbered run directories (a resumed training adds one), by training time;
    memory-mapped, so that only their progress and config are read."""
    runs = sorted(p for p in outdir.iterdir() if p.is_dir() and RUN_NAME.match(p.name)) if outdir.is_dir() else []
    found = []
    for path in (snap for run in runs for snap in snapshots(run)):
        state = load_checkpoint(path, mmap=True)
        progress = state["progress"]
        train_s = progress.get("train_seconds", 0.0)
        found.append(Snapshot(path, progress["images_seen"], train_s, state["config"]["kimg"]))
    return sorted(found, key=lambda s: (s.train_s, s.images_seen))


def finished(snaps: list[Snapshot], minutes: float) -> bool:
    """Whether the run has trained its minutes (or its kimg, where that came first)."""
    last = snaps[-1] if snaps else None
    return last is not None and (last.train_s >= minutes * 60 or last.images_seen >= last.kimg_total * 1000)


def nearest(snaps: list[Snapshot], minutes: float) -> Snapshot:
    """The snapshot whose recorded training time is nearest `minutes` (the earlier one of a tie)."""
    return min(snaps, key=lambda s: abs(s.train_s - minutes * 60))


class Stop(SignalRoute):
    """SIGINT / SIGTERM during the race: passed on to the trainings, which stop after a snapshot as they would alone
    (a second signal stops them at once); outside a training (scoring) the race stops at once. Scores already
    written stay; a rerun continues."""

    def __init__(self) -> None:
        self.requested = False
        self.trainings: list[subprocess.Popen] = []

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        running = [proc for proc in self.trainings if proc.poll() is None]
        if not running:
            raise KeyboardInterrupt
        click.echo(f"{signal.Signals(signum).name}: the trainings stop after a snapshot (send again to stop them now)",
                   err=True)
        for proc in running:
            proc.send_signal(signal.SIGINT)



def probe_other_load() -> float | None:
    """CPUs other processes keep busy over LOAD_PROBE_S while the race itself is idle."""
    load = OtherLoad()
    time.sleep(LOAD_PROBE_S)
    return load.measure()


def load_warning(when: str, cpus: float | None) -> list[str]:
    if cpus is None or cpus < OTHER_LOAD_CPUS:
        return []
    return [f"{when}: other processes kept {cpus:.2f} CPUs busy"]


def train_command(race: Race, job: Job, resume: Path | None, threads: int) -> list[str]:
    return [sys.executable, "-m", "nestgan.commands.train", "--config", job.entry.config, *job.entry.flags,
            *race.data_flags(), "--seed", str(job.seed), "--minutes", number(max(race.minutes)),
            "--snap-minutes", ",".join(map(number, race.minutes)), "--metrics", "none", "--threads", str(threads),
            "--outdir", str(race.outdir(job)), *(["--resume", str(resume)] if resume else [])]


def launch(command: list[str], console: Path, cpu: int | None) -> subprocess.Popen:
    """The training in its own session (a signal reaches it once, through Stop), its output appended to `console`,
    on CPU `cpu` alone when pinned."""
    with open(console, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True,
                                preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}))


def still_training(outdir: Path) -> int | None:
    """The pid of a training an earlier race process started in `outdir` and that still runs (that race was killed),
    else None: a second training of the same run beside it would mix the two."""
    records = read_jsonl(outdir / "trainings.jsonl")
    last = records[-1] if records else {}
    if last.get("event") != "started" or not process_alive(last["pid"]):
        return None
    try:
        with open(f"/proc/{last['pid']}/cmdline", "rb") as f:
            command = f.read().split(b"\0")
    except OSError:
        return None
    return last["pid"] if str(outdir).encode() in command else None  # not a process that took the pid over


def start_training(race: Race, job: Job, cpu: int | None, threads: int, before: float | None) -> subprocess.Popen:
    """Launch the job's training, from its newest snapshot if it has one, and record it in trainings.jsonl."""
    outdir = race.outdir(job)
    outdir.mkdir(parents=True, exist_ok=True)
    snaps = run_snapshots(outdir)
    resume = snaps[-1].path if snaps else None
    command = train_command(race, job, resume, threads)
    click.echo(f"training {job.name}: " + (f"resuming from {resume}" if resume else "new") + f", {threads} thread(s)"
               + (f" on CPU {cpu}" if cpu is not None else "") + f"; output in {outdir / 'console.txt'}")
    proc = launch(command, outdir / "console.txt", cpu)
    append_line(outdir / "trainings.jsonl", json.dumps({
        "event": "started", "time": now(), "pid": proc.pid, "command": command, "threads": threads,
        "pinned_cpu": cpu, "machine": race.machine, "other_cpus_before": before, "loadavg_before": os.getloadavg()[0],
        "warnings": load_warning("before training", before)}))
    return proc


def watch(procs: list[subprocess.Popen]) -> tuple[float | None, float | None]:
    """Wait until the trainings end; the CPUs other processes kept busy meanwhile, on average and in the busiest
    LOAD_WINDOW_S (the average, for a shorter training)."""
    whole = OtherLoad(lambda: [proc.pid for proc in procs])
    window, peak, window_start = OtherLoad(whole.pids), None, time.monotonic()
    while any(proc.poll() is None for proc in procs):
        time.sleep(POLL_S)
        if time.monotonic() - window_start >= LOAD_WINDOW_S:
            peak, window_start = max(peak or 0.0, window.measure() or 0.0), time.monotonic()
    during = whole.measure()
    return during, peak if peak is not None else during


def end_training(
    race: Race, job: Job, proc: subprocess.Popen, load: dict[str, float | None], stopped: bool
) -> str | None:
    """Record how the job's training ended and the load it saw; a line saying why it failed, None if it trained
    its minutes (or was stopped)."""
    outdir = race.outdir(job)
    warnings = (load_warning(f"during training (its busiest {LOAD_WINDOW_S:g} s)", load["peak"])
                + load_warning("after training", load["after"]))
    append_line(outdir / "trainings.jsonl", json.dumps({
        "event": "ended", "time": now(), "exit": proc.returncode, "other_cpus_during": load["during"],
        "other_cpus_peak": load["peak"], "other_cpus_after": load["after"], "warnings": warnings}))
    for warning in load_warning("before training", load["before"]) + warnings:
        click.echo(f"warning: {job.name}: {warning}; the run is flagged in race.jsonl and race.md", err=True)
    snaps = run_snapshots(outdir)
    if finished(snaps, max(race.minutes)):
        last = snaps[-1]
        click.echo(f"trained {job.name}: {last.train_s / 60:.1f} min, {last.images_seen / 1000:g} kimg, "
                   f"{last.img_per_s:.1f} img/s")
        return None
    return None if stopped else f"{job.name} (exit {proc.returncode}): {last_line(outdir / 'console.txt')}"


def train_jobs(race: Race, jobs: list[Job], stop: Stop) -> list[str]:
    """Train `jobs` side by side (one per pinned core) or the one job alone, watching the other load; returns a
    line for each that failed."""
    threads = 1 if race.pin else race.threads or all_cores()
    cpus = sorted(usable_cpus())[: len(jobs)] if race.pin else [None]
    before = probe_other_load()
    procs: dict[Job, subprocess.Popen] = {}
    for job, cpu in zip(jobs, cpus):
        if stop.requested:
            break
        procs[job] = start_training(race, job, cpu, threads, before)
        stop.trainings.append(procs[job])
    during, peak = watch(list(procs.values()))
    load = {"before": before, "during": during, "peak": peak, "after": probe_other_load()}
    stop.trainings.clear()
    failures = [end_training(race, job, proc, load, stop.requested) for job, proc in procs.items()]
    return [failure for failure in failures if failure]


def last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()] if path.is_file() else []
    return lines[-1] if lines else "no output"


def training_history(outdir: Path) -> dict[str, Any]:
    """What the score lines of a run say about its training: every command, the threads, the pinned cores and
    the warnings, including one for a training the race was killed in (its load was not watched to the end)."""
    records = read_jsonl(outdir / "trainings.jsonl")
    started = [r for r in records if r["event"] == "started"]
    warnings = [w for r in records for w in r["warnings"]]
    unended = len(started) - sum(r["event"] == "ended" for r in records)
    if unended:
        warnings.append(f"{unended} training(s) without an end record: the race was killed while they ran, so "
                        "their other load is not known")
    pinned = [r["pinned_cpu"] for r in started if r["pinned_cpu"] is not None]
    commands = [shlex.join((["taskset", "-c", str(r["pinned_cpu"])] if r["pinned_cpu"] is not None else [])
                           + r["command"]) for r in started]  # taskset: what the race's sched_setaffinity did
    return {"train_commands": commands,
            "threads": sorted({r["threads"] for r in started}), "trial": bool(pinned), "pinned_cpus": pinned,
            "load_warnings": warnings}


