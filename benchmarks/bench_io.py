"""Images/s of full decode vs reduced-size (JPEG draft) decode at a given working size.

    python benchmarks/bench_io.py [--sides 512,256] [--repeats 3]

Sets: the COCO photos (640 px), the blur-triplet photos (2048 px), and 16 COCO photos
re-encoded at 4000 px (12 MP, phone size, built in a temp dir). Full and reduced decode
are timed in the same run, so the ratio holds on a noisy machine.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import best_of, shared_photos
from PIL import Image

from paddlemix_iqa.io import decode_image


def camera_size_copies(paths: list[Path], folder: Path, side: int = 4000) -> list[Path]:
    out = []
    for path in paths:
        with Image.open(path) as img:
            scale = side / max(img.size)
            big = img.convert("RGB").resize(
                (round(img.width * scale), round(img.height * scale)), Image.BICUBIC
            )
        out.append(folder / path.name)
        big.save(out[-1], quality=90)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="512,256", help="working sizes (long side) to decode at")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sides = [int(s) for s in args.sides.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        coco = shared_photos("coco")
        sets = {
            "coco 640px": coco,
            "triplets 2048px": shared_photos("blur_triplets", "*"),
            "coco@4000px 12MP": camera_size_copies(coco[:16], Path(tmp)),
        }
        for label, paths in sets.items():
            n = len(paths)
            full = best_of(lambda paths=paths: [decode_image(p) for p in paths], args.repeats)
            row = f"{label:18s} n={n:3d}  full {n / full:7.1f} img/s"
            for side in sides:
                reduced = best_of(
                    lambda p=paths, s=side: [decode_image(x, max_side=s) for x in p], args.repeats
                )
                row += f" | {side}px {n / reduced:7.1f} img/s (x{full / reduced:.2f})"
            print(row)


if __name__ == "__main__":
    main()
