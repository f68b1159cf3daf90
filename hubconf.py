"""torch.hub entry points: torch.hub.load("<this repository>", "generator", source="local", ckpt=PATH)."""

dependencies = ["torch"]


def generator(ckpt: str, device: str = "cpu", ema: bool = True):
    """The generator in a nestgan training checkpoint or safetensors export, in eval mode on `device`
    (G_ema, or G with ema=False); see nestgan.load_generator."""
    from nestgan.api import load_generator

    return load_generator(ckpt, device=device, ema=ema)
