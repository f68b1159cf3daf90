"""The wheel: built from the package sources, installed outside the repository, it finds its presets and its
console scripts run (a wheel that only works inside a checkout fails here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # spawns processes or trains for seconds: .ci/run runs it after the fast pass
REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "nestgan")
CONSOLE_SCRIPTS = ("nestgan-train", "nestgan-generate", "nestgan-evaluate", "nestgan-bench", "nestgan-race",
                   "nestgan-explore", "nestgan-project")

# Runs in the installed copy: where nestgan comes from, every generator preset built, a dataset preset resolved.
CHECK_INSTALLED = """
import sys
from pathlib import Path
import nestgan
from nestgan.config import load_config
from nestgan.networks import generator_from_config, generator_preset
from nestgan.presets import dataset_preset, preset_names

site = Path(sys.argv[1]).resolve()
assert Path(nestgan.__file__).resolve().is_relative_to(site), nestgan.__file__
names = preset_names("generators")
assert {"nest-32", "nest-64", "nest-128", "conv-32", "dcgan-64", "transgan-32"} <= set(names), names
for name in names:
    generator_from_config(generator_preset(name))
preset, path = dataset_preset("celeba")
assert preset and Path(path).resolve().is_relative_to(site), path
cfg = load_config({"data": {"name": "celeba"}, "device": "cpu"})
assert (cfg.resolution, cfg.batch) == (preset["resolution"], preset["cpu"]["batch"])  # the preset and its [cpu]
print("checked", len(names), "generator presets")
"""


def run(command: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run with only the installed copy importable: PYTHONPATH = the target folder, cwd outside the repository."""
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    env.pop("NESTGAN_CONFIGS", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the package sources (no build/ left in the checkout) and install it."""
    tmp = tmp_path_factory.mktemp("package")
    (tmp / "src").mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tmp / "src" / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tmp / "src" / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # --no-build-isolation: the setuptools of the test extra builds it, offline
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(tmp / "src")],
                   check=True, capture_output=True)
    wheels = list((tmp / "dist").glob("nestgan-*.whl"))
    assert len(wheels) == 1, wheels
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheels[0])],
                   check=True, capture_output=True)
    return tmp / "site"


def test_installed_wheel_imports_from_itself_and_finds_its_presets(site):
    result = run([sys.executable, "-c", CHECK_INSTALLED, str(site)], site, cwd=site.parent)
    assert result.returncode == 0, result.stderr
    assert "generator presets" in result.stdout


@pytest.mark.parametrize("script", CONSOLE_SCRIPTS)
def test_console_scripts_of_the_wheel_run(site, script):
    result = run([str(site / "bin" / script), "--help"], site, cwd=site.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: {script} ")
