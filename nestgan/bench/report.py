"""Benchmark reports: the markdown tables, the throughput plot and the output files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nestgan.bench.run import _log


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def rows_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| generator | px | batch | precision | params (M) | GFLOP/img | fwd img/s | fwd ms/img | GFLOP/s "
             "| % of matmul | train img/s | peak mem (MiB) | fwd +mem (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        growth = None if r["peak_memory_bytes"] is None else r["peak_memory_bytes"] - r["memory_before_forward_bytes"]
        lines.append(
            f"| {r['generator']} | {r['resolution']} | {r['batch']} | {r['precision']} | {r['params'] / 1e6:.2f} "
            f"| {r['flops_per_image'] / 1e9:.2f} | {_rate(r['forward_images_per_s'])} "
            f"| {1e3 / r['forward_images_per_s']:.1f} | {r['achieved_flops_per_s'] / 1e9:.1f} "
            f"| {100 * r['matmul_share']:.0f}% | {_rate(r['train_images_per_s'])} | {_mib(r['peak_memory_bytes'])} "
            f"| {_mib(growth)} |")
    return lines


def recipe_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| recipe | G | D | px | batch | precision | train img/s | vs first recipe |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        first = next(x for x in rows if x["precision"] == r["precision"])
        lines.append(f"| {r['recipe']} | {r['g']} | {r['d']} | {r['resolution']} | {r['batch']} | {r['precision']} "
                     f"| {_rate(r['train_images_per_s'])} | {r['train_images_per_s'] / first['train_images_per_s']:.2f}x |")
    return lines


def _find(rows: list[dict[str, Any]], generator: str, batch: int, precision: str) -> dict[str, Any] | None:
    key = (generator, batch, precision)
    return next((r for r in rows if (r["generator"], r["batch"], r["precision"]) == key), None)


def ratio_lines(rows: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> list[str]:
    """'A:B' -> images/s of A over images/s of B (= time per image of B over A), forward and training."""
    lines = ["| A | B | batch | precision | fwd img/s A / B | train img/s A / B |", "|---|---|---|---|---|---|"]
    for a, b in pairs:
        for ra in (r for r in rows if r["generator"] == a):
            rb = _find(rows, b, ra["batch"], ra["precision"])
            if rb is None:
                continue
            train = (f"{ra['train_images_per_s'] / rb['train_images_per_s']:.2f}x"
                     if ra["train_images_per_s"] and rb["train_images_per_s"] else "-")
            lines.append(f"| {a} | {b} | {ra['batch']} | {ra['precision']} "
                         f"| {ra['forward_images_per_s'] / rb['forward_images_per_s']:.2f}x | {train} |")
    return lines


def precision_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Reduced precision vs fp32 of the same generator and batch."""
    lines = ["| generator | batch | precision | fwd img/s | fp32 img/s | speed vs fp32 |", "|---|---|---|---|---|---|"]
    for r in rows:
        base = _find(rows, r["generator"], r["batch"], "fp32")
        if r["precision"] != "fp32" and base is not None:
            lines.append(f"| {r['generator']} | {r['batch']} | {r['precision']} | {_rate(r['forward_images_per_s'])} "
                         f"| {_rate(base['forward_images_per_s'])} "
                         f"| {r['forward_images_per_s'] / base['forward_images_per_s']:.2f}x |")
    return lines if len(lines) > 2 else []


