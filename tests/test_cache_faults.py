"""The cache under faults: preparation and the FID statistics pass killed at random moments, a read-only cache,
and two processes preparing the same dataset into one cache at once. Each with real processes and signals."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_toml
from nestgan.data import load_dataset
from nestgan.data.prepared import STALE_STAGING_S, PreparedDataset
from nestgan.errors import ConfigError
from nestgan.metrics import evaluate_metrics, inception_weights, resolve_inception_weights

from readonly import read_only, read_only_command, tree  # noqa: E402  (pytest puts tests/ on sys.path)
from test_metrics import PIXELS  # noqa: E402  (registers the cheap stand-in for Inception)

pytestmark = pytest.mark.slow  # spawns processes or trains for seconds: .ci/run runs it after the fast pass
REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# Imports once, then forks a child per line of JSON arguments that runs work(*arguments), its stderr on stdout:
# each killed attempt is a real process, without paying python's and torch's start (seconds on a busy machine).
# The child is reaped only when asked, so that its pid is never another process's when the test kills it.
FORKER = """
import json, os, sys, traceback
{setup}
for line in sys.stdin:
    if line == "reap\\n":
        print("exit", os.waitpid(pid, 0)[1], flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        os.dup2(1, 2)
        try:
            work(*json.loads(line))
            code = 0
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print("pid", pid, flush=True)
"""

PREPARE = """
import os
from nestgan.data import load_dataset

def work(data, cache):
    dataset = load_dataset("folder", 32, data_dir=data, cache_dir=cache)
    print("opened", dataset.pixels_id, len(dataset), flush=True)
"""

# FID of x-flipped reals against the reals with 1024 features, so that the reference statistics pass and the
# write of its 8 MB covariance take long enough to be killed midway; logs 'reference: extracting ...' at its start.
EVALUATE = """
import logging
import numpy as np, torch, torch.nn.functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import register_feature_extractor
from nestgan.data import load_dataset
from nestgan.errors import ConfigError
from nestgan.metrics import evaluate_metrics, inception_weights, resolve_inception_weights

class Wide(FeatureExtractorBase):
    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.register_buffer("projection", torch.randn(48, 1024, generator=torch.Generator().manual_seed(0)))
    get_provided_features_list = staticmethod(lambda: ("projection",))
    get_default_feature_layer_for_metric = staticmethod(lambda metric: "projection")
    can_be_compiled = staticmethod(lambda: False)
    def forward(self, x):
        return (torch.tanh(F.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1) @ self.projection),)

register_feature_extractor("wide-projection", Wide)
logging.basicConfig(level=logging.INFO, format="%(message)s")

def work(data, cache):
    dataset = load_dataset("shapes", 16, cache_dir=data, max_images=4000, progress=False)
    fakes = torch.from_numpy(np.array(dataset.images)[..., ::-1].copy())
    report = evaluate_metrics(fakes, dataset, ["fid4k"], "cpu", batch_size=500, cache_dir=cache,
                              feature_extractor="wide-projection")
    print("fid", repr(report.values["fid4k"]), flush=True)
"""


class Forker:
    def __init__(self, setup: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FORKER.format(setup=setup)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=ENV)
        self.output: list[str] = []

    def start(self, *arguments: object) -> int:
        """Fork a child that runs work(*arguments); its pid."""
        self.output = []
        self.proc.stdin.write(json.dumps(arguments) + "\n")
        self.proc.stdin.flush()
        return int(self.until("pid ").split()[1])

    def until(self, text: str) -> str:
        """Read the output up to the first line holding `text`, and return that line."""
        while text not in (line := self.proc.stdout.readline()):
            assert line, "".join(self.output)
            self.output.append(line)
        return line

    def wait(self) -> tuple[int, list[str]]:
        """The child's wait status and what it printed."""
        self.proc.stdin.write("reap\n")
        self.proc.stdin.flush()
        return int(self.until("exit ").split()[1]), self.output

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def image_folder(path: Path, count: int) -> Path:
    """`count` hard links to one 256 px noise PNG: about a second to prepare at 32 px, nothing to write."""
    path.mkdir()
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (256, 256, 3), dtype=np.uint8)).save(path / "0.png")
    for i in range(1, count):
        os.link(path / "0.png", path / f"{i}.png")
    return path


def cache_folders(cache: Path) -> tuple[list[Path], list[Path]]:
    """(prepared folders, staging folders) in a cache."""
    entries = sorted((cache / "prepared").iterdir()) if (cache / "prepared").is_dir() else []
    return [p for p in entries if not p.name.startswith(".")], [p for p in entries if p.name.startswith(".")]


