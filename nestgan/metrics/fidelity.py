"""FID / KID / precision-recall / Inception Score of a generator, computed by torch-fidelity.

Names follow StyleGAN: `<metric><N>[k][_full]`, e.g. fid50k_full (50,000 generated images against every real
image), fid10k (10,000 generated against 10,000 reals), kid10k, is10k, fid5k, fid500. Precision/recall is
pr_inception10k, not StyleGAN's pr50k3: it uses the Inception features the other metrics use, whereas StyleGAN
uses VGG16 (torch-fidelity's own VGG16 carries torchvision's weights, not StyleGAN's, so it would not match either).

- Generated images: the generator (G_ema, in eval mode) maps z ~ N(0, I) drawn from one numpy RandomState(seed)
  stream - the first n images are the same whatever the batch size - and its [-1, 1] output is quantised to
  uint8 exactly as StyleGAN does before Inception sees it. The generator must already live on `device`.
- Real images: all of them for `_full`, otherwise a fixed random subset of N (or all, if there are fewer).
  Their features/statistics are cached on disk under <cache>/fidelity/, keyed by a hash of the dataset's
  pixels (PreparedDataset.pixels_id: timestamps and paths do not matter), the number of reals, the feature
  extractor, its weights' sha256, the feature layer, the internal dtype and the torch-fidelity version;
  a second evaluation does not read a single real image.
- Generating and feature extraction show progress bars with rate and ETA when stderr is a terminal.
- Feature extraction and the metric values come from torch-fidelity (its TF-compatible Inception v3 and its
  fid/kid/prc/isc functions); nestgan adds the naming, the sampling, the cache and offline weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from nestgan.checkpoint import save_tensors
from nestgan.errors import ConfigError, DataError, DiskFullError
from nestgan.hashing import sha256_of
from nestgan.images import quantize_images
from nestgan.metrics.inception_weights import EXTRACTOR as INCEPTION, resolve_inception_weights
from nestgan.metrics.kinds import METRIC_KINDS, fid_statistics
from nestgan.metrics.records import METRIC_GRAMMAR, MetricSpec, MetricsReport, parse_metric_name
from nestgan.progress import image_progress

log = logging.getLogger("nestgan.metrics")

# bfloat16: fp32 weights under bf16 autocast, an opt-in that trades FID comparability for speed (each evaluation
# logs and records how far its features deviate from float32's).
INTERNAL_DTYPES = ("float32", "float64", "bfloat16")
COMPILE_MODES = ("auto", "on", "off")
# auto compiles a pass of at least this many images: below it, inductor's compile costs more than it saves.
COMPILE_MIN_IMAGES = 2000
CACHE_VERSION = 1  # bump when the cached content or the way reals are chosen changes
REFERENCE_SUBSET_SEED = 0  # which N reals a non-_full metric uses; fixed so every run shares one reference


# ------------------------------------------------------------------------------------------- feature extractor


def build_feature_extractor(
    name: str, layers: list[str], weights_path: Path | None, internal_dtype: str, device: torch.device
) -> nn.Module:
    """A torch-fidelity feature extractor from its registry, on `device`, computing in `internal_dtype`."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import create_feature_extractor

    if name not in FEATURE_EXTRACTORS_REGISTRY:
        raise ConfigError(f"unknown feature extractor '{name}' (known: {', '.join(FEATURE_EXTRACTORS_REGISTRY)})")
    extractor = create_feature_extractor(
        name,
        layers,
        cuda=False,  # moved below, so any device (cuda:1 too) works
        feature_extractor_weights_path=str(weights_path) if weights_path else None,
        feature_extractor_internal_dtype=internal_dtype,
        verbose=False,
    )
    if hasattr(extractor, "feature_extractor_internal_dtype"):
        # torch-fidelity 0.4.0 maps "float64" to float32 (helpers.text_to_dtype); apply the dtype asked for.
        dtype = getattr(torch, internal_dtype)
        extractor.feature_extractor_internal_dtype = dtype
        extractor.to(dtype)
    # channels_last: ~1.5x faster Inception on CPU (oneDNN), same features to 1e-6.
    return extractor.to(device, memory_format=torch.channels_last).eval()


