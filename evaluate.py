"""Evaluate a checkpoint: python evaluate.py --ckpt PATH [--metrics fid50k_full,kid50k] [flags]; see --help.

The command lives in nestgan/commands/evaluate.py (also installed as nestgan-evaluate).
"""

from nestgan.commands.evaluate import main

if __name__ == "__main__":
    main()
