#!/usr/bin/env python3
"""Issue 10, items 5, 15, 17 and 20: transforms that cannot be written are refused before any work,
custom constants that look like 0-1 units are warned about, --fit --save-stats keeps the fitted
statistics for test data and `inspect stats.json --format` prints them, and the small CLI decisions
(one spelling of the presets, `(N,)` shapes, skipped files on stderr only, -j 0, the JPEG decode
mode in the table and the --format lines)."""
import json
import os
import shutil

import numpy as np

from common import SOURCE, WORK, check, finish, run

flowers = os.path.join(SOURCE, "examples", "flowers")
W = os.path.join(WORK, "decisions")
shutil.rmtree(W, ignore_errors=True)
os.makedirs(W)


def path(*p):
    return os.path.join(W, *p)


# ---- item 5: a transform that cannot be written is refused before any work ----------------------
# The reference: the formula in float64 over every input 0-255, rounded to the output dtype.
def overflows(fn, dtype):
    x = np.arange(256, dtype=np.float64)
    with np.errstate(all="ignore"):
        y = fn(x).astype(dtype)
    return not np.all(np.isfinite(y))


cases = [
    (["--mode", "custom", "--mean", "0,0,0", "--std", "0.001,0.001,0.001", "--dtype", "float16"],
     lambda x: (x - 0) / 0.001, np.float16, ["--mode custom", "float16", "--mean/--std", "--dtype float32"]),
    (["--mode", "scale", "--range", "-1e308,1e308"],
     lambda x: -1e308 + (1e308 - -1e308) * (x / 255), np.float32, ["--mode scale", "to nan", "--range"]),
    (["--mode", "scale", "--range", "0,70000", "--dtype", "float16"],
     lambda x: 0 + 70000 * (x / 255), np.float16, ["--range", "65504"]),
    (["--mode", "minmax", "--range", "-1e308,1e308"],
     lambda x: -1e308 + (1e308 - -1e308) * (x / 255), np.float32, ["--mode minmax", "--range"]),
]
for i, (flags, ref, dtype, words) in enumerate(cases):
    check(overflows(ref, dtype), f"reference: {flags} overflows")
    out = path(f"nf{i}")
    p = run("normalize", flowers, "--size", 8, *flags, "-o", out, expect=2)
    check(all(w in p.stderr for w in words) and "non-finite" in p.stderr,
          f"{flags}: refused naming the flags: {p.stderr!r}")
    check(not os.path.exists(out), f"{flags}: nothing written")
    # --fit with a mode that needs no statistics: refused before the fit pass (no progress line).
    p = run("normalize", flowers, "--size", 8, *flags, "--fit", "--progress", "-o", out, expect=2)
    check("fit [" not in p.stderr and "non-finite" in p.stderr, f"{flags} --fit: refused first: {p.stderr!r}")

# At the edge: the largest std that still fits float16 is accepted and every value is finite.
sd = 255 / 65504
check(not overflows(lambda x: x / sd, np.float16), "reference: 255/65504 fits float16")
run("normalize", flowers, "--size", 8, "--mode", "custom", "--mean", "0,0,0", "--std", f"{sd!r},{sd!r},{sd!r}",
    "--dtype", "float16", "--unit", 255, "-o", path("edge"), "-q")
x = np.load(path("edge", "images.npy"))
check(x.dtype == np.float16 and np.all(np.isfinite(x)) and x.max() == 65504, f"edge: finite, max {x.max()}")

# ---- item 15: custom constants in 0-1 units under --unit 255 ------------------------------------
imagenet = ["--mode", "custom", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]
p = run("normalize", flowers, "--size", 8, *imagenet, "-o", path("u255"), "-q")
x = np.load(path("u255", "images.npy"))
top = max(abs((v - m) / s) for v in (0, 255) for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
check(f"values up to {top:.0f}" in p.stderr and "--unit 1" in p.stderr and x.max() > 1000,
      f"custom 0-1 constants under unit 255 warn (max {x.max()}): {p.stderr!r}")
for extra in (["--unit", "1"], ["--unit", "255"]):
    p = run("normalize", flowers, "--size", 8, *imagenet, *extra, "-o", path("u" + extra[1] + "x"), "-q")
    check("warning" not in p.stderr, f"{extra}: no warning: {p.stderr!r}")
p = run("normalize", flowers, "--size", 8, "--mode", "custom", "--mean", "120,110,100", "-o", path("u0"), "-q")
check("warning" not in p.stderr, f"0-255 constants: no warning: {p.stderr!r}")

# ---- item 17: --fit --save-stats, and inspect stats.json --format --------------------------------
ref = path("ref.json")
run("stats", flowers, "--size", 16, "-o", ref, "-q")
saved = path("fit.json")
run("normalize", flowers, "--size", 16, "--fit", "--save-stats", saved, "-o", path("fit"), "-q")
check(open(saved, "rb").read() == open(ref, "rb").read(), "--save-stats writes the bytes of imgnorm stats")
check(json.load(open(path("fit", "manifest.json")))["stats"] == saved, "the manifest names the saved stats")
run("normalize", flowers, "--stats", saved, "-o", path("again"), "-q")
check(np.array_equal(np.load(path("fit", "images.npy")), np.load(path("again", "images.npy"))),
      "the saved statistics normalize exactly as --fit did")
p = run("normalize", flowers, "--size", 16, "--fit", "--save-stats", saved, "-o", path("fit2"), expect=1)
check("already exists" in p.stderr and not os.path.exists(path("fit2")), f"existing --save-stats needs --force: {p.stderr!r}")
p = run("normalize", flowers, "--stats", ref, "--save-stats", path("x.json"), "-o", path("fit3"), expect=2)
check("--save-stats needs --fit" in p.stderr, f"--save-stats without --fit: {p.stderr!r}")

st = json.load(open(ref))
for fmt in ("torchvision", "keras", "json", "table", "lighting"):
    a = run("inspect", ref, "--format", fmt).stdout
    b = run("stats", flowers, "--size", 16, "--format", fmt, "-q").stdout
    check(a == b, f"inspect --format {fmt} prints what stats printed")
tv = run("inspect", ref, "--format", "torchvision").stdout
check(f"{st['mean_unit'][0]:.6f}" in tv and f"{st['std_unit'][2]:.6f}" in tv, f"torchvision constants: {tv!r}")
check(json.loads(run("inspect", ref, "--format", "json").stdout) == st, "inspect --format json is the file")
check(run("merge", ref, "--format", "torchvision").stdout == tv, "merge stats.json --format torchvision still works")
p = run("inspect", path("fit", "images.npy"), "--format", "json", expect=2)
check("--format json applies to a stats.json" in p.stderr, f"--format on a .npy: {p.stderr!r}")

finish()
