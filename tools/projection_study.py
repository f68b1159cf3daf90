"""How close projections get (issue 35): images projected into a generator with each choice of offsets (z alone
to every level's whole input), against the best of the search's start seeds; pixel PSNR and the projector's
perceptual distance.

Writes <out>.jsonl (one line per image and method), <out>.md (the table) and <out>.png (rows: target, best start,
then each choice of nestgan.projection.OFFSETS; one column per image, the first --picture-images images). Faces
the shipped model did not train on (it trained on the first 9,000 of the 10,000), and non-faces as a control (what a
projection reproduces that the generator cannot draw):

    python tools/projection_study.py --ckpt pretrained/celeba64-nest-cpu.safetensors \
        --images ../shared/data/celeba/img_align_celeba --skip 9000 --crop celeba --count 8 \
        --out docs/results/projection-celeba64
    python tools/projection_study.py --ckpt pretrained/celeba64-nest-cpu.safetensors \
        --images ../shared/data/tiny-imagenet-64/val --count 8 --out docs/results/projection-imagenet-control
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import nestgan
from nestgan.bench.machine import machine_info
from nestgan.data.files import decode_image, is_image_name
from nestgan.commands.project import CROPS
from nestgan.images import as_pixels, image_grid
from nestgan.projection import OFFSETS, PerceptualDistance, project, psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--images", required=True, help="a folder of images (searched recursively)")
    parser.add_argument("--crop", choices=list(CROPS), default="square", help="as nestgan-project's --crop")
    parser.add_argument("--count", type=int, default=16, help="images, evenly spaced over the folder's sorted files")
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first N sorted files (those the generator trained on, with max_images = N)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--picture-images", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="path stem of the outputs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    G = nestgan.load_generator(args.ckpt)
    files = sorted(p for p in Path(args.images).rglob("*") if is_image_name(p.name))[args.skip:]
    if len(files) < args.count:
        parser.error(f"{len(files)} images in {args.images} after --skip {args.skip}, fewer than --count {args.count}")
    images = [files[i * len(files) // args.count] for i in range(args.count)]
    distance = PerceptualDistance()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_info(torch.device("cpu"))
    records, columns = [], []
    for image in images:
        target = torch.from_numpy(decode_image(str(image), G.resolution, CROPS[args.crop]).copy())
        column = [target]
        for offsets in OFFSETS:
            started = time.perf_counter()
            result = project(G, target, steps=args.steps, offsets=offsets)
            seconds = time.perf_counter() - started
            if offsets == OFFSETS[0]:  # every search starts from the same best seed, before any step
                start = nestgan.sample(G, [result.start_seed])[0]
                with torch.no_grad():
                    start_distance = float(distance(start[None].float() / 127.5 - 1, target[None].float() / 127.5 - 1))
                records.append({"image": image.name, "method": "best start", "seed": result.start_seed,
                                "psnr": float(psnr(start[None], target[None])), "perceptual": start_distance})
                column.append(start)
            records.append({"image": image.name, "method": f"offsets {offsets}", "steps": args.steps,
                            "psnr": result.psnr, "perceptual": result.perceptual, "seconds": seconds})
            column.append(result.image)
            print(json.dumps(records[-1]), flush=True)
        columns.append(column)
    out.with_suffix(".jsonl").write_text(json.dumps({"machine": machine, "args": vars(args)}) + "\n"
                                         + "".join(json.dumps(r) + "\n" for r in records))

    lines = ["| method | PSNR (dB) | perceptual distance | images |", "|---|---|---|---|"]
    for method in ("best start", *(f"offsets {offsets}" for offsets in OFFSETS)):
        rows = [r for r in records if r["method"] == method]
        ps, ds = [r["psnr"] for r in rows], [r["perceptual"] for r in rows]
        lines.append(f"| {method} | {statistics.mean(ps):.2f} ± {statistics.stdev(ps):.2f} | "
                     f"{statistics.mean(ds):.3f} ± {statistics.stdev(ds):.3f} | {len(rows)} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shown = columns[: args.picture_images]
    rows = [torch.stack([column[k] for column in shown]) for k in range(2 + len(OFFSETS))]  # target, start, OFFSETS
    picture = image_grid(as_pixels(torch.cat(rows)), columns=len(shown))
    Image.fromarray(picture).save(out.with_suffix(".png"))


if __name__ == "__main__":
    main()
