"""The metric kinds, one table in the spirit of StyleGAN2-ADA's `register_metric`: what each needs (images, reals,
the Inception classifier, real features or only their statistics) and how it turns features into values.

A new kind is one decorated function here (metric names and their grammar text take its prefix from the table):

    @register_metric("fid", min_images=2)
    def fid(feats, reference, seed):          # generated features, the reals' _Reference (None if needs_reals=False)
        return {"": value}                    # suffix -> value: "fid10k"; "_mean" -> "kid10k_mean"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

KID_SUBSETS, KID_MAX_SUBSET_SIZE = 100, 1000  # StyleGAN's / torch-fidelity's defaults
PR_NEIGHBORHOOD = 3  # k-th nearest neighbour radius of the manifold estimate (StyleGAN's pr50k3)
IS_SPLITS = 10


@dataclass(frozen=True)
class MetricKind:
    kind: str  # fid | kid | pr | is (MetricSpec.kind)
    prefix: str  # how metric names start: pr_inception for pr
    compute: Callable[[torch.Tensor, Any, int], dict[str, float]]  # (generated features, reference, seed) -> values
    min_images: int  # generated, and real unless needs_reals is False
    needs_reals: bool = True
    real_features: bool = False  # the reals' features themselves, not only their FID statistics
    needs_classifier: bool = False  # Inception's logits
    feature_metric: str = ""  # torch-fidelity's name of the kind, for the feature extractor's default layer


METRIC_KINDS: dict[str, MetricKind] = {}


def register_metric(kind: str, *, min_images: int, prefix: str | None = None, **options: Any) -> Callable:
    def register(compute: Callable) -> Callable:
        METRIC_KINDS[kind] = MetricKind(kind, prefix or kind, compute, min_images,
                                        **{"feature_metric": kind, **options})
        return compute

    return register


def fid_statistics(features: torch.Tensor) -> dict[str, Any]:
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features.double())


@register_metric("fid", min_images=2)
def fid(feats: torch.Tensor, reference: Any, seed: int) -> dict[str, float]:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return {"": float(fid_statistics_to_metric(fid_statistics(feats), reference.statistics(), verbose=False)[KEY_METRIC_FID])}


@register_metric("kid", min_images=2, real_features=True)
def kid(feats: torch.Tensor, reference: Any, seed: int) -> dict[str, float]:
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    reals = reference.features()
    subset = min(KID_MAX_SUBSET_SIZE, len(feats), len(reals))
    out = kid_features_to_metric(feats, reals, kid_subsets=KID_SUBSETS, kid_subset_size=subset, rng_seed=seed,
                                 verbose=False)
    return {"_mean": float(out[KEY_METRIC_KID_MEAN]), "_std": float(out[KEY_METRIC_KID_STD])}


@register_metric("pr", prefix="pr_inception", min_images=PR_NEIGHBORHOOD + 1, real_features=True, feature_metric="prc")
def precision_recall(feats: torch.Tensor, reference: Any, seed: int) -> dict[str, float]:
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    out = prc_features_to_metric(feats, reference.features(), prc_neighborhood=PR_NEIGHBORHOOD, save_cpu_ram=True,
                                 verbose=False)
    return {"_precision": float(out[KEY_METRIC_PRECISION]), "_recall": float(out[KEY_METRIC_RECALL])}


@register_metric("is", min_images=IS_SPLITS, needs_reals=False, needs_classifier=True, feature_metric="isc")
def inception_score(feats: torch.Tensor, reference: Any, seed: int) -> dict[str, float]:
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    out = isc_features_to_metric(feats, splits=IS_SPLITS, shuffle=True, rng_seed=seed)
    return {"_mean": float(out[KEY_METRIC_ISC_MEAN]), "_std": float(out[KEY_METRIC_ISC_STD])}
