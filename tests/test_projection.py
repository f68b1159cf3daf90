"""Latent projection (nestgan.projection, nestgan-project): the perceptual distance, the search, its outputs and its
refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import nestgan
from nestgan.commands import project as project_cli
from nestgan.errors import ConfigError
from nestgan.images import quantize_images
from nestgan.projection import PerceptualDistance, level_shapes, offset_shapes, project, psnr, render

SHIPPED = Path(__file__).resolve().parent.parent / "pretrained" / "celeba64-nest-cpu.safetensors"


@pytest.fixture(scope="module")
def shipped():
    return nestgan.load_generator(SHIPPED)


@pytest.fixture(scope="module")
def unseen_face(shipped) -> torch.Tensor:
    """A face the generator can draw that no search start is (the starts are seeds 0..63)."""
    return nestgan.sample(shipped, [1000])[0]


def test_perceptual_distance_is_zero_for_the_same_image_and_grows_with_a_blur():
    distance = PerceptualDistance()
    face = nestgan.sample(nestgan.load_generator(SHIPPED), [3]).float() / 127.5 - 1
    blurred = [torch.nn.functional.avg_pool2d(face, k, 1, k // 2, count_include_pad=False) for k in (3, 5, 9)]
    values = [float(distance(face, face))] + [float(distance(b, face)) for b in blurred]
    assert values[0] == pytest.approx(0.0, abs=1e-6)
    assert values[1] < values[2] < values[3]  # more blur, farther
    assert psnr(torch.full((1, 3, 4, 4), 10, dtype=torch.uint8), torch.full((1, 3, 4, 4), 10, dtype=torch.uint8)) > 90


def test_projection_gets_close_to_a_face_the_generator_can_draw(shipped, unseen_face):
    """From the best of the seed starts, z then z with the default offsets (the first level's token map): the
    projection is far closer to the target than its start, by pixels and by the distance it optimises; render()
    redraws it."""
    result = project(shipped, unseen_face, steps=60, starts=16, frame_every=10)
    start = nestgan.sample(shipped, [result.start_seed])[0]
    assert result.psnr > float(psnr(start[None], unseen_face[None])) + 3  # under half the start's squared error
    assert result.psnr == pytest.approx(float(psnr(result.image[None], unseen_face[None])))
    assert result.log[-1]["perceptual"] < result.log[0]["perceptual"] / 2
    assert result.z.norm() == pytest.approx(math.sqrt(shipped.z_dim), rel=1e-4)  # on the Gaussian's sphere
    assert [o.shape for o in result.offsets] == [(1, 8, 8, 256)]  # "coarse": the first level's token map
    with torch.no_grad():
        redrawn = quantize_images(render(shipped, result.z[None], result.offsets))[0]
    assert torch.equal(redrawn, result.image)
    assert len(result.frames) == len(result.log) == 7 and result.frames[-1].shape == (64, 64, 3)


def test_each_choice_of_offsets_moves_what_it_names(shipped):
    cpu = torch.device("cpu")
    levels = level_shapes(shipped, shipped.z_dim, cpu)
    widths = [level.pos_embed.shape[-1] for level in shipped.levels]
    assert levels == [(1, 8 * 2**i, 8 * 2**i, width) for i, width in enumerate(widths)] and len(levels) == 3
    assert offset_shapes(shipped, "all", cpu) == levels and offset_shapes(shipped, "coarse", cpu) == levels[:1]
    assert offset_shapes(shipped, "channels", cpu) == [(1, 1, 1, width) for width in widths]
    assert offset_shapes(shipped, "none", cpu) == []
    conv = nestgan.build_generator("conv-32")  # no levels: z alone, whatever the choice
    assert offset_shapes(conv, "all", cpu) == []
    with pytest.raises(ConfigError, match="offsets must be one of none, channels, coarse, all"):
        project(shipped, torch.zeros(3, 64, 64, dtype=torch.uint8), offsets="everything")


def test_z_alone_leaves_no_offsets_and_the_generator_as_it_was(shipped, unseen_face):
    flags = [p.requires_grad for p in shipped.parameters()]
    result = project(shipped, unseen_face, steps=10, offsets="none", starts=4)
    assert result.offsets == [] and [p.requires_grad for p in shipped.parameters()] == flags
    assert not shipped.training
    with torch.no_grad():
        assert torch.equal(quantize_images(shipped(result.z[None]))[0], result.image)


def test_a_target_of_the_wrong_size_or_type_is_refused(shipped):
    with pytest.raises(ConfigError, match=r"uint8 image \(3, 64, 64\)"):
        project(shipped, torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ConfigError, match=r"uint8 image \(3, 64, 64\)"):
        project(shipped, torch.zeros(3, 64, 64))
    with pytest.raises(ConfigError, match="steps"):
        project(shipped, torch.zeros(3, 64, 64, dtype=torch.uint8), steps=0)


def run(*args: str):
    return CliRunner().invoke(project_cli.main, [*args, "--device", "cpu", "--threads", "1"])


def test_cli_writes_the_projection_its_latent_and_the_optimisation(shipped, unseen_face, tmp_path):
    target = tmp_path / "face.png"
    Image.fromarray(unseen_face.permute(1, 2, 0).numpy()).save(target)
    out = tmp_path / "proj"
    result = run("--ckpt", str(SHIPPED), "--target", str(target), "--steps", "20", "--outdir", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted([*project_cli.OUTPUTS, "levels.npz"])
    assert np.load(out / "latent.npy").shape == (shipped.z_dim,)
    assert [a.shape for a in np.load(out / "levels.npz").values()] == [(1, 8, 8, 256)]
    assert np.array_equal(np.asarray(Image.open(out / "target.png")), unseen_face.permute(1, 2, 0).numpy())
    side = np.asarray(Image.open(out / "side-by-side.png"))
    assert side.shape == (64, 128, 3) and np.array_equal(side[:, 64:], np.asarray(Image.open(out / "projection.png")))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log] == [0, 10, 19]
    assert Image.open(out / "progress.gif").n_frames == 3
    assert "PSNR" in result.output and "perceptual distance" in result.output

    before = (out / "latent.npy").read_bytes()
    again = run("--ckpt", str(SHIPPED), "--target", str(target), "--steps", "5", "--outdir", str(out), "--offsets", "none")
    assert again.exit_code == 2 and "already exist" in again.output and "--force" in again.output
    assert (out / "latent.npy").read_bytes() == before  # nothing overwritten


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"not an image at all", "is not an image PIL can read"),
])
def test_cli_refuses_a_bad_target_in_one_line(tmp_path, content, message):
    target = tmp_path / "face.png"
    if content is not None:
        target.write_bytes(content)
    result = run("--ckpt", str(SHIPPED), "--target", str(target), "--outdir", str(tmp_path / "out"))
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
