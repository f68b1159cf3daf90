"""Count where the training config travels (issue 34): run a tiny training in this process and record, in call order,
every function of the package that is handed the TrainConfig (or its DataConfig, or a session holding it as .cfg)
as an argument.

A "stop" is a run of such calls in one file: the config enters a module, is passed on inside it, then leaves. A
"return" is a stop in a file the config had already left. Each function counts once, at its first call, so that the
per-step calls do not multiply. Prints the stops (file and functions), then one summary line.

    python tools/config_stops.py            # the code on the import path; PYTHONPATH=<worktree> for another commit
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nestgan
from nestgan.commands.train import main as train_main

PACKAGE = Path(nestgan.__file__).parent


def _config_types() -> tuple[type, ...]:
    from nestgan.config import DataConfig, TrainConfig

    return TrainConfig, DataConfig


def _carries_config(value: object, config_types: tuple[type, ...]) -> bool:
    """The config itself, or an object that hands it on as its .cfg (a training session)."""
    try:
        held = vars(value).get("cfg")  # not getattr: some objects forward unknown attributes (the console tee)
    except TypeError:  # no __dict__
        held = None
    return isinstance(value, config_types) or isinstance(held, config_types)


def trace_training(outdir: str) -> list[tuple[str, str]]:
    """(file relative to the package, function) for each function handed the config, in first-call order."""
    config_types = _config_types()
    seen: dict[tuple[str, str], None] = {}

    def profile(frame, event, arg):  # noqa: ANN001 (sys.setprofile's signature)
        if event != "call":
            return
        path = Path(frame.f_code.co_filename)
        if PACKAGE not in path.parents:
            return
        code = frame.f_code
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        if any(_carries_config(frame.f_locals.get(name), config_types) for name in names):
            seen.setdefault((path.relative_to(PACKAGE).as_posix(), code.co_qualname), None)

    args = ["--data", "shapes", "--kimg", "0.064", "--batch", "16", "--threads", "1",
            "--metrics", "none", "--outdir", outdir]
    sys.setprofile(profile)
    try:
        train_main(args, standalone_mode=False)
    finally:
        sys.setprofile(None)
    return list(seen)


def stops(calls: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Consecutive calls in one file, merged: [(file, [function, ...]), ...]."""
    merged: list[tuple[str, list[str]]] = []
    for file, function in calls:
        if merged and merged[-1][0] == file:
            merged[-1][1].append(function)
        else:
            merged.append((file, [function]))
    return merged


def main() -> None:
    with tempfile.TemporaryDirectory() as outdir:
        calls = trace_training(outdir)
    path = stops(calls)
    returns = sum(1 for i, (file, _) in enumerate(path) if any(earlier == file for earlier, _ in path[:i]))
    for file, functions in path:
        print(f"{file}: {', '.join(functions)}")
    files = len({file for file, _ in path})
    print(f"{len(path)} stops in {files} files, {returns} of them returns to a module already left "
          f"({len(calls)} functions handed the config)")


if __name__ == "__main__":
    main()
