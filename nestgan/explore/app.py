"""The explorer's page (Gradio): a generator tab (seeds, grid size, truncation, G_ema or G, the model card), an
interpolation tab (two seeds, a slider along the walk, a GIF), a projection tab (upload a face, see the generator's
closest image, walk from it to any seed) and a run tab (the fixed-z grid of every snapshot on a slider and the FID
and loss curves, re-read while the run trains). A bad input is a message in the page; the server stays up.
"""

from __future__ import annotations

import functools
import itertools
import random
import tempfile
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from nestgan.commands.generate import MAX_SEED, parse_seeds
from nestgan.errors import DataError, NestganError
from nestgan.explore.model import (Generators, gif_bytes, interpolation, project_upload, seed_grid,
                                   walk_from_projection)
from nestgan.explore.run_view import read_run
from nestgan.images import as_pixels
from nestgan.projection import Projection

REFRESH_S = 5.0  # the run tab re-reads the run directory this often


def shown(handler: Callable[..., tuple], outputs: int) -> Callable[..., tuple]:
    """`handler` with one more output, a message: an error becomes a one-line message there and leaves the other
    `outputs` as they were (gr.update()). The page says what is wrong; the server goes on."""

    @functools.wraps(handler)
    def run(*args: Any) -> tuple:
        try:
            return (*handler(*args), "")
        except NestganError as e:
            message = str(e)
        except Exception as e:  # anything else too: one line, never a traceback in the page
            message = f"{type(e).__name__}: {e}"
        return (*[gr.update()] * outputs, f"**error:** {message}")

    return run


