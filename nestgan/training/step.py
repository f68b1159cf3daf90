"""One training step (StyleGAN2-ADA structure): the state it reads and changes, how that state is built, the D step
(real vs fake logits, lazy R1 on the reals), the G step and the EMA update of G. The benchmarks and the step profiler
time exactly this."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import record_function

from nestgan.augment import DiffAugment
from nestgan.config import TrainConfig
from nestgan.device import autocast
from nestgan.errors import ConfigError
from nestgan.loss import d_loss, g_loss, r1_penalty
from nestgan.networks import build_discriminator, generator_from_config
from nestgan.training import distributed
from nestgan.training.ema import ema_beta, update_ema

ATTENTION_KEY = "attn"  # NesT/TransGAN TransformerLayer.attn: qkv and proj, what --trainable attention trains
# Independent random streams, one per purpose and rank, all derived from cfg.seed.
LATENT_STREAM, AUGMENT_STREAM, TORCH_STREAM = 1, 2, 3


def stream_seed(seed: int, rank: int, stream: int) -> int:
    return (seed * 1_000_003 + rank * 1009 + stream) % (2**63)


@dataclass
class TrainState:
    """Everything a training step reads or changes; all of it goes into a checkpoint."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    scaler_G: torch.amp.GradScaler
    scaler_D: torch.amp.GradScaler
    augment: DiffAugment
    latents: torch.Generator  # z of the training steps, drawn on the CPU
    G_forward: nn.Module  # G, or torch.compile(G)
    D_forward: nn.Module
    precision: str  # fp32 | bf16 | fp16 (config "auto" resolved for this machine)
    images_seen: int = 0
    step: int = 0
    tick: int = 0
    train_seconds: float = 0.0  # wall-clock time in training steps, snapshots and metrics excluded


def build_networks(cfg: TrainConfig, device: torch.device | str = "cpu") -> tuple[nn.Module, nn.Module]:
    """G and D as the config describes them, initialised from torch's current random state; a config they cannot
    be built from is a ConfigError."""
    try:
        G = generator_from_config(cfg.generator).to(device)
        D = build_discriminator(cfg.d, cfg.resolution, **cfg.discriminator).to(device)
    except TypeError as e:
        raise ConfigError(f"cannot build the networks from the config: {e}") from None
    if G.resolution != cfg.resolution:
        raise ConfigError(f"the generator makes {G.resolution} px images but resolution = {cfg.resolution}")
    return G, D


def trainable_parameters(G: nn.Module, D: nn.Module, cfg: TrainConfig) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Freeze what cfg.trainable and cfg.freeze_d exclude (requires_grad False); return the parameters left to train
    in G and in D, the lists the optimisers are built over."""
    if cfg.trainable == "attention":
        names = [name for name, _ in G.named_parameters() if ATTENTION_KEY in name]
        if not names:
            raise ConfigError(
                f"--trainable attention: the {cfg.g} generator has no attention parameters; "
                "use a nest or transgan generator, or --trainable all"
            )
        for name, p in G.named_parameters():
            p.requires_grad_(ATTENTION_KEY in name)
    if cfg.freeze_d:
        blocks = D.input_blocks()
        if cfg.freeze_d > len(blocks):
            raise ConfigError(
                f"--freeze-d {cfg.freeze_d}: the {cfg.d} discriminator at {cfg.resolution} px has only {len(blocks)} "
                f"blocks; use --freeze-d 0 to {len(blocks)}"
            )
        for block in blocks[: cfg.freeze_d]:
            block.requires_grad_(False)
    return [p for p in G.parameters() if p.requires_grad], [p for p in D.parameters() if p.requires_grad]


def set_requires_grad(optimizer: torch.optim.Optimizer, flag: bool) -> None:
    """requires_grad of the parameters `optimizer` trains, and only those: frozen ones never get a gradient."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.requires_grad_(flag)


def describe_parameters(G: nn.Module, D: nn.Module, cfg: TrainConfig) -> str:
    """'G nest 6.52M params, 0.79M trainable, D dcgan 2.76M params, 2.76M trainable' (after freezing)."""

    def counts(module: nn.Module) -> str:
        total = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        return f"{total / 1e6:.2f}M params, {trainable / 1e6:.2f}M trainable"

    return f"G {cfg.g} {counts(G)}, D {cfg.d} {counts(D)}"


def build_state(cfg: TrainConfig, device: torch.device, rank: int = 0) -> TrainState:
    """Networks, optimisers and random streams; weights are initialised from cfg.seed, equal on every rank."""
    torch.manual_seed(cfg.seed)
    G, D = build_networks(cfg, device)
    params_G, params_D = trainable_parameters(G, D, cfg)  # the optimisers hold only these
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    torch.manual_seed(stream_seed(cfg.seed, rank, TORCH_STREAM))
    betas = (cfg.beta1, cfg.beta2)
    precision = cfg.resolved_precision()
    fp16 = precision == "fp16"
    return TrainState(
        G=G,
        D=D,
        G_ema=G_ema,
        opt_G=adam(params_G, cfg.lr_g, betas, device),
        opt_D=adam(params_D, cfg.lr_d, betas, device),
        scaler_G=torch.amp.GradScaler(device.type, enabled=fp16),
        scaler_D=torch.amp.GradScaler(device.type, enabled=fp16),
        augment=DiffAugment(cfg.augment, seed=stream_seed(cfg.seed, rank, AUGMENT_STREAM)),
        latents=torch.Generator().manual_seed(stream_seed(cfg.seed, rank, LATENT_STREAM)),
        G_forward=torch.compile(G) if cfg.compile else G,
        D_forward=torch.compile(D) if cfg.compile else D,
        precision=precision,
    )


