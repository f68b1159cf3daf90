"""Shipped presets: generators/<name>.toml (generator architectures) and <dataset>.toml (per-dataset defaults)."""
