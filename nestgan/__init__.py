"""nestgan: GANs whose generator is a Nested Transformer (NesT) turned upside down.

The Python API (nestgan.api) is importable from here; it is loaded on first use, so `import nestgan` stays
cheap (no torch) for tools that only read the version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["build_generator", "compute_metrics", "load_generator", "project", "sample", "seed_latent", "synthesize"]

if TYPE_CHECKING:
    from nestgan.api import build_generator, compute_metrics, load_generator, sample, seed_latent, synthesize
    from nestgan.projection import project


def __getattr__(name: str) -> Any:
    if name == "project":
        from nestgan.projection import project

        return project
    if name in __all__:
        from nestgan import api

        return getattr(api, name)
    raise AttributeError(f"module 'nestgan' has no attribute '{name}'")
