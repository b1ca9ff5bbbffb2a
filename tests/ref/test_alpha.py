#!/usr/bin/env python3
"""Transparent images (issue 10, item 21): by default alpha is dropped as cv2.imread does; --alpha
white|black|R,G,B composites in the file's own precision, out = (c*a + bg*(max - a)) / max rounded
(max 255, or 65535 with the background x 257 before the >> 8 of 16-bit files), for RGBA, gray+alpha,
palette+tRNS and colour-key tRNS PNGs of 8 and 16 bits and for WebP. The reference composites the
RGBA values cv2.imread(IMREAD_UNCHANGED) reads. The choice is part of the recipe: stats.json and
manifest.json record it (no key for the default, so those files are unchanged), normalize --stats
uses it and warns when overridden, merge refuses mixing it."""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zlib

import cv2
import numpy as np

from common import DUMP, SOURCE, WORK, check, finish, run

W = os.path.join(WORK, "alpha")
shutil.rmtree(W, ignore_errors=True)
os.makedirs(W)


def path(*p):
    return os.path.join(W, *p)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(file, samples, color_type, bit_depth, plte=None, trns=None):
    """A PNG of `samples` (H, W, samples per pixel; palette indices for color type 3), written by hand
    so every colour type, bit depth and tRNS form can be made."""
    h, w = samples.shape[:2]
    dt = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\0" + samples[y].astype(dt).tobytes() for y in range(h))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    if plte is not None:
        data += chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).ravel()))
    if trns is not None:
        data += chunk(b"tRNS", trns)
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(file, "wb") as f:
        f.write(data)


def dump(file, *opts):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npy")
        p = subprocess.run([DUMP, file, out, *opts], capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stderr)
            return None
        return np.load(out)


def rgba_of(file, key=None):
    """(RGBA int64 array, maxval) from cv2.imread(IMREAD_UNCHANGED). Gray files with a tRNS colour key
    come back without alpha from cv2: the key gives it (0 where the sample equals it, else max)."""
    a = cv2.imread(file, cv2.IMREAD_UNCHANGED)
    maxval = 65535 if a.dtype == np.uint16 else 255
    a = a.astype(np.int64)
    if a.ndim == 2:
        alpha = np.where(a == key, 0, maxval)
        return np.stack([a, a, a, alpha], axis=-1), maxval
    return a[..., [2, 1, 0, 3]], maxval


