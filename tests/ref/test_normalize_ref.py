#!/usr/bin/env python3
"""imgnorm normalize, every mode, against numpy float64 transcriptions of docs/normalize.md on the
same u8 pixels (cv2.imread + cv2.resize, which --exact-decode reproduces exactly), rounded once to
float32 / float16; imagenet against torchvision's ToTensor + Normalize (in float64); per-image
against TensorFlow's per_image_standardization formula. Two datasets: the photos and a small
synthetic one with constant images, constant channels and a narrow value range."""
import json
import os
import shutil

import cv2
import numpy as np

from common import load_stats, tutorial_pixels, WORK, check, finish, image_files, photos, run

S = 32
OUT = os.path.join(WORK, "norm-ref")
shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(OUT)


def cv2_pixels(files, size=S):
    return tutorial_pixels(files, size)


def normalize(name, inp, *args, expect=0):
    out = os.path.join(OUT, name)
    p = run("normalize", inp, "-o", out, *args, "--force", "-q", expect=expect)
    if expect != 0:
        return p, None, None, None
    images = np.load(os.path.join(out, "images.npy"))
    lp = os.path.join(out, "labels.npy")
    labels = np.load(lp) if os.path.exists(lp) else None
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    return p, images, labels, manifest


def ordered(a):
    """float32/float16 bits mapped to integers that are ordered like the values (ulp distances)."""
    a = np.ascontiguousarray(a)
    bits = {np.float32: np.int32, np.float16: np.int16}[a.dtype.type]
    i = a.view(bits).astype(np.int64)
    sign = np.int64(1) << (8 * a.dtype.itemsize - 1)
    return np.where(i < 0, -(i + sign), i)  # -0.0 and +0.0 both map to 0


def ulps(got, ref64):
    """Largest distance in ulps of got's dtype between got and ref64 rounded to that dtype."""
    if got.shape != ref64.shape:
        return float("inf")
    return int(np.max(np.abs(ordered(got) - ordered(ref64.astype(got.dtype))))) if got.size else 0


def same(got, ref64, tol_ulps=0):
    """got equals ref64 (float64) rounded once to got's dtype, within tol_ulps."""
    if got is None or got.shape != ref64.shape or not np.all(np.isfinite(got)):
        return False
    return ulps(got, ref64) <= tol_ulps


# --- references of docs/normalize.md, float64, in the documented order of operations ---------


def r_minmax(x, lo=0.0, hi=1.0):
    """Per image and channel; a constant channel gives lo."""
    mn = x.min(axis=(1, 2), keepdims=True)
    mx = x.max(axis=(1, 2), keepdims=True)
    rng = mx - mn
    with np.errstate(invalid="ignore", divide="ignore"):
        y = lo + (hi - lo) * ((x - mn) / rng)
    return np.where(rng == 0, lo, y)


def exact_moments(u8, axes):
    """Mean and population std from exact integer sums, as the doc describes them."""
    v = u8.astype(np.int64)
    n = int(np.prod([u8.shape[a] for a in axes]))
    s = v.sum(axis=axes, keepdims=True)
    q = (v * v).sum(axis=axes, keepdims=True)
    mean = s / n
    var = (n * q - s * s).astype(np.float64) / n / n
    return mean, np.sqrt(var), n


def r_per_image(u8, unit=255, per_channel=False):
    x = u8.astype(np.float64)
    axes = (1, 2) if per_channel else (1, 2, 3)
    mean, sd, n = exact_moments(u8, axes)
    floor = 1 / np.sqrt(n)
    if unit == 1:
        return (x / 255 - mean / 255) / np.maximum(sd / 255, floor)
    return (x - mean) / np.maximum(sd, floor)


def tf_per_image_standardization(u8):
    """numpy float64 transcription of tf.image.per_image_standardization (u8 cast without /255)."""
    out = []
    for img in u8.astype(np.float64):
        num_pixels = img.size
        image_mean = img.mean()
        stddev = img.std()
        min_stddev = 1.0 / np.sqrt(num_pixels)
        adjusted_stddev = max(stddev, min_stddev)
        out.append((img - image_mean) / adjusted_stddev)
    return np.stack(out)


