"""Metric names (StyleGAN's `<kind><N>[k][_full]`) and the records of their values: MetricSpec, MetricsReport with
its provenance, and the one writer of metric-<name>.jsonl lines."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nestgan.atomic import append_line, read_records
from nestgan.errors import ConfigError
from nestgan.metrics.kinds import METRIC_KINDS

_KIND_OF_PREFIX = {kind.prefix: kind.kind for kind in METRIC_KINDS.values()}
METRIC_GRAMMAR = (
    f"<{'|'.join(_KIND_OF_PREFIX)}><N>[k][_full], N = number of generated images (k = thousands), _full = against "
    "every real image instead of N of them (not for "
    f"{', '.join(kind.prefix for kind in METRIC_KINDS.values() if not kind.needs_reals)}): e.g. fid50k_full, fid10k, "
    "kid10k, pr_inception10k, is10k, fid5k, fid500"
)
_METRIC_NAME = re.compile(rf"^({'|'.join(_KIND_OF_PREFIX)})([1-9][0-9]*)(k?)(_full)?$")
_STYLEGAN_PR_NAME = re.compile(r"^pr([1-9][0-9]*k?(_full)?)$")


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as the user wrote it, e.g. "fid50k_full"
    kind: str  # fid | kid | pr (precision/recall, named pr_inception) | is
    num_gen: int  # generated images
    full: bool  # against every real image rather than num_gen of them

    def num_reals(self, available: int) -> int:
        return available if self.full else min(self.num_gen, available)


def parse_metric_name(name: str) -> MetricSpec:
    match = _METRIC_NAME.match(name.strip())
    if not match or (not METRIC_KINDS[_KIND_OF_PREFIX[match.group(1)]].needs_reals and match.group(4)):
        stylegan_pr = _STYLEGAN_PR_NAME.match(name.strip())
        if stylegan_pr:
            raise ConfigError(
                f"unknown metric '{name}': precision/recall here uses Inception features, not StyleGAN's VGG16, "
                f"so it is named pr_inception{stylegan_pr.group(1)}"
            )
        raise ConfigError(f"unknown metric '{name}'; metric names are {METRIC_GRAMMAR}")
    prefix, count, thousands, full = match.groups()
    return MetricSpec(name.strip(), _KIND_OF_PREFIX[prefix], int(count) * (1000 if thousands else 1), bool(full))


@dataclass
class MetricsReport:
    """The values of one evaluation and everything needed to reproduce or compare them."""

    values: dict[str, float]
    specs: list[MetricSpec]
    num_reals: dict[str, int]  # metric name -> real images it was compared with
    reference: str  # the reals' PreparedDataset.pixels_id
    extractor: str
    weights_sha256: str
    weights_source: str
    internal_dtype: str
    seed: int
    device: str
    wall_s: float
    bf16_feature_deviation: float | None = None  # internal_dtype bfloat16: largest relative deviation from float32
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def record(self, spec: MetricSpec, checkpoint: str | os.PathLike | None = None) -> dict[str, Any]:
        """One json-able line for metric-<name>.jsonl."""
        return {
            "metric": spec.name,
            "results": {k: v for k, v in self.values.items() if k == spec.name or k.startswith(spec.name + "_")},
            "num_gen": spec.num_gen,
            "num_reals": self.num_reals[spec.name],
            "reference": self.reference,
            "extractor": self.extractor,
            "weights_sha256": self.weights_sha256,
            "weights_source": self.weights_source,
            "internal_dtype": self.internal_dtype,
            "seed": self.seed,
            "device": self.device,
            "wall_s": round(self.wall_s, 3),
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "timestamp": self.timestamp,
        } | ({} if self.bf16_feature_deviation is None else {"bf16_feature_deviation": self.bf16_feature_deviation})


def append_metric_line(jsonl_path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append `record` as one json line (the file and its folder are created if missing)."""
    path = Path(jsonl_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    append_line(path, json.dumps(record, sort_keys=True))


def metric_value(results: dict[str, Any], name: str) -> float | None:
    """Metric `name`'s headline value in a record's results: its value, or for KID its mean; None if absent."""
    value = results.get(name, results.get(f"{name}_mean"))
    return float(value) if isinstance(value, (int, float)) else None


def metrics_at(run_dir: str | os.PathLike, kimg: float) -> dict[str, float]:
    """The headline value of every metric recorded in a run directory's metric-*.jsonl at `kimg` (the snapshot
    there); the last record wins where a snapshot was evaluated twice."""
    values = {}
    for path in sorted(Path(run_dir).glob("metric-*.jsonl")):
        name = path.stem.removeprefix("metric-")
        for record in read_records(path):
            value = metric_value(record.get("results", {}), name)
            if value is not None and record.get("kimg") is not None and abs(float(record["kimg"]) - kimg) < 5e-4:
                values[name] = value
    return values
