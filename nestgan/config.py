"""Training configuration.

Sources, lowest priority first: the defaults below < the dataset preset nestgan/configs/<data>.toml < a --config file
< command-line flags. Every source is checked for unknown keys and wrong types, and the merged result for
impossible combinations, before any work starts; every problem is one ConfigError naming the key and the fix.

A table named for a component ([generator], [discriminator]) applies while that component stays the same: a higher
source that names another g or d (or another resolution, for a table made for one size) drops the lower source's
table (see _component); a higher table of bare keys overrides those keys of it, and one naming a preset or an arch
replaces it (layered). The table that applies is then resolved onto its preset (the end of this module), with a
line saying which preset and why.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from nestgan.augment import POLICIES
from nestgan.data.sources import DATASETS
from nestgan.device import DEVICES, PRECISION_CHOICES, check_precision, resolve_device, resolve_precision
from nestgan.errors import ConfigError
from nestgan.loss import LOSSES
from nestgan.networks import DISCRIMINATORS, GENERATORS, discriminator_preset, generator_preset
from nestgan.networks.conv import check_resolution
from nestgan.presets import dataset_preset, preset_names, read_toml
from nestgan.schema import check_keys, table

# Tables named for a component, and the key that names the component's family.
COMPONENT_TABLES = {"generator": "g", "discriminator": "d"}
TRAINABLE = ("all", "attention")  # attention: only the generator's attention projections train (fine-tuning)


@dataclass
class DataConfig:
    name: str = "shapes"
    data_dir: str | None = None  # None: the dataset's default location (or none needed, for shapes)
    split: str = "train"
    xflip: bool = False  # random horizontal flips of the real images
    download: bool = False
    max_images: int | None = None
    attribute: str | None = None  # celeba only: keep images with this list_attr_celeba.txt attribute ("-Name": without)
    cache_dir: str | None = None  # prepared-dataset and FID-statistics cache; None: $NESTGAN_CACHE or ~/.cache/nestgan


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    resolution: int = 32
    # Networks. `generator` is given as {"preset": "nest-32", **overrides} (or empty: preset "<g>-<resolution>");
    # after resolution it holds the full preset dict with "arch", as stored in checkpoints.
    g: str = "nest"
    d: str = "resnet"
    generator: dict = field(default_factory=dict)
    # Extra keyword arguments of build_discriminator. For a d with presets (nest) given as {"preset": "nest-d-64",
    # **overrides} (or empty: preset "<d>-d-<resolution>"); after resolution it holds the preset's keys without "arch".
    discriminator: dict = field(default_factory=dict)
    # Schedule: all lengths in images (kimg = thousands of images) so they do not depend on the batch size.
    kimg: float = 25.0  # total training length, counted from scratch (a resumed run continues the count)
    minutes: float | None = None  # also stop after this much training time (snapshots and metrics excluded), over resumes
    batch: int = 32  # images per optimiser step, over all devices
    batch_per_device: int | None = None  # micro-batch per device; None: batch / world size (no accumulation)
    tick_kimg: float = 2.0  # one progress line and one stats.jsonl record per tick
    snap: int = 10  # snapshot (samples, checkpoint, metrics) every `snap` ticks and at the end
    # Also a snapshot when the training time passes each of these minutes (kept past keep_snapshots): a comparison at
    # equal training time needs a snapshot at each of its minutes, whatever the tick schedule (nestgan.race).
    snap_minutes: list[float] = field(default_factory=list)
    keep_snapshots: int = 3  # network-snapshot-*.pt kept besides best.pt
    seed: int = 0
    # Objective
    loss: str = "nonsaturating"
    r1_gamma: float = 0.1
    r1_interval: int = 16  # lazy regularisation: R1 every this many D steps, scaled by the interval
    augment: str = "color,translation,cutout"  # DiffAugment policy; "" turns it off
    shared_fakes: bool = False  # the G step reuses the D step's fakes: one G forward per step instead of two
    # Optimisers and EMA
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.99
    ema_kimg: float = 1.0  # half-life of the generator EMA in kimg; 0: no EMA (G_ema is a copy of G)
    ema_rampup: float | None = 0.05  # half-life at most this fraction of the images seen so far; None: no ramp-up
    # Non-finite losses or weights: roll back to the last good checkpoint with the learning rates scaled by
    # nan_lr_factor (once more per try); stop with an error after nan_rollbacks tries without a new snapshot.
    nan_rollbacks: int = 3
    nan_lr_factor: float = 0.5
    # Evaluation
    metrics: list[str] = field(default_factory=list)  # e.g. ["fid10k", "kid10k"], computed at every snapshot
    metrics_batch: int = 64
    # Execution
    precision: str = "auto"  # auto: bf16 on CUDA and on CPUs with native bf16 (emulated bf16 is far slower), else fp32
    device: str = "auto"
    compile: bool = False
    threads: int = 0  # CPU threads for torch ops; 0: one per usable CPU left free by other processes (nestgan.threads)
    outdir: str = "runs"
    resume: str | None = None  # "latest", a checkpoint path, or None
    # Fine-tuning (nestgan/training/finetune.py): a new run from a checkpoint's weights, optionally partly frozen.
    finetune_from: str | None = None  # a training snapshot or a .safetensors generator export
    trainable: str = "all"  # all | attention (only the generator's attention projections)
    freeze_d: int = 0  # FreezeD: the discriminator's first N blocks stay frozen
    dist_timeout_s: float = 1800.0  # collectives (and process-group start) give up after this long
    # Set by load_config, not by a config source: the [cpu] tables that replaced GPU-sized keys, as
    # "<file> [cpu]: key, key", recorded in config.json so that a run says which recipe it trained with.
    cpu_tables: list[str] = field(default_factory=list, init=False)
    # Set while resolving, not by a config source: each table this config was built from, lowest priority first,
    # with why it applied and what a [cpu] table changed (--dry-run prints them; config.json keeps them).
    sources: list[str] = field(default_factory=list, init=False)

    @classmethod
    def from_sources(
        cls, preset: dict[str, Any], file: dict[str, Any], flags: dict[str, Any], world_size: int = 1
    ) -> "TrainConfig":
        """Merge the layers (preset < file < flags), check them, and resolve the component presets."""
        for source, layer in (("dataset preset", preset), ("config file", file), ("flags", flags)):
            check_keys(cls, layer, source)
        merged = layered([preset, file, flags])
        for derived in (f.name for f in dataclasses.fields(cls) if not f.init):
            merged.pop(derived, None)  # recomputed, not taken from a source (a copied config may carry it)
        data = DataConfig(**merged.pop("data", {}))
        cfg = cls(data=data, **merged)
        cfg.sources = [generator_source(cfg.g, cfg.resolution, cfg.generator)]
        cfg.generator = resolve_generator(cfg.g, cfg.resolution, cfg.generator)
        d_name = discriminator_preset_name(cfg.d, cfg.resolution, cfg.discriminator)
        if d_name is not None:  # a d with presets (nest): its table, kept or dropped above, builds on one
            cfg.sources.append(discriminator_source(cfg.d, cfg.resolution, cfg.discriminator))
            cfg.discriminator = resolve_discriminator(cfg.d, d_name, cfg.discriminator)
        cfg.validate(world_size)
        return cfg

    def validate(self, world_size: int = 1) -> None:
        """Impossible values and combinations -> ConfigError (types were checked while merging)."""
        _one_of("data.name", self.data.name, DATASETS)
        _one_of("g", self.g, GENERATORS)
        _one_of("d", self.d, DISCRIMINATORS)
        _one_of("loss", self.loss, LOSSES)
        _one_of("precision", self.precision, PRECISION_CHOICES)
        _one_of("device", self.device, DEVICES)
        _one_of("trainable", self.trainable, TRAINABLE)
        check_resolution(self.resolution)
        if self.generator.get("arch") != self.g:
            raise ConfigError(
                f"the [generator] table builds a '{self.generator.get('arch')}' generator but g = '{self.g}'; "
                f"make them agree (or drop the table to use preset '{self.g}-{self.resolution}')"
            )
        g_res = self.generator.get("resolution")
        if g_res is not None and g_res != self.resolution:
            raise ConfigError(
                f"generator preset makes {g_res} px images but resolution = {self.resolution}; "
                f"use preset '{self.g}-{self.resolution}' or --resolution {g_res}"
            )
        for key in ("kimg", "tick_kimg", "lr_g", "lr_d", "dist_timeout_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("batch", "snap", "keep_snapshots", "r1_interval", "metrics_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.nan_rollbacks < 0 or not 0 < self.nan_lr_factor <= 1:
            raise ConfigError(
                f"nan_rollbacks must be >= 0 and nan_lr_factor in (0, 1], got {self.nan_rollbacks}, {self.nan_lr_factor}"
            )
        if self.ema_kimg < 0:
            raise ConfigError(f"ema_kimg must be >= 0 (0: no EMA, G_ema follows G), got {self.ema_kimg}")
        if self.r1_gamma < 0:
            raise ConfigError(f"r1_gamma must be >= 0, got {self.r1_gamma}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(f"Adam betas must lie in [0, 1), got beta1={self.beta1}, beta2={self.beta2}")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError(f"minutes must be > 0 (or absent for no time limit), got {self.minutes}")
        if any(m <= 0 for m in self.snap_minutes):
            raise ConfigError(f"snap_minutes must all be > 0, got {_show(self.snap_minutes)}")
        if self.ema_rampup is not None and self.ema_rampup <= 0:
            raise ConfigError(f"ema_rampup must be > 0 (or absent for no ramp-up), got {self.ema_rampup}")
        per_device = self.micro_batch(world_size)
        if per_device < 1 or self.batch % (per_device * world_size):
            raise ConfigError(
                f"batch {self.batch} is not divisible by batch_per_device {per_device} x {world_size} device(s); "
                f"choose a batch that is a multiple of {per_device * world_size}"
            )
        ops = [op for op in self.augment.split(",") if op]
        unknown = [op for op in ops if op not in POLICIES]
        if unknown:
            raise ConfigError(f"unknown augment op(s) {unknown} in '{self.augment}' (known: {', '.join(POLICIES)})")
        from nestgan.metrics import parse_metric_name

        for name in self.metrics:
            parse_metric_name(name)
        check_precision(self.precision, self.resolved_device())  # device cuda without CUDA is a ConfigError here
        if self.data.name == "folder" and not self.data.data_dir:
            raise ConfigError("data 'folder' needs --data-dir PATH (a folder of images)")
        if self.data.max_images is not None and self.data.max_images < 1:
            raise ConfigError(f"data.max_images must be >= 1, got {self.data.max_images}")
        if self.data.attribute is not None and self.data.name != "celeba":
            raise ConfigError(f"data.attribute picks CelebA images by attribute; data '{self.data.name}' has none: drop it")
        if self.data.attribute is not None and not self.data.attribute.removeprefix("-"):
            raise ConfigError("data.attribute must name a CelebA attribute, e.g. Eyeglasses (or -Eyeglasses: without)")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")
        self._validate_finetune()

    def _validate_finetune(self) -> None:
        if self.finetune_from and self.resume:
            raise ConfigError(
                "--finetune-from starts a new run and --resume continues one; drop --finetune-from to continue a "
                "fine-tune run (with its --trainable and --freeze-d), or --resume to start another"
            )
        if self.freeze_d < 0:
            raise ConfigError(f"freeze_d must be >= 0 (0: no discriminator block frozen), got {self.freeze_d}")
        if (self.trainable != "all" or self.freeze_d) and not (self.finetune_from or self.resume):
            raise ConfigError(
                f"--trainable {self.trainable} / --freeze-d {self.freeze_d} freeze pretrained weights; "
                "add --finetune-from CKPT (or --trainable all --freeze-d 0 to train from scratch)"
            )

    def micro_batch(self, world_size: int) -> int:
        """Images per device per forward pass."""
        return self.batch_per_device or self.batch // world_size

    def resolved_precision(self) -> str:
        """precision with auto resolved for this machine (nestgan.device.resolve_precision)."""
        return resolve_precision(self.precision, self.resolved_device())

    def resolved_device(self) -> str:
        """'cpu' or 'cuda' (nestgan.device.resolve_device)."""
        return resolve_device(self.device).type

    def to_dict(self) -> dict[str, Any]:
        """json-able copy (stored as config.json and inside checkpoints); data also names its resolution."""
        out = dataclasses.asdict(self)
        out["data"]["resolution"] = self.resolution
        return out


def layered(layers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Config keys of `layers`, lowest priority first (the dataset preset, a --config file, flags; or a file's keys and
    its [cpu] table), merged by one rule. [data] merges key by key. A component table ([generator], [discriminator])
    applies while its component stays what it was made for (_component): a higher layer naming another g or d drops
    it, and another resolution drops a table made for one size. Of the tables that apply, one naming a preset or a
    whole arch replaces those below it, and one of bare keys overrides only those keys: `[generator] mlp_ratio = 4.0`
    in a --config file keeps the rest of the preset's [cpu.generator], and still applies to the stock preset when a
    --resolution flag drops that table."""
    merged: dict[str, Any] = {}
    tables: dict[str, list[tuple[tuple[Any, Any], dict[str, Any]]]] = {key: [] for key in COMPONENT_TABLES}
    for layer in layers:
        values = {**merged, **layer}
        for table_key, family_key in COMPONENT_TABLES.items():
            kept = [(made_for, t) for made_for, t in tables[table_key]
                    if _component(values, family_key, t) == made_for]
            if isinstance(layer.get(table_key), dict):  # anything else is check_keys' to refuse
                table = layer[table_key]
                if _made_for_one_size(table):  # a whole table: those below no longer apply
                    kept = []
                kept.append((_component(values, family_key, table), table))
            tables[table_key] = kept
        for key, value in layer.items():
            if key == "data" and isinstance(value, dict) and isinstance(merged.get("data", {}), dict):
                merged["data"] = {**merged.get("data", {}), **value}
            elif key not in COMPONENT_TABLES or not isinstance(value, dict):
                merged[key] = value
    for table_key, kept in tables.items():
        if kept:
            merged[table_key] = {k: v for _, table in kept for k, v in table.items()}
    return merged


