"""Where a training step's time goes: `python -m nestgan.step_profile --config FILE [--precision fp32,bf16]`.

Builds the networks and recipe of a training config exactly as train_gan.py resolves it, runs `--steps` real
training steps (a multiple of r1_interval, so lazy R1 is counted at its true share) on random images under
torch.profiler, and splits the wall time of a step into the phases that `training_step` names: G forward,
DiffAugment, D forward, D backward (with R1's double backward), R1, the optimisers, G backward (through D) and EMA.
What no phase covers (loss arithmetic, sampling z, python) is "other".
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
import torch

from nestgan.cli import user_errors_as_exit
from nestgan.config import TrainConfig, load_config
from nestgan.device import process_device, synchronize
from nestgan.training.step import build_state, training_step

PHASES = ("G_forward", "augment", "D_forward", "R1", "D_backward", "D_optimizer", "G_backward", "G_optimizer", "EMA")


def profile_steps(cfg: TrainConfig, steps: int, warmup: int) -> dict[str, Any]:
    """Milliseconds per step of each phase (inclusive wall time of its profiler scope) and images/s overall."""
    device = process_device(cfg.device)
    s = build_state(cfg, device)
    reals = torch.rand(cfg.batch, 3, cfg.resolution, cfg.resolution, device=device) * 2 - 1
    for _ in range(warmup):
        training_step(s, reals, cfg, cfg.batch)
    s.step = 0  # the profiled steps start with an R1 step, like every r1_interval-th step of training
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    synchronize(device)
    start = time.perf_counter()
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            training_step(s, reals, cfg, cfg.batch)
        synchronize(device)
    wall_ms = (time.perf_counter() - start) * 1e3 / steps
    # On CUDA the host scopes only time the launches; read the device columns of the profiler table there.
    totals = {e.key: e.cpu_time_total / 1e3 / steps for e in prof.key_averages() if e.key in PHASES}
    # R1 runs inside the D step: its forward-side graph in "R1", its second-order backward inside "D_backward".
    phases = {name: totals.get(name, 0.0) for name in PHASES}
    phases["other"] = max(wall_ms - sum(phases.values()), 0.0)
    return {"precision": s.precision, "batch": cfg.batch, "steps": steps, "step_ms": wall_ms,
            "images_per_s": cfg.batch / wall_ms * 1e3, "phases_ms": phases}


def markdown(label: str, results: list[dict[str, Any]]) -> str:
    head = "| phase | " + " | ".join(f"{r['precision']} ms/step | share" for r in results) + " |"
    lines = [f"**{label}**", "", head, "|---|" + "---|---|" * len(results)]
    for phase in (*PHASES, "other"):
        cells = " | ".join(f"{r['phases_ms'][phase]:.1f} | {r['phases_ms'][phase] / r['step_ms']:.0%}" for r in results)
        lines.append(f"| {phase} | {cells} |")
    lines.append("| **step** | " + " | ".join(f"**{r['step_ms']:.0f}** | {r['images_per_s']:.1f} img/s"
                                              for r in results) + " |")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=str, help="Training config (TOML), as for train_gan.py.")
@click.option("--data", type=str, help="Dataset whose preset applies (as train_gan.py --data) [shapes].")
@click.option("--g", type=str, help="Generator family, as train_gan.py --g.")
@click.option("--d", type=str, help="Discriminator, as train_gan.py --d.")
@click.option("--batch", type=int, help="Images per step [the config's].")
@click.option("--precision", default="fp32,bf16", show_default=True, help="Comma-separated precisions to profile.")
@click.option("--steps", type=int, help="Profiled steps [the config's r1_interval].")
@click.option("--warmup", type=int, default=2, show_default=True)
@click.option("--threads", type=int, default=0, help="torch CPU threads [torch's default].")
@click.option("--json", "json_path", type=str, help="Also write the results here.")
@user_errors_as_exit
def main(*, config_file: str | None, data: str | None, g: str | None, d: str | None, batch: int | None,
         precision: str, steps: int | None, warmup: int, threads: int, json_path: str | None) -> None:
    """Split one training step into its phases, per precision."""
    if threads:
        torch.set_num_threads(threads)
    flags: dict[str, Any] = {k: v for k, v in {"g": g, "d": d, "batch": batch}.items() if v is not None}
    if data:
        flags["data"] = {"name": data}
    results = []
    for p in [p.strip() for p in precision.split(",") if p.strip()]:
        cfg = load_config({**flags, "precision": p}, config_file)
        results.append(profile_steps(cfg, steps or cfg.r1_interval, warmup))
    label = (f"{config_file or (data or 'shapes') + ' preset'}: G {cfg.g} {cfg.generator.get('widths', '')}, "
             f"D {cfg.d}, batch {cfg.batch}, {cfg.resolution} px, {torch.get_num_threads()} thread(s)")
    click.echo(markdown(label, results))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"label": label, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
