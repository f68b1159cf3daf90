"""Evaluation: FID/KID/IS named like StyleGAN's and Inception precision/recall (pr_inception10k) through
torch-fidelity, with cached reference statistics and Inception weights that work offline.

    report = evaluate_metrics(G_ema, load_dataset("celeba", 64), ["fid10k", "kid10k"], "cpu")
    report.values  # {"fid10k": 12.3, "kid10k_mean": 0.011, "kid10k_std": 0.001}; the report also has provenance
"""

from nestgan.images import quantize_images
from nestgan.metrics.fidelity import evaluate_metrics
from nestgan.metrics.inception_weights import InceptionWeights, resolve_inception_weights
from nestgan.metrics.records import METRIC_GRAMMAR, MetricSpec, MetricsReport, append_metric_line, parse_metric_name

__all__ = [
    "METRIC_GRAMMAR",
    "InceptionWeights",
    "MetricSpec",
    "MetricsReport",
    "append_metric_line",
    "evaluate_metrics",
    "parse_metric_name",
    "quantize_images",
    "resolve_inception_weights",
]
