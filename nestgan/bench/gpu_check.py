"""The GPU check: one command that measures a GPU within a time budget and writes <out>/gpu-check.json and .md.

Made for GPU windows of a few minutes on a machine that has torch but not this package's other dependencies (no
torch-fidelity: nothing on this path imports it) and takes only a few MB of files along:

    python -m nestgan.bench.gpu_check prepare --data-dir ../shared/data/celeba   # CPU side, once
    PYTHONPATH=. python -m nestgan.bench.gpu_check run --out "$OUT"               # on the GPU machine
    python evaluate.py --ckpt OUT/<export> --metrics fid5k_full --data celeba \\
        --data-dir ../shared/data/celeba --out OUT/metric-fid5k_full.jsonl       # CPU side, afterwards

`run` measures, in this order, each part skipped or shortened when the budget runs low:
- generator forward images/s, MFU and peak memory of every preset x batch x precision, eagerly;
- training-step images/s of the celeba preset's GPU recipe and its CPU recipe (the [cpu] table), on this device;
- a short training run of a recipe on the packed CelebA-64 images, its G_ema exported in bf16 (generate.py --export);
- the same forwards under torch.compile, bf16 and the largest batch first, each compile's time recorded; a compile
  that fails is recorded in its row.
`--quick` runs every part tiny on the CPU, so CI exercises the same code.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from PIL import Image

from nestgan.bench.cli import _items, _pairs, _positive_ints, resolve_generators
from nestgan.bench.machine import machine_info
from nestgan.bench.memory import cuda_peak_memory
from nestgan.bench.report import gpu_check_markdown
from nestgan.bench.run import _log, _median_rate, time_recipes
from nestgan.bench.timing import MATMUL, forward_call, matmul_call, time_interleaved
from nestgan.cli import user_errors_as_exit
from nestgan.config import TrainConfig, load_config
from nestgan.device import DEVICES, check_precision, resolve_device, resolve_precision, synchronize
from nestgan.errors import ConfigError, DataError
from nestgan.networks import generator_from_config
from nestgan.networks.summary import count_parameters, forward_flops

RESULT = "gpu-check"  # <out>/gpu-check.json and .md
DEFAULT_DATA = Path("gpu-check-data/celeba64.zip")  # gitignored; travels with the working tree when the run carries it
# bf16 dense tensor-core peaks by torch.cuda.get_device_name (NVIDIA's data sheets); other cards: a measured matmul.
BF16_DENSE_PEAK = {"NVIDIA H100 80GB HBM3": 989.4e12, "NVIDIA H100 PCIe": 756e12, "NVIDIA H200": 989.4e12}
PART_BYTES = 15_000_000  # a larger export comes back in parts: remote-run tools return at most 16 MB a file
COMPILE_GUESS_S = 60.0  # what a compile is assumed to cost until one has been timed
STEPS_GUESS_S = 30.0  # what timing the two recipes' training steps is assumed to cost
TRAIN_OVERHEAD_S = 45.0  # around the training minutes: data cache, networks, final snapshot, export
RECIPES = ("gpu", "cpu")  # the celeba preset without and with its [cpu] table
PRECISION_ORDER = ("bf16", "fp16", "fp32")  # compiled groups run in this order, the largest batch first


@dataclass(frozen=True)
class Settings:
    generators: str
    batches: str
    precisions: str
    ratio: str
    repeats: int
    warmup: int
    matmul_size: int
    step_batch: int | None  # None: each recipe's own batch
    train_minutes: float
    train_batch: int | None  # None: the recipe's own batch
    compile: bool


FULL = Settings(generators="nest-32,nest-64,nest-128,transgan-64,conv-64", batches="64,256",
                precisions="fp32,bf16,fp16", ratio="nest-64:transgan-64", repeats=5, warmup=1, matmul_size=8192,
                step_batch=64, train_minutes=3.0, train_batch=None, compile=True)
QUICK = Settings(generators="nest-32,transgan-32-matched", batches="2", precisions="fp32,bf16",
                 ratio="nest-32:transgan-32-matched", repeats=1, warmup=0, matmul_size=256, step_batch=2,
                 train_minutes=0.05, train_batch=2, compile=False)


@dataclass
class Budget:
    """Seconds left of the whole check, and what a compile costs (the longest one timed so far, else a guess)."""

    total_s: float
    start: float = field(default_factory=time.perf_counter)
    compile_seconds: list[float] = field(default_factory=list)

    def left(self) -> float:
        return self.total_s - (time.perf_counter() - self.start)

    def compile_estimate(self) -> float:
        return max(self.compile_seconds, default=COMPILE_GUESS_S)


# ------------------------------------------------------------------------------------------------ data (CPU side)


def pack_celeba(data_dir: str, path: Path, max_bytes: int, *, max_images: int | None = None,
                cache_dir: str | None = None) -> int:
    """The first CelebA-64 training images, exactly as `--data celeba` trains on them (the prepared cache), as
    lossless WebP files in a zip of at most max_bytes that the 'folder' dataset reads back pixel for pixel.
    Returns the number of images packed."""
    from nestgan.atomic import atomic_write
    from nestgan.data import load_dataset

    images = load_dataset("celeba", 64, data_dir=data_dir, cache_dir=cache_dir, max_images=max_images).images
    members, size = [], 22  # the zip's end record
    for i, chw in enumerate(images):
        name = f"celeba64-{i:06d}.webp"
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0))).save(buffer, format="WEBP", lossless=True,
                                                                           quality=80, method=4)
        entry = len(buffer.getvalue()) + 30 + 46 + 2 * len(name)  # local header, central record, the name twice
        if size + entry > max_bytes:
            break
        members.append((name, buffer.getvalue()))
        size += entry
    if not members:
        raise ConfigError(f"--max-mb {max_bytes / 1e6:g} holds not one image; give it more room")

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:  # WebP is compressed already
            for name, data in members:
                archive.writestr(name, data)

    atomic_write(path, write, size_bytes=size)
    return len(members)


# --------------------------------------------------------------------------------------------- forward passes


def _error(e: BaseException) -> str:
    return f"error: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def _first_call(call: Any, device: torch.device) -> float:
    """Seconds of one untimed call: a compiled forward's compile, an eager one's probe (and cuDNN autotuning)."""
    start = time.perf_counter()
    call()
    synchronize(device)
    return time.perf_counter() - start


def forward_group(nets: dict[str, torch.nn.Module], static: dict[str, dict[str, Any]], batch: int, precision: str,
                  device: torch.device, settings: Settings, budget: Budget, *, compile_mode: str | None,
                  reserve_s: float) -> list[dict[str, Any]]:
    """One row per generator at this batch and precision (compiled or not), the working ones timed in the same
    rounds as a square matmul of the same dtype; rows the budget leaves no time for say so."""
    calls, status, first = {}, {}, {}
    for name, g in nets.items():
        need = (budget.compile_estimate() if compile_mode else 0.0) + 5.0
        if budget.left() - reserve_s < need:
            status[name] = "skipped: budget"
            continue
        try:  # torch.compile fails at its first call, or at once for a bad mode
            call = forward_call(torch.compile(g, mode=compile_mode) if compile_mode else g, batch, precision, device)
            first[name] = _first_call(call, device)
        except Exception as e:  # a compile or an out-of-memory failure ends this row only
            status[name] = _error(e)
            _log(f"gpu-check: {name} batch {batch} {precision}{' compiled' if compile_mode else ''}: {status[name]}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        if compile_mode:
            budget.compile_seconds.append(first[name])
        calls[name] = call
    seconds, matmul_rate = {}, None
    if calls:
        matmul, matmul_flops = matmul_call(settings.matmul_size, precision, device)
        seconds = time_interleaved({**calls, MATMUL: matmul}, settings.repeats, settings.warmup, device)
        matmul_rate = _median_rate(matmul_flops, seconds[MATMUL])
    rows = []
    for name in nets:
        row: dict[str, Any] = {"generator": name, **static[name], "batch": batch, "precision": precision,
                               "compiled": compile_mode is not None, "compile_mode": compile_mode,
                               "status": status.get(name, "ok"), "matmul_flops_per_s": matmul_rate}
        if name in calls:
            images_per_s = _median_rate(batch, seconds[name])
            achieved = static[name]["flops_per_image"] * images_per_s
            before = peak = None
            if device.type == "cuda":
                before, peak = cuda_peak_memory(calls[name], device)
            row.update(forward_images_per_s=images_per_s, forward_seconds=seconds[name], achieved_flops_per_s=achieved,
                       matmul_share=achieved / matmul_rate, first_call_s=first[name],
                       memory_before_forward_bytes=before, peak_memory_bytes=peak)
        rows.append(row)
    return rows


def forward_rows(nets: dict[str, torch.nn.Module], static: dict[str, dict[str, Any]], groups: list[tuple[str, int]],
                 device: torch.device, settings: Settings, budget: Budget, *, compile_mode: str | None,
                 reserve_s: float) -> list[dict[str, Any]]:
    rows = []
    for precision, batch in groups:
        _log(f"gpu-check: forward {precision} batch {batch}{f' compiled ({compile_mode})' if compile_mode else ''}: "
             f"{budget.left():.0f} s left")
        rows += forward_group(nets, static, batch, precision, device, settings, budget, compile_mode=compile_mode,
                              reserve_s=reserve_s)
        if compile_mode:
            torch._dynamo.reset()  # frees the group's graphs; their caches would also fill dynamo's per-code limit
    return rows


def mfu_reference(device: torch.device, settings: Settings) -> dict[str, Any]:
    """What MFU divides by: the card's bf16 dense peak where known, else the bf16 matmul rate measured here."""
    matmul, flops = matmul_call(settings.matmul_size, "bf16", device)
    measured = _median_rate(flops, time_interleaved({MATMUL: matmul}, max(settings.repeats, 3), 1, device)[MATMUL])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = BF16_DENSE_PEAK.get(name)
    source = (f"bf16 dense peak of the {name} (data sheet)" if peak else
              f"measured bf16 matmul {settings.matmul_size}^2 (no data-sheet peak known for this device)")
    return {"flops_per_s": peak or measured, "source": source, "measured_bf16_matmul_flops_per_s": measured,
            "matmul_size": settings.matmul_size}


