"""GAN training: the loop (loop.py), run directories (rundir.py), multi-process helpers (distributed.py), EMA."""

from nestgan.training.loop import train, training_step

__all__ = ["train", "training_step"]
