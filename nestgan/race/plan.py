"""What a race is: its entries (config file, train flags, name), seeds, minutes and metrics, checked before any
training; race.json, which keeps them from one invocation to the next; the lock and the machine."""

from __future__ import annotations

import fcntl
import json
import platform
import re
import shlex
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import click
import torch

from nestgan.atomic import atomic_write
from nestgan.cli import number_list
from nestgan.config import TrainConfig, load_config
from nestgan.errors import ConfigError
from nestgan.metrics import parse_metric_name
from nestgan.threads import all_cores

DEFAULT_METRICS = "fid5k_full,kid5k_full"
# Train flags the race sets for every run; an entry may not set them.
RACE_FLAGS = ("--config", "--seed", "--minutes", "--snap-minutes", "--outdir", "--resume", "--threads", "--data",
              "--data-dir", "--metrics", "--dry-run")
ENTRY_NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # it names a folder


@dataclass(frozen=True)
class Entry:
    """One contestant: a training config file and extra train flags, under a name."""

    name: str
    config: str
    flags: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return shlex.join([self.config, *self.flags])


@dataclass(frozen=True)
class Job:
    """One training run of the race: an entry with a seed."""

    entry: Entry
    seed: int

    @property
    def name(self) -> str:
        return f"{self.entry.name}-s{self.seed}"


@dataclass
class Race:
    dir: Path
    entries: list[Entry]
    seeds: list[int]
    minutes: list[float]
    metrics: list[str]
    data: str | None = None
    data_dir: str | None = None
    threads: int | None = None  # of each training; None: every usable core
    pin: int | None = None  # runs side by side, one per core (trials)
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def scores_path(self) -> Path:
        return self.dir / "race.jsonl"

    def jobs(self) -> list[Job]:
        """Seed by seed, so that every config has a first result before any has its second."""
        return [Job(entry, seed) for seed in self.seeds for entry in self.entries]

    def outdir(self, job: Job) -> Path:
        return self.dir / "runs" / job.name

    def data_flags(self) -> list[str]:
        return [*(["--data", self.data] if self.data else []),
                *(["--data-dir", self.data_dir] if self.data_dir else [])]

    def command(self) -> str:
        """This race as one command line (what race.md shows)."""
        args = ["python", "-m", "nestgan.race"]
        for entry in self.entries:
            args += ["--config", f"{entry.name}={entry.text}"]
        args += ["--seeds", ",".join(map(str, self.seeds)), "--minutes", ",".join(map(number, self.minutes)),
                 "--metrics", ",".join(self.metrics), *self.data_flags(), "--out", str(self.dir)]
        args += [*(["--threads", str(self.threads)] if self.threads else []),
                 *(["--pin", str(self.pin)] if self.pin else [])]
        return shlex.join(args)


def number(value: float) -> str:
    return f"{value:g}"


def parse_entry(text: str) -> Entry:
    """'[NAME=]FILE [train flags]' -> Entry; NAME defaults to the file's stem."""
    try:
        tokens = shlex.split(text)
    except ValueError as e:
        raise ConfigError(f"--config '{text}': {e}") from None
    if not tokens:
        raise ConfigError("--config is empty; give [NAME=]FILE [train flags], e.g. 'conv=configs/x.toml --g conv'")
    name, _, file = tokens[0].rpartition("=")
    name = name or Path(file).stem
    if not ENTRY_NAME.match(name):
        raise ConfigError(f"--config '{text}': the name '{name}' may hold only letters, digits, '.', '_' and '-'")
    if not Path(file).is_file():
        raise ConfigError(f"--config {name}: config file not found: {file}")
    for flag in tokens[1:]:
        if flag.split("=", 1)[0] in RACE_FLAGS:
            raise ConfigError(f"--config {name}: {flag} is set by the race for every run ({', '.join(RACE_FLAGS)}); "
                              "drop it")
    return Entry(name, file, tuple(tokens[1:]))


def resolve_entry(entry: Entry, data_flags: list[str]) -> TrainConfig:
    """The training config the entry's file and flags resolve to: a bad one fails now, not days into the race."""
    from nestgan.commands import train

    try:
        params = train.main.make_context("nestgan-train", ["--config", entry.config, *entry.flags, *data_flags]).params
    except click.ClickException as e:
        raise ConfigError(f"--config {entry.name}: {e.format_message()}") from None
    config_file = params.pop("config_file")
    params.pop("dry_run")
    try:
        return load_config(train.flags_to_config(params), config_file)
    except ConfigError as e:
        raise ConfigError(f"--config {entry.name}: {e}") from None


