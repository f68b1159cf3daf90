"""generate.py: per-seed PNGs and grid, output places, reproducibility, truncation, interpolation strips and GIFs,
user errors."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from nestgan.api import slerp, synthesize
from nestgan.commands import generate


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, make_tiny_checkpoint) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("generate") / "network-snapshot-000001.pt")


def run(*args: str):
    return CliRunner().invoke(generate.main, [*args, "--device", "cpu"])


def ok(*args: str):
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_n_images_and_grid(ckpt, tmp_path):
    """--n 5 writes seed0000..seed0004.png at the generator's 16 px into --outdir, which holds nothing else (a FID
    tool reading it counts the samples only), and a 3-wide grid beside it; the images differ; the last line says
    where both went."""
    samples = tmp_path / "samples"
    result = ok("--ckpt", str(ckpt), "--n", "5", "--outdir", str(samples))
    assert sorted(p.name for p in samples.iterdir()) == [f"seed{i:04d}.png" for i in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples", "samples-grid.png"]
    assert result.stdout.strip().splitlines()[-1] == f"wrote 5 images to {samples} and their grid to {samples}-grid.png"
    images = [pixels(samples / f"seed{i:04d}.png") for i in range(5)]
    assert all(im.shape == (16, 16, 3) for im in images)
    assert not np.array_equal(images[0], images[1])
    grid = pixels(tmp_path / "samples-grid.png")
    assert grid.shape == (32, 48, 3)  # ceil(sqrt(5)) = 3 columns, 2 rows
    assert np.array_equal(grid[16:, 16:32], images[4]) and not grid[16:, 32:].any()  # row-major, black filler


def test_same_seed_gives_the_same_image(ckpt, tmp_path):
    """A rerun writes identical files; a seed's image does not depend on which other seeds are generated."""
    ok("--ckpt", str(ckpt), "--n", "8", "--outdir", str(tmp_path / "a"))
    ok("--ckpt", str(ckpt), "--n", "8", "--outdir", str(tmp_path / "b"))
    for name in [f"seed{i:04d}.png" for i in range(8)]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a-grid.png").read_bytes() == (tmp_path / "b-grid.png").read_bytes()
    ok("--ckpt", str(ckpt), "--seeds", "3,7", "--outdir", str(tmp_path / "c"), "--no-grid")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["seed0003.png", "seed0007.png"]
    assert not (tmp_path / "c-grid.png").exists()
    for name in ("seed0003.png", "seed0007.png"):  # other batch, same z: equal up to one level of rounding
        assert np.abs(pixels(tmp_path / "a" / name) - pixels(tmp_path / "c" / name)).max() <= 1


def test_seed_ranges_and_truncation(ckpt, tmp_path):
    """--seeds mixes ranges and lists; --trunc-resample PSI draws z inside [-PSI, PSI] and changes the images;
    the old --trunc, which read like StyleGAN's psi, is gone."""
    assert generate.parse_seeds("0-3,10, 12-12") == [0, 1, 2, 3, 10, 12]
    z = torch.stack([generate.seed_latent(s, 512, 0.5) for s in range(4)])
    assert z.abs().max() <= 0.5 and z.std() > 0.2
    assert torch.equal(generate.seed_latent(9, 32, None), generate.seed_latent(9, 32, None))
    ok("--ckpt", str(ckpt), "--seeds", "0-1", "--outdir", str(tmp_path / "plain"))
    ok("--ckpt", str(ckpt), "--seeds", "0-1", "--trunc-resample", "0.3", "--outdir", str(tmp_path / "trunc"))
    assert not np.array_equal(pixels(tmp_path / "plain" / "seed0000.png"), pixels(tmp_path / "trunc" / "seed0000.png"))
    old = run("--ckpt", str(ckpt), "--trunc", "0.3", "--outdir", str(tmp_path / "old"))
    assert old.exit_code == 2 and "No such option '--trunc'" in old.stderr
    assert "not StyleGAN's psi" in ok("--help").stdout


def test_default_outdirs_of_two_runs_best_pt_differ(tmp_path, monkeypatch, make_tiny_checkpoint):
    """Without --outdir, samples go to out/<run dir>-<checkpoint name>: two runs' best.pt do not collide."""
    first = make_tiny_checkpoint(tmp_path / "runs" / "00000-shapes-nest-16" / "best.pt")
    second = make_tiny_checkpoint(tmp_path / "runs" / "00001-shapes-nest-16" / "best.pt")
    monkeypatch.chdir(tmp_path)
    ok("--ckpt", str(first), "--n", "2")
    ok("--ckpt", str(second), "--n", "2")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "00000-shapes-nest-16-best", "00000-shapes-nest-16-best-grid.png",
        "00001-shapes-nest-16-best", "00001-shapes-nest-16-best-grid.png"]


