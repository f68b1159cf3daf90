"""nestgan-explore / python -m nestgan.explore: serve the explorer page on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import click

from nestgan.cli import user_errors_as_exit
from nestgan.device import DEVICES, resolve_device
from nestgan.errors import ConfigError, DataError
from nestgan.explore.model import Generators
from nestgan.threads import choose_threads

INSTALL = "pip install 'nestgan[explore]' (in a checkout: pip install -e \".[explore]\")"


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--ckpt", type=str, help="A training checkpoint or a .safetensors export to open.")
@click.option("--run", "run_dir", type=str, help="A run directory to watch (its grids and curves).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (0.0.0.0: every one).")
@click.option("--port", type=int, default=7860, show_default=True, help="Port to serve on.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--threads", type=int, help="CPU threads for torch ops [one per usable CPU that other processes leave free].")
@click.option("--browser/--no-browser", default=True, show_default=True, help="Open the page in a browser.")
@user_errors_as_exit
def main(ckpt: str | None, run_dir: str | None, host: str, port: int, device: str, threads: int | None,
         browser: bool) -> None:
    """Look at a generator and a run in the browser: seeds, truncation, interpolation, the run's grids and curves."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be 1 to 65535, got {port}")
    if run_dir and not Path(run_dir).is_dir():
        raise DataError(f"--run {run_dir}: no such directory; give a run directory of train_gan.py")
    choose_threads(threads)
    generators = Generators(resolve_device(device))
    if ckpt:
        generators.get(ckpt)  # a bad file is refused now, in one line, not in the page
    # Cluster nodes are often offline: no usage statistics unless the user asked for them.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError(f"the explorer needs Gradio: {INSTALL}") from None
    from nestgan.explore.app import build

    page = build(generators, ckpt, run_dir)
    try:
        page.queue().launch(server_name=host, server_port=port, inbrowser=browser, show_error=False)
    except OSError as e:  # the port is taken, or the address is not this machine's
        raise ConfigError(f"cannot serve on {host}:{port} ({e}); pick another --port or --host") from None


if __name__ == "__main__":
    main()
