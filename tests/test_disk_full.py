"""A disk that fills up while nestgan writes: real limits (RLIMIT_FSIZE in a child, /dev/full) and ENOSPC injected at
the OS call. Every writer keeps the previous file whole, leaves no part-written file behind, and says in one line
which file it could not write."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_toml
from nestgan.atomic import append_line
from nestgan.checkpoint import load_checkpoint, save_checkpoint, tensor_bytes
from nestgan.commands import train as train_command
from nestgan.errors import DiskFullError, file_size
from nestgan.metrics import evaluate_metrics
from nestgan.metrics.records import append_metric_line
from nestgan.metrics.inception_weights import convert_fid_helper_weights, find_fid_helper_file
from nestgan.training import loop
from nestgan.training.rundir import RunDir, find_latest_checkpoint

from test_metrics import PIXELS, TinyGenerator, shapes  # noqa: F401  (pytest puts tests/ on sys.path)
from test_reliability import tiny_run_config

pytestmark = pytest.mark.slow  # spawns processes or trains for seconds: .ci/run runs it after the fast pass
REPO = Path(__file__).resolve().parent.parent
TINY_TOML = tiny_toml(tick_kimg=0.032, snap=2, augment="translation")


def file_size_limit(limit_bytes: int):
    """preexec_fn of a child whose files cannot grow past `limit_bytes`; a write beyond fails with EFBIG (SIGXFSZ,
    which would kill the child instead, is ignored)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def fail_fsync_of(monkeypatch, name_part: str, error: int = errno.ENOSPC) -> None:
    """os.fsync raises `error` for files whose path contains `name_part` (where a full disk or quota shows on
    filesystems that allocate late, e.g. NFS, XFS); other files are synced as usual."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if name_part in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(error, os.strerror(error))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def stats_kimgs(run: Path) -> list[int]:
    return [round(json.loads(line)["kimg"] * 1000) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_training_that_hits_the_file_size_limit_at_a_snapshot_stops_in_one_line_and_resumes(tmp_path):
    """A resumed run in a child that may not write files over 512 KB: the first snapshot it writes (1.4 MB) fails.
    It ends with one line and exit 2; the snapshot it resumed from is byte-identical, no part-written snapshot is
    left, stats.jsonl parses, and `--resume latest` continues from the earlier snapshot to the end."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    runs = tmp_path / "runs"
    args = ["--config", str(config), "--outdir", str(runs), "--cache-dir", str(tmp_path / "cache"),
            "--metrics", "none", "--threads", "1"]
    train_command.main([*args, "--kimg", "0.128"], standalone_mode=False)  # in this process: no second start-up
    first = runs / "00000-shapes-nest-16"
    before = digests(first)

    child = subprocess.run(
        [sys.executable, str(REPO / "train_gan.py"), *args, "--kimg", "0.256", "--resume", "latest"],
        capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=file_size_limit(512_000),
    )
    second = runs / "00001-shapes-nest-16"
    snapshot = second / "network-snapshot-000000.192.pt"
    needed = file_size(tensor_bytes(load_checkpoint(first / "network-snapshot-000000.128.pt")))
    message = (f"error: file size limit reached writing {snapshot}: about {needed} needed, raise the file size "
               "limit (ulimit -f) and rerun with --resume latest")
    assert child.returncode == 2, child.stderr
    assert child.stderr.splitlines() == [message]
    assert "Traceback" not in child.stdout + child.stderr
    assert (second / "log.txt").read_text().splitlines()[-1] == message
    assert digests(first) == before  # the run resumed from is untouched
    assert not list(second.glob("network-snapshot-*")) and temporary_files(runs) == []
    assert stats_kimgs(second) == list(range(32, 193, 32))  # carried history and the new ticks, every line whole
    assert find_latest_checkpoint(runs, {"data.name": "shapes", "g": "nest", "resolution": 16}) == (
        first / "network-snapshot-000000.128.pt")

    train_command.main([*args, "--kimg", "0.256", "--resume", "latest"], standalone_mode=False)
    third = runs / "00002-shapes-nest-16"
    assert json.loads((third / "config.json").read_text())["resume"] == str(first / "network-snapshot-000000.128.pt")
    assert load_checkpoint(third / "network-snapshot-000000.256.pt")["progress"]["images_seen"] == 256
    assert stats_kimgs(third) == list(range(32, 257, 32))


