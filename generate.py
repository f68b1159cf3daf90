"""Generate images from a checkpoint: python generate.py --ckpt PATH [--n 64 | --seeds 0-63] [flags]; see --help.

The command lives in nestgan/commands/generate.py (also installed as nestgan-generate).
"""

from nestgan.commands.generate import main

if __name__ == "__main__":
    main()