def _made_for_one_size(table: dict[str, Any]) -> bool:
    """A component table that names a preset or a whole arch, not just overrides of "<family>-<resolution>"."""
    return "arch" in table or "preset" in table


def _component(values: dict[str, Any], family_key: str, table: dict[str, Any]) -> tuple[Any, Any]:
    """What a component table was made for: the family (g or d) and, when the table is made for one size, the
    resolution. The layering rule: a table applies while this stays the same, for every component alike."""
    resolution = values.get("resolution", TrainConfig.resolution) if _made_for_one_size(table) else None
    return values.get(family_key, getattr(TrainConfig, family_key)), resolution


def load_config(flags: dict[str, Any], config_file: str | os.PathLike | None = None, world_size: int = 1,
                cpu_recipe: bool | None = None) -> TrainConfig:
    """Resolve the training config from flags (nested like TrainConfig), an optional TOML file and the preset
    nestgan/configs/<data>.toml of the dataset they name (default shapes). cpu_recipe: None applies the [cpu] tables
    on a CPU only; True or False applies them or not on any device (to time both recipes on one machine)."""
    file = read_toml(config_file) if config_file else {}
    name = flags.get("data", {}).get("name") or table(file, "data", "config file").get("name") or "shapes"
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    preset, preset_path = dataset_preset(name)
    device = flags.get("device") or file.get("device") or preset.get("device") or "auto"
    on_cpu = resolve_device(device).type == "cpu"
    why_device = f"device is {device}" + ("" if device != "auto" else
                                          f" and torch sees {'no' if on_cpu else 'a'} CUDA device")
    apply_cpu = on_cpu if cpu_recipe is None else cpu_recipe
    if cpu_recipe is not None:
        why_device = f"load_config was asked for cpu_recipe={cpu_recipe}"
    applied = []
    sources = []
    layers = []
    below: dict[str, Any] = {}  # the values a [cpu] table replaces
    set_by_cpu: set[str] = set()
    for layer, source, what, why in (
        (preset, preset_path, f"{name} preset", f"data is {name} ({Path(preset_path).as_posix()})"),
        (file, config_file, "config file", f"--config {config_file}"),  # a copy of a preset works as a --config file
    ):
        if layer:
            sources.append(f"{what} applied: {why}")
        cpu_keys = table(layer, "cpu", str(source))
        layer = {k: v for k, v in layer.items() if k != "cpu"}
        below.update(layer)
        if apply_cpu and cpu_keys:  # the [cpu] table replaces GPU-sized keys: the recipe and a FID that fits a CPU
            changes = [_describe_change(key, below, value) for key, value in cpu_keys.items()]
            sources.append(f"[cpu] of {what} (the CPU recipe) applied: {why_device}; "
                           f"{', '.join(filter(None, changes)) or 'no change'}")
            layer = layered([layer, cpu_keys])
            below.update(cpu_keys)
            set_by_cpu.update(cpu_keys)
            applied.append(f"{Path(source).as_posix()} [cpu]: {', '.join(cpu_keys)}")
        elif cpu_keys:
            sources.append(f"[cpu] of {what} (the CPU recipe) not applied: {why_device}")
        layers.append(layer)
    finetune_from = flags.get("finetune_from") or file.get("finetune_from")
    if finetune_from and not Path(finetune_from).is_file():
        sources.append(f"networks of --finetune-from {finetune_from} not read: no such file (training says so)")
    elif finetune_from:  # the source's networks, over the dataset preset's choice; a --config file or flags still win
        from nestgan.checkpoint import networks_of

        networks = networks_of(finetune_from)
        layers[0] = {**layers[0], **networks}
        sources.append(f"networks of --finetune-from {finetune_from} applied over the {name} preset: "
                       f"{', '.join(f'{key} {networks[key]}' for key in ('resolution', 'g', 'd') if key in networks)} "
                       "(a --config file or flags naming others replace them)")
    if flags:
        keys = [f"data.{k}" for k in flags.get("data", {})] + [k for k in flags if k != "data"]
        over_cpu = [key for key in keys if key in set_by_cpu]
        sources.append(f"flags applied last: {', '.join(keys)}"
                       + (f" (over the [cpu] value of {', '.join(over_cpu)})" if over_cpu else ""))
    cfg = TrainConfig.from_sources(*layers, flags, world_size)
    cfg.cpu_tables = applied
    cfg.sources = sources + cfg.sources
    return cfg


