"""nestgan: GANs whose generator is a Nested Transformer (NesT) turned upside down."""

__version__ = "0.1.0"
