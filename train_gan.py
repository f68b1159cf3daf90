"""Train a GAN: python train_gan.py [--data shapes] [--config configs/X.toml] [flags]; see --help.

The command lives in nestgan/commands/train.py (also installed as nestgan-train).
Multi-GPU / multi-node: torchrun --nproc_per_node=N train_gan.py ...
"""

from nestgan.commands.train import main

if __name__ == "__main__":
    main()