def test_interpolation_strip_and_gif(ckpt, tmp_path):
    """--interpolate 1,2 --steps 4 --gif: a 4-image strip from seed 1's image to seed 2's, and a 4-frame GIF."""
    ok("--ckpt", str(ckpt), "--interpolate", "1,2", "--steps", "4", "--gif", "--outdir", str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interp-1-2.gif", "interp-1-2.png"]
    strip = pixels(tmp_path / "interp-1-2.png")
    assert strip.shape == (16, 64, 3)
    with Image.open(tmp_path / "interp-1-2.gif") as gif:
        assert gif.n_frames == 4 and gif.size == (16, 16)
    ok("--ckpt", str(ckpt), "--seeds", "1,2", "--outdir", str(tmp_path / "ends"))
    assert np.abs(strip[:, :16] - pixels(tmp_path / "ends" / "seed0001.png")).max() <= 1
    assert np.abs(strip[:, 48:] - pixels(tmp_path / "ends" / "seed0002.png")).max() <= 1
    assert not np.array_equal(strip[:, 16:32], strip[:, :16])  # the middle steps are in between, not copies


def test_generating_shows_a_progress_bar_on_a_terminal_only(ckpt, tmp_path, monkeypatch):
    """On a terminal, generating N images shows a bar with the count, img/s and the time left; through CliRunner
    (stderr not a terminal, as in logs and pipes) nothing but the result line is printed."""
    from nestgan.checkpoint import read_generator

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    generator, _, _ = read_generator(ckpt, device=torch.device("cpu"))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    synthesize(generator, torch.randn(5, generator.z_dim), batch=2, progress=True)
    last = terminal.getvalue().split("\r")[-1]
    assert last.startswith("generating") and "5/5" in last and "img/s" in last and "<00:00" in last, last
    monkeypatch.undo()
    assert ok("--ckpt", str(ckpt), "--n", "3", "--outdir", str(tmp_path)).stderr == ""


def test_slerp_keeps_the_norm_of_equal_length_latents():
    """slerp between two latents of equal norm stays on that sphere and hits both ends."""
    a, b = torch.randn(64), torch.randn(64)
    b = b / b.norm() * a.norm()
    path = slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path.norm(dim=1), a.norm().expand(5))
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)  # exactly: a walk's ends are the seeds' images


def expect_user_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_bad_input_is_one_error_line_and_exit_2(ckpt, tmp_path):
    """Missing or corrupt checkpoints, bad --n/--seeds/--interpolate values: exit 2, one 'error:' line."""
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(ckpt.read_bytes()[:5000])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 this is not a checkpoint" * 20)
    out = str(tmp_path / "out")
    expect_user_error(run("--ckpt", str(tmp_path / "missing.pt"), "--outdir", out), "not found")
    expect_user_error(run("--ckpt", str(corrupt), "--outdir", out), "corrupt")
    expect_user_error(run("--ckpt", str(garbage), "--outdir", out), str(garbage))
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": 1, "args": argparse.Namespace(lr=1)}, pickled)  # code, not data: never unpickled
    line = expect_user_error(run("--ckpt", str(pickled), "--outdir", out), "refused", "argparse.Namespace")
    assert "weights_only" not in line and "\x1b" not in line  # the reason, not torch's advice to load unsafely
    expect_user_error(run("--ckpt", str(ckpt), "--n", "0", "--outdir", out), "--n")
    expect_user_error(run("--ckpt", str(ckpt), "--seeds", "a-b", "--outdir", out), "--seeds")
    expect_user_error(run("--ckpt", str(ckpt), "--seeds", "5-2", "--outdir", out), "5-2")
    expect_user_error(run("--ckpt", str(ckpt), "--interpolate", "1", "--outdir", out), "--interpolate")
    expect_user_error(run("--ckpt", str(ckpt), "--n", "2", "--gif", "--outdir", out), "--gif")
    assert not (tmp_path / "out").exists()  # nothing was written by any of them


def test_existing_files_are_kept_without_force(ckpt, tmp_path):
    """A second run into the same folder refuses (exit 2) and leaves the files untouched, and so does a grid left
    beside a folder that is otherwise empty; --force overwrites."""
    out = tmp_path / "out"
    ok("--ckpt", str(ckpt), "--n", "2", "--outdir", str(out))
    (out / "seed0001.png").write_bytes(b"keep me")

    def files() -> dict:
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}

    before = files()
    expect_user_error(run("--ckpt", str(ckpt), "--n", "2", "--outdir", str(out)), "--force", "seed0000.png")
    assert files() == before
    expect_user_error(run("--ckpt", str(ckpt), "--seeds", "5", "--outdir", str(out)), "--force", "out-grid.png")
    assert files() == before
    ok("--ckpt", str(ckpt), "--n", "2", "--outdir", str(out), "--force")
    assert pixels(out / "seed0001.png").shape == (16, 16, 3)


def test_unwritable_outdir_is_a_user_error(ckpt, tmp_path):
    """An --outdir that cannot be created (it lies under a regular file) is exit 2 with one line."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    expect_user_error(run("--ckpt", str(ckpt), "--n", "1", "--outdir", str(blocker / "sub")), "--outdir")
    assert blocker.read_text() == "x"
