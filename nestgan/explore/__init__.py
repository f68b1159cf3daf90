"""The explorer: a local web page (Gradio, the optional `explore` extra) to look at a generator and watch a run.

    nestgan-explore --ckpt pretrained/celeba64-nest-cpu.safetensors [--run runs/00003-celeba-nest-64]

model.py draws (grids, interpolations, the model card), run_view.py reads a run directory, app.py is the page and
cli.py the command; only app.py imports Gradio, so `import nestgan` and training never need it.
"""

from nestgan.explore.cli import main

__all__ = ["main"]