def parse_race(*, configs: tuple[str, ...], seeds: str, minutes: str, metrics: str, data: str | None,
               data_dir: str | None, out: str, threads: int | None, pin: int | None) -> Race:
    """The command's options as a Race; every problem one ConfigError naming the option."""
    entries = [parse_entry(text) for text in configs]
    names = [entry.name for entry in entries]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"--config: two entries named {', '.join(twice)}; label them NAME=FILE")
    seed_list = list(dict.fromkeys(number_list(seeds, "--seeds", int)))
    minute_list = sorted(set(number_list(minutes, "--minutes")))
    if not seed_list or not minute_list:
        raise ConfigError("--seeds and --minutes need at least one value each, e.g. --seeds 0,1 --minutes 10,25,50")
    if not all(m > 0 for m in minute_list):
        raise ConfigError(f"--minutes must all be positive training minutes, got {minutes}")
    metric_list = list(dict.fromkeys(m.strip() for m in metrics.split(",") if m.strip()))
    if not metric_list:
        raise ConfigError(f"--metrics is empty; the race scores with e.g. {DEFAULT_METRICS}")
    for spec in map(parse_metric_name, metric_list):
        if not spec.full:
            raise ConfigError(f"--metrics {spec.name}: the race scores against every real image; "
                              f"use {spec.name}_full")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be positive, got {threads}")
    if pin is not None:
        if threads is not None:
            raise ConfigError("--pin trains each run with one thread on its own core; drop --threads")
        if not 1 <= pin <= all_cores():
            raise ConfigError(f"--pin {pin}: at most one run per core, and {all_cores()} cores are usable here")
    race = Race(Path(out), entries, seed_list, minute_list, metric_list, data, data_dir, threads, pin, machine_info())
    for entry in entries:
        resolve_entry(entry, race.data_flags())
    return race


def remember(race: Race) -> list[Entry]:
    """race.json: the entries of this and every earlier invocation, in order, and the data; an entry's name keeps its
    config and flags, and the race its data, so a rerun continues the same runs. Returns all entries."""
    path = race.dir / "race.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    known = {e["name"]: Entry(e["name"], e["config"], tuple(e["flags"])) for e in old.get("entries", [])}
    for entry in race.entries:
        if known.setdefault(entry.name, entry) != entry:
            raise ConfigError(f"--config {entry.name}: this race trained '{entry.name}' as {known[entry.name].text}; "
                              "give the new entry another name")
    for key, value in (("data", race.data), ("data_dir", race.data_dir)):
        if key in old and old[key] != value:
            raise ConfigError(f"--{key.replace('_', '-')}: this race trains with {old[key]!r}, not {value!r}; pass "
                              "the same, or choose another --out")
    commands = list(dict.fromkeys([*old.get("commands", []), race.command()]))
    machine = recorded_machine(race) or machine_identity(race.machine)
    record = {"entries": [{"name": e.name, "config": e.config, "flags": list(e.flags)} for e in known.values()],
              "data": race.data, "data_dir": race.data_dir, "machine": machine, "commands": commands}
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return list(known.values())


@contextmanager
def race_lock(race_dir: Path) -> Iterator[None]:
    """One race process per directory: a second one would train the same runs at the same time."""
    try:
        race_dir.mkdir(parents=True, exist_ok=True)
        lock = open(race_dir / "race.lock", "a")
    except OSError as e:
        raise ConfigError(f"--out {race_dir}: cannot write the race directory there ({e.strerror or e})") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another race is running in {race_dir}; wait for it, or choose another --out") from None
        yield


def machine_info() -> dict[str, Any]:
    """What the figures depend on: the CPU, its bf16 and AVX2 support, the usable cores, torch."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    return {"cpu": model or platform.processor() or "unknown", "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags, "avx2": "avx2" in flags, "usable_cores": all_cores(),
            "torch": torch.__version__, "host": platform.node()}


def machine_identity(machine: dict[str, Any]) -> dict[str, Any]:
    """What makes training minutes compare between two machines: the CPU, its bf16 and AVX2 support, the usable
    cores and torch (not the host's name, which changes with every cluster node or VM)."""
    return {key: machine.get(key) for key in ("cpu", "avx512_bf16", "amx_bf16", "avx2", "usable_cores", "torch")}


def describe_machine(machine: dict[str, Any]) -> str:
    flags = [flag for flag in ("avx512_bf16", "amx_bf16", "avx2") if machine.get(flag)]
    return f"{machine.get('cpu')} ({', '.join(flags) or 'no avx2'}, {machine.get('usable_cores')} cores, " \
           f"torch {machine.get('torch')})"


def recorded_machine(race: Race) -> dict[str, Any] | None:
    """The machine this race trains on: race.json's, or for a race begun before race.json kept it, its first
    score's; None for a new race."""
    path = race.dir / "race.json"
    if path.is_file() and "machine" in (record := json.loads(path.read_text())):
        return record["machine"]
    scored = read_jsonl(race.scores_path)
    return machine_identity(scored[0]["machine"]) if scored else None


def check_same_machine(race: Race) -> None:
    """A race's figures are minutes of training: a run trained or resumed on another kind of machine would not
    compare with the others. Refused before anything trains."""
    recorded, here = recorded_machine(race), machine_identity(race.machine)
    if recorded and recorded != here:
        raise ConfigError(f"--out {race.dir}: this race trained on {describe_machine(recorded)}, this machine is "
                          f"{describe_machine(here)}: their training minutes do not compare; continue the race on "
                          "such a machine, or race here with another --out")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