IMAGENET = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))
CLIP = (np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711]))
CAFFE_BGR = np.array([103.939, 116.779, 123.68])


def references(u8, k, mimg):
    """(args, reference float64 (RGB unless said), output channel order, affine (a, b) or None,
    ulp tolerance for float32) for every mode. k: dataset stats in 0-255."""
    x = u8.astype(np.float64)
    mean, std, mn, mx = k["mean"], k["std"], k["min"], k["max"]
    cases = []

    def add(args, ref, order="rgb", affine=None, tol=0):
        cases.append((args, ref, order, affine, tol))

    add(["--mode", "scale"], 0.0 + 1.0 * (x / 255), affine=(np.full(3, 1 / 255), np.zeros(3)))
    add(["--mode", "scale", "--range", "-1,1"], -1.0 + 2.0 * (x / 255), affine=(np.full(3, 2 / 255), np.full(3, -1.0)))
    add(["--mode", "scale", "--range", "0,255"], 0.0 + 255.0 * (x / 255))
    add(["--mode", "center"], x - mean, affine=(np.ones(3), -mean))
    add(["--mode", "center", "--unit", "1"], x / 255 - mean / 255, affine=(np.full(3, 1 / 255), -mean / 255))
    add(["--mode", "standardize"], (x - mean) / std, affine=(1 / std, -mean / std))
    add(["--mode", "standardize", "--unit", "1"], (x / 255 - mean / 255) / (std / 255), affine=(1 / std, -mean / std))
    add(["--mode", "mean-image", "--mean-image", mimg[0]], x - mimg[1])
    add(["--mode", "mean-image", "--mean-image", mimg[0], "--divide-std"], (x - mimg[1]) / std)
    add(["--mode", "mean-image", "--mean-image", mimg[0], "--unit", "1"], x / 255 - mimg[1] / 255)
    add(["--mode", "mean-image", "--mean-image", mimg[0], "--divide-std", "--unit", "1"],
        (x / 255 - mimg[1] / 255) / (std / 255))
    add(["--mode", "minmax"], r_minmax(x))
    add(["--mode", "minmax", "--range", "-1,1"], r_minmax(x, -1.0, 1.0))
    add(["--mode", "minmax-dataset"], 0.0 + 1.0 * ((x - mn) / (mx - mn)), affine=(1 / (mx - mn), -mn / (mx - mn)))
    add(["--mode", "minmax-dataset", "--unit", "1"], 0.0 + 1.0 * ((x / 255 - mn / 255) / (mx / 255 - mn / 255)))
    add(["--mode", "minmax-dataset", "--range", "-1,1"], -1.0 + 2.0 * ((x - mn) / (mx - mn)))
    # per-image modes: exact moments and the formula in double, "within 1 float32 ulp" (doc).
    add(["--mode", "per-image"], r_per_image(u8), tol=1)
    add(["--mode", "per-image", "--unit", "1"], r_per_image(u8, 1), tol=1)
    add(["--mode", "per-image-channel"], r_per_image(u8, per_channel=True), tol=1)
    add(["--mode", "per-image-channel", "--unit", "1"], r_per_image(u8, 1, per_channel=True), tol=1)
    m, s = IMAGENET
    for name in ("preset:imagenet", "imagenet"):
        add(["--mode", name], (x / 255 - m) / s, affine=(1 / (255 * s), -m / s))
    m, s = CLIP
    for name in ("preset:clip", "clip"):
        add(["--mode", name], (x / 255 - m) / s)
    xb = x[..., ::-1]  # caffe's default output order is BGR, its constants are B, G, R
    for name in ("preset:caffe", "caffe"):
        add(["--mode", name], xb - CAFFE_BGR, order="bgr", affine=(np.ones(3), -CAFFE_BGR))
    add(["--mode", "caffe", "--channels", "rgb"], x - CAFFE_BGR[::-1])
    add(["--mode", "imagenet", "--channels", "bgr"], ((x / 255 - IMAGENET[0]) / IMAGENET[1])[..., ::-1], order="bgr")
    for name in ("preset:inception", "inception"):
        add(["--mode", name], x / 127.5 - 1)
    cm, cs = np.array([120.0, 110.5, 100.25]), np.array([60.0, 55.5, 50.125])
    add(["--mode", "custom", "--mean", "120,110.5,100.25", "--std", "60,55.5,50.125"], (x - cm) / cs,
        affine=(1 / cs, -cm / cs))
    add(["--mode", "custom", "--mean", "120,110.5,100.25"], (x - cm) / 1.0)
    um, us = np.array([0.5, 0.45, 0.4]), np.array([0.25, 0.2, 0.3])
    add(["--mode", "custom", "--unit", "1", "--mean", "0.5,0.45,0.4", "--std", "0.25,0.2,0.3"], (x / 255 - um) / us)
    # custom constants are in the output order: with bgr output the first constant goes to B.
    add(["--mode", "custom", "--channels", "bgr", "--mean", "120,110.5,100.25", "--std", "60,55.5,50.125"],
        (xb - cm) / cs, order="bgr")
    return cases