def build(generators: Generators, ckpt: str | None, run_dir: str | None) -> gr.Blocks:
    """The page, for `ckpt` (a training checkpoint or a safetensors export) and `run_dir`, both changeable in it."""
    gif_dir = Path(tempfile.mkdtemp(prefix="nestgan-explore-"))
    gif_numbers = itertools.count()

    def generator_for(path_text: str, use_ema: bool) -> nn.Module:
        if not path_text.strip():
            raise DataError("enter a training checkpoint or a .safetensors export in the box above")
        return generators.get(path_text.strip(), use_ema)

    with gr.Blocks(title="nestgan explorer") as page:
        gr.Markdown("# nestgan explorer")
        with gr.Row():
            path = gr.Textbox(ckpt or "", label="checkpoint or export (Enter to load)", scale=4, elem_id="ckpt")
            ema = gr.Checkbox(True, label="G_ema (off: the raw G)", elem_id="ema")
        with gr.Tab("Generator"):
            card = gr.Markdown(elem_id="card")
            with gr.Row():
                seeds = gr.Textbox("0-15", label="seeds (0-15, 1,5,9 or a mix; Enter to draw)", scale=3,
                                   elem_id="seeds")
                size = gr.Slider(1, 64, value=16, step=1, label="grid size (for random)")
                psi = gr.Slider(0.0, 3.0, value=0.0, step=0.05, label="--trunc-resample psi (0: off)")
                again = gr.Button("random", elem_id="random")
            grid = gr.Image(label="samples", type="numpy", format="png", interactive=False, elem_id="grid")
            grid_error = gr.Markdown(elem_id="grid-error")
        with gr.Tab("Interpolate"):
            with gr.Row():
                seed_a = gr.Number(0, label="seed A (Enter to walk)", precision=0, elem_id="seed-a")
                seed_b = gr.Number(1, label="seed B (Enter to walk)", precision=0, elem_id="seed-b")
                steps = gr.Slider(2, 32, value=8, step=1, label="steps")
            strip = gr.Image(label="walk from A to B", type="numpy", format="png", interactive=False, elem_id="strip")
            where = gr.Slider(0, 7, value=0, step=1, label="frame", elem_id="where")
            frame = gr.Image(label="frame", type="numpy", format="png", interactive=False, elem_id="frame")
            gif = gr.File(label="GIF", elem_id="gif")
            walk_error = gr.Markdown(elem_id="walk-error")
            frames = gr.State()
        with gr.Tab("Project"):
            with gr.Row():
                upload = gr.Image(label="a face to project (cropped to its centre square)", type="filepath",
                                  sources=["upload"], elem_id="upload")
                project_steps = gr.Slider(20, 1000, value=300, step=10, label="optimisation steps")
                project_button = gr.Button("project", elem_id="project")
            side_by_side = gr.Image(label="target | projection", type="numpy", format="png", interactive=False,
                                    elem_id="side-by-side")
            projection_note = gr.Markdown(elem_id="projection-note")
            with gr.Row():
                to_seed = gr.Number(0, label="walk to seed (Enter)", precision=0, elem_id="to-seed")
                walk_steps = gr.Slider(2, 32, value=8, step=1, label="steps")
            projection_walk = gr.Image(label="from the projection to the seed", type="numpy", format="png",
                                       interactive=False, elem_id="projection-walk")
            project_error = gr.Markdown(elem_id="project-error")
            projection = gr.State()
        with gr.Tab("Run"):
            run_path = gr.Textbox(run_dir or "", label="run directory (Enter to load)", elem_id="run-path")
            snapshot = gr.Slider(0, 1, value=0, step=1, label="snapshot", elem_id="snapshot")
            run_grid = gr.Image(label="fixed-z samples at this snapshot", type="numpy", format="png",
                                interactive=False, elem_id="run-grid")
            with gr.Row():
                metric_plot = gr.LinePlot(x="kimg", y="value", color="metric", label="metrics")
                loss_plot = gr.LinePlot(x="kimg", y="value", color="loss", label="losses (tick means)")
            run_error = gr.Markdown(elem_id="run-error")
            grids = gr.State([])
            timer = gr.Timer(REFRESH_S)

        def draw(path_text: str, use_ema: bool, seeds_text: str, psi_value: float) -> tuple:
            generator = generator_for(path_text, use_ema)
            image = seed_grid(generator, parse_seeds(seeds_text), psi_value or None)
            return image, generators.card(path_text.strip(), use_ema).markdown()

        def pick_random(count: float) -> str:
            start = random.randrange(0, MAX_SEED - int(count))
            return f"{start}-{start + int(count) - 1}"

        def walk(path_text: str, use_ema: bool, a: float, b: float, n: float, psi_value: float) -> tuple:
            pictures = interpolation(generator_for(path_text, use_ema), int(a), int(b), int(n), psi_value or None)
            gif_path = gif_dir / f"{next(gif_numbers)}" / f"interp-{int(a)}-{int(b)}.gif"
            gif_path.parent.mkdir()
            gif_path.write_bytes(gif_bytes(pictures))
            strip_image = np.concatenate(list(pictures), axis=1)
            return strip_image, pictures, pictures[0], gr.update(maximum=int(n) - 1, value=0), str(gif_path)

        def show_frame(pictures: np.ndarray | None, index: float) -> Any:
            return gr.update() if pictures is None else pictures[min(int(index), len(pictures) - 1)]

        def project_image(path_text: str, use_ema: bool, upload_path: str | None, n: float) -> tuple:
            if not upload_path:
                raise DataError("upload an image first")
            target, result = project_upload(generator_for(path_text, use_ema), upload_path, int(n))
            pair = np.concatenate(list(as_pixels(torch.stack([target, result.image]))), axis=1)  # (R, 2R, 3)
            note = (f"PSNR {result.psnr:.2f} dB, perceptual distance {result.perceptual:.4f} after {int(n)} steps "
                    f"(started from seed {result.start_seed})")
            return pair, note, result

        def walk_projection(path_text: str, use_ema: bool, result: Projection | None, seed: float, n: float) -> tuple:
            if result is None:
                raise DataError("project an image first")
            pictures = walk_from_projection(generator_for(path_text, use_ema), result, int(seed), int(n))
            return (np.concatenate(list(pictures), axis=1),)

        def load_run(run_text: str, index: float | None, known: list[str]) -> tuple:
            """The run as it is now; the slider follows the newest snapshot unless it was moved back."""
            if not run_text.strip():
                raise DataError("enter a run directory in the box above")
            view = read_run(run_text.strip())
            last = len(view.grids) - 1
            following = index is None or int(index) >= len(known) - 1
            at = last if following else min(int(index), last)
            metrics = pd.DataFrame([{"kimg": k, "value": v, "metric": name}
                                    for name, points in view.metrics.items() for k, v in points],
                                   columns=["kimg", "value", "metric"])
            losses = pd.DataFrame([{"kimg": k, "value": v, "loss": name}
                                   for name, points in view.losses.items() for k, v in points],
                                  columns=["kimg", "value", "loss"])
            paths = [str(p) for _, p in view.grids]
            return (gr.update(maximum=max(last, 1), value=at, label=f"snapshot at {view.grids[at][0]:g} kimg"),
                    _picture(paths[at]), metrics, losses, paths)

        def show_snapshot(paths: list[str], index: float) -> Any:
            return _picture(paths[min(int(index), len(paths) - 1)]) if paths else gr.update()

        drawn = shown(draw, 2)
        generator_inputs = [path, ema, seeds, psi]
        for trigger in (path.submit, ema.change, seeds.submit, psi.release, page.load):
            trigger(drawn, generator_inputs, [grid, card, grid_error])
        again.click(pick_random, [size], [seeds]).then(drawn, generator_inputs, [grid, card, grid_error])

        walked = shown(walk, 5)
        walk_inputs = [path, ema, seed_a, seed_b, steps, psi]
        for trigger in (seed_a.submit, seed_b.submit, steps.release):
            trigger(walked, walk_inputs, [strip, frames, frame, where, gif, walk_error])
        where.change(show_frame, [frames, where], [frame])

        projected = shown(project_image, 3)
        project_button.click(projected, [path, ema, upload, project_steps],
                             [side_by_side, projection_note, projection, project_error])
        walked_from = shown(walk_projection, 1)
        for trigger in (to_seed.submit, walk_steps.release, projection.change):
            trigger(walked_from, [path, ema, projection, to_seed, walk_steps], [projection_walk, project_error])

        loaded = shown(load_run, 5)
        run_outputs = [snapshot, run_grid, metric_plot, loss_plot, grids, run_error]
        run_path.submit(lambda text, known: loaded(text, None, known), [run_path, grids], run_outputs)
        timer.tick(lambda text, index, known: loaded(text, index, known) if known else (*[gr.update()] * 6,),
                   [run_path, snapshot, grids], run_outputs)
        snapshot.release(show_snapshot, [grids, snapshot], [run_grid])
        if run_dir:
            page.load(lambda text, known: loaded(text, None, known), [run_path, grids], run_outputs)
    return page


def _picture(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
