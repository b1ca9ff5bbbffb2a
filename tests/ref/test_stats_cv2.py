#!/usr/bin/env python3
"""imgnorm stats against the tutorial's pipeline: cv2.imread + cv2.resize into one float64 array,
numpy mean/std over axis (0,1,2). With --exact-decode the numbers must agree to 1e-12 relative,
min/max/median/percentiles exactly; thread count and sharding must not change a byte."""
import json
import os

import cv2
import numpy as np

from common import WORK, check, finish, image_files, photos, run

root = photos(200)
files = image_files(root)
print(f"dataset: {root} ({len(files)} images)")


def tutorial(size, flag=cv2.IMREAD_COLOR):
    arr = []
    for f in files:
        img = cv2.imread(f, flag)
        img = cv2.resize(img, (size, size))
        if img.ndim == 2:
            img = img[:, :, None]
        else:
            img = img[:, :, ::-1]  # BGR → RGB
        arr.append(img)
    return np.stack(arr).astype(np.float64)


def close(a, b, rel=1e-12):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all(np.abs(a - b) <= rel * np.maximum(np.abs(b), 1e-300)))


for size in (224, 64):
    out = os.path.join(WORK, f"stats{size}.json")
    mean_img = os.path.join(WORK, f"mean{size}.npy")
    run("stats", root, "--size", size, "--exact-decode", "-o", out, "--mean-image", mean_img, "--force", "-q")
    st = json.load(open(out))
    data = tutorial(size)
    flat = data.reshape(-1, 3)
    check(st["counts"]["images"] == len(files), f"{size}: images {st['counts']['images']} != {len(files)}")
    # numpy float64 over each channel as one contiguous array (numpy's pairwise summation): the
    # exact statistics to ~1e-15. The tutorial's own expression, data.mean(axis=(0, 1, 2)), sums
    # strided values one by one and is itself off by up to ~1e-11 at this size: within 1e-10.
    chans = [np.ascontiguousarray(flat[:, c]) for c in range(3)]
    check(close(st["mean"], [v.mean() for v in chans]), f"{size}: mean {st['mean']}")
    check(close(st["std"], [v.std() for v in chans]), f"{size}: std {st['std']}")
    check(close(st["mean_unit"], [(v / 255).mean() for v in chans]), f"{size}: mean_unit")
    check(close(st["std_unit"], [(v / 255).std() for v in chans]), f"{size}: std_unit")
    check(close(st["mean"], data.mean(axis=(0, 1, 2)), 1e-10), f"{size}: mean vs the tutorial's expression")
    check(close(st["std"], data.std(axis=(0, 1, 2)), 1e-10), f"{size}: std vs the tutorial's expression")
    check(st["min"] == flat.min(axis=0).tolist(), f"{size}: min")
    check(st["max"] == flat.max(axis=0).tolist(), f"{size}: max")
    check(st["median"] == np.median(flat, axis=0).tolist(), f"{size}: median {st['median']}")
    for p in ("1", "5", "95", "99"):
        check(close(st["percentiles"][p], np.percentile(flat, float(p), axis=0), 1e-12), f"{size}: percentile {p}")
    check(close(st["covariance"], np.cov(flat.T, ddof=0), 1e-11), f"{size}: covariance")
    per_image_std = data.std(axis=(1, 2)).mean(axis=0)
    check(close(st["mean_image_std"], per_image_std, 1e-9), f"{size}: mean_image_std {st['mean_image_std']} vs {per_image_std}")
    m = np.load(mean_img)
    check(m.shape == (size, size, 3) and m.dtype == np.float64, f"{size}: mean image shape {m.shape} {m.dtype}")
    check(close(m, data.mean(axis=0), 1e-12), f"{size}: mean image values")
    hist = np.array(st["histograms"])
    check(all((hist[c] == np.bincount(flat[:, c].astype(np.int64), minlength=256)).all() for c in range(3)), f"{size}: histograms")

# ddof 1 and grayscale, at 64
out = os.path.join(WORK, "stats64_ddof1.json")
run("stats", root, "--size", 64, "--exact-decode", "--ddof", 1, "-o", out, "--force", "-q")
st = json.load(open(out))
data = tutorial(64)
check(close(st["std"], [np.ascontiguousarray(data[..., c]).std(ddof=1) for c in range(3)]), "ddof 1 std")
out = os.path.join(WORK, "stats64_gray.json")
run("stats", root, "--size", 64, "--exact-decode", "--channels", "gray", "-o", out, "--force", "-q")
st = json.load(open(out))
gray = tutorial(64, cv2.IMREAD_GRAYSCALE)
check(len(st["mean"]) == 1 and close(st["mean"], [gray.ravel().mean()]), f"gray mean {st['mean']} vs {gray.mean()}")
check(close(st["std"], [gray.ravel().std()]), "gray std")

# Determinism: --threads 1, 2, 8 and 4 merged shards give the same bytes.
texts = []
for t in (1, 2, 8):
    out = os.path.join(WORK, f"det_t{t}.json")
    run("stats", root, "--size", 96, "--threads", t, "-o", out, "--force", "-q")
    texts.append(open(out).read())
shards = []
for i in range(4):
    out = os.path.join(WORK, f"det_shard{i}.json")
    run("stats", root, "--size", 96, "--shard", f"{i}/4", "-o", out, "--force", "-q")
    shards.append(out)
merged = os.path.join(WORK, "det_merged.json")
run("merge", *shards, "-o", merged, "--force")
texts.append(open(merged).read())
check(all(t == texts[0] for t in texts), "threads 1/2/8 and merged shards give identical stats.json")

# Printed formats
p = run("stats", root, "--size", 64, "--format", "torchvision", "-q")
line = p.stdout.strip()
check(line.startswith("transforms.Normalize(mean=[") and "])  # 0-1 units, rgb; JPEGs DCT-scaled" in line,
      f"torchvision line: {line}")
p = run("stats", root, "--size", 64, "--format", "keras", "-q")
check(p.stdout.startswith("layers.Normalization(axis=-1, mean=["), f"keras line: {p.stdout}")

# Sampling: a sample block with intervals that contain the sample's own estimate.
out = os.path.join(WORK, "sample.json")
run("stats", root, "--size", 64, "--sample", "25%", "--seed", 3, "-o", out, "--force", "-q")
st = json.load(open(out))
check(st["sample"]["sampled"] == round(len(files) * 0.25) and st["sample"]["population"] == len(files), f"sample counts {st['sample']}")
check(all(lo <= m <= hi for (lo, hi), m in zip(st["sample"]["mean_ci95"], st["mean"])), "mean inside its interval")
out2 = os.path.join(WORK, "sample2.json")
run("stats", root, "--size", 64, "--sample", "25%", "--seed", 3, "-o", out2, "--force", "-q")
check(open(out).read() == open(out2).read(), "same seed, same sample")

# Errors: one line on stderr, non-zero exit, no stack trace.
p = run("stats", os.path.join(WORK, "no-such-folder"), expect=1)
check(p.stderr.count("\n") == 1 and "no-such-folder" in p.stderr, f"missing folder message: {p.stderr!r}")
p = run("stats", root, "--size", "0", expect=2)
check("size" in p.stderr, f"bad size message: {p.stderr!r}")
empty = os.path.join(WORK, "empty-dataset")
os.makedirs(os.path.join(empty, "cls"), exist_ok=True)
p = run("stats", empty, expect=1)
check("no image files" in p.stderr, f"empty dataset message: {p.stderr!r}")
finish()
