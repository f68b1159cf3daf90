"""nestgan.race: snapshots at training minutes, the nearest snapshot, a whole race with a resumed run, a rerun that
does nothing again, the table and raw lines, and one-line errors. Trainings last about a second of 16 px shapes;
the metrics use the cheap stand-in for Inception of test_metrics."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nestgan.commands import train as train_gan
from nestgan.metrics import evaluate_metrics
from nestgan.race import cli, plan, runs, score
from nestgan.race.runs import Snapshot, finished, nearest, run_snapshots
from nestgan.threads import all_cores
from test_metrics import PIXELS  # noqa: E402  (pytest puts tests/ on sys.path; registers the stand-in)
from test_train_cli import TINY_TOML as TRAIN_CLI_TINY_TOML  # noqa: E402

# test_train_cli's tiny 16 px run, whose ticks end only at a minute mark or at the end: every snapshot is one of those.
pytestmark = pytest.mark.slow  # spawns processes or trains for seconds: .ci/run runs it after the fast pass
RACE_TOML = TRAIN_CLI_TINY_TOML.replace("tick_kimg = 0.032\nsnap = 2\n",
                                       "tick_kimg = 10\nsnap = 1000\nmetrics_batch = 24\n")
assert "snap = 1000" in RACE_TOML
METRICS = "fid16_full,kid16_full"
MINUTES = (0.005, 0.01)  # 0.3 and 0.6 training seconds


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny config; the caches in tmp_path (the trainings inherit the environment); cheap metrics; short probes
    of the other load."""
    monkeypatch.setenv("NESTGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(score, "evaluate_metrics", functools.partial(evaluate_metrics, feature_extractor=PIXELS))
    monkeypatch.setattr(cli, "resolve_inception_weights", lambda: None)
    monkeypatch.setattr(runs, "LOAD_PROBE_S", 0.05)
    config = tmp_path / "tiny.toml"
    config.write_text(RACE_TOML)
    return config


def train(*args: str):
    return CliRunner().invoke(train_gan.main, [*args, "--metrics", "none", "--threads", "1"])


def run_race(*args: str):
    return CliRunner().invoke(cli.main, [*args, "--threads", "1"])


def snapshot(train_s: float, images_seen: int = 1000, kimg_total: float = 100.0) -> Snapshot:
    return Snapshot(Path(f"s{train_s}.pt"), images_seen, train_s, kimg_total)


def test_snap_minutes_take_kept_snapshots_as_training_time_passes_each_mark_also_after_a_resume(tiny, tmp_path):
    """keep_snapshots = 1 would prune all but the newest; the marks' snapshots stay. A run resumed after the first
    mark snapshots at the second only."""
    tiny.write_text("keep_snapshots = 1\n" + RACE_TOML)
    marks = ["--config", str(tiny), "--snap-minutes", "0.005,0.02", "--outdir", str(tmp_path / "runs")]
    first = train(*marks, "--minutes", "0.01")
    assert first.exit_code == 0, first.output
    run0 = tmp_path / "runs" / "00000-shapes-nest-16"
    snaps0 = run_snapshots(tmp_path / "runs")
    assert len(snaps0) == 2 and all(s.path.parent == run0 for s in snaps0)  # the 0.005 mark and the end
    assert 0.3 <= snaps0[0].train_s < 0.6 <= snaps0[1].train_s
    assert "(snap_minutes), kept" in (run0 / "log.txt").read_text()

    resumed = train(*marks, "--minutes", "0.03", "--resume", str(snaps0[-1].path))
    assert resumed.exit_code == 0, resumed.output
    snaps = run_snapshots(tmp_path / "runs")
    later = [s for s in snaps if s.path.parent.name.startswith("00001")]
    assert len(later) == 2 and 1.2 <= later[0].train_s < 1.8 <= later[1].train_s  # the 0.02 mark, the end
    assert snaps[:2] == snaps0  # the first run's snapshots are untouched

    for bad, message in (("0,5", "snap_minutes must all be > 0"), ("ten", "--snap-minutes takes comma-separated")):
        result = CliRunner().invoke(train_gan.main, ["--dry-run", "--snap-minutes", bad])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_the_nearest_snapshot_by_training_time_and_when_a_run_is_finished():
    snaps = [snapshot(50), snapshot(61), snapshot(140), snapshot(180)]
    assert nearest(snaps, 1).train_s == 61
    assert nearest(snaps, 2.5).train_s == 140  # 10 s before against 30 s after
    assert nearest([snapshot(90), snapshot(150)], 2).train_s == 90  # a tie: the earlier one
    assert nearest(snaps, 60).train_s == 180
    assert finished(snaps, 3) and not finished(snaps, 3.5) and not finished([], 1)
    assert finished([snapshot(30, images_seen=5000, kimg_total=5.0)], 10)  # its kimg ended it first


def test_a_race_trains_each_run_resumes_an_interrupted_one_scores_and_reports_and_a_rerun_repeats_nothing(
    tiny, tmp_path, monkeypatch
):
    out = tmp_path / "race"
    # a-s0 was interrupted: it trained 0.007 of its 0.01 minutes.
    interrupted = train("--config", str(tiny), "--seed", "0", "--minutes", "0.007", "--snap-minutes", "0.005,0.01",
                        "--outdir", str(out / "runs" / "a-s0"))
    assert interrupted.exit_code == 0, interrupted.output
    resume_from = run_snapshots(out / "runs" / "a-s0")[-1].path
    monkeypatch.setattr(runs, "probe_other_load", lambda: 1.0)  # other load before and after each training
    command = ["--config", f"a={tiny}", "--config", f"b={tiny} --lr-g 1e-4", "--seeds", "0",
               "--minutes", ",".join(map(str, MINUTES)), "--metrics", METRICS, "--out", str(out)]

    first = run_race(*command)
    assert first.exit_code == 0, first.output
    assert f"training a-s0: resuming from {resume_from}" in first.output and "training b-s0: new" in first.output
    assert "other processes kept 1.00 CPUs busy" in first.output
    resumed = json.loads((out / "runs" / "a-s0" / "00001-shapes-nest-16" / "config.json").read_text())
    assert resumed["resume"] == str(resume_from) and resumed["seed"] == 0 and resumed["metrics"] == []

    lines = [json.loads(ln) for ln in (out / "race.jsonl").read_text().splitlines()]
    assert sorted((s["config"], s["minutes"], s["metric"]) for s in lines) == sorted(
        (c, m, k) for c in "ab" for m in MINUTES for k in METRICS.split(","))
    for s in lines:
        job = out / "runs" / f"{s['config']}-s0"
        assert s["snapshot"] == str(nearest(run_snapshots(job), s["minutes"]).path)
        assert s["img_per_s"] == pytest.approx(s["kimg"] * 1000 / s["train_s"])
        assert s["value"] == s["evaluation"]["results"].get(s["metric"], s["evaluation"]["results"].get(
            s["metric"] + "_mean"))
        assert s["evaluation"]["num_reals"] == 256 and s["threads"] == [1] and s["trial"] is False
        assert {"cpu", "avx512_bf16", "avx2", "torch"} <= set(s["machine"])
        assert "before training: other processes kept 1.00 CPUs busy" in s["load_warnings"]
        assert all("--minutes 0.01 --snap-minutes 0.005,0.01 --metrics none --threads 1" in c
                   for c in s["train_commands"])
    a_commands = next(s["train_commands"] for s in lines if s["config"] == "a")
    assert len(a_commands) == 1 and f"--resume {resume_from}" in a_commands[0]  # the race ran only the resume
    assert "--lr-g 1e-4" in next(s["train_commands"] for s in lines if s["config"] == "b")[0]

    report = (out / "race.md").read_text()
    value = {(s["config"], s["minutes"], s["metric"]): s["value"] for s in lines}
    assert f"| a | **{value['a', 0.005, 'fid16_full']:.1f}** (s0 {value['a', 0.005, 'fid16_full']:.1f}*) |" in report
    assert f"(s0 {value['b', 0.01, 'kid16_full']:.4f}*) |" in report
    assert "## fid16_full" in report and "| config | 0.005 min | 0.01 min |" in report and "marked *" in report
    assert "python -m nestgan.race --config" in report and "Trial figures" not in report
    assert f"\npython -m nestgan.commands.train --config {tiny} --seed 0" in report and "--resume" in report
    assert (out / "race-fid.png").stat().st_size > 0

    def must_not(*args, **kwargs):
        raise AssertionError("the rerun trained or evaluated again")

    monkeypatch.setattr(runs, "launch", must_not)
    monkeypatch.setattr(score, "evaluate_metrics", must_not)
    again = run_race(*command)
    assert again.exit_code == 0, again.output
    assert (out / "race.jsonl").read_text().count("\n") == len(lines)

    # A new metric extends the race: only it is evaluated, once per snapshot, with no training.
    evaluated = []

    def counting(generator, dataset, names, device, **kwargs):
        assert kwargs["batch_size"] == 24  # the run's metrics_batch, as its training snapshots would sample
        evaluated.append(names)
        return evaluate_metrics(generator, dataset, names, device, feature_extractor=PIXELS, **kwargs)

    monkeypatch.setattr(score, "evaluate_metrics", counting)
    extended = run_race(*command[:-4], "--metrics", METRICS + ",kid8_full", "--out", str(out))
    assert extended.exit_code == 0, extended.output
    assert evaluated == [["kid8_full"]] * len({s["snapshot"] for s in lines})  # once per snapshot scored
    assert "## kid8_full" in (out / "race.md").read_text()


def bad_input(tmp_path: Path, tiny: Path) -> tuple[list[tuple[list[str], str]], list[str]]:
    out = ["--out", str(tmp_path / "race")]
    return [
        (["--config", str(tmp_path / "nope.toml"), "--minutes", "10"], "config file not found"),
        (["--config", str(tiny), "--minutes", "0,10"], "--minutes must all be positive"),
        (["--config", str(tiny), "--minutes", "ten"], "--minutes takes comma-separated numbers"),
        (["--config", str(tiny), "--minutes", "10", "--seeds", "0.5"], "--seeds takes comma-separated whole numbers"),
        (["--config", str(tiny), "--minutes", "10", "--metrics", "fidx"], "unknown metric 'fidx'"),
        (["--config", str(tiny), "--minutes", "10", "--metrics", "fid5k"], "use fid5k_full"),
        (["--config", f"{tiny} --seed 3", "--minutes", "10"], "--seed is set by the race"),
        (["--config", f"{tiny} --g nope", "--minutes", "10"], "--config tiny: Invalid value for '--g'"),
        (["--config", f"{tiny} --lr-g -1", "--minutes", "10"], "--config tiny: lr_g must be > 0"),
        (["--config", str(tiny), "--config", f"{tiny} --lr-g 1e-4", "--minutes", "10"], "two entries named tiny"),
        (["--config", str(tiny), "--minutes", "10", "--pin", "999"], "at most one run per core"),
        (["--config", str(tiny), "--minutes", "10", "--pin", "1", "--threads", "1"], "drop --threads"),
    ], out


def test_bad_input_is_one_line_and_a_non_zero_exit(tiny, tmp_path):
    cases, out = bad_input(tmp_path, tiny)
    for args, message in cases:
        result = CliRunner().invoke(cli.main, [*args, *out])
        assert result.exit_code == 2, (args, result.output)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], (args, result.stderr)
        assert "Traceback" not in result.output
    assert not (tmp_path / "race").exists()  # refused before anything was made