CHILD_WRITERS = """
import json, sys
from pathlib import Path
import torch
from nestgan.checkpoint import save_checkpoint
from nestgan.errors import DiskFullError
from nestgan.metrics import fidelity
from nestgan.metrics.records import append_metric_line
from nestgan.training.rundir import RunDir

run = RunDir(Path(sys.argv[1]))
big_record = {"kimg": 1.0, "note": "x" * 200_000}
writers = {
    "network-snapshot-000000.064.pt": lambda: save_checkpoint(run.path / "network-snapshot-000000.064.pt",
                                                              {"w": torch.zeros(100_000)}),
    "best.pt": lambda: run.set_best(run.path / "network-snapshot-000000.128.pt"),
    "stats.jsonl": lambda: run.append_jsonl("stats.jsonl", big_record),
    "metric-fid10.jsonl": lambda: append_metric_line(run.path / "metric-fid10.jsonl", big_record),
    "fakes000000.064.png": lambda: run.save_grid(torch.rand(64, 3, 64, 64) * 2 - 1, "fakes000000.064.png"),
    "stats.pt": lambda: fidelity._save_cached(run.path / "cache" / "stats.pt", {"mu": torch.zeros(100_000)}),
}
for name, write in writers.items():
    try:
        write()
        print(json.dumps([name, None]))
    except DiskFullError as e:
        print(json.dumps([name, str(e)]))
"""


