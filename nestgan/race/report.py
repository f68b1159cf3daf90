"""race.md and race-fid.png from race.jsonl: every metric as a table of configs against minutes (the seeds' mean and
each seed), where each snapshot stood, the commands; the FID against training minutes."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from nestgan.atomic import atomic_write
from nestgan.race.plan import Entry, Race, number, read_jsonl


def latest_scores(path: Path) -> list[dict[str, Any]]:
    """The lines of race.jsonl, the last one of each (config, seed, minute, metric)."""
    by_key = {(s["config"], s["seed"], s["minutes"], s["metric"]): s for s in read_jsonl(path)}
    return list(by_key.values())


def fmt(metric: str, value: float) -> str:
    return f"{value:.4f}" if metric.startswith("kid") else f"{value:.1f}"


def config_order(entries: list[Entry], scores: list[dict[str, Any]]) -> list[str]:
    """The scored configs in the order they entered the race."""
    order = [e.name for e in entries]
    return sorted({s["config"] for s in scores}, key=lambda n: (order.index(n) if n in order else len(order), n))


def shown_command(command: str) -> str:
    """A recorded train command with `python` for the interpreter's path, as a reader would type it."""
    args = shlex.split(command)
    if "-m" in args:
        args[args.index("-m") - 1] = "python"
    return shlex.join(args)


def race_markdown(names: list[str], scores: list[dict[str, Any]], commands: list[str]) -> str:
    """A table per metric, where each snapshot stood, and the commands."""
    minutes = sorted({s["minutes"] for s in scores})
    machine = scores[-1]["machine"]
    threads = sorted({t for s in scores for t in s["threads"]})
    lines = ["# Quality race", "",
             "Each cell: the mean over the seeds (bold), then each seed's value, of the snapshot nearest that training "
             "minute, against every real image."]
    if any(s["load_warnings"] for s in scores):
        lines.append("A value marked * comes from a run that saw other load on the machine (race.jsonl says what).")
    if any(s["trial"] for s in scores):
        lines.append("**Trial figures**: runs trained side by side, each pinned to its own core (--pin); headline "
                     "figures train alone.")
    lines += ["", f"Machine: {machine['cpu']} (avx512_bf16 {'yes' if machine['avx512_bf16'] else 'no'}, avx2 "
                  f"{'yes' if machine['avx2'] else 'no'}), torch {machine['torch']}; training threads: "
                  f"{', '.join(map(str, threads))}."]
    for metric in dict.fromkeys(s["metric"] for s in scores):
        lines += ["", *metric_table(metric, names, minutes, scores)]
    lines += ["", *snapshot_table(names, minutes, scores)]
    train = list(dict.fromkeys(shown_command(c) for s in scores for c in s["train_commands"]))
    lines += ["", "## Commands", "", "```bash", *commands, *train, "```", ""]
    return "\n".join(lines)


def table_head(first: str, minutes: list[float], extra: tuple[str, ...] = ()) -> list[str]:
    columns = [first, *extra, *(f"{number(m)} min" for m in minutes)]
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def metric_table(metric: str, names: list[str], minutes: list[float], scores: list[dict[str, Any]]) -> list[str]:
    """Rows: configs; columns: minutes; a cell: the seeds' mean (bold), then each seed's value, marked * where its run
    saw other load."""
    lines = [f"## {metric}", "", *table_head("config", minutes)]
    for name in names:
        cells = []
        for minute in minutes:
            runs = sorted((s for s in scores if (s["config"], s["minutes"], s["metric"]) == (name, minute, metric)),
                          key=lambda s: s["seed"])
            if not runs:
                cells.append("")
                continue
            mean = sum(s["value"] for s in runs) / len(runs)
            seeds = ", ".join(f"s{s['seed']} {fmt(metric, s['value'])}" + ("*" if s["load_warnings"] else "")
                              for s in runs)
            cells.append(f"**{fmt(metric, mean)}** ({seeds})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def snapshot_table(names: list[str], minutes: list[float], scores: list[dict[str, Any]]) -> list[str]:
    """Each run's snapshot nearest each minute (its kimg and training minutes) and its img/s over all its training."""
    lines = ["## Snapshots", "", *table_head("run", minutes, ("img/s",))]
    runs = sorted({(s["config"], s["seed"]) for s in scores}, key=lambda run: (names.index(run[0]), run[1]))
    for name, seed in runs:
        at = {s["minutes"]: s for s in scores if (s["config"], s["seed"]) == (name, seed)}
        cells = [f"{at[m]['kimg']:g} kimg at {at[m]['train_s'] / 60:.2f} min" if m in at else "" for m in minutes]
        img_per_s = max(at.values(), key=lambda s: s["train_s"])["img_per_s"]
        lines.append(f"| {name}-s{seed} | {img_per_s:.1f} | " + " | ".join(cells) + " |")
    return lines


def plot_race(names: list[str], scores: list[dict[str, Any]], metric: str, out: Path) -> None:
    """`metric` against training minutes: a line through each config's seed means, each seed's snapshot a marker at
    its own training time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    shown = [s for s in scores if s["metric"] == metric]
    seeds = sorted({s["seed"] for s in shown})
    markers = "osD^v<>ph*"
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, name in enumerate(n for n in names if any(s["config"] == n for s in shown)):
        mine = [s for s in shown if s["config"] == name]
        minutes = sorted({s["minutes"] for s in mine})
        means = [sum(s["value"] for s in mine if s["minutes"] == m) / sum(s["minutes"] == m for s in mine)
                 for m in minutes]
        ax.plot(minutes, means, color=f"C{i}", label=name)
        for s in mine:
            ax.scatter(s["train_s"] / 60, s["value"], color=f"C{i}", marker=markers[seeds.index(s["seed"]) % 10])
    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="grey", linestyle="", marker=markers[i % 10], label=f"seed {seed}")
                for i, seed in enumerate(seeds)]
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} over training time; line: mean of the seeds")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    atomic_write(out, lambda f: fig.savefig(f, format="png", bbox_inches="tight"))
    plt.close(fig)


def write_report(race: Race, entries: list[Entry]) -> str | None:
    """race.md and race-fid.png from every line of race.jsonl (earlier invocations' too); returns why the plot was
    not drawn, if it was not."""
    scores = latest_scores(race.scores_path)
    if not scores:
        return "race.md: no scores yet"
    names = config_order(entries, scores)
    commands = json.loads((race.dir / "race.json").read_text())["commands"]
    text = race_markdown(names, scores, commands)
    atomic_write(race.dir / "race.md", lambda f: f.write(text.encode()))
    fid = next((s["metric"] for s in scores if s["metric"].startswith("fid")), None)
    if fid is None:
        return "race-fid.png: not drawn, no FID among the metrics"
    try:
        plot_race(names, scores, fid, race.dir / "race-fid.png")
    except ImportError:
        return 'race-fid.png: not drawn, matplotlib is not installed (pip install -e ".[plot]")'
    return None
