#!/usr/bin/env python3
"""Builds the bundled sample dataset examples/flowers/ from the real photographs in
../shared/data/photos (run once; the output is committed). Deterministic for a seed.

    /usr/bin/python3 scripts/make_examples.py [--photos ../shared/data/photos] [--out examples/flowers]

Layout: LICENSE.txt at the root (attribution, as photos/SOURCES.txt asks) and 5 class folders of
320-400 px crops: mostly baseline JPEG, some progressive, one grayscale JPEG, a few RGB/RGBA PNGs.
"""
import argparse
import glob
import os
import random
import shutil

from PIL import Image

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
PER_CLASS = 8


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", default=os.path.join(here, "..", "..", "shared", "data", "photos"))
    ap.add_argument("--out", default=os.path.join(here, "..", "examples", "flowers"))
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    sources = [Image.open(p).convert("RGB") for p in sorted(glob.glob(os.path.join(args.photos, "*.jpg")))]
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    for c in CLASSES:
        os.makedirs(os.path.join(args.out, c))
    with open(os.path.join(args.photos, "SOURCES.txt")) as f:
        sources_txt = f.read()
    with open(os.path.join(args.out, "LICENSE.txt"), "w") as f:
        f.write("The images in this folder are crops of the photographs described below.\n\n")
        f.write(sources_txt)
    n = 0
    for ci, c in enumerate(CLASSES):
        for k in range(PER_CLASS):
            src = sources[(ci * PER_CLASS + k) % len(sources)]
            aw, ah = rng.choice([(4, 3), (3, 2), (1, 1), (3, 4), (2, 3)])
            frac = rng.uniform(0.3, 0.8)
            ch = int(min(src.height, src.width * ah / aw) * frac)
            cw = int(ch * aw / ah)
            x0 = rng.randint(0, src.width - cw)
            y0 = rng.randint(0, src.height - ch)
            crop = src.crop((x0, y0, x0 + cw, y0 + ch))
            long_side = rng.choice([320, 400])
            s = long_side / max(cw, ch)
            crop = crop.resize((max(1, round(cw * s)), max(1, round(ch * s))), Image.BILINEAR)
            stem = os.path.join(args.out, c, f"{c}_{k:02d}")
            if n in (3, 17, 29):
                crop.save(stem + ".png", optimize=True)
            elif n == 22:
                rgba = crop.copy()
                rgba.putalpha(200)
                rgba.save(stem + ".png", optimize=True)
            elif n == 9:
                crop.convert("L").save(stem + ".jpg", quality=85)
            else:
                crop.save(stem + ".jpg", quality=rng.randint(75, 90), progressive=(n % 7 == 5))
            n += 1


if __name__ == "__main__":
    main()