def test_every_writer_at_the_file_size_limit_keeps_the_old_file_and_leaves_no_part(tmp_path):
    """In a child that may not write files over 100 KB, each writer is asked to write more: a checkpoint, best.pt,
    a stats.jsonl and a metric line (the kernel takes part of the line, then refuses), a sample grid and the FID
    statistics cache. Each fails with one message naming its file; every old file is byte-identical; no temporary
    file or half line is left; the FID cache only warns."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    save_checkpoint(run.path / "network-snapshot-000000.064.pt", {"w": torch.ones(10)})
    save_checkpoint(run.path / "best.pt", {"w": torch.ones(10)})
    save_checkpoint(run.path / "network-snapshot-000000.128.pt", {"w": torch.ones(100_000)})  # 400 KB, for best.pt
    for name in ("stats.jsonl", "metric-fid10.jsonl"):
        for kimg in (0.5, 0.75):
            append_line(run.path / name, json.dumps({"kimg": kimg}))
    run.save_grid(torch.zeros(4, 3, 8, 8), "fakes000000.064.png")
    before = digests(run.path)

    child = subprocess.run([sys.executable, "-c", CHILD_WRITERS, str(run.path)], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=file_size_limit(100_000))
    assert child.returncode == 0, child.stderr
    results = dict(json.loads(line) for line in child.stdout.splitlines())

    def refused(name: str, size: int | None) -> str:
        needed = f": about {file_size(size)} needed" if size else ""
        return (f"file size limit reached writing {run.path / name}{needed}, raise the file size limit (ulimit -f) "
                "and try again")

    line_bytes = len(json.dumps({"kimg": 1.0, "note": "x" * 200_000})) + 1
    assert results == {
        "network-snapshot-000000.064.pt": refused("network-snapshot-000000.064.pt", 400_000),
        "best.pt": refused("best.pt", (run.path / "network-snapshot-000000.128.pt").stat().st_size),
        "stats.jsonl": refused("stats.jsonl", line_bytes),
        "metric-fid10.jsonl": refused("metric-fid10.jsonl", len(json.dumps({"kimg": 1.0, "note": "x" * 200_000},
                                                                             sort_keys=True)) + 1),
        "fakes000000.064.png": refused("fakes000000.064.png", None),
        "stats.pt": None,  # not an error: the metric goes on without its cache
    }
    assert child.stderr.splitlines() == [
        f"warning: reference cache not written (file size limit reached writing {run.path / 'cache' / 'stats.pt'}: "
        f"about {file_size(400_000)} needed); the metric is computed all the same, and the next evaluation extracts "
        "the reference features again"
    ]
    assert digests(run.path) == before
    assert temporary_files(run.path) == [] and list((run.path / "cache").iterdir()) == []
    run.append_jsonl("stats.jsonl", {"kimg": 1.0})  # the next append starts on a line of its own
    assert [json.loads(line)["kimg"] for line in (run.path / "stats.jsonl").open()] == [0.5, 0.75, 1.0]


@pytest.mark.parametrize("error, what", [(errno.ENOSPC, "disk full"), (errno.EDQUOT, "disk quota exceeded")])
@pytest.mark.parametrize("writer", ["RunDir.append_jsonl", "append_metric_line"])
def test_a_jsonl_append_that_runs_out_of_space_midway_is_cut_back(tmp_path, monkeypatch, error, what, writer):
    """os.write takes half the line, then the disk is full: the file goes back to its earlier lines, byte for byte."""
    path = tmp_path / "stats.jsonl"
    path.write_text('{"kimg": 0.5}\n{"kimg": 0.75}\n')
    before = path.read_bytes()
    real_write = os.write
    calls = []

    def write(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(error, os.strerror(error))
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(os, "write", write)
    record = {"kimg": 1.0, "loss_g": 0.7}
    with pytest.raises(DiskFullError) as raised:
        if writer == "RunDir.append_jsonl":
            RunDir(tmp_path).append_jsonl(path.name, record)
        else:
            append_metric_line(path, record)
    monkeypatch.undo()
    assert len(calls) == 2 and path.read_bytes() == before
    assert str(raised.value) == (f"{what} writing {path}: about 1 KB needed, free some space and try again")


def test_a_full_disk_at_a_snapshot_ends_training_in_one_line_and_resume_latest_skips_it(tmp_path, monkeypatch):
    """ENOSPC when the second snapshot is synced: training stops with the file, its size and `--resume latest`;
    the first snapshot loads, no part of the second is left for --resume latest to pick, stats.jsonl parses."""
    torch.set_num_threads(1)
    fail_fsync_of(monkeypatch, ".network-snapshot-000000.128.pt.")
    with pytest.raises(DiskFullError) as raised:
        loop.train(tiny_run_config(tmp_path, kimg=0.256))  # snapshots every 0.064 kimg
    run = tmp_path / "runs" / "00000-shapes-nest-16"
    first = run / "network-snapshot-000000.064.pt"
    needed = file_size(tensor_bytes(load_checkpoint(first)))
    message = (f"disk full writing {run / 'network-snapshot-000000.128.pt'}: about {needed} needed, free some space "
               "and rerun with --resume latest")
    assert str(raised.value) == message
    assert (run / "log.txt").read_text().splitlines()[-1] == f"error: {message}"
    assert [p.name for p in run.glob("network-snapshot-*")] == [first.name] and temporary_files(run) == []
    assert stats_kimgs(run) == [32, 64, 96, 128]
    assert find_latest_checkpoint(tmp_path / "runs", {"data.name": "shapes", "g": "nest", "resolution": 16}) == first


def test_a_log_on_a_full_device_ends_training_in_one_line(tmp_path, monkeypatch, capsys):
    """log.txt on /dev/full (the kernel answers every write with ENOSPC): the CLI prints one error line naming
    log.txt, the console still got the lines the log refused, and closing the log does not raise again."""
    create = RunDir.create.__func__

    def create_on_full_device(cls, outdir, desc):
        run = create(cls, outdir, desc)
        (run.path / "log.txt").symlink_to("/dev/full")
        return run

    monkeypatch.setattr(RunDir, "create", classmethod(create_on_full_device))
    with pytest.raises(SystemExit) as exited:
        train_command.main(["--config", str(write_toml(tmp_path)), "--outdir", str(tmp_path / "runs"),
                            "--cache-dir", str(tmp_path / "cache"), "--metrics", "none", "--threads", "1",
                            "--kimg", "0.064"], standalone_mode=False)
    out, err = capsys.readouterr()
    run = tmp_path / "runs" / "00000-shapes-nest-16"
    assert exited.value.code == 2
    assert err.splitlines()[-1] == f"error: disk full writing {run / 'log.txt'}, free some space and rerun"
    assert sum(line.startswith("error") for line in err.splitlines()) == 1  # above it: the dataset preparation
    assert f"run dir    {run}" in out and "Traceback" not in out + err


def write_toml(tmp_path: Path) -> Path:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    return config


def test_a_full_disk_for_the_fid_statistics_cache_warns_and_the_metric_is_computed(tmp_path, monkeypatch, caplog):
    """The reference statistics cannot be cached: one warning, no cache file or part of one, and the value equals
    the one an evaluation with room for the cache computes."""
    G, data = TinyGenerator(), shapes(tmp_path)
    cache = tmp_path / "cache"
    fail_fsync_of(monkeypatch, "-stats.pt.")
    with caplog.at_level(logging.WARNING, logger="nestgan.metrics"):
        uncached = evaluate_metrics(G, data, ["fid20"], "cpu", cache_dir=cache, feature_extractor=PIXELS).values
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("warning: reference cache not written (disk full writing ")
    assert list((cache / "fidelity").iterdir()) == []
    monkeypatch.undo()
    cached = evaluate_metrics(G, data, ["fid20"], "cpu", cache_dir=cache, feature_extractor=PIXELS).values
    assert cached == uncached and len(list((cache / "fidelity").glob("*-stats.pt"))) == 1


def test_a_full_disk_while_converting_the_inception_weights_leaves_nothing_to_trust(tmp_path, monkeypatch):
    """The converted weights cannot be written: a DiskFullError naming the file and its size, and neither the file,
    its sha256 sidecar nor a temporary file is left, so the next run converts again."""
    out = tmp_path / "inception" / "weights.pt"
    fail_fsync_of(monkeypatch, ".weights.pt.")
    with pytest.raises(DiskFullError, match=rf"^disk full writing {out}: about \d+ MB needed, free some space"):
        convert_fid_helper_weights(find_fid_helper_file(), out)
    assert list(out.parent.iterdir()) == []