def markdown_report(result: dict[str, Any], pairs: list[tuple[str, str]] = ()) -> str:
    m, rows = result["machine"], result["rows"]
    out = [f"Device: {m['device_name']}, torch {m['torch_version']}, {m['threads']} threads, {m['date']}"
           + (f", native bf16: {m['native_bf16']}" if "native_bf16" in m else "")
           + f"; 1-min load average {m['load_average_1min']:.1f} at start, "
             f"{m['load_average_1min_at_end']:.1f} at end", ""]
    out += ["Reference matmul (square, same dtype, timed in the same rounds as the models):", "",
            "| precision | batch group | size | GFLOP/s |", "|---|---|---|---|"]
    out += [f"| {x['precision']} | {x['batch_group']} | {x['size']} | {x['flops_per_s'] / 1e9:.1f} |"
            for x in result["matmul"]]
    out += ["", *rows_table(rows)]
    kinds = sorted({r["memory_kind"] for r in rows if r["memory_kind"]})
    out += [f"\nMemory: {kind}; fwd +mem = peak minus the memory before the forward." for kind in kinds]
    if pairs:
        out += ["", "Ratios (same batch, precision and rounds):", "", *ratio_lines(rows, pairs)]
    if precision_lines(rows):
        out += ["", "Reduced precision (autocast) vs fp32:", "", *precision_lines(rows)]
    for p in result["profiles"]:
        out += ["", f"Profile of one forward: {p['generator']}, batch {p['batch']}, {p['precision']} "
                    f"({p['total_ms']:.0f} ms of op self time)", "", "| category | ms | share |", "|---|---|---|"]
        out += [f"| {k} | {v['ms']:.1f} | {100 * v['share']:.1f}% |" for k, v in p["categories"].items()]
        out += ["", "| top op | calls | ms | share | category |", "|---|---|---|---|---|"]
        out += [f"| `{o['op']}` | {o['calls']} | {o['ms']:.1f} | {100 * o['share']:.1f}% | {o['category']} |"
                for o in p["top_ops"]]
    if result.get("recipes"):
        out += ["", "Training step of whole recipes (each its own G, D, loss and batch; timed in the same rounds):", "",
                *recipe_lines(result["recipes"])]
    if result.get("loader"):
        out += ["", "Data loading (BatchIterator alone, prepared cache, xflip):", "",
                "| data | px | batch | loader img/s |", "|---|---|---|---|"]
        out += [f"| {x['data']} | {x['resolution']} | {x['batch']} | {x['images_per_s']:.0f} |"
                for x in result["loader"]]
    return "\n".join(out) + "\n"


