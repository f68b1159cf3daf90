"""The click commands behind train_gan.py, generate.py and evaluate.py (and the nestgan-* console scripts)."""
