"""How close projections get (issue 35): CelebA faces projected into a generator, z alone and z with the level
offsets, against the best of the search's start seeds; pixel PSNR and the projector's perceptual distance.

Writes <out>.jsonl (one line per face and method), <out>.md (the table) and <out>.png (rows: target, best start,
z alone, z + levels; one column per face, the first --picture-faces faces).

    python tools/projection_study.py --ckpt pretrained/celeba64-nest-cpu.safetensors \
        --celeba ../shared/data/celeba --faces 16 --steps 300 --out docs/data/projection-celeba64
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
from nestgan.data.files import decode_image
from nestgan.data.sources import CELEBA_CROP
from nestgan.images import as_pixels, image_grid
from nestgan.projection import PerceptualDistance, project, psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--celeba", required=True, help="folder with img_align_celeba/")
    parser.add_argument("--faces", type=int, default=16, help="faces, evenly spaced over the folder's files")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--picture-faces", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="path stem of the outputs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    G = nestgan.load_generator(args.ckpt)
    files = sorted((Path(args.celeba) / "img_align_celeba").glob("*.jpg"))
    faces = [files[i * len(files) // args.faces] for i in range(args.faces)]
    distance = PerceptualDistance()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_info(torch.device("cpu"))
    records, columns = [], []
    for face in faces:
        target = torch.from_numpy(decode_image(str(face), G.resolution, CELEBA_CROP).copy())
        column = [target]
        for method, levels in (("z", False), ("z+levels", True)):
            started = time.perf_counter()
            result = project(G, target, steps=args.steps, levels=levels)
            seconds = time.perf_counter() - started
            if method == "z":  # the start is the same for both: the best of the seeds, before any step
                start = nestgan.sample(G, [result.start_seed])[0]
                with torch.no_grad():
                    start_distance = float(distance(start[None].float() / 127.5 - 1, target[None].float() / 127.5 - 1))
                records.append({"face": face.name, "method": "best start", "seed": result.start_seed,
                                "psnr": float(psnr(start[None], target[None])), "perceptual": start_distance})
                column.append(start)
            records.append({"face": face.name, "method": method, "steps": args.steps, "psnr": result.psnr,
                            "perceptual": result.perceptual, "seconds": seconds})
            column.append(result.image)
            print(json.dumps(records[-1]), flush=True)
        columns.append(column)
    out.with_suffix(".jsonl").write_text(json.dumps({"machine": machine, "args": vars(args)}) + "\n"
                                         + "".join(json.dumps(r) + "\n" for r in records))

    lines = ["| method | PSNR (dB) | perceptual distance | faces |", "|---|---|---|---|"]
    for method in ("best start", "z", "z+levels"):
        rows = [r for r in records if r["method"] == method]
        ps, ds = [r["psnr"] for r in rows], [r["perceptual"] for r in rows]
        lines.append(f"| {method} | {statistics.mean(ps):.2f} ± {statistics.stdev(ps):.2f} | "
                     f"{statistics.mean(ds):.3f} ± {statistics.stdev(ds):.3f} | {len(rows)} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shown = columns[: args.picture_faces]
    rows = [torch.stack([column[k] for column in shown]) for k in range(4)]  # target, start, z, z+levels
    picture = image_grid(as_pixels(torch.cat(rows)), columns=len(shown))
    Image.fromarray(picture).save(out.with_suffix(".png"))


if __name__ == "__main__":
    main()