def plot_throughput(result: dict[str, Any], path: Path) -> bool:
    """images/s vs resolution, log y, one line per generator family and precision (best batch measured).

    Returns False (and writes nothing) when matplotlib, the optional `plot` extra, is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    best: dict[tuple[str, str], dict[int, float]] = {}
    for r in result["rows"]:
        line = best.setdefault((r["family"], r["precision"]), {})
        line[r["resolution"]] = max(line.get(r["resolution"], 0.0), r["forward_images_per_s"])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for (fam, precision), points in sorted(best.items()):
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="o", linestyle="-" if precision == "fp32" else "--",
                label=f"{fam} ({precision})")
    resolutions = sorted({r["resolution"] for r in result["rows"]})
    ax.set_xscale("log", base=2)
    ax.set_xticks(resolutions, [str(x) for x in resolutions])
    ax.set_yscale("log")
    ax.set_xlabel("resolution (px)")
    ax.set_ylabel("generator forward images/s (best batch)")
    m = result["machine"]
    ax.set_title(f"{m['device_name']}, torch threads: {m['threads']}, torch {m['torch_version']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_outputs(result: dict[str, Any], out_dir: Path, tag: str, pairs: list[tuple[str, str]] = (),
                  plot: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{tag}.json", out_dir / f"{tag}.md"]
    written[0].write_text(json.dumps(result, indent=1) + "\n")
    written[1].write_text(markdown_report(result, pairs))
    if plot and result["rows"]:
        if plot_throughput(result, out_dir / f"{tag}.png"):
            written.append(out_dir / f"{tag}.png")
        else:
            _log('no plot: matplotlib is missing (pip install -e ".[plot]")')
    return written


def _machine_line(m: dict[str, Any]) -> str:
    if m["device"] != "cuda":
        return f"Device: {m['device_name']}, {m['threads']} threads, torch {m['torch_version']}, {m['date']}"
    return (f"Card: {m['device_name']} ({m['gpu_memory_bytes'] / 2**30:.0f} GiB, {m['gpu_multiprocessors']} SMs, "
            f"capability {m['gpu_capability']}), driver {m['driver_version'] or 'unknown'}, CUDA {m['cuda_version']}, "
            f"cuDNN {m['cudnn_version']}, torch {m['torch_version']}, Python {m['python']}, {m['date']}")



def _percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def gpu_forward_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| generator | batch | precision | compiled | img/s | GFLOP/img | TFLOP/s | MFU | peak mem (MiB) "
             "| compile s | status |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        timed = "forward_images_per_s" in r
        achieved = r["achieved_flops_per_s"] / 1e12 if timed else None
        compile_s = f"{r['first_call_s']:.1f}" if timed and r["compiled"] else "-"
        lines.append(
            f"| {r['generator']} | {r['batch']} | {r['precision']} | {r['compile_mode'] if r['compiled'] else 'no'} "
            f"| {_rate(r.get('forward_images_per_s'))} | {r['flops_per_image'] / 1e9:.2f} | {_rate(achieved)} "
            f"| {_percent(r.get('mfu'))} | {_mib(r.get('peak_memory_bytes'))} | {compile_s} | {r['status']} |")
    return lines


def gpu_training_lines(run: dict[str, Any], data: str) -> list[str]:
    """The training run, its export and the commands that score it on the CPU side."""
    export, files = run["export"], run["export_files"]
    lines = ["| recipe | G | D | G params (M) | batch | precision | minutes | kimg | img/s | export (bf16) |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| {run['recipe']} | {run['g']} | {run['d']} | {run['g_params'] / 1e6:.2f} | {run['batch']} "
             f"| {run['precision']} | {run['minutes']:g} | {run['kimg']:.1f} | {_rate(run['train_images_per_s'])} "
             f"| {export}: {run['export_bytes'] / 1e6:.1f} MB, sha256 {run['export_sha256'][:16]}... |", "",
             "Score it on the CPU side, from the repository root, with the returned files in a writable folder OUT:",
             "", "```bash"]
    if files != [export]:
        lines.append(f"cat {' '.join(f'OUT/{f}' for f in files)} > OUT/{export}  # it came back in parts")
    lines += [f"python evaluate.py --ckpt OUT/{export} --metrics fid5k_full --data celeba "
              f"--data-dir ../shared/data/celeba --out OUT/metric-fid5k_full.jsonl", "```", "",
              f"(trained on the packed CelebA-64 images of {data}; log: {run['log']}, last sample grid: "
              f"{run['samples']})"]
    return lines


def gpu_check_markdown(result: dict[str, Any]) -> str:
    """The GPU check's report (nestgan.bench.gpu_check); parts not run yet, skipped or failed say so."""
    settings, rows = result["settings"], result.get("forward", [])
    out = ["# GPU check", "", _machine_line(result["machine"]), ""]
    if "mfu_reference" in result:
        ref = result["mfu_reference"]
        out += [f"MFU = achieved FLOP/s over {ref['flops_per_s'] / 1e12:.1f} TFLOP/s: the {ref['source']}; a "
                f"{ref['matmul_size']}^2 bf16 matmul ran at {ref['measured_bf16_matmul_flops_per_s'] / 1e12:.1f} "
                f"TFLOP/s here. FLOPs: forward only (torch.utils.flop_counter); fp32 runs TF32 matmuls on CUDA.", ""]
    parts = ", ".join(f"{name} {s:.0f} s" for name, s in result["parts_s"].items())
    out += [f"Time: {parts}" + (f"; total {result['total_s']:.0f} s" if "total_s" in result else "")
            + f" (budget {settings['budget_s']:.0f} s).", ""]
    if rows:
        out += ["## Generator forward", "", *gpu_forward_lines(rows), ""]
    a, b = settings["ratio"].split(":")
    if result.get("ratios"):
        out += [f"## {a} : {b}", "", "Images/s of A over B in the same rounds (the NesT paper claims 8x for nest-64 : "
                "transgan-64).", "", "| batch | precision | compiled | ratio |", "|---|---|---|---|"]
        out += [f"| {x['batch']} | {x['precision']} | {'yes' if x['compiled'] else 'no'} | {x['ratio']:.2f}x |"
                for x in result["ratios"]]
        out.append("")
    steps = result.get("steps")
    if isinstance(steps, list):
        out += ["## Training step", "", "The celeba preset's recipes, each a whole step (D, G, EMA) timed in the same "
                "rounds:", "", *recipe_lines(steps), ""]
    elif steps:
        out += ["## Training step", "", steps, ""]
    run = result.get("training")
    if isinstance(run, dict):
        out += ["## Training run", "", *gpu_training_lines(run, settings["data"]), ""]
    elif run:
        out += ["## Training run", "", run, ""]
    for name, error in result["part_errors"].items():
        out += [f"Part '{name}' failed: {error.strip().splitlines()[-1]}", ""]
    return "\n".join(out)
