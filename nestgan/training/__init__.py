"""GAN training: the loop (loop.py) over one step (step.py), in a Session (session.py) with checkpoints and resume
(resume.py), guards (guards.py), reporting (report.py) and snapshots (snapshot.py); run directories (rundir.py),
multi-process helpers (distributed.py), EMA (ema.py)."""

from nestgan.training.loop import train
from nestgan.training.step import training_step

__all__ = ["train", "training_step"]
