"""Metric-over-training-time curves of several runs: a PNG with one line per run and a markdown table.

    python -m nestgan.curves runs/00000-celeba-nest-32 runs/00001-celeba-conv-32 --label NesT --label conv \\
        --metric fid1k_full --metric kid1k_full --out docs/results/celeba32-fid-vs-time.png

Reads metric-<name>.jsonl of each run directory, as written by training (at each snapshot) or by evaluate.py
(for a kept snapshot); each record carries the kimg and the training seconds of its checkpoint. The first
--metric is plotted against training minutes; the table lists every evaluated point of every metric.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click

from nestgan.atomic import read_records
from nestgan.cli import user_errors_as_exit
from nestgan.errors import ConfigError
from nestgan.metrics.records import metric_value


@dataclass(frozen=True)
class Point:
    kimg: float
    train_s: float
    values: dict[str, float]  # metric name -> value (kid: its mean)


def run_label(run_dir: Path) -> str:
    """'nest-32'-style label from the run's config.json (generator family and resolution)."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return run_dir.name
    config = json.loads(config_path.read_text())
    return f"{config.get('g', '?')}-{config.get('resolution', '?')}"


def read_points(run_dir: Path, metrics: list[str]) -> list[Point]:
    """The evaluated points of one run, by kimg; a point holds whichever of `metrics` were computed there
    (the last record wins where a checkpoint was evaluated twice)."""
    by_kimg: dict[float, Point] = {}
    for name in metrics:
        for record in read_records(run_dir / f"metric-{name}.jsonl"):
            if record.get("kimg") is None or record.get("train_s") is None:
                continue  # evaluated before records carried the checkpoint's place in its run
            value = metric_value(record.get("results", {}), name)
            if value is None:
                continue
            key = round(float(record["kimg"]), 3)
            point = by_kimg.get(key) or Point(key, float(record["train_s"]), {})
            by_kimg[key] = Point(point.kimg, point.train_s, {**point.values, name: value})
    return [by_kimg[k] for k in sorted(by_kimg)]


def markdown_table(runs: dict[str, list[Point]], metrics: list[str]) -> str:
    rows = ["| run | kimg | training min | " + " | ".join(metrics) + " |", "|---|---|---|" + "---|" * len(metrics)]
    for label, points in runs.items():
        for p in points:
            cells = [f"{p.values[m]:.4f}" if m.startswith("kid") and m in p.values else
                     f"{p.values[m]:.1f}" if m in p.values else "" for m in metrics]
            rows.append(f"| {label} | {p.kimg:.1f} | {p.train_s / 60:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot_curves(runs: dict[str, list[Point]], metric: str, out: Path, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, points in runs.items():
        shown = [p for p in points if metric in p.values]
        ax.plot([p.train_s / 60 for p in shown], [p.values[metric] for p in shown], marker="o", label=label)
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} over training time")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # beside the axes: never over a point
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("run_dirs", nargs=-1, required=True)
@click.option("--metric", "metrics", multiple=True, required=True,
              help="Metric name as in metric-<name>.jsonl (repeatable); the first is plotted.")
@click.option("--out", type=str, help="PNG to write (the table is printed either way).")
@click.option("--label", "labels", multiple=True,
              help="Legend name of each run, in order (repeatable) [<g>-<resolution> from its config.json].")
@click.option("--title", type=str, help="Plot title.")
@user_errors_as_exit
def main(
    run_dirs: tuple[str, ...], metrics: tuple[str, ...], out: str | None, labels: tuple[str, ...], title: str | None
) -> None:
    """Plot a metric against training time for several runs and print every evaluated point as a table."""
    if labels and len(labels) != len(run_dirs):
        raise ConfigError(f"{len(labels)} --label for {len(run_dirs)} run directories; give one per run or none")
    runs: dict[str, list[Point]] = {}
    for i, run_dir in enumerate(map(Path, run_dirs)):
        if not run_dir.is_dir():
            raise ConfigError(f"run directory not found: {run_dir}")
        points = read_points(run_dir, list(metrics))
        if not points:
            raise ConfigError(f"{run_dir} has no records of {', '.join(metrics)}; evaluate its snapshots first "
                              f"(python evaluate.py --ckpt {run_dir}/network-snapshot-*.pt --metrics {metrics[0]})")
        label = labels[i] if labels else run_label(run_dir)
        runs[label if label not in runs else f"{label} ({run_dir.name})"] = points
    click.echo(markdown_table(runs, list(metrics)))
    if out:
        try:
            plot_curves(runs, metrics[0], Path(out), title)
        except ImportError:
            raise ConfigError('the plot needs matplotlib: pip install -e ".[plot]"') from None
        click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