def test_preparation_killed_at_random_moments_never_leaves_a_cache_that_is_used(tmp_path):
    data = image_folder(tmp_path / "images", 500)
    start = time.monotonic()
    reference = load_dataset("folder", 32, data_dir=data, cache_dir=tmp_path / "reference", progress=False)
    took = time.monotonic() - start
    forker = Forker(PREPARE)
    cache, rng, during = tmp_path / "cache", random.Random(3), 0
    for _ in range(6):
        pid = forker.start(str(data), str(cache))
        forker.until("preparing")  # printed once its staging folder exists
        time.sleep(rng.uniform(0.0, 1.2 * took))  # then die anywhere in decoding, hashing, meta.json or the rename
        os.kill(pid, signal.SIGKILL)
        forker.wait()
        prepared, staging = cache_folders(cache)
        during += bool(staging)
        assert len(staging) <= 1  # each preparation removed the killed one's before starting its own
        for folder in prepared:  # a prepared folder is complete and right, or absent
            assert np.array_equal(PreparedDataset(folder).images, reference.images)
            shutil.rmtree(folder)  # so that the next attempt prepares (and can be killed) again
    assert during >= 1, "no kill landed during preparation"

    forker.start(str(data), str(cache))
    status, output = forker.wait()
    forker.close()
    assert status == 0 and output[-1].split() == ["opened", reference.pixels_id, "500"], output
    prepared, staging = cache_folders(cache)
    assert len(prepared) == 1 and staging == []  # the last killed preparation's staging folder is gone too


def test_a_preparation_removes_abandoned_staging_folders_and_keeps_live_ones(tmp_path):
    prepared = tmp_path / "cache" / "prepared"
    host, exited = socket.gethostname(), subprocess.Popen([sys.executable, "-c", ""])
    exited.wait()

    def staging(owner: str, age_s: float = 0) -> Path:
        path = prepared / f".shapes-16-0123456789ab.staging-{owner}-abc_12.tmp"
        path.mkdir(parents=True)
        (path / "images.npy").write_bytes(b"partial")
        for p in (path / "images.npy", path):
            os.utime(p, (time.time() - age_s, time.time() - age_s))
        return path

    killed = staging(f"{host}-{exited.pid}")
    running = staging(f"{host}-{os.getpid()}")
    elsewhere = staging(f"otherhost-{exited.pid}")  # another host's process cannot be asked whether it runs
    abandoned = staging(f"otherhost-{os.getpid()}", age_s=STALE_STAGING_S + 60)
    load_dataset("shapes", 16, cache_dir=tmp_path / "cache", max_images=32, progress=False)
    assert not killed.exists() and not abandoned.exists()
    assert running.exists() and elsewhere.exists()


def test_fid_statistics_pass_killed_at_random_moments_never_leaves_a_statistics_file_that_is_used(tmp_path):
    data, clean = tmp_path / "data", tmp_path / "clean"
    load_dataset("shapes", 16, cache_dir=data, max_images=4000, progress=False)
    forker = Forker(EVALUATE)
    forker.start(str(data), str(clean))
    forker.until("reference: extracting")
    start = time.monotonic()
    begun = appeared(clean / "fidelity", "*-stats.pt*", set())  # its temporary file, or already the file
    done = appeared(clean / "fidelity", "*-stats.pt", set())
    pass_s, write_s = done - start, max(done - begun, 0.002)
    status, output = forker.wait()
    assert status == 0, output
    [expected_file] = (clean / "fidelity").glob("*-stats.pt")
    expected = torch.load(expected_file, weights_only=True)

    cache, rng, written = tmp_path / "cache", random.Random(4), 0
    for attempt in range(6):
        pid = forker.start(str(data), str(cache))
        forker.until("reference: extracting")
        if attempt % 2:  # anywhere in the features, the statistics or their write
            time.sleep(rng.uniform(0.0, 1.2 * pass_s))
        else:  # in the write, which takes milliseconds: once its temporary file appears
            appeared(cache / "fidelity", "*-stats.pt*", set((cache / "fidelity").glob("*-stats.pt*")))
            time.sleep(rng.uniform(0.0, 1.5 * write_s))
        os.kill(pid, signal.SIGKILL)
        forker.wait()
        files = list((cache / "fidelity").glob("*-stats.pt"))
        if files:  # complete and equal to the clean run's, or absent
            written += 1
            saved = torch.load(files[0], weights_only=True)
            assert torch.equal(saved["mu"], expected["mu"]) and torch.equal(saved["sigma"], expected["sigma"])
            files[0].unlink()  # so that the next attempt computes (and can be killed) again
        assert list((cache / "fidelity").glob("[!.]*")) == []  # nothing beside but temporary files
    assert written < 6, "no kill landed before the statistics were saved"

    forker.start(str(data), str(cache))
    forker.until("reference: extracting")  # recomputed, not read from a partial file
    status, again = forker.wait()
    forker.close()
    assert status == 0 and again[-1] == output[-1]  # the same FID to the last digit


def appeared(folder: Path, pattern: str, before: set[Path]) -> float:
    """When a file matching `pattern`, other than those `before`, appeared in `folder` (polled every 0.5 ms)."""
    deadline = time.monotonic() + 60
    while not set(folder.glob(pattern)) - before:
        assert time.monotonic() < deadline, f"no {pattern} appeared in {folder}"
        time.sleep(0.0005)
    return time.monotonic()


