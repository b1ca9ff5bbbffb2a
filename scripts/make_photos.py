#!/usr/bin/env python3
# The project's own copy of make_photos.py, taken from ../shared/data/make_photos.py (the shared data
# folder next to the repository), so that the reference tests need nothing outside the repository.
# Changes from the original: --photos defaults to the repository's tests/data/photos (6 of the 24
# photographs, with their SOURCES.txt), and LICENSE.txt carries that folder's SOURCES.txt. For the
# same photos, --count and --seed the images are byte-identical to the original's.
"""Build a flower_photos-like class-folder dataset from real photographs (tests/data/photos by default).

Layout and sizes follow the TF 'flower_photos' archive that the mission's tutorial uses:
ROOT/LICENSE.txt and ROOT/<class>/<name>.jpg, 5 classes, about 3670 images whose long side is
320..500 px. Content is random crops of real photographs, re-encoded as the web would: mostly
baseline 4:2:0 JPEG, some progressive, a few grayscale JPEGs, a few RGB and RGBA PNGs.

Deterministic: the same --seed gives byte-identical files.
Needs Debian's python3-pil (apt-get install -y python3-pil); run it with /usr/bin/python3.

    /usr/bin/python3 scripts/make_photos.py OUT_DIR [--count 3670] [--seed 7] [--photos tests/data/photos]
"""
import argparse
import glob
import os
import random

from PIL import Image

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
ASPECTS = [(4, 3), (3, 2), (1, 1), (3, 4), (2, 3), (16, 9)]
LONG_SIDES = [320, 400, 500, 500, 500]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=3670)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--photos", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                                     "data", "photos"))
    args = ap.parse_args()

    rng = random.Random(args.seed)
    sources = [Image.open(p).convert("RGB") for p in sorted(glob.glob(os.path.join(args.photos, "*.jpg")))]
    if not sources:
        raise SystemExit(f"no photos found in {args.photos}")
    for c in CLASSES:
        os.makedirs(os.path.join(args.out, c), exist_ok=True)
    sources_txt = os.path.join(args.photos, "SOURCES.txt")
    with open(os.path.join(args.out, "LICENSE.txt"), "w") as f:
        f.write("Crops of desktop wallpapers shipped by Debian packages, described below.\n\n")
        if os.path.exists(sources_txt):
            with open(sources_txt) as s:
                f.write(s.read())

    for i in range(args.count):
        src = rng.choice(sources)
        aw, ah = rng.choice(ASPECTS)
        frac = rng.uniform(0.25, 0.9)
        ch = int(min(src.height, src.width * ah / aw) * frac)
        cw = int(ch * aw / ah)
        x0 = rng.randint(0, src.width - cw)
        y0 = rng.randint(0, src.height - ch)
        crop = src.crop((x0, y0, x0 + cw, y0 + ch))
        long_side = rng.choice(LONG_SIDES)
        scale = long_side / max(cw, ch)
        crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.BILINEAR)
        cls = CLASSES[i % len(CLASSES)]
        stem = os.path.join(args.out, cls, f"{i:05d}_{rng.randrange(1 << 30):08x}")
        kind = rng.random()
        if kind < 0.02:
            crop.save(stem + ".png")
        elif kind < 0.03:
            rgba = crop.copy()
            rgba.putalpha(rng.randint(128, 255))
            rgba.save(stem + ".png")
        elif kind < 0.06:
            crop.convert("L").save(stem + ".jpg", quality=rng.randint(75, 95))
        else:
            crop.save(stem + ".jpg", quality=rng.randint(75, 95), progressive=rng.random() < 0.1,
                      subsampling=0 if rng.random() < 0.1 else 2)


if __name__ == "__main__":
    main()