_built: dict[tuple, nn.Module] = {}  # the last extractor built in this process: training metrics reuse it


def cached_feature_extractor(
    name: str, layers: list[str], weights_path: Path | None, weights_id: str, internal_dtype: str, device: torch.device
) -> nn.Module:
    """build_feature_extractor, built once per process for the same arguments and weights' content (weights_id, their
    sha256); one kept at a time."""
    module_dtype = "float32" if internal_dtype == "bfloat16" else internal_dtype  # bf16 is autocast, see Extractor
    key = (name, tuple(layers), str(weights_path), weights_id, module_dtype, str(device))
    if key not in _built:
        _built.clear()
        _built[key] = build_feature_extractor(name, layers, weights_path, module_dtype, device)
    return _built[key]


class Extractor:
    """The feature network as the metrics call it: uint8 batches in, float32 features per layer out.

    Compiled (torch.compile with frozen weights: BatchNorm folded into the convolutions, element-wise ops fused),
    every batch is padded to `batch_size` so the graph compiles once; each image's features do not depend on the
    others in its batch (eval-mode BatchNorm), so padding changes nothing. A compile that fails (no C++ compiler,
    say) falls back to eager with a warning. Under bfloat16 the first batch also runs in float32 and the largest
    relative deviation of its features is kept in `bf16_deviation`.
    """

    def __init__(self, module: nn.Module, device: torch.device, batch_size: int, compiled: bool, internal_dtype: str):
        self.module, self.device, self.batch_size = module, device, batch_size
        self.bf16 = internal_dtype == "bfloat16"
        self.compiled = _compiled(module, batch_size) if compiled else None
        self.bf16_deviation: float | None = None

    def _run(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.compiled is not None:
            try:
                return self.compiled(batch)
            except Exception as e:  # inductor needs a working C++ toolchain; the eager module always works
                log.warning("warning: torch.compile of the feature extractor failed (%s: %s); extracting without it",
                            type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
                self.compiled = None
                _compiled_cache.clear()
        return self.module(batch)

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(batch)
        if self.compiled is not None and n < self.batch_size:
            batch = torch.cat([batch, batch.new_zeros((self.batch_size - n, *batch.shape[1:]))])
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            feats = tuple(f[:n].float() for f in self._run(batch))
        if self.bf16 and self.bf16_deviation is None:
            exact = self.module(batch)
            self.bf16_deviation = max(float((f - e[:n]).abs().max() / e[:n].abs().max().clamp_min(1e-12))
                                      for f, e in zip(feats, exact))
            log.warning("warning: bfloat16 Inception (opt-in): features deviate from float32 by up to %.2g "
                        "(relative, first batch); its FIDs are not comparable with float32 ones", self.bf16_deviation)
        return feats


# (module, batch size) -> its compiled graph; the key holds the module itself, so a later module at a reused id()
# can never be handed another's graph
_compiled_cache: dict[tuple[nn.Module, int], nn.Module] = {}


def _compiled(module: nn.Module, batch_size: int) -> nn.Module:
    key = (module, batch_size)
    if key not in _compiled_cache:
        _compiled_cache.clear()
        _compiled_cache[key] = torch.compile(module, dynamic=False, options={"freezing": True})
    return _compiled_cache[key]


def should_compile(mode: str, images: int) -> bool:
    """Whether to compile the extractor for a pass over `images` images (auto: only when the compile pays)."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile must be one of {', '.join(COMPILE_MODES)}, got '{mode}'")
    return mode == "on" or (mode == "auto" and images >= COMPILE_MIN_IMAGES)


def _default_layer(extractor: str, kind: str) -> str:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if extractor not in FEATURE_EXTRACTORS_REGISTRY:
        raise ConfigError(f"unknown feature extractor '{extractor}' (known: {', '.join(FEATURE_EXTRACTORS_REGISTRY)})")
    return FEATURE_EXTRACTORS_REGISTRY[extractor].get_default_feature_layer_for_metric(METRIC_KINDS[kind].feature_metric)


@torch.no_grad()
def _extract(extractor: Extractor, layers: list[str], batches, progress: tqdm) -> dict[str, torch.Tensor]:
    """Run uint8 batches through the extractor, counting images on `progress`; features per layer, float32 on
    the CPU."""
    out: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    with progress:
        for batch in batches:
            for layer, feats in zip(layers, extractor(batch)):
                out[layer].append(feats.cpu())
            progress.update(len(batch))
    return {layer: torch.cat(chunks) for layer, chunks in out.items()}


def metric_stream_batches(generator: nn.Module, num: int, batch_size: int, device: torch.device, seed: int):
    """uint8 batches of the first `num` images of the metrics' own latent stream (StyleGAN's: z from numpy
    RandomState(seed), in order), so that metric values match across tools; nestgan.synthesize is the seeds' path."""
    rng = np.random.RandomState(seed)
    for start in range(0, num, batch_size):
        z = torch.from_numpy(rng.randn(min(batch_size, num - start), generator.z_dim)).float().to(device)
        yield quantize_images(generator(z))


def _real_batches(images, indices: np.ndarray, batch_size: int, device: torch.device):
    for start in range(0, len(indices), batch_size):
        yield torch.from_numpy(np.ascontiguousarray(images[indices[start : start + batch_size]])).to(device)


def reference_indices(available: int, num: int) -> np.ndarray:
    """Which reals a metric compares with: all of them, or a fixed random subset of `num` (sorted, for locality)."""
    if num >= available:
        return np.arange(available)
    return np.sort(np.random.RandomState(REFERENCE_SUBSET_SEED).permutation(available)[:num])


# ---------------------------------------------------------------------------------------------- reference cache


def reference_cache_name(
    pixels_id: str, num_reals: int, available: int, *, extractor: str, weights_id: str, layer: str, internal_dtype: str
) -> str:
    """File stem for a reference; the hash covers everything that changes the cached numbers."""
    import torch_fidelity

    key = {
        "pixels": pixels_id,
        "num_reals": num_reals,
        "subset": "all" if num_reals >= available else f"permutation-seed{REFERENCE_SUBSET_SEED}-of-{available}",
        "extractor": extractor,
        "weights": weights_id,
        "layer": layer,
        "internal_dtype": internal_dtype,
        "torch_fidelity": torch_fidelity.__version__,
        "version": CACHE_VERSION,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", pixels_id)[:80]
    return f"{readable}-{num_reals}-{layer}-{digest}"


def _load_cached(path: Path) -> dict[str, torch.Tensor] | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged cache entry is recomputed, never trusted
        log.warning("ignoring unreadable reference cache %s", path)
        return None


def _save_cached(path: Path, content: dict[str, torch.Tensor]) -> None:
    """Cache `content` atomically (no checkpoint format key); without room for it the metric goes on uncached (a warning, not an error)."""
    try:
        save_tensors(path, content)
    except DiskFullError as e:
        log.warning("warning: reference cache not written (%s); the metric is computed all the same, and the next "
                    "evaluation extracts the reference features again", e.what)


class _Reference:
    """Features and/or FID statistics of one set of reals, extracted at most once and cached on disk.

    The raw features are cached only when a metric needs them (KID, precision/recall): for fid50k_full the
    statistics are enough, and all-reals features can be gigabytes.
    """

    def __init__(self, dataset, num_reals: int, stem: str, cache_dir: Path, extract, keep_features: bool):
        self.dataset, self.num_reals, self.extract, self.keep_features = dataset, num_reals, extract, keep_features
        self.stats_path = cache_dir / f"{stem}-stats.pt"
        self.features_path = cache_dir / f"{stem}-features.pt"
        self._features: torch.Tensor | None = None
        self._writable: bool | None = None

    def needs_extraction(self) -> bool:
        """Whether the reals must go through the extractor (nothing cached that this reference needs)."""
        if self._features is not None:
            return False
        return not (self.features_path if self.keep_features else self.stats_path).is_file()

    def _cacheable(self) -> bool:
        """Whether the results can be kept; asked only once one is missing, so a complete read-only cache sees no
        write at all. A read-only one is a warning: the metric is computed all the same, as on a full disk."""
        if self._writable is None:
            from nestgan.data.prepared import CACHE_FIX, read_only_reason

            why = read_only_reason(self.stats_path.parent)
            if why:
                log.warning("warning: the cache folder %s is read-only (%s): the reference statistics of %s are "
                            "computed but not kept; %s to keep them", self.stats_path.parent, why,
                            self.dataset.pixels_id, CACHE_FIX)
            self._writable = why is None
        return self._writable

    def _extract_now(self) -> torch.Tensor:
        self._cacheable()  # warns before the long pass, not after it
        log.info("reference: extracting features of %d real images (%s)", self.num_reals, self.dataset.pixels_id)
        return self.extract(reference_indices(len(self.dataset), self.num_reals))

    def features(self) -> torch.Tensor:
        if self._features is None:
            cached = _load_cached(self.features_path) if self.keep_features else None
            if cached is not None:
                self._features = cached["features"]
            else:
                self._features = self._extract_now()
                if self.keep_features and self._cacheable():
                    _save_cached(self.features_path, {"features": self._features})
        return self._features

    def statistics(self) -> dict[str, np.ndarray]:
        cached = _load_cached(self.stats_path)
        if cached is not None:
            return {"mu": cached["mu"].numpy(), "sigma": cached["sigma"].numpy()}
        stats = fid_statistics(self.features())
        if self._cacheable():
            _save_cached(self.stats_path, {key: torch.from_numpy(stats[key]) for key in ("mu", "sigma")})
        return stats


# ------------------------------------------------------------------------------------------------- evaluation


def evaluate_metrics(
    generator: nn.Module | torch.Tensor,
    dataset,
    names: list[str],
    device: str | torch.device,
    *,
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    internal_dtype: str = "float32",
    seed: int = 0,
    feature_extractor: str = INCEPTION,
    progress: bool | None = None,
    compile: str = "auto",
) -> MetricsReport:
    """Compute the named metrics of `generator` against `dataset` (.images uint8 (N, 3, R, R), .pixels_id).

    `generator` may also be uint8 images (N, 3, R, R) generated elsewhere: a metric of N images uses the first N.

    `weights`: the feature extractor's weights file; for Inception None means the offline resolution order of
    nestgan.metrics.inception_weights. `cache_dir`: $NESTGAN_CACHE or ~/.cache/nestgan by default.
    `progress`: bars with rate and ETA on stderr for generating and feature extraction; None: only when stderr is
    a terminal. `compile`: torch.compile the extractor (on | off | auto: when this call extracts enough images for
    the compile to pay); the features stay the same to float32 rounding.
    """
    from nestgan.data import default_cache_dir

    start = time.perf_counter()
    specs = list({spec.name: spec for spec in map(parse_metric_name, names)}.values())
    if not specs:
        raise ConfigError(f"no metric given; metric names are {METRIC_GRAMMAR}")
    should_compile(compile, 0)  # checks the mode before any work
    if internal_dtype not in INTERNAL_DTYPES:
        raise ConfigError(f"internal dtype must be one of {', '.join(INTERNAL_DTYPES)}, got '{internal_dtype}'")
    if batch_size < 1:
        raise ConfigError(f"metrics batch size must be >= 1, got {batch_size}")
    pixels_id = getattr(dataset, "pixels_id", None)
    if not pixels_id or not hasattr(dataset, "images"):
        raise ConfigError("metrics need a prepared dataset (with .images and .pixels_id); use nestgan.data.load_dataset")
    available = len(dataset)
    for spec in specs:
        needed, needs_reals = METRIC_KINDS[spec.kind].min_images, METRIC_KINDS[spec.kind].needs_reals
        if spec.num_gen < needed or (needs_reals and spec.num_reals(available) < needed):
            raise DataError(
                f"{spec.name} needs at least {needed} generated and real images "
                f"({spec.num_gen} generated, {available} real in {pixels_id})"
            )
    device = torch.device(device)
    cache_root = Path(cache_dir or default_cache_dir()).expanduser()

    if feature_extractor == INCEPTION:
        resolved = resolve_inception_weights(weights, cache_root, need_classifier=any(METRIC_KINDS[s.kind].needs_classifier for s in specs))
        weights_path, weights_id, weights_source = resolved.path, resolved.sha256, resolved.source
    elif weights:
        weights_path, weights_source = Path(weights), "explicit"
        if not weights_path.is_file():
            raise ConfigError(f"feature extractor weights not found: {weights_path}")
        weights_id = sha256_of(weights_path)
    else:
        weights_path, weights_id, weights_source = None, "builtin", "builtin"

    layer_of = {spec.name: _default_layer(feature_extractor, spec.kind) for spec in specs}
    layers = sorted(set(layer_of.values()))
    module = cached_feature_extractor(feature_extractor, layers, weights_path, weights_id, internal_dtype, device)

    def extract_reals(layer: str):
        def run(indices: np.ndarray) -> torch.Tensor:
            batches = _real_batches(dataset.images, indices, batch_size, device)
            bar = image_progress(len(indices), "real images, reference features", progress)
            return _extract(extractor, layers, batches, bar)[layer]

        return run

    def reference_key(spec: MetricSpec) -> tuple[int, str]:
        return spec.num_reals(available), layer_of[spec.name]

    references: dict[tuple[int, str], _Reference] = {}
    for n, layer in {reference_key(spec) for spec in specs if METRIC_KINDS[spec.kind].needs_reals}:
        stem = reference_cache_name(pixels_id, n, available, extractor=feature_extractor, weights_id=weights_id,
                                    layer=layer, internal_dtype=internal_dtype)
        keep = any(METRIC_KINDS[s.kind].real_features and reference_key(s) == (n, layer) for s in specs)
        references[(n, layer)] = _Reference(dataset, n, stem, cache_root / "fidelity", extract_reals(layer), keep)

    num_gen = max(spec.num_gen for spec in specs)
    to_extract = num_gen + sum(ref.num_reals for ref in references.values() if ref.needs_extraction())
    extractor = Extractor(module, device, batch_size, should_compile(compile, to_extract), internal_dtype)
    if isinstance(generator, torch.Tensor):
        if len(generator) < num_gen:
            raise DataError(f"{max(specs, key=lambda s: s.num_gen).name} needs {num_gen} generated images, "
                            f"{len(generator)} given")
        log.info("features of %d given images for %s", num_gen, ", ".join(s.name for s in specs))
        bar = image_progress(num_gen, "given images' features", progress)
        given = (chunk.to(device) for chunk in generator[:num_gen].split(batch_size))
        fakes = _extract(extractor, layers, given, bar)
    else:
        log.info("generating %d images for %s", num_gen, ", ".join(s.name for s in specs))
        was_training = generator.training
        generator.eval()
        try:
            bar = image_progress(num_gen, "generated images and features", progress)
            batches = metric_stream_batches(generator, num_gen, batch_size, device, seed)
            fakes = _extract(extractor, layers, batches, bar)
        finally:
            generator.train(was_training)

    values: dict[str, float] = {}
    num_reals: dict[str, int] = {}
    for spec in specs:
        feats = fakes[layer_of[spec.name]][: spec.num_gen]
        kind = METRIC_KINDS[spec.kind]
        reference = references[reference_key(spec)] if kind.needs_reals else None
        num_reals[spec.name] = 0 if reference is None else reference.num_reals
        values.update({spec.name + suffix: value for suffix, value in kind.compute(feats, reference, seed).items()})

    return MetricsReport(
        values=values,
        specs=specs,
        num_reals=num_reals,
        reference=pixels_id,
        extractor=feature_extractor,
        weights_sha256=weights_id,
        weights_source=weights_source,
        internal_dtype=internal_dtype,
        seed=seed,
        device=str(device),
        wall_s=time.perf_counter() - start,
        bf16_feature_deviation=extractor.bf16_deviation,
    )