def test_an_entry_name_keeps_its_config_and_flags_in_its_race(tiny, tmp_path):
    out = tmp_path / "race"
    plan.remember(plan.parse_race(configs=(f"a={tiny}",), seeds="0", minutes="1", metrics=METRICS, data=None,
                                data_dir=None, out=str(out), threads=1, pin=None))
    result = run_race("--config", f"a={tiny} --lr-g 1e-4", "--minutes", "1", "--out", str(out))
    assert result.exit_code == 2 and "this race trained 'a' as" in result.stderr
    assert not (out / "runs").exists()


def test_pinned_runs_train_side_by_side_each_on_its_own_core_and_are_marked_as_trials(tiny, tmp_path):
    out, width = tmp_path / "race", min(2, all_cores())
    result = CliRunner().invoke(cli.main, ["--config", str(tiny), "--seeds", "0,1", "--minutes", "0.005", "--metrics",
                                           "kid8_full", "--out", str(out), "--pin", str(width)])
    assert result.exit_code == 0, result.output
    cpus = sorted(os.sched_getaffinity(0))
    started = [json.loads((out / "runs" / f"tiny-s{seed}" / "trainings.jsonl").read_text().splitlines()[0])
               for seed in (0, 1)]
    assert [r["pinned_cpu"] for r in started] == ([cpus[0], cpus[1]] if width == 2 else [cpus[0], cpus[0]])
    assert all(r["threads"] == 1 and r["command"][r["command"].index("--threads") + 1] == "1" for r in started)
    lines = [json.loads(ln) for ln in (out / "race.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(s["trial"] and s["threads"] == [1] for s in lines)
    assert all(s["train_commands"][0].startswith(f"taskset -c {s['pinned_cpus'][0]} ") for s in lines)
    report = (out / "race.md").read_text()
    assert "**Trial figures**" in report and f"taskset -c {cpus[0]} python -m nestgan.commands.train" in report


def test_a_pinned_training_runs_on_its_core_alone(tmp_path):
    cpu = max(os.sched_getaffinity(0))
    console = tmp_path / "console.txt"
    runs.launch([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"], console, cpu).wait()
    assert console.read_text().strip() == f"[{cpu}]"


def test_a_training_left_running_by_a_killed_race_is_not_started_twice(tiny, tmp_path):
    outdir = tmp_path / "race" / "runs" / "tiny-s0"
    outdir.mkdir(parents=True)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(outdir)])
    try:
        (outdir / "trainings.jsonl").write_text(json.dumps({"event": "started", "pid": orphan.pid}) + "\n")
        result = run_race("--config", str(tiny), "--minutes", "1", "--out", str(tmp_path / "race"))
        assert result.exit_code == 2 and f"still runs (pid {orphan.pid})" in result.stderr
        assert not (outdir / "console.txt").exists()
    finally:
        orphan.kill()
        orphan.wait()


def test_a_race_continues_only_on_the_kind_of_machine_it_trained_on(tiny, tmp_path, monkeypatch):
    out = tmp_path / "race"
    plan.remember(plan.parse_race(configs=(f"a={tiny}",), seeds="0", minutes="1", metrics=METRICS, data=None,
                                data_dir=None, out=str(out), threads=1, pin=None))
    recorded = (out / "race.json").read_text()
    assert json.loads(recorded)["machine"] == plan.machine_identity(plan.machine_info())
    elsewhere = {**plan.machine_info(), "cpu": "Another CPU", "amx_bf16": False, "host": "node7"}
    monkeypatch.setattr(plan, "machine_info", lambda: elsewhere)
    result = run_race("--config", f"a={tiny}", "--minutes", "1", "--out", str(out))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "this race trained on" in errors[0] and "Another CPU" in errors[0]
    assert (out / "race.json").read_text() == recorded and not (out / "runs").exists()
    # another host of the same kind (a new VM, another cluster node) continues it
    monkeypatch.setattr(plan, "machine_info", lambda: {**plan.machine_identity(json.loads(recorded)["machine"]),
                                                       "host": "node8"})
    plan.check_same_machine(plan.parse_race(configs=(f"a={tiny}",), seeds="0", minutes="1", metrics=METRICS,
                                            data=None, data_dir=None, out=str(out), threads=1, pin=None))