def check_dataset(tag, root, f16_all):
    files = image_files(root)
    u8 = cv2_pixels(files)
    stats_path = os.path.join(OUT, f"{tag}-stats.json")
    mean_path = os.path.join(OUT, f"{tag}-mean.npy")
    run("stats", root, "--size", S, "--exact-decode", "-o", stats_path, "--mean-image", mean_path, "--force", "-q")
    k, st = load_stats(stats_path)
    classes = st["classes"]
    labels_ref = np.array([classes.index(os.path.basename(os.path.dirname(f))) for f in files], dtype=np.int64)
    rels = [os.path.relpath(f, root) for f in files]
    mimg = (mean_path, np.load(mean_path))
    flat_channels = int(np.sum(u8.min(axis=(1, 2)) == u8.max(axis=(1, 2))))
    flat_images = int(np.sum(u8.reshape(len(u8), -1).min(axis=1) == u8.reshape(len(u8), -1).max(axis=1)))

    for i, (args, ref, order, affine, tol) in enumerate(references(u8, k, mimg)):
        what = f"{tag} {' '.join(map(str, args))}"
        dtypes = ("float32", "float16") if f16_all or i % 4 == 0 else ("float32",)
        for dtype in dtypes:
            _, img, lab, man = normalize(f"{tag}-{i}-{dtype}", root, "--stats", stats_path, *args, "--dtype", dtype)
            want = np.float32 if dtype == "float32" else np.float16
            check(img.dtype == want and img.shape == ref.shape, f"{what} {dtype}: {img.dtype} {img.shape} vs {ref.shape}")
            # float32: rounded once from the double; float16: rounded once from the double, never
            # through float32 (numpy's float64 -> float16 cast rounds directly).
            t = tol
            ok = same(img, ref, t)
            if not ok and img.shape == ref.shape:
                print(f"  {what} {dtype}: max {ulps(img, ref)} ulps, max abs {np.max(np.abs(img.astype(np.float64) - ref)):.3g}")
            check(ok, f"{what} {dtype}: images.npy equals the float64 reference (tol {t} ulp)")
            check(lab is not None and lab.dtype == np.int64 and np.array_equal(lab, labels_ref), f"{what}: labels")
            check(man.get("format") == "imgnorm-manifest" and man.get("version") == 1, f"{what}: manifest format")
            check(man.get("shape") == list(img.shape) and man.get("dtype") == dtype and man.get("layout") == "nhwc",
                  f"{what}: manifest shape/dtype/layout {man.get('shape')} {man.get('dtype')} {man.get('layout')}")
            check(man.get("channels") == order, f"{what}: manifest channels {man.get('channels')} != {order}")
            check(man.get("classes") == classes, f"{what}: manifest classes")
            mf = man.get("files") or []
            check(len(mf) == len(files) and all(e["path"].endswith(r) for e, r in zip(mf, rels))
                  and [e["label"] for e in mf] == labels_ref.tolist(), f"{what}: manifest files in row order")
            check(isinstance(man.get("formula"), str) and man.get("formula"), f"{what}: manifest formula")
            mode = args[1].removeprefix("preset:")
            check(man.get("mode", "").removeprefix("preset:") == mode, f"{what}: manifest mode {man.get('mode')}")
            check(man.get("skipped") == [], f"{what}: nothing skipped")
            if affine is not None:
                a, b = man.get("affine", {}).get("a"), man.get("affine", {}).get("b")
                ra, rb = affine
                if order == "bgr" and "caffe" not in args[1]:
                    ra, rb = ra[::-1], rb[::-1]
                ok = a is not None and b is not None and np.allclose(a, ra, rtol=1e-12, atol=1e-15) \
                    and np.allclose(b, rb, rtol=1e-12, atol=1e-12)
                check(ok, f"{what}: manifest affine a={a} b={b}, expected a={ra.tolist()} b={rb.tolist()}")
                # ... and it is the map: a*x + b reproduces the output to float rounding.
                ax = np.array(a)[None, None, None, :] * (u8[..., ::-1] if order == "bgr" else u8) + np.array(b)
                check(np.allclose(ax, img.astype(np.float64), rtol=1e-5 if dtype == "float32" else 2e-3, atol=1e-5 if dtype == "float32" else 2e-3),
                      f"{what}: affine reproduces the output")
            if mode in ("minmax", "per-image-channel"):
                check(man.get("constant_channels") == flat_channels,
                      f"{what}: constant_channels {man.get('constant_channels')} != {flat_channels}")
            elif mode == "per-image":
                check(man.get("constant_channels") == 3 * flat_images,
                      f"{what}: constant_channels {man.get('constant_channels')} != 3 x {flat_images} constant images")
            else:
                check(man.get("constant_channels") == 0, f"{what}: constant_channels {man.get('constant_channels')}")
    return files, u8, k, stats_path