def adam(params: list[nn.Parameter], lr: float, betas: tuple[float, float], device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters) where torch has it for the device."""
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=device.type in ("cpu", "cuda"))


def sample_z(s: TrainState, n: int, device: torch.device) -> torch.Tensor:
    return torch.randn(n, s.G.z_dim, generator=s.latents).to(device)


def training_step(s: TrainState, reals: torch.Tensor, cfg: TrainConfig, micro_batch: int) -> dict[str, torch.Tensor]:
    """One D step and one G step on this rank's share of the batch, reals (B_rank, 3, R, R) in [-1, 1].

    The share is processed in micro-batches of `micro_batch` whose gradients accumulate; ranks then
    average their gradients, so the update equals one step on the whole batch. With cfg.shared_fakes the G step
    reuses the D step's fakes and their graph (one G forward per step, as the DCGAN reference does) instead of
    drawing new ones. Each phase runs in a named profiler scope (nestgan.step_profile reads them). Returns
    detached scalars.
    """
    device = reals.device
    chunks = reals.split(micro_batch)
    accum = len(chunks)
    do_r1 = cfg.r1_gamma > 0 and s.step % cfg.r1_interval == 0
    stats: dict[str, torch.Tensor] = {}

    def add(name: str, value: torch.Tensor) -> None:
        stats[name] = stats.get(name, 0) + value.detach().float() / accum

    # D step: push real logits up and fake logits down; every 16th step also R1 on the (augmented) reals.
    set_requires_grad(s.opt_G, cfg.shared_fakes)  # the shared fakes keep their graph for the G step
    set_requires_grad(s.opt_D, True)
    s.opt_D.zero_grad(set_to_none=True)
    D_forward = s.D if do_r1 else s.D_forward  # double backward (R1) does not run through torch.compile
    fakes = []
    for real, z in zip(chunks, sample_z(s, reals.shape[0], device).split(micro_batch)):
        with record_function("G_forward"), torch.set_grad_enabled(cfg.shared_fakes), autocast(device, s.precision):
            fakes.append(s.G_forward(z))
        real = real.detach().requires_grad_(do_r1)
        with autocast(device, s.precision):
            with record_function("augment"):
                real_aug, fake_aug = s.augment(real), s.augment(fakes[-1].detach())
            with record_function("D_forward"):
                real_logits = D_forward(real_aug)
                fake_logits = D_forward(fake_aug)
        loss = d_loss(cfg.loss, real_logits, fake_logits)
        add("loss_d", loss)
        add("d_real", real_logits.float().mean())
        add("d_fake", fake_logits.float().mean())
        if do_r1:
            with record_function("R1"):
                penalty = r1_penalty(real_logits, real, s.scaler_D.get_scale() if s.scaler_D.is_enabled() else 1.0)
            add("r1", penalty)
            loss = loss + penalty * (cfg.r1_gamma / 2 * cfg.r1_interval)  # lazy: scaled by how rarely it runs
        with record_function("D_backward"):  # R1's second-order backward included on R1 steps
            s.scaler_D.scale(loss / accum).backward()
    with record_function("D_optimizer"):
        distributed.average_gradients(s.D)
        s.scaler_D.step(s.opt_D)
        s.scaler_D.update()

    # G step: make D call the (augmented) fakes real.
    set_requires_grad(s.opt_G, True)
    set_requires_grad(s.opt_D, False)
    s.opt_G.zero_grad(set_to_none=True)
    if not cfg.shared_fakes:
        fakes = []
        for z in sample_z(s, reals.shape[0], device).split(micro_batch):
            with record_function("G_forward"), autocast(device, s.precision):
                fakes.append(s.G_forward(z))
    for fake in fakes:
        with autocast(device, s.precision):
            with record_function("augment"):
                fake_aug = s.augment(fake)
            with record_function("D_forward"):
                fake_logits = s.D_forward(fake_aug)
        loss = g_loss(cfg.loss, fake_logits)
        add("loss_g", loss)
        with record_function("G_backward"):  # through D (input gradients only) into G
            s.scaler_G.scale(loss / accum).backward()
    with record_function("G_optimizer"):
        distributed.average_gradients(s.G)
        s.scaler_G.step(s.opt_G)
        s.scaler_G.update()
    set_requires_grad(s.opt_D, True)

    s.images_seen += cfg.batch
    s.step += 1
    with record_function("EMA"):
        update_ema(s.G_ema, s.G, ema_beta(cfg.batch, cfg.ema_kimg, s.images_seen, cfg.ema_rampup))
    return stats


@torch.no_grad()
def grid_images(G: nn.Module, z: torch.Tensor, batch: int, precision: str) -> torch.Tensor:
    """A run's sample grid: G's images for the grid's fixed latents z, `batch` at a time, under the training's
    precision, in [-1, 1] (nestgan.synthesize is the path for everything else)."""
    with autocast(z.device, precision):
        return torch.cat([G(chunk).float() for chunk in z.split(batch)]).clamp(-1, 1)
