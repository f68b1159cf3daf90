"""Runs started at the same moment in one --outdir: each gets its own numbered run directory, and writes only there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_toml
from nestgan.training.rundir import kimg_stamp, snapshots

pytestmark = pytest.mark.slow  # spawns processes or trains for seconds: .ci/run runs it after the fast pass
REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# Runs train_gan.py, but makes its run directory only once the file argv[1] exists: the racers are released
# together at the moment where they pick their number.
RELEASED_TOGETHER = """
import os, runpy, sys, time
from nestgan.training.rundir import RunDir

create, go = RunDir.create.__func__, sys.argv.pop(1)

def create_when_released(cls, outdir, desc):
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.0005)
    return create(cls, outdir, desc)

RunDir.create = classmethod(create_when_released)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# Makes argv[3] run directories under argv[1] as fast as it can once argv[2] exists, and claims each with a file
# only its creator can make (mode "x").
CREATE_MANY = """
import os, sys, time
from nestgan.training.rundir import RunDir

outdir, go, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.0005)
for _ in range(count):
    run = RunDir.create(outdir, "race")
    with open(run.path / "owner", "x") as f:
        f.write(str(os.getpid()))
"""


def release(procs: list[subprocess.Popen], go: Path) -> None:
    for proc in procs:
        while (line := proc.stdout.readline()) != "ready\n":
            assert line, f"exited before the start line: {proc.communicate()}"
    go.touch()


def test_three_training_runs_started_together_in_one_outdir_get_their_own_run_directories(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(tiny_toml(tick_kimg=0.016, snap=1, augment="translation"))
    runs, go = tmp_path / "runs", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RELEASED_TOGETHER, str(go), str(REPO / "train_gan.py"), "--config", str(config),
             "--outdir", str(runs), "--cache-dir", str(tmp_path / "cache"), "--metrics", "none", "--threads", "1",
             "--seed", str(i), "--kimg", str(0.016 * (i + 1))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        )
        for i in range(3)
    ]
    release(procs, go)
    outputs = [proc.communicate(timeout=300) for proc in procs]
    run_dirs = []
    for i, (proc, (out, err)) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0 and "Traceback" not in err, err
        [run_dir] = [Path(line.split(maxsplit=2)[2]) for line in out.splitlines() if line.startswith("run dir")]
        run_dirs.append(run_dir)
        config_json = json.loads((run_dir / "config.json").read_text())
        assert (config_json["seed"], config_json["kimg"]) == (i, 0.016 * (i + 1))  # its own config
        assert len((run_dir / "stats.jsonl").read_text().splitlines()) == i + 1  # its own ticks, no one else's
        log = (run_dir / "log.txt").read_text()
        assert log.count("run dir") == 1 and f"run dir    {run_dir}\n" in log  # its own console
        assert f"done: {0.016 * (i + 1):g} kimg" in log
        assert snapshots(run_dir)[-1].name == f"network-snapshot-{kimg_stamp(16 * (i + 1))}.pt"
    assert sorted(p.name for p in runs.iterdir()) == sorted(p.name for p in run_dirs)
    assert sorted(p.name[:5] for p in run_dirs) == ["00000", "00001", "00002"]


def test_run_directories_made_by_racing_processes_are_numbered_once_each(tmp_path):
    runs, go = tmp_path / "runs", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CREATE_MANY, str(runs), str(go), "200"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    release(procs, go)
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err  # no run directory was claimed twice ("x" would have failed)
    assert sorted(p.name for p in runs.iterdir()) == [f"{i:05d}-race" for i in range(400)]
    owners = [(p / "owner").read_text() for p in runs.iterdir()]
    assert sorted(owners.count(str(proc.pid)) for proc in procs) == [200, 200]
