#!/usr/bin/env python3
"""Edge cases of imgnorm normalize / denormalize found in review: checks run before anything is
written, inputs that look like something else are refused, --force leaves no stale outputs."""
import json
import os
import shutil

import cv2
import numpy as np

from common import SOURCE, WORK, check, finish, run

flowers = os.path.join(SOURCE, "examples", "flowers")
W = os.path.join(WORK, "edges")
shutil.rmtree(W, ignore_errors=True)
os.makedirs(W)


def path(*p):
    return os.path.join(W, *p)


# One H x W x 3 image saved as .npy is not N gray images.
np.save(path("one.npy"), np.zeros((8, 6, 3), np.uint8))
p = run("normalize", path("one.npy"), "--mode", "scale", "-o", path("o1"), expect=1)
check("x[None]" in p.stderr and not os.path.exists(path("o1")), f"(H,W,3) .npy refused, nothing created: {p.stderr!r}")

# A header with no rows but huge images: refused before allocating, nothing created.
hdr = "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 65535, 65535, 3), }"
with open(path("z.npy"), "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + (118).to_bytes(2, "little") + (hdr.ljust(117) + "\n").encode())
p = run("normalize", path("z.npy"), "--mode", "scale", "-o", path("o2"), expect=1)
check("no rows" in p.stderr and not os.path.exists(path("o2")), f"0-row .npy refused: {p.stderr!r}")

# The output folder inside the dataset folder would be a class next time.
ds = path("ds")
shutil.copytree(flowers, ds)
p = run("normalize", ds, "--mode", "scale", "--size", 16, "-o", os.path.join(ds, "out"), expect=2)
check("inside the dataset folder" in p.stderr and not os.path.exists(os.path.join(ds, "out")), f"-o inside the dataset: {p.stderr!r}")

# A check that needs no data fails before the --fit pass and before the folder exists.
p = run("normalize", ds, "--fit", "--mode", "scale", "--divide-std", "-o", path("o3"), expect=2)
check("--divide-std applies" in p.stderr and not os.path.exists(path("o3")), f"a bad flag refused first: {p.stderr!r}")

# Gray output without statistics decodes gray (= cv2.IMREAD_GRAYSCALE) instead of failing.
run("normalize", ds, "--mode", "scale", "--channels", "gray", "--size", 16, "--exact-decode", "-o", path("g"), "-q")
g = np.load(path("g", "images.npy"))
first = os.path.join(ds, "daisy", "daisy_00.jpg")
ref = cv2.resize(cv2.imread(first, cv2.IMREAD_GRAYSCALE), (16, 16)).astype(np.float64) / 255
check(g.shape[1:] == (16, 16, 1) and np.array_equal(g[0, :, :, 0], ref.astype(np.float32)), f"--channels gray without stats: {g.shape}")

# --force with --no-labels removes the old labels.npy, so the folder never mixes two runs.
run("normalize", ds, "--mode", "scale", "--size", 16, "-o", path("f"), "-q")
check(os.path.exists(path("f", "labels.npy")), "labels.npy written")
run("normalize", ds, "--mode", "scale", "--size", 16, "-o", path("f"), "-q", "--force", "--no-labels")
check(not os.path.exists(path("f", "labels.npy")) and os.path.exists(path("f", "images.npy")), "--force --no-labels leaves no stale labels.npy")

# The mean image is recorded with an absolute path: denormalize works from any folder.
run("stats", ds, "--size", 16, "-o", path("st.json"), "--mean-image", path("mi.npy"), "-q")
run("normalize", ds, "--stats", path("st.json"), "--mode", "mean-image", "--mean-image", "mi.npy", "-o", "mi", "-q", cwd=W)
run("denormalize", path("mi", "images.npy"), "-o", path("back.npy"), cwd="/")
run("normalize", ds, "--stats", path("st.json"), "--mode", "scale", "-o", path("sc"), "-q")
back, sc = np.load(path("back.npy")), np.load(path("sc", "images.npy"))
check(np.array_equal(back.astype(np.float32) / 255, sc) or np.array_equal(np.round(sc * 255).astype(np.uint8), back), "mean-image denormalize from another folder is exact")

# manifest.json describes the recipe exactly as stats.json does.
man = json.load(open(path("sc", "manifest.json")))
check(man["recipe"] == json.load(open(path("st.json")))["recipe"], f"manifest recipe equals stats.json's: {man['recipe']}")

# Absurd thread counts are a usage error, not an overflow.
p = run("stats", ds, "--threads", 1000000000, expect=2)
check("--threads" in p.stderr, f"--threads out of range: {p.stderr!r}")
finish()
