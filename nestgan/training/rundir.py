"""Run directories: `<outdir>/00000-<data>-<g>-<res>/`, numbered, never overwritten.

Contents: config.json, log.txt (the console, tee'd), reals.png, fakes_init.png, fakes<kimg>.png,
stats.jsonl (one record per tick), metric-<name>.jsonl, network-snapshot-<kimg>.pt (the last few and those
at snap_minutes, named by kimg to the image, e.g. 000200.000) and best.pt (lowest FID so far).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import traceback
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator, TextIO

import numpy as np
import torch
from PIL import Image

from nestgan.atomic import append_line, atomic_write
from nestgan.errors import ConfigError, DiskFullError, NestganError
from nestgan.images import grid_picture

RUN_NAME = re.compile(r"^(\d{5})-")
SNAPSHOT_NAME = re.compile(r"^network-snapshot-(\d{6}\.\d{3})\.pt$")


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        # snapshots that prune_snapshots leaves alone (snap_minutes marks); a resumed run writes a new run dir
        self.kept: set[Path] = set()

    @classmethod
    def create(cls, outdir: str | os.PathLike, desc: str) -> "RunDir":
        """Make the next free `<outdir>/<id:05d>-<desc>`; ids only grow, so no earlier run is touched."""
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        ids = [int(m.group(1)) for p in outdir.iterdir() if (m := RUN_NAME.match(p.name))]
        run_id = max(ids, default=-1) + 1
        while True:
            path = outdir / f"{run_id:05d}-{desc}"
            try:
                path.mkdir()  # fails if another process took this id meanwhile
                return cls(path)
            except FileExistsError:
                run_id += 1

    @staticmethod
    def check_writable(outdir: str | os.PathLike) -> None:
        """ConfigError unless run directories can be made under `outdir`; creates nothing (checked before any work
        starts, when the run may still fail on something else)."""
        existing = Path(outdir).absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            problem = "not a folder" if not existing.is_dir() else "not writable"
            raise ConfigError(
                f"cannot write run directories under {outdir} ({existing} is {problem}); choose another --outdir"
            )

    def write_json(self, name: str, data: Any) -> None:
        text = json.dumps(data, indent=2) + "\n"
        atomic_write(self.path / name, lambda f: f.write(text.encode()))

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        append_line(self.path / name, json.dumps(record))

    def save_grid(self, images: torch.Tensor, name: str) -> np.ndarray:
        """Write the grid of `images` (N, 3, R, R) in [-1, 1] as `name`; returns the picture, uint8 (H, W, 3)."""
        picture = grid_picture(images)
        atomic_write(self.path / name, lambda f: Image.fromarray(picture).save(f, format="PNG"))
        return picture

    def snapshot_path(self, images_seen: int) -> Path:
        return self.path / f"network-snapshot-{kimg_stamp(images_seen)}.pt"

    def prune_snapshots(self, keep: int) -> None:
        """Delete all but the newest `keep` network-snapshot-*.pt besides the kept ones (best.pt is a separate file)."""
        for path in [p for p in snapshots(self.path) if p not in self.kept][:-keep]:
            path.unlink()

    def set_best(self, snapshot: Path) -> None:
        """best.pt <- a copy of `snapshot`, replaced atomically."""
        size = snapshot.stat().st_size
        with open(snapshot, "rb") as src:
            atomic_write(self.path / "best.pt", lambda f: shutil.copyfileobj(src, f), size_bytes=size)

    def carry_history(self, previous_run: Path, up_to_kimg: float) -> None:
        """Copy the records of stats.jsonl and metric-*.jsonl up to the resume point from the run being
        resumed, so that each run directory holds the whole curve, continuous in kimg."""
        for src in [previous_run / "stats.jsonl", *sorted(previous_run.glob("metric-*.jsonl"))]:
            if not src.is_file():
                continue
            lines = [ln for ln in src.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if _record_kimg(ln) <= up_to_kimg + 1e-9]
            if kept:
                text = "\n".join(kept) + "\n"
                atomic_write(self.path / src.name, lambda f: f.write(text.encode()))

    @contextmanager
    def tee(self) -> Iterator[None]:
        """Everything written to stdout/stderr inside the block also goes to log.txt, and so does an error ending it."""
        log = open(self.path / "log.txt", "a")
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
        try:
            yield
        except BaseException as e:
            # The console reports the error after the tee is gone; the log must say why the run ended too, unless
            # the disk that ended it refuses that line as well.
            with suppress(OSError):
                log.write(f"error: {e}\n" if isinstance(e, NestganError) else traceback.format_exc())
                log.flush()
            raise
        finally:
            sys.stdout, sys.stderr = out, err
            with suppress(OSError):  # lines a full disk refused make close() fail again
                log.close()


class _Tee:
    def __init__(self, stream: TextIO, log: TextIO) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        with DiskFullError.raised_for(self.log.name):
            self.log.write(text)
            self.log.flush()
        return written

    def flush(self) -> None:
        self.stream.flush()
        with DiskFullError.raised_for(self.log.name):
            self.log.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding... of the console stream
        return getattr(self.stream, name)


def kimg_stamp(images_seen: int) -> str:
    """Images seen as a file-name stamp in kimg, exact and sortable: 2064 -> "000002.064"."""
    return f"{images_seen // 1000:06d}.{images_seen % 1000:03d}"


def _record_kimg(line: str) -> float:
    try:
        return float(json.loads(line).get("kimg", math.inf))
    except (ValueError, AttributeError):
        return math.inf


def snapshots(run_dir: Path) -> list[Path]:
    """network-snapshot-*.pt of one run, oldest first."""
    return sorted(p for p in run_dir.glob("network-snapshot-*.pt") if SNAPSHOT_NAME.match(p.name))


def find_latest_checkpoint(outdir: str | os.PathLike, match: dict[str, Any]) -> Path:
    """Newest snapshot of the newest run under `outdir` whose config.json agrees with `match`
    (e.g. {"data.name": "shapes", "g": "nest", "resolution": 32}); ConfigError when there is none."""
    outdir = Path(outdir)
    runs = sorted(
        (p for p in outdir.iterdir() if p.is_dir() and RUN_NAME.match(p.name)) if outdir.is_dir() else [],
        key=lambda p: int(RUN_NAME.match(p.name).group(1)),
        reverse=True,
    )
    for run in runs:
        try:
            config = json.loads((run / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if all(_lookup(config, key) == value for key, value in match.items()) and snapshots(run):
            return snapshots(run)[-1]
    wanted = ", ".join(f"{k}={v}" for k, v in match.items())
    raise ConfigError(f"--resume latest: no run with a snapshot under {outdir} matches {wanted}; train one first")


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key, None where it is absent (a key older configs lack matches None)."""
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config