def _describe_change(key: str, below: dict[str, Any], value: Any) -> str:
    """'metrics fid10k -> fid1k' for a [cpu] key that changes a value ('' if it does not); a [cpu.<table>] names
    the keys it sets."""
    if isinstance(value, dict):
        return f"{key} table ({', '.join(value)})"
    field_ = TrainConfig.__dataclass_fields__.get(key)
    if field_ is None:  # an unknown key: from_sources refuses it, naming the key
        return f"{key} {_show(value)}"
    before = below.get(key, field_.default_factory() if field_.default is dataclasses.MISSING else field_.default)
    return "" if before == value else f"{key} {_show(before)} -> {_show(value)}"


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "[]"
    return repr(value) if value == "" else str(value)


def _one_of(key: str, value: str, allowed: typing.Iterable[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got '{value}'")


# Component presets behind the [generator] and [discriminator] tables: which preset a table builds on, the resolved
# keyword arguments, and a line saying why (TrainConfig.sources). Which table applies at all is _component's rule;
# these only resolve the table that survived it.


def generator_preset_name(g: str, resolution: int, table: dict[str, Any]) -> str | None:
    """The preset a [generator] table builds on: its "preset", else "<g>-<resolution>"; None when the table is
    complete by itself ("arch" and no "preset")."""
    if "arch" in table and "preset" not in table:
        return None
    name = table.get("preset", f"{g}-{resolution}")
    if not isinstance(name, str):
        raise ConfigError(f"generator.preset must be a preset name like 'nest-32', got {name!r}")
    return name


def resolve_generator(g: str, resolution: int, table: dict[str, Any]) -> dict[str, Any]:
    """[generator] table -> full generator preset dict with "arch": the table's keys over its preset's."""
    name = generator_preset_name(g, resolution, table)
    if name is None:
        return dict(table)
    return {**generator_preset(name), **{k: v for k, v in table.items() if k != "preset"}}


def generator_source(g: str, resolution: int, table: dict[str, Any]) -> str:
    """Which generator preset a [generator] table applies, and why, for TrainConfig.sources."""
    name = generator_preset_name(g, resolution, table)
    if name is None:
        return f"no generator preset: the [generator] table is a complete '{table['arch']}' generator"
    why = "named by the [generator] table" if "preset" in table else f"g is {g}, resolution {resolution}"
    overrides = [key for key in table if key != "preset"]
    return f"generator preset {name} applied: {why}" + (
        f"; the [generator] table overrides {', '.join(overrides)}" if overrides else ""
    )


def discriminator_preset_name(d: str, resolution: int, table: dict[str, Any]) -> str | None:
    """The preset a [discriminator] table builds on: its "preset", else "<d>-d-<resolution>" for a d that has
    presets (nest); None for a d whose constructor defaults fit every resolution (resnet, dcgan)."""
    if "preset" in table:
        name = table["preset"]
        if not isinstance(name, str):
            raise ConfigError(f"discriminator.preset must be a preset name like 'nest-d-64', got {name!r}")
        return name
    has_presets = any(name.startswith(f"{d}-d-") for name in preset_names("discriminators"))
    return f"{d}-d-{resolution}" if has_presets else None


def discriminator_source(d: str, resolution: int, table: dict[str, Any]) -> str:
    """Which discriminator preset a [discriminator] table applies, and why, for TrainConfig.sources."""
    name = discriminator_preset_name(d, resolution, table)
    why = "named by the [discriminator] table" if "preset" in table else f"d is {d}, resolution {resolution}"
    return f"discriminator preset {name} applied: {why}"


def resolve_discriminator(d: str, name: str, table: dict[str, Any]) -> dict[str, Any]:
    """Preset `name` with the [discriminator] table's keys over it, as keyword arguments of build_discriminator."""
    preset = discriminator_preset(name)
    if preset.get("arch") != d:
        raise ConfigError(f"discriminator preset '{name}' builds a '{preset.get('arch')}' discriminator but d = "
                          f"'{d}'; make them agree (or drop the preset to use d's default)")
    return {**{k: v for k, v in preset.items() if k != "arch"}, **{k: v for k, v in table.items() if k != "preset"}}