# ---- 1. the photos ------------------------------------------------------------------------------
root = photos(200)
files, u8, k, stats_path = check_dataset("photos", root, f16_all=False)
print(f"photos: {len(files)} images at {S}x{S}")

# imagenet equals torchvision's ToTensor + Normalize evaluated in float64, NCHW.
import torch  # noqa: E402
from torchvision import transforms  # noqa: E402

_, img, _, man = normalize("photos-imagenet-nchw", root, "--stats", stats_path, "--mode", "preset:imagenet", "--layout", "nchw")
torch.set_default_dtype(torch.float64)
tv = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET[0].tolist(), IMAGENET[1].tolist())])
ref_tv = torch.stack([tv(im) for im in u8])
torch.set_default_dtype(torch.float32)
check(ref_tv.dtype == torch.float64 and img.shape == tuple(ref_tv.shape), f"torchvision shapes {img.shape} {tuple(ref_tv.shape)}")
check(np.array_equal(img, ref_tv.float().numpy()), "imagenet NCHW equals torchvision Normalize(ToTensor) in float64, rounded to float32")
check(man.get("layout") == "nchw" and man.get("shape") == list(ref_tv.shape), "imagenet NCHW manifest")
tv32 = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET[0].tolist(), IMAGENET[1].tolist())])
ref32 = torch.stack([tv32(im) for im in u8]).numpy()
dev = float(np.max(np.abs(ref32.astype(np.float64) - img)))
check(dev < 2e-6, f"float32 torchvision pipeline within 2e-6 of imgnorm ({dev:.3g})")
print(f"note: the float32 ToTensor+Normalize pipeline differs from imgnorm by up to {dev:.3g}")

# per-image against TensorFlow's formula (float64 transcription): within 1 float32 ulp.
_, img, _, _ = normalize("photos-tf", root, "--stats", stats_path, "--mode", "per-image")
ref_tf = tf_per_image_standardization(u8)
check(same(img, ref_tf, 1), f"per-image equals tf.image.per_image_standardization (float64) within 1 ulp ({ulps(img, ref_tf)})")

# The mode needs no stats file (--stats is only for dataset constants): same bytes without it.
for mode in ("scale", "per-image", "imagenet"):
    _, a, _, _ = normalize(f"photos-nostats-{mode}", root, "--mode", mode, "--size", S, "--exact-decode")
    _, b, _, _ = normalize(f"photos-stats-{mode}", root, "--stats", stats_path, "--mode", mode)
    check(a is not None and a.tobytes() == b.tobytes(), f"{mode}: without --stats (recipe from flags) same bytes")

