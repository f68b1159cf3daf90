"""Subsets of a dataset chosen by CelebA's index files: the split (list_eval_partition.txt) and an attribute
(list_attr_celeba.txt: --attribute Eyeglasses, -Eyeglasses for the images without it), and the name a subset goes
by wherever a dataset is named (run directories, the prepared cache, FID references, metric lines, exports)."""

from __future__ import annotations

import difflib
from pathlib import Path

from nestgan.errors import ConfigError, DataError


def data_label(name: str, attribute: str | None) -> str:
    """'celeba', 'celeba-Eyeglasses', 'celeba-not-Eyeglasses': an attribute subset never shares a name (or FID
    statistics) with the whole set."""
    if attribute is None:
        return name
    return f"{name}-not-{attribute[1:]}" if attribute.startswith("-") else f"{name}-{attribute}"


def read_partition(path: Path) -> list[tuple[str, int]]:
    """(image, split code) rows of list_eval_partition.txt: 0 train, 1 valid, 2 test."""
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise DataError(f"{path} line {number} is not '<image>.jpg <0|1|2>': {line.strip()[:80]!r}")
            rows.append((fields[0], int(fields[1])))
    return rows


def with_attribute(names: list[str], root: Path, attribute: str | None, *, url: str) -> list[str]:
    """The names whose `attribute` is 1 in <root>/list_attr_celeba.txt ("-Name": -1), in order; all of them for
    attribute None. The name is checked against the file's header; url: where the file comes from."""
    if attribute is None:
        return names
    path = root / "list_attr_celeba.txt"
    if not path.is_file():
        raise DataError(f"{path} not found: data.attribute needs CelebA's attribute file; get it from {url}")
    with open(path) as f:
        f.readline()  # the image count
        header = f.readline().split()
        rows = [line.split() for line in f if line.strip()]
    name, wanted = attribute.removeprefix("-"), "-1" if attribute.startswith("-") else "1"
    if name not in header:
        close = difflib.get_close_matches(name, header, n=3) or header[:3]
        raise ConfigError(
            f"unknown CelebA attribute '{name}': {path.name} names {len(header)}, e.g. {', '.join(close)}; pick one "
            f"of them (-Name keeps the images without it)"
        )
    column = header.index(name) + 1
    chosen = {row[0] for row in rows if len(row) == len(header) + 1 and row[column] == wanted}
    return [n for n in names if n in chosen]
