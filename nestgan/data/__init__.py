"""Datasets: readers for each source, a prepared uint8 cache on disk, and a resumable batch iterator.

    dataset = load_dataset("celeba", 64, data_dir="../shared/data/celeba")   # decodes once, then memory-maps
    batches = BatchIterator(dataset, batch_size=64, seed=0, xflip=True)       # infinite, resumable
    x = next(batches)                                                          # float (64, 3, 64, 64) in [-1, 1]
"""

from nestgan.data.loader import BatchIterator, measure_loader_throughput
from nestgan.data.prepared import (
    PreparedDataset,
    default_cache_dir,
    load_dataset,
    load_training_data,
    trained_data_source,
)
from nestgan.data.sources import DATASETS, SPLITS

__all__ = [
    "DATASETS",
    "SPLITS",
    "BatchIterator",
    "PreparedDataset",
    "default_cache_dir",
    "load_dataset",
    "load_training_data",
    "trained_data_source",
    "measure_loader_throughput",
]