# Bad mode / bad range: usage errors.
p = run("normalize", root, "-o", os.path.join(OUT, "bad"), "--mode", "no-such-mode", "--stats", stats_path, expect=None)
check(p.returncode == 2 and "no-such-mode" in p.stderr, f"unknown mode: exit {p.returncode} {p.stderr!r}")
p = run("normalize", root, "-o", os.path.join(OUT, "bad"), "--mode", "standardize", "--range", "0,1", "--stats", stats_path, expect=None)
check(p.returncode == 2 and "range" in p.stderr, f"--range with standardize: exit {p.returncode} {p.stderr!r}")
p = run("normalize", root, "-o", os.path.join(OUT, "bad"), "--mode", "standardize", "--size", S, expect=None)
check(p.returncode != 0 and p.returncode != 130 and not os.path.exists(os.path.join(OUT, "bad", "images.npy")),
      f"standardize without --stats or --fit is an error: exit {p.returncode} {p.stderr!r}")

# ---- 2. synthetic edge cases: constant images, a constant channel, a narrow range -------------
syn = os.path.join(WORK, "norm-synthetic")
shutil.rmtree(syn, ignore_errors=True)
rng = np.random.default_rng(5)
for c in ("a", "b"):
    os.makedirs(os.path.join(syn, c))


def put(cls, name, bgr):
    cv2.imwrite(os.path.join(syn, cls, name + ".png"), bgr.astype(np.uint8))


for i in range(6):  # low contrast noise, 40..199, odd sizes so the resize does something
    put("a", f"noise{i}", rng.integers(40, 200, size=(30 + i, 45, 3)))
put("a", "const128", np.full((20, 20, 3), 128))          # constant image
put("b", "const_gray7", np.full((33, 31, 3), 77))        # constant image
put("b", "const_color", np.full((16, 24, 3), (10, 200, 90)))  # each channel constant, not the image
img_r = rng.integers(50, 180, size=(40, 40, 3))
img_r[..., 2] = 150  # R (cv2's channel 2) constant
put("b", "flat_red", img_r)
put("b", "gradient", np.dstack([np.tile(np.arange(60, 124), (48, 1))] * 3))
check_dataset("synthetic", syn, f16_all=True)

# per-image on constant images: exact zeros, no NaN/Inf; per-image-channel: constant channels 0.
sf = image_files(syn)
su8 = cv2_pixels(sf)
_, img, _, _ = normalize("syn-tf", syn, "--mode", "per-image", "--size", S, "--exact-decode")
ref_tf = tf_per_image_standardization(su8)
check(same(img, ref_tf, 1), f"synthetic per-image equals TensorFlow's formula within 1 ulp ({ulps(img, ref_tf)})")
for i, f in enumerate(sf):
    if "const128" in f or "const_gray7" in f:
        check(np.all(img[i] == 0), f"per-image of constant {os.path.basename(f)}: all 0 ({np.unique(img[i])[:5]})")
_, img, _, _ = normalize("syn-pic", syn, "--mode", "per-image-channel", "--size", S, "--exact-decode")
check(np.all(np.isfinite(img)), "per-image-channel: finite")
for i, f in enumerate(sf):
    if "const_color" in f:
        check(np.all(img[i] == 0), "per-image-channel of an image with constant channels: 0")
    if "flat_red" in f:
        check(np.all(img[i, ..., 0] == 0) and np.any(img[i, ..., 1] != 0), "per-image-channel: constant R gives 0, G not")
_, img, _, _ = normalize("syn-minmax", syn, "--mode", "minmax", "--range", "-1,1", "--size", S, "--exact-decode")
for i, f in enumerate(sf):
    if "flat_red" in f:
        check(np.all(img[i, ..., 0] == -1) and img[i, ..., 1].min() == -1 and img[i, ..., 1].max() == 1,
              "minmax --range -1,1: constant channel gives lo, others span [lo, hi]")