def train_on_a_read_only_cache(tmp_path: Path, prepared_images: int) -> tuple[subprocess.CompletedProcess, Path]:
    """A tiny train_gan.py run whose --cache-dir holds shapes prepared with `prepared_images` images and is
    read-only; asserts that the run wrote nothing there (no lock, no staging, no probe)."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CONFIG)
    cache = tmp_path / "cache"
    load_dataset("shapes", 16, cache_dir=cache, max_images=prepared_images, progress=False)
    command = [sys.executable, str(REPO / "train_gan.py"), "--config", str(config), "--outdir", str(tmp_path / "runs"),
               "--cache-dir", str(cache), "--metrics", "none", "--threads", "1", "--kimg", "0.016"]
    with read_only(cache):
        before = tree(cache)
        result = subprocess.run(read_only_command(cache, command), capture_output=True, text=True, env=ENV,
                                timeout=120)
        assert tree(cache) == before
    return result, cache


def test_a_read_only_cache_with_the_prepared_data_trains_without_writing_to_it(tmp_path):
    result, _ = train_on_a_read_only_cache(tmp_path, prepared_images=256)  # as the run will ask for it
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "00000-shapes-nest-16" / "network-snapshot-000000.016.pt").is_file()


def test_a_read_only_cache_without_the_prepared_data_is_one_line_naming_both_ways_to_choose_a_cache(tmp_path):
    result, cache = train_on_a_read_only_cache(tmp_path, prepared_images=64)  # another entry only
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: the cache folder {cache / 'prepared'} is read-only")
    assert "--cache-dir" in line and "NESTGAN_CACHE" in line
    assert not list((tmp_path / "runs").glob("0*"))  # failed before making a run directory


def test_fid_with_a_read_only_cache_uses_its_statistics_or_computes_them_with_one_warning(tmp_path, monkeypatch,
                                                                                         caplog):
    data = load_dataset("shapes", 16, cache_dir=tmp_path / "data", max_images=64, progress=False)
    fakes = torch.from_numpy(np.array(data.images)[..., ::-1].copy())
    cache = tmp_path / "cache"
    fid = lambda name: evaluate_metrics(fakes, data, [name], "cpu", cache_dir=cache,  # noqa: E731
                                        feature_extractor=PIXELS).values[name]
    cached, uncached = fid("fid64"), fid("fid32")
    (cache / "fidelity" / next(p.name for p in (cache / "fidelity").glob("*-32-*"))).unlink()  # only fid64's kept
    caplog.clear()
    with read_only(cache, monkeypatch):
        before = tree(cache)
        assert fid("fid64") == cached and not caplog.records  # used as is
        assert fid("fid32") == uncached  # computed all the same, not kept
        assert tree(cache) == before
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"warning: the cache folder {cache / 'fidelity'} is read-only") and "\n" not in warning
    assert "--cache-dir" in warning and "NESTGAN_CACHE" in warning


def test_a_read_only_cache_without_converted_inception_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(inception_weights.ENV_VAR, raising=False)
    monkeypatch.setattr(inception_weights, "find_fid_helper_file", lambda: tmp_path / "default_1.pt")  # installed
    monkeypatch.setattr(inception_weights, "_torch_fidelity_file", lambda need_classifier: None)  # offline
    cache = tmp_path / "cache"
    cache.mkdir()
    with read_only(cache, monkeypatch):
        before = tree(cache)
        with pytest.raises(ConfigError) as error:
            resolve_inception_weights(cache_dir=cache)
        assert tree(cache) == before
    message = str(error.value)
    assert message.startswith(f"the cache folder {cache / 'inception'} is read-only") and "\n" not in message
    assert "--cache-dir" in message and "NESTGAN_CACHE" in message and "--inception-weights" in message


def test_two_processes_preparing_one_dataset_into_one_cache_at_once_end_with_one_valid_cache(tmp_path):
    data = image_folder(tmp_path / "images", 300)
    reference = load_dataset("folder", 32, data_dir=data, cache_dir=tmp_path / "reference", progress=False)
    cache, go = tmp_path / "cache", tmp_path / "go"
    together = PREPARE + "import sys, time\nprint('ready', flush=True)\nwhile not os.path.exists(sys.argv[3]):\n" \
        "    time.sleep(0.001)\nwork(sys.argv[1], sys.argv[2])\n"
    procs = [subprocess.Popen([sys.executable, "-c", together, str(data), str(cache), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n"
    go.touch()
    results = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0 and "Traceback" not in err, err
        assert "preparing" in err  # both built it: the race happened
        assert out.split() == ["opened", reference.pixels_id, "300"]
    prepared, staging = cache_folders(cache)
    assert len(prepared) == 1 and staging == []
    assert np.array_equal(PreparedDataset(prepared[0]).images, reference.images)


TINY_CONFIG = tiny_toml(tick_kimg=0.016, snap=1, augment="translation")