def composite(rgba, maxval, bg):
    """The documented compositing in integers: rounded to nearest, then 16-bit reduced by >> 8."""
    scale = 257 if maxval == 65535 else 1
    bg = np.array(bg, np.int64) * scale
    c, a = rgba[..., :3], rgba[..., 3:]
    out = (c * a + bg * (maxval - a) + maxval // 2) // maxval
    return (out >> 8 if maxval == 65535 else out).astype(np.uint8), out


def gray_of(rgb, maxval):
    """Gray of composited colour as for an opaque colour PNG without gamma: libpng's rgb_to_gray
    (equal samples pass through; 8-bit truncates, 16-bit rounds, then >> 8)."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    if maxval == 255:
        v = np.where((r == g) & (r == b), r, (9797 * r + 19234 * g + 3737 * b) >> 15)
    else:
        v = np.where((r == g) & (r == b), r, (9797 * r + 19234 * g + 3737 * b + 16384) >> 15) >> 8
    return v.astype(np.uint8)[..., None]


rng = np.random.default_rng(21)
H, Wd = 6, 9


def alpha_with_extremes(shape, maxval):
    a = rng.integers(0, maxval + 1, shape)
    a.flat[0], a.flat[1] = 0, maxval  # fully transparent and fully opaque pixels
    return a


files = {}  # name -> (path, tRNS gray key or None)
s8 = rng.integers(0, 256, (H, Wd, 4))
s8[..., 3] = alpha_with_extremes((H, Wd), 255)
write_png(path("rgba8.png"), s8, 6, 8)
files["rgba8"] = (path("rgba8.png"), None)
s16 = rng.integers(0, 65536, (H, Wd, 4))
s16[..., 3] = alpha_with_extremes((H, Wd), 65535)
write_png(path("rgba16.png"), s16, 6, 16)
files["rgba16"] = (path("rgba16.png"), None)
la8 = np.stack([rng.integers(0, 256, (H, Wd)), alpha_with_extremes((H, Wd), 255)], axis=-1)
write_png(path("la8.png"), la8, 4, 8)
files["la8"] = (path("la8.png"), None)
la16 = np.stack([rng.integers(0, 65536, (H, Wd)), alpha_with_extremes((H, Wd), 65535)], axis=-1)
write_png(path("la16.png"), la16, 4, 16)
files["la16"] = (path("la16.png"), None)
# Palette with tRNS for the first 10 of 16 entries (the rest opaque), entry 0 fully transparent.
trns = rng.integers(0, 256, 10).astype(np.uint8)
trns[0], trns[1] = 0, 255
write_png(path("palette.png"), rng.integers(0, 16, (H, Wd, 1)), 3, 8, plte=rng.integers(0, 256, (16, 3)),
          trns=bytes(trns))
files["palette"] = (path("palette.png"), None)
# Colour keys: gray 8-bit (value 80 transparent), RGB 16-bit ((65535, 0, 65535) transparent).
write_png(path("graykey.png"), rng.integers(0, 4, (H, Wd, 1)) * 80, 0, 8, trns=struct.pack(">H", 80))
files["graykey"] = (path("graykey.png"), 80)
write_png(path("rgbkey16.png"), rng.integers(0, 2, (H, Wd, 3)) * 65535, 2, 16,
          trns=struct.pack(">HHH", 65535, 0, 65535))
files["rgbkey16"] = (path("rgbkey16.png"), None)
# WebP with alpha, lossless, through cv2 (BGRA).
bgra = rng.integers(0, 256, (H, Wd, 4)).astype(np.uint8)
bgra[..., 3] = alpha_with_extremes((H, Wd), 255)
cv2.imwrite(path("rgba.webp"), bgra, [cv2.IMWRITE_WEBP_QUALITY, 101])
files["webp"] = (path("rgba.webp"), None)

backgrounds = {"white": (255, 255, 255), "black": (0, 0, 0), "10,200,77": (10, 200, 77)}
for name, (file, key) in files.items():
    rgba, maxval = rgba_of(file, key)
    check(rgba[..., 3].min() == 0, f"{name}: has transparent pixels")
    # Default and --alpha drop: cv2.imread(IMREAD_COLOR), alpha ignored.
    cv_rgb = cv2.imread(file, cv2.IMREAD_COLOR)[..., ::-1]
    for opts in [(), ("--alpha", "drop")]:
        got = dump(file, *opts)
        check(got is not None and np.array_equal(got, cv_rgb), f"{name} {opts}: equals cv2.imread (alpha dropped)")
    for bg_name, bg in backgrounds.items():
        ref, full = composite(rgba, maxval, bg)
        got = dump(file, "--alpha", bg_name)
        ok = got is not None and np.array_equal(got, ref)
        check(ok, f"{name} --alpha {bg_name}: composited RGB" +
              ("" if got is None else f", max diff {np.abs(got.astype(int) - ref).max()}"))
        got = dump(file, "--alpha", bg_name, "--channels", "bgr")
        check(got is not None and np.array_equal(got, ref[..., ::-1]), f"{name} --alpha {bg_name}: BGR")
        gray = dump(file, "--alpha", bg_name, "--channels", "gray")
        if file.endswith(".webp"):
            want = cv2.cvtColor(np.ascontiguousarray(ref[..., ::-1]), cv2.COLOR_BGR2GRAY)[..., None]
        else:
            want = gray_of(full, maxval)
        check(gray is not None and np.array_equal(gray, want), f"{name} --alpha {bg_name}: gray")
    # The documented black/white extremes: a transparent pixel is the background, opaque is itself.
    got = dump(file, "--alpha", "10,200,77")
    check(got is not None and tuple(got.reshape(-1, 3)[np.argmax(rgba[..., 3].ravel() == 0)]) == (10, 200, 77),
          f"{name}: a fully transparent pixel is the background")

# Opaque files are untouched by --alpha: an RGB PNG without tRNS and JPEGs.
opaque = rng.integers(0, 256, (H, Wd, 3))
write_png(path("rgb8.png"), opaque, 2, 8)
for file in [path("rgb8.png"), os.path.join(SOURCE, "tests", "data", "jpeg_444.jpg"),
             os.path.join(SOURCE, "tests", "data", "webp_lossless.webp")]:
    check(np.array_equal(dump(file, "--alpha", "white"), dump(file)), f"{os.path.basename(file)}: opaque, unchanged")

# ---- the recipe, through the CLI -----------------------------------------------------------------
# Transparent clipart: a coloured shape on fully transparent black (what cv2.imread turns black).
ds = path("clipart")
os.makedirs(os.path.join(ds, "shapes"))
art = np.zeros((16, 16, 4), np.uint8)
art[4:12, 4:12] = (40, 160, 220, 255)  # BGRA
art[4:12, 12] = (40, 160, 220, 128)    # a half-transparent edge
for i in range(3):
    cv2.imwrite(os.path.join(ds, "shapes", f"s{i}.png"), np.roll(art, i, axis=1))
pngs = [os.path.join(ds, "shapes", f"s{i}.png") for i in range(3)]
white = np.stack([composite(*rgba_of(f), (255, 255, 255))[0] for f in pngs])
drop = np.stack([cv2.imread(f)[..., ::-1] for f in pngs])

run("stats", ds, "--size", 16, "-o", path("drop.json"), "-q")
d = json.load(open(path("drop.json")))
check("alpha" not in d["recipe"], f"default recipe has no alpha key: {d['recipe']}")
check(d["median"] == [0, 0, 0], f"alpha dropped: clipart's median is black: {d['median']}")

run("stats", ds, "--size", 16, "--alpha", "white", "-o", path("white.json"), "-q")
w = json.load(open(path("white.json")))
check(w["recipe"].get("alpha") == "white", f"--alpha white recorded: {w['recipe']}")
mean = white.reshape(-1, 3).astype(np.float64).mean(axis=0)
check(np.allclose(w["mean"], mean, rtol=0, atol=1e-9), f"mean over the composited pixels: {w['mean']} vs {mean}")
check(w["median"] == [255, 255, 255], f"composited on white: median {w['median']}")
run("stats", ds, "--size", 16, "--alpha", "255,255,255", "-o", path("white2.json"), "-q")
check(open(path("white2.json")).read() == open(path("white.json")).read(), "--alpha 255,255,255 is white")
run("stats", ds, "--size", 16, "--alpha", "1,2,3", "-o", path("c.json"), "-q")
check(json.load(open(path("c.json")))["recipe"].get("alpha") == "1,2,3", "--alpha R,G,B recorded as R,G,B")

# normalize --stats takes the training recipe's alpha and records it in manifest.json.
p = run("normalize", ds, "--stats", path("white.json"), "--mode", "scale", "-o", path("n_white"), "-q")
check("warning" not in p.stderr, f"no warning when the recipe is the training one: {p.stderr!r}")
x = np.load(path("n_white", "images.npy"))
check(np.array_equal(x, (white.astype(np.float64) / 255).astype(np.float32)), "normalize composites as the stats did")
m = json.load(open(path("n_white", "manifest.json")))
check(m["recipe"].get("alpha") == "white", f"manifest records alpha: {m['recipe']}")
run("normalize", ds, "--stats", path("drop.json"), "--mode", "scale", "-o", path("n_drop"), "-q")
check("alpha" not in json.load(open(path("n_drop", "manifest.json")))["recipe"], "default manifest: no alpha key")
check(np.array_equal(np.load(path("n_drop", "images.npy")), (drop.astype(np.float64) / 255).astype(np.float32)),
      "default normalize drops alpha")

# Overriding the training recipe's alpha warns, as for any recipe field.
p = run("normalize", ds, "--stats", path("white.json"), "--alpha", "drop", "--mode", "scale", "-o", path("n_o"))
check("the recipe differs from the training recipe in" in p.stderr and "(alpha white vs drop)" in p.stderr,
      f"--alpha override warns: {p.stderr!r}")

# Old files (no key) read as drop; a bad value in the file is refused naming the field.
old = json.load(open(path("white.json")))
del old["recipe"]["alpha"]
json.dump(old, open(path("old.json"), "w"))
p = run("normalize", ds, "--stats", path("old.json"), "--alpha", "white", "--mode", "scale", "-o", path("n_old"))
check("(alpha drop vs white)" in p.stderr, f"a file without the key is drop: {p.stderr!r}")
old["recipe"]["alpha"] = "purple"
json.dump(old, open(path("bad.json"), "w"))
p = run("normalize", ds, "--stats", path("bad.json"), "--mode", "scale", "-o", path("n_bad"), expect=None)
check(p.returncode != 0 and "field 'recipe.alpha': invalid alpha 'purple' (expected drop|white|black|R,G,B with 0-255)"
      in p.stderr and not os.path.exists(path("n_bad")), f"bad alpha in stats.json: {p.stderr!r}")

# merge refuses statistics with different alpha (different pixels).
run("stats", ds, "--size", 16, "--shard", "0/2", "-o", path("s0.json"), "-q")
run("stats", ds, "--size", 16, "--shard", "1/2", "--alpha", "white", "-o", path("s1.json"), "-q")
p = run("merge", path("s0.json"), path("s1.json"), "-o", path("m.json"), expect=None)
check(p.returncode != 0 and "recipes differ" in p.stderr, f"merge of different alpha refused: {p.stderr!r}")

# Bad values on the command line.
for bad in ["purple", "256,0,0", "1,2", "1,2,3,4", "-1,0,0", ""]:
    p = run("stats", ds, "--alpha", bad, expect=2)
    check(p.stderr == f"imgnorm: invalid alpha '{bad}' (expected drop|white|black|R,G,B with 0-255)\n",
          f"--alpha {bad!r}: {p.stderr!r}")

finish()