def add_mfu(rows: list[dict[str, Any]], peak: float) -> None:
    for row in rows:
        if "achieved_flops_per_s" in row:
            row["mfu"] = row["achieved_flops_per_s"] / peak


def ratios(rows: list[dict[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """Images/s of A over B at each batch, precision and compile setting where both were timed."""
    timed = {(r["generator"], r["batch"], r["precision"], r["compiled"]): r["forward_images_per_s"]
             for r in rows if "forward_images_per_s" in r}
    return [{"a": a, "b": b, "batch": batch, "precision": precision, "compiled": compiled,
             "ratio": rate / timed[(b, batch, precision, compiled)]}
            for (name, batch, precision, compiled), rate in timed.items()
            if name == a and (b, batch, precision, compiled) in timed]


# ---------------------------------------------------------------------------------------- training and export


def recipe_config(recipe: str, precision: str, device: torch.device, **flags: Any) -> TrainConfig:
    """The celeba preset's GPU or CPU recipe on this device, whatever the device is."""
    return load_config({"data": {"name": "celeba"}, "precision": precision, "device": device.type, **flags},
                       cpu_recipe=recipe == "cpu")


def recipe_steps(device: torch.device, precision: str, settings: Settings) -> list[dict[str, Any]]:
    batch = {"batch": settings.step_batch} if settings.step_batch else {}
    cfgs = {f"celeba {recipe} recipe": recipe_config(recipe, precision, device, **batch) for recipe in RECIPES}
    return time_recipes(cfgs, device, repeats=settings.repeats, warmup=max(settings.warmup, 1))


def split_file(path: Path, part_bytes: int) -> list[Path]:
    """path, or path.part0, path.part1, ... of at most part_bytes each (path removed): `cat path.part*` joins them."""
    size = path.stat().st_size
    if size <= part_bytes:
        return [path]
    parts = []
    with open(path, "rb") as f:
        for i in range(-(-size // part_bytes)):
            part = path.with_name(f"{path.name}.part{i}")
            part.write_bytes(f.read(part_bytes))
            parts.append(part)
    path.unlink()
    return parts


def train_and_export(data: Path, out: Path, work: Path, recipe: str, minutes: float, precision: str,
                     device: torch.device, batch: int | None) -> dict[str, Any]:
    """Train a recipe for `minutes` on the packed images, export its last G_ema in bf16 into `out` (in parts when
    large), and copy the run's log and last sample grid beside it."""
    from nestgan.checkpoint import read_generator
    from nestgan.hashing import sha256_of
    from nestgan.commands.generate import write_export
    from nestgan.training import train
    from nestgan.training.rundir import snapshots

    flags = {"minutes": minutes, "metrics": [], "outdir": str(work / "runs"), **({"batch": batch} if batch else {})}
    cfg = recipe_config(recipe, precision, device, **flags)
    # The recipe is celeba's; its images are the packed ones, which the folder dataset reads.
    cfg.data = dataclasses.replace(cfg.data, name="folder", data_dir=str(data), cache_dir=str(work / "cache"))
    cfg.validate()
    run_dir = train(cfg)
    checkpoint = snapshots(run_dir)[-1]
    export = out / f"celeba64-{recipe}-recipe-{minutes:g}min-bf16.safetensors"
    write_export(str(checkpoint), export, raw=False, dtype="bf16", force=True)
    generator, _, progress = read_generator(export)
    digest, size = sha256_of(export), export.stat().st_size
    files = [p.name for p in split_file(export, PART_BYTES)]
    shutil.copyfile(run_dir / "log.txt", out / "train-log.txt")
    stamp = checkpoint.stem.removeprefix("network-snapshot-")
    shutil.copyfile(run_dir / f"fakes{stamp}.png", out / "train-samples.png")
    return {"recipe": recipe, "g": cfg.g, "d": cfg.d, "g_params": count_parameters(generator), "batch": cfg.batch,
            "precision": precision, "minutes": minutes, "kimg": progress["images_seen"] / 1000,
            "train_seconds": progress["train_seconds"],
            "train_images_per_s": progress["images_seen"] / progress["train_seconds"],
            "export": export.name, "export_bytes": size, "export_sha256": digest, "export_files": files,
            "log": "train-log.txt", "samples": "train-samples.png"}


# ------------------------------------------------------------------------------------------------ the whole check


def write_result(result: dict[str, Any], out: Path) -> None:
    """<out>/gpu-check.json and .md as they stand (after every part, so a run cut short still leaves its parts)."""
    from nestgan.atomic import atomic_write

    rows = result.get("forward", [])
    if "mfu_reference" in result:
        add_mfu(rows, result["mfu_reference"]["flops_per_s"])
    result["ratios"] = ratios(rows, *result["settings"]["ratio"].split(":"))
    text = json.dumps(result, indent=1) + "\n"
    atomic_write(out / f"{RESULT}.json", lambda f: f.write(text.encode()))
    markdown = gpu_check_markdown(result)
    atomic_write(out / f"{RESULT}.md", lambda f: f.write(markdown.encode()))


class Parts:
    """Runs the parts in turn: times each, records a failure (traceback in the JSON) and goes on, writes the outputs."""

    def __init__(self, result: dict[str, Any], out: Path) -> None:
        self.result, self.out = result, out
        result["parts_s"], result["part_errors"] = {}, {}

    def run(self, name: str, part: Callable[[], None]) -> None:
        start = time.perf_counter()
        try:
            part()
        except Exception as e:  # a broken part must not cost the GPU window the parts after it
            self.result["part_errors"][name] = traceback.format_exc()
            _log(f"gpu-check: {name} failed: {_error(e)}")
        self.result["parts_s"][name] = time.perf_counter() - start
        write_result(self.result, self.out)


def run_check(out: Path, data: Path, device: torch.device, settings: Settings, budget: Budget, *, train_recipe: str,
              compile_mode: str, work: Path) -> dict[str, Any]:
    presets = resolve_generators(_items("generators", settings.generators))
    batches = _positive_ints("batch", settings.batches)
    precisions = _items("precision", settings.precisions)
    if device.type == "cuda":
        from nestgan.training.session import configure_cuda

        configure_cuda()
    result: dict[str, Any] = {"machine": machine_info(device), "settings": {
        **dataclasses.asdict(settings), "budget_s": budget.total_s, "train_recipe": train_recipe,
        "compile_mode": compile_mode, "data": str(data)}}
    parts = Parts(result, out)
    precision = resolve_precision("auto", device.type)  # of the steps and the training run: bf16 where native
    reserve_s = settings.train_minutes * 60 + TRAIN_OVERHEAD_S if settings.train_minutes else 0.0
    nets: dict[str, torch.nn.Module] = {}
    static: dict[str, dict[str, Any]] = {}

    def reference() -> None:
        result["mfu_reference"] = mfu_reference(device, settings)

    def eager() -> None:
        for name, preset in presets.items():
            nets[name] = generator_from_config(preset).to(device).eval()
            g = nets[name]
            static[name] = {"arch": preset["arch"], "resolution": g.resolution, "params": count_parameters(g),
                            "flops_per_image": forward_flops(g, device)}
        groups = [(p, b) for p in precisions for b in batches]
        result["forward"] = forward_rows(nets, static, groups, device, settings, budget, compile_mode=None,
                                         reserve_s=reserve_s + STEPS_GUESS_S)

    def steps() -> None:
        if budget.left() - reserve_s < STEPS_GUESS_S:
            result["steps"] = "skipped: budget"
            return
        result["steps"] = recipe_steps(device, precision, settings)

    def training() -> None:
        minutes = min(settings.train_minutes, (budget.left() - TRAIN_OVERHEAD_S) / 60)
        if not settings.train_minutes or minutes < settings.train_minutes / 4:
            result["training"] = "skipped: budget" if settings.train_minutes else "skipped: --train-minutes 0"
            return
        result["training"] = train_and_export(data, out, work, train_recipe, round(minutes, 2), precision, device,
                                              settings.train_batch)

    def compiled() -> None:
        groups = sorted(((p, b) for p in precisions for b in batches),
                        key=lambda g: (PRECISION_ORDER.index(g[0]), -g[1]))
        rows = forward_rows(nets, static, groups, device, settings, budget, compile_mode=compile_mode, reserve_s=10.0)
        result.setdefault("forward", []).extend(rows)

    parts.run("mfu reference", reference)
    parts.run("forward", eager)
    parts.run("training steps", steps)
    parts.run("training run", training)
    if settings.compile and nets:
        parts.run("forward compiled", compiled)
    result["total_s"] = time.perf_counter() - budget.start
    write_result(result, out)
    return result


def _order_pair_first(generators: str, ratio: str) -> str:
    """The ratio's two generators first, so a budget that runs out spares them."""
    names = _items("generators", generators)
    pair = [n for n in ratio.split(":") if n in names]
    return ",".join(pair + [n for n in names if n not in pair])


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """The GPU check: pack the data on the CPU side (prepare), measure on the GPU (run)."""


@main.command()
@click.option("--data-dir", required=True, help="CelebA (img_align_celeba/ and list_eval_partition.txt).")
@click.option("--out", default=str(DEFAULT_DATA), show_default=True,
              help="The zip to write (keep it in a gitignored folder).")
@click.option("--max-mb", type=float, default=32.0, show_default=True,
              help="Size limit of the zip in MB (what travels with the run shares 64 MiB with the working tree).")
@click.option("--max-images", type=int, help="Pack at most this many images.")
@click.option("--cache-dir", help="Prepared-dataset cache [$NESTGAN_CACHE or ~/.cache/nestgan].")
@user_errors_as_exit
def prepare(data_dir: str, out: str, max_mb: float, max_images: int | None, cache_dir: str | None) -> None:
    """Pack the first CelebA-64 training images, as --data celeba trains on them, into a zip the GPU run carries."""
    count = pack_celeba(data_dir, Path(out), int(max_mb * 1e6), max_images=max_images, cache_dir=cache_dir)
    click.echo(f"wrote {out}: {count} CelebA-64 images, {Path(out).stat().st_size / 1e6:.1f} MB")


@main.command()
@click.option("--out", required=True,
              help="Output folder: gpu-check.json/.md, the export, the training log and samples.")
@click.option("--data", default=str(DEFAULT_DATA), show_default=True,
              help="The zip `prepare` wrote (for the training run).")
@click.option("--quick", is_flag=True, help="Every part tiny, on the CPU (CI): a small batch, fp32/bf16, no compile.")
@click.option("--device", type=click.Choice(DEVICES), help="[cuda when torch sees one; with --quick, cpu]")
@click.option("--budget-min", type=float, default=7.0, show_default=True,
              help="Minutes for the whole check: rows and parts that would not fit are skipped (and say so).")
@click.option("--train-minutes", type=float, help="Minutes of the training run; 0: none [3; --quick: 0.05].")
@click.option("--train-recipe", type=click.Choice(RECIPES), default="gpu", show_default=True,
              help="The celeba preset's recipe the training run trains (cpu: with its [cpu] table).")
@click.option("--generators", help=f"Comma-separated generator presets [{FULL.generators}].")
@click.option("--batch", "batches", help=f"Comma-separated batch sizes of the forwards [{FULL.batches}].")
@click.option("--precision", "precisions", help=f"Comma-separated precisions of the forwards [{FULL.precisions}].")
@click.option("--ratio", help=f"A:B, images/s of A over B [{FULL.ratio}].")
@click.option("--compile/--no-compile", "compile_", default=None, help="Also time the forwards under torch.compile.")
@click.option("--compile-mode", default="default", show_default=True, help="torch.compile mode.")
@click.option("--repeats", type=int, help=f"Timed rounds per row; the median is reported [{FULL.repeats}].")
@click.option("--work-dir", help="Where the training run and its data cache go (deleted afterwards) [a temp folder].")
@user_errors_as_exit
def run(*, out: str, data: str, quick: bool, device: str | None, budget_min: float, train_minutes: float | None,
        train_recipe: str, generators: str | None, batches: str | None, precisions: str | None, ratio: str | None,
        compile_: bool | None, compile_mode: str, repeats: int | None, work_dir: str | None) -> None:
    """Forward and training-step speed, MFU and memory, a short training run and its bf16 export."""
    budget = Budget(budget_min * 60)
    given = {"generators": generators, "batches": batches, "precisions": precisions, "ratio": ratio,
             "repeats": repeats, "train_minutes": train_minutes, "compile": compile_}
    settings = dataclasses.replace(QUICK if quick else FULL, **{k: v for k, v in given.items() if v is not None})
    settings = dataclasses.replace(settings, generators=_order_pair_first(settings.generators, settings.ratio))
    torch_device = check_arguments(settings, device or ("cpu" if quick else "auto"), quick)
    data_path = Path(data)
    if settings.train_minutes and not data_path.is_file():
        raise DataError(f"training data {data_path} not found: make it on the CPU side with `python -m "
                        f"nestgan.bench.gpu_check prepare --data-dir ../shared/data/celeba --out {data_path}` and send "
                        f"it along, or pass --train-minutes 0")
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot write to --out {out_dir}: {e.strerror or e}") from None
    with tempfile.TemporaryDirectory(prefix="nestgan-gpu-check-", dir=work_dir, ignore_cleanup_errors=True) as work:
        result = run_check(out_dir, data_path, torch_device, settings, budget, train_recipe=train_recipe,
                           compile_mode=compile_mode, work=Path(work))
    click.echo(gpu_check_markdown(result))
    click.echo(f"wrote {out_dir}: {', '.join(sorted(p.name for p in out_dir.iterdir()))} in {result['total_s']:.0f} s")
    if result["part_errors"]:
        click.echo(f"error: part(s) failed: {', '.join(result['part_errors'])} (tracebacks in {RESULT}.json)", err=True)
        sys.exit(1)


def check_arguments(settings: Settings, device: str, quick: bool) -> torch.device:
    """The device, and every setting checked before any measuring starts."""
    torch_device = resolve_device(device)
    if torch_device.type == "cpu" and not quick and device != "cpu":
        raise ConfigError("torch sees no CUDA device, and the GPU check measures one; pass --quick (every part, tiny, "
                          "on the CPU) or --device cpu (the whole check on the CPU: slow)")
    generators = resolve_generators(_items("generators", settings.generators))
    _pairs((settings.ratio,), generators)
    _positive_ints("batch", settings.batches)
    for precision in _items("precision", settings.precisions):
        if precision not in PRECISION_ORDER:
            raise ConfigError(f"--precision takes fp32, bf16 and fp16, got '{precision}'")
        check_precision(precision, torch_device.type)
    if settings.repeats < 1 or settings.train_minutes < 0:
        raise ConfigError(f"--repeats must be >= 1 and --train-minutes >= 0, got {settings.repeats}, "
                          f"{settings.train_minutes}")
    return torch_device


if __name__ == "__main__":
    main()
