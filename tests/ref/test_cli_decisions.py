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

# ---- item 20: small CLI decisions ----------------------------------------------------------------
# denormalize takes -q (and --progress) as the other commands do.
run("normalize", flowers, "--size", 8, "--mode", "scale", "-o", path("dn"), "-q")
p = run("denormalize", path("dn", "images.npy"), "-o", path("dn", "q.npy"), "-q")
check(p.stderr == "", f"denormalize -q: nothing on stderr: {p.stderr!r}")
p = run("denormalize", path("dn", "images.npy"), "-o", path("dn", "p.npy"), "--progress")
check("denormalize [" in p.stderr and "40/40" in p.stderr, f"denormalize --progress: a bar: {p.stderr!r}")
check(open(path("dn", "q.npy"), "rb").read() == open(path("dn", "p.npy"), "rb").read(), "same pixels either way")

# One spelling of the presets: help, errors and the summary say imagenet; preset:NAME still works.
help_text = run("normalize", "--help").stdout
check("| imagenet | caffe | inception | clip |" in help_text and "preset:" not in help_text, "help spells imagenet")
a = run("normalize", flowers, "--size", 8, "--mode", "imagenet", "-o", path("in1"))
b = run("normalize", flowers, "--size", 8, "--mode", "preset:imagenet", "-o", path("in2"))
check("mode imagenet" in a.stdout and a.stdout.replace("in1", "X") == b.stdout.replace("in2", "X"), f"summary: {a.stdout!r}")
check(open(path("in1", "images.npy"), "rb").read() == open(path("in2", "images.npy"), "rb").read(), "preset:imagenet = imagenet")
p = run("normalize", flowers, "--mode", "preset:foo", "-o", path("in3"), expect=2)
check("unknown preset 'foo' (expected imagenet|caffe|inception|clip)" in p.stderr, f"unknown preset: {p.stderr!r}")
p = run("normalize", flowers, "--mode", "foo", "-o", path("in3"), expect=2)
check("imagenet|caffe|inception|clip" in p.stderr and "preset:" not in p.stderr, f"unknown mode: {p.stderr!r}")

# inspect writes shapes as numpy does.
for name in ("labels.npy", "images.npy"):
    arr = np.load(path("dn", name))
    p = run("inspect", path("dn", name))
    check(f": shape {arr.shape}, dtype {arr.dtype}" in p.stdout.splitlines()[0], f"{name}: {p.stdout.splitlines()[0]!r} vs {arr.shape}")

# Skipped files: listed on stderr (warnings), counted on stdout (results), not both.
ds = path("bad")
shutil.copytree(flowers, ds)
bad = os.path.join(ds, "daisy", "zz-broken.jpg")
with open(bad, "wb") as f:
    f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
p = run("stats", ds, "--size", 8)
check(f"skipped {bad}" in p.stderr and bad not in p.stdout, f"skipped once, on stderr: {p.stdout!r}")
check("1 skipped" in p.stdout, f"the table counts it: {p.stdout!r}")
p = run("stats", ds, "--size", 8, "-q", "-o", path("bad.json"))
check(bad not in p.stdout + p.stderr and json.load(open(path("bad.json")))["skipped"][0]["path"] == bad, "-q: in stats.json only")
check(bad not in run("inspect", path("bad.json")).stdout, "inspect's table counts, does not list")

# -j 0 means all cores (as Python's threads=0), and says so.
check("0 (the default): all cores" in run("stats", "--help").stdout, "--threads help documents 0")
j0 = run("stats", flowers, "--size", 8, "-j", 0, "--format", "json").stdout
j1 = run("stats", flowers, "--size", 8, "-j", 1, "--format", "json").stdout
check(j0 == j1, "-j 0 gives the same statistics as -j 1")
run("stats", flowers, "-j", 1025, expect=2)

# The decode mode is stated in the table and in the --format lines' comments.
for extra, words in (([], "JPEGs DCT-scaled where the size allows"), (["--exact-decode"], "JPEGs decoded at full size")):
    t = run("stats", flowers, "--size", 8, *extra).stdout
    check(f"decode: {words}" in t.splitlines()[1], f"table {extra}: {t!r}")
    for fmt in ("torchvision", "keras", "lighting"):
        out = run("stats", flowers, "--size", 8, *extra, "--format", fmt).stdout
        check(f"# " in out and words in out, f"--format {fmt} {extra}: {out!r}")
# ... and it is the reason the default differs from a cv2 loop: --exact-decode matches it.
import cv2  # noqa: E402
from common import image_files, tutorial_pixels  # noqa: E402

px = tutorial_pixels(image_files(flowers), 64).reshape(-1, 3).astype(np.float64)
ex = json.loads(run("stats", flowers, "--size", 64, "--exact-decode", "--format", "json").stdout)
df = json.loads(run("stats", flowers, "--size", 64, "--format", "json").stdout)
check(np.allclose(ex["mean"], px.mean(0), rtol=0, atol=1e-9), "--exact-decode equals the cv2 loop")
check(not np.allclose(df["mean"], px.mean(0), rtol=0, atol=1e-3), "the DCT-scaled default does not (hence the note)")

finish()