# denormalize with constant images: per-image modes keep g = 1 (the divisor is floored), so the
# pixels come back exactly; minmax maps a constant channel to lo (g = 0): exact or an error naming
# the row, never wrong pixels.
for mode in ("per-image", "per-image-channel", "minmax"):
    _, _, _, man = normalize(f"syn-rt-{mode}", syn, "--mode", mode, "--size", S, "--exact-decode", "--dtype", "float16")
    back = os.path.join(OUT, f"syn-rt-{mode}-back.npy")
    p = run("denormalize", os.path.join(OUT, f"syn-rt-{mode}", "images.npy"), "-o", back, "--force", expect=None)
    if mode != "minmax" or p.returncode == 0:
        check(p.returncode == 0 and np.array_equal(np.load(back), su8), f"denormalize {mode} with constant images: exact")
    else:
        check(p.returncode not in (0, 130) and "row" in p.stderr and not os.path.exists(back),
              f"denormalize minmax of a constant channel: an error naming the row ({p.returncode}, {p.stderr!r})")

# A dataset whose G channel is constant: std 0 is an error naming the channel and --eps; with --eps E
# the divisor is max(std, E).
flat = os.path.join(WORK, "norm-flatg")
shutil.rmtree(flat, ignore_errors=True)
os.makedirs(os.path.join(flat, "x"))
for i in range(3):
    im = rng.integers(0, 256, size=(32, 32, 3))
    im[..., 1] = 100
    cv2.imwrite(os.path.join(flat, "x", f"{i}.png"), im.astype(np.uint8))
fst = os.path.join(OUT, "flatg.json")
run("stats", flat, "--size", S, "--exact-decode", "-o", fst, "--force", "-q")
fk, _ = load_stats(fst)
p, _, _, _ = normalize("flatg-err", flat, "--stats", fst, "--mode", "standardize", expect=None)
check(p.returncode not in (0, 130) and "std of channel G is 0" in p.stderr and "--eps" in p.stderr,
      f"std 0: exit {p.returncode}, {p.stderr!r}")
check(not os.path.exists(os.path.join(OUT, "flatg-err", "images.npy")), "std 0: no images.npy")
p, _, _, _ = normalize("flatg-err2", flat, "--stats", fst, "--mode", "minmax-dataset", expect=None)
check(p.returncode not in (0, 130) and "G" in p.stderr and "--eps" in p.stderr, f"max-min 0: exit {p.returncode}, {p.stderr!r}")
fu8 = cv2_pixels(image_files(flat))
for unit, eps in ((255, 0.5), (1, 1e-3)):
    _, img, _, _ = normalize(f"flatg-eps{unit}", flat, "--stats", fst, "--mode", "standardize", "--eps", eps, "--unit", unit)
    x = fu8.astype(np.float64)
    if unit == 255:
        ref = (x - fk["mean"]) / np.maximum(fk["std"], eps)
    else:
        ref = (x / 255 - fk["mean"] / 255) / np.maximum(fk["std"] / 255, eps)
    check(img is not None and same(img, ref), f"--eps {eps} --unit {unit}: divisor max(std, eps) in the chosen unit")

# ---- 3. float16 is rounded once from the double, never through float32 ----------------------------
# custom mean m = 0.5 - 2^-12 - 2^-30 puts x = 1 at y = 0.5 + 2^-12 + 2^-30: just above a float16
# midpoint (0.5 + 2^-12), but within half a float32 ulp of it, so float32 first rounds to the
# midpoint and then ties-to-even gives 0.5 instead of 0.5 + 2^-11.
m = 0.5 - 2.0**-12 - 2.0**-30
all_values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
src = os.path.join(OUT, "all_values.npy")
np.save(src, all_values)
_, img, _, _ = normalize("f16-once", src, "--mode", "custom", "--mean", ",".join([repr(m)] * 3), "--dtype", "float16",
                         "--size", 16)
ref = (all_values.astype(np.float64) - m) / 1.0
twice = ref.astype(np.float32).astype(np.float16)
check(not np.array_equal(ref.astype(np.float16), twice), "self-check: the constants expose double rounding")
check(img is not None and img.dtype == np.float16 and np.array_equal(img, ref.astype(np.float16)),
      f"float16 rounded once from the double: x=1 gives {None if img is None else img[0, 0, 1, 0]!r}, "
      f"want {ref.astype(np.float16)[0, 0, 1, 0]!r} (through float32: {twice[0, 0, 1, 0]!r})")

finish()
