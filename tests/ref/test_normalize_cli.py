#!/usr/bin/env python3
"""imgnorm normalize / denormalize / inspect as a tool: train statistics applied to a test set
(constants and class ids of the training set), layouts, channel orders and dtypes, determinism
across thread counts, interrupted writes, --force, --fit, .npy input, exact round trips through
denormalize, inspect's numbers and skipped files. References are numpy on cv2's pixels."""
import json
import os
import re
import shutil
import signal
import subprocess
import time

import cv2
import numpy as np
import torch

from common import load_stats, tutorial_pixels, CLI, WORK, check, finish, image_files, photos, run

S = 32
OUT = os.path.join(WORK, "norm-cli")
shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(OUT)


def cv2_pixels(files, size=S):
    return tutorial_pixels(files, size)


def outdir(name):
    return os.path.join(OUT, name)


def normalize(name, inp, *args, expect=0, quiet=True):
    out = outdir(name)
    p = run("normalize", inp, "-o", out, *args, "--force", *(["-q"] if quiet else []), expect=expect)
    if p.returncode != 0:
        return p, None, None, None
    images = np.load(os.path.join(out, "images.npy"))
    lp = os.path.join(out, "labels.npy")
    labels = np.load(lp) if os.path.exists(lp) else None
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    return p, images, labels, manifest


def raw(name, f):
    return open(os.path.join(outdir(name), f), "rb").read()


def f32(ref64):
    return ref64.astype(np.float32)


root = photos(200)
all_files = image_files(root)
CLASSES = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))

# ---- train / test --------------------------------------------------------------------------------
# train: the first 60% of each class; test: the rest of classes 2 and 4 only.
train = os.path.join(WORK, "norm-train")
test = os.path.join(WORK, "norm-test")
unknown = os.path.join(WORK, "norm-test-unknown")
for d in (train, test, unknown):
    shutil.rmtree(d, ignore_errors=True)
for ci, c in enumerate(CLASSES):
    fs = [f for f in all_files if os.path.basename(os.path.dirname(f)) == c][:40]
    cut = len(fs) * 3 // 5
    os.makedirs(os.path.join(train, c))
    for f in fs[:cut]:
        shutil.copy(f, os.path.join(train, c))
    if ci in (2, 4):
        for d in (test, unknown):
            os.makedirs(os.path.join(d, c), exist_ok=True)
            for f in fs[cut:]:
                shutil.copy(f, os.path.join(d, c))
os.makedirs(os.path.join(unknown, "orchids"))
shutil.copy(all_files[0], os.path.join(unknown, "orchids", "extra.jpg"))

train_files, test_files = image_files(train), image_files(test)
train_u8, test_u8 = cv2_pixels(train_files), cv2_pixels(test_files)
train_stats = os.path.join(OUT, "train.json")
run("stats", train, "--size", S, "--exact-decode", "-o", train_stats, "--force", "-q")
tk, tst = load_stats(train_stats)
check(tst["classes"] == CLASSES, f"train classes {tst['classes']}")
print(f"train {len(train_files)} images, test {len(test_files)} images (classes {CLASSES[2]}, {CLASSES[4]})")

_, img, lab, man = normalize("test-std", test, "--stats", train_stats, "--mode", "standardize")
x = test_u8.astype(np.float64)
ref_train = (x - tk["mean"]) / tk["std"]
check(img is not None and img.dtype == np.float32 and np.array_equal(img, f32(ref_train)),
      "test set standardized with the train mean/std (numpy reference)")
own_mean = np.array([np.ascontiguousarray(x[..., c]).mean() for c in range(3)])
own_std = np.array([np.ascontiguousarray(x[..., c]).std() for c in range(3)])
check(np.all(np.abs(own_mean - tk["mean"]) > 1e-3), f"test's own mean {own_mean} differs from train's {tk['mean']}")
check(not np.allclose(img, (x - own_mean) / own_std, atol=1e-4), "output is not the test set's own standardization")
labels_ref = [CLASSES.index(os.path.basename(os.path.dirname(f))) for f in test_files]
check(lab is not None and lab.dtype == np.int64 and lab.shape == (len(test_files),) and lab.tolist() == labels_ref,
      f"test labels are training class ids: {sorted(set(lab.tolist())) if lab is not None else None}")
check(set(labels_ref) == {2, 4}, "test labels are 2 and 4")
check(man["classes"] == CLASSES, f"manifest classes are the training classes: {man['classes']}")
check(man.get("stats") and os.path.samefile(man["stats"], train_stats), f"manifest stats {man.get('stats')}")
check([e["label"] for e in man["files"]] == labels_ref, "manifest labels")

# The default mode is standardize; dataset maps [d, m, s, g, t] in the manifest are the train stats.
_, img_default, _, _ = normalize("test-default", test, "--stats", train_stats)
check(img_default is not None and img_default.tobytes() == img.tobytes(), "default mode is standardize")
maps = man.get("maps")
check(maps is not None and np.array_equal(np.array(maps, dtype=np.float64),
                                          np.stack([np.ones(3), tk["mean"], tk["std"], np.ones(3), np.zeros(3)], axis=1)),
      f"manifest maps [1, mean, std, 1, 0] per channel: {maps}")
check(np.array_equal(man.get("dataset_mean"), tk["mean"]) and np.array_equal(man.get("dataset_std"), tk["std"]),
      "manifest dataset_mean/std are the train stats")

# --list FILE (paths relative to the list's folder, # comments): same rows, labels from parent folders.
lst = os.path.join(test, "files.txt")
with open(lst, "w") as fh:
    fh.write("# test files\n" + "".join(os.path.relpath(f, test) + "\n" for f in test_files))
run("normalize", "--list", lst, "-o", outdir("test-list"), "--stats", train_stats, "--mode", "standardize", "--force", "-q")
check(raw("test-list", "images.npy") == raw("test-std", "images.npy") and raw("test-list", "labels.npy") == raw("test-std", "labels.npy"),
      "--list gives the same images.npy and labels.npy as the folder")
os.remove(lst)

p, _, _, _ = normalize("test-unknown", unknown, "--stats", train_stats, "--mode", "standardize", expect=None)
check(p.returncode not in (0, 130) and "orchids" in p.stderr, f"unknown class: exit {p.returncode}, {p.stderr!r}")
check(not os.path.exists(os.path.join(outdir("test-unknown"), "images.npy")), "unknown class: no images.npy")

# Recipe flags override the stats' recipe with a warning.
p, img, _, man = normalize("test-size48", test, "--stats", train_stats, "--mode", "scale", "--size", 48)
check("differs from the training recipe" in p.stderr, f"--size 48 with a size-32 stats file warns: {p.stderr!r}")
check(img is not None and np.array_equal(img, f32(cv2_pixels(test_files, 48) / 255)), "--size 48 overrides the recipe")
p, img, _, _ = normalize("test-size32", test, "--stats", train_stats, "--mode", "scale")
check("differs from the training recipe" not in p.stderr, f"no warning without recipe flags: {p.stderr!r}")

# ---- layouts, channel orders, dtypes ---------------------------------------------------------------
base = None
variants = {}
for layout in ("nhwc", "nchw"):
    for order in ("rgb", "bgr"):
        for dtype in ("float32", "float16"):
            name = f"lay-{layout}-{order}-{dtype}"
            _, img, lab, man = normalize(name, train, "--stats", train_stats, "--mode", "standardize",
                                         "--layout", layout, "--channels", order, "--dtype", dtype)
            variants[(layout, order, dtype)] = img
            n = len(train_files)
            shape = (n, S, S, 3) if layout == "nhwc" else (n, 3, S, S)
            check(img.shape == shape and img.dtype == np.dtype(dtype), f"{name}: {img.shape} {img.dtype}")
            check(man["layout"] == layout and man["channels"] == order and man["dtype"] == dtype
                  and man["shape"] == list(shape), f"{name}: manifest {man['layout']} {man['channels']} {man['dtype']} {man['shape']}")
            check(lab is not None and lab.dtype == np.int64 and lab.shape == (n,), f"{name}: labels.npy int64 (N,)")
            t = torch.from_numpy(img)
            check(tuple(t.shape) == shape and t.dtype == {"float32": torch.float32, "float16": torch.float16}[dtype],
                  f"{name}: torch.from_numpy")
            tl = torch.from_numpy(lab)
            check(tl.dtype == torch.int64, f"{name}: torch.from_numpy(labels)")
ref = (train_u8.astype(np.float64) - tk["mean"]) / tk["std"]
for dtype in ("float32", "float16"):
    nhwc = variants[("nhwc", "rgb", dtype)]
    check(np.array_equal(nhwc, ref.astype(dtype)), f"{dtype} nhwc rgb equals the reference rounded once to {dtype}")
    check(np.array_equal(variants[("nchw", "rgb", dtype)], nhwc.transpose(0, 3, 1, 2)), f"{dtype}: nchw == nhwc.transpose(0,3,1,2)")
    check(np.array_equal(variants[("nhwc", "bgr", dtype)], nhwc[..., ::-1]), f"{dtype}: bgr == rgb[..., ::-1]")
    check(np.array_equal(variants[("nchw", "bgr", dtype)], nhwc[..., ::-1].transpose(0, 3, 1, 2)), f"{dtype}: nchw bgr")
    for key, v in variants.items():
        check(v.flags.c_contiguous, f"{key}: C order")
# Gray recipe (stats --channels gray = cv2.IMREAD_GRAYSCALE): C = 1 in both layouts.
gray_stats = os.path.join(OUT, "train-gray.json")
run("stats", train, "--size", S, "--exact-decode", "--channels", "gray", "-o", gray_stats, "--force", "-q")
gk, _ = load_stats(gray_stats)
gray_u8 = np.stack([cv2.resize(cv2.imread(f, cv2.IMREAD_GRAYSCALE), (S, S)) for f in train_files])[..., None]
gref = f32((gray_u8.astype(np.float64) - gk["mean"]) / gk["std"])
_, img, _, man = normalize("gray-nhwc", train, "--stats", gray_stats, "--mode", "standardize")
check(img is not None and img.shape == gref.shape and np.array_equal(img, gref) and man["channels"] == "gray",
      f"gray recipe: (N, H, W, 1) standardized ({None if img is None else img.shape}, {None if man is None else man['channels']})")
_, img, _, _ = normalize("gray-nchw", train, "--stats", gray_stats, "--mode", "standardize", "--layout", "nchw")
check(img is not None and np.array_equal(img, gref.transpose(0, 3, 1, 2)), "gray recipe, nchw: (N, 1, H, W)")
run("denormalize", os.path.join(outdir("gray-nchw"), "images.npy"), "-o", os.path.join(OUT, "gray-back.npy"), "--force")
check(np.array_equal(np.load(os.path.join(OUT, "gray-back.npy")), gray_u8), "gray denormalize: exact (N, H, W, 1) u8")
p, _, _, _ = normalize("gray-imagenet", train, "--stats", gray_stats, "--mode", "imagenet", expect=None)
check(p.returncode not in (0, 130) and "3-channel" in p.stderr, f"imagenet on gray: error ({p.returncode}, {p.stderr!r})")

_, _, lab, _ = normalize("no-labels", train, "--stats", train_stats, "--mode", "scale", "--no-labels")
check(lab is None and not os.path.exists(os.path.join(outdir("no-labels"), "labels.npy")), "--no-labels: no labels.npy")

# ---- determinism ------------------------------------------------------------------------------------
big_stats = os.path.join(OUT, "photos.json")
run("stats", root, "--size", S, "--exact-decode", "-o", big_stats, "--force", "-q")
for mode in ("standardize", "per-image"):
    blobs = []
    for t in (1, 2, 8):
        name = f"det-{mode}-{t}"
        normalize(name, root, "--stats", big_stats, "--mode", mode, "--threads", t)
        blobs.append((raw(name, "images.npy"), raw(name, "labels.npy")))
    check(all(b == blobs[0] for b in blobs), f"{mode}: --threads 1, 2, 8 give byte-identical images.npy and labels.npy")

# ---- interrupted write ------------------------------------------------------------------------------
# 5 x 200 photos (hard links) at 224, one thread: several seconds of work. SIGTERM once the temporary
# images.npy exists; expect exit 130, no images.npy, no temporary file.
bigroot = os.path.join(WORK, "norm-big-" + os.path.basename(root))  # made again when the dataset changes
if not os.path.exists(bigroot + ".done"):
    shutil.rmtree(bigroot, ignore_errors=True)
    for f in all_files:
        rel = os.path.relpath(f, root)
        for r in range(5):
            dst = os.path.join(bigroot, os.path.dirname(rel), f"r{r}_" + os.path.basename(rel))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.link(f, dst)
    open(bigroot + ".done", "w").close()
intr = outdir("interrupt")
shutil.rmtree(intr, ignore_errors=True)
proc = subprocess.Popen([CLI, "normalize", bigroot, "-o", intr, "--mode", "scale", "--size", "224", "--exact-decode",
                         "--threads", "1", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
t0 = time.monotonic()
seen_tmp = False
while proc.poll() is None and time.monotonic() - t0 < 20:
    if os.path.isdir(intr) and any(".tmp-" in f for f in os.listdir(intr)):
        seen_tmp = True
        break
    time.sleep(0.002)
time.sleep(0.3 if not seen_tmp else 0.05)
still_running = proc.poll() is None
proc.send_signal(signal.SIGTERM)
_, err = proc.communicate(timeout=60)
check(still_running, "the big normalize was still running when SIGTERM was sent")
check(seen_tmp, "a temporary images.npy.tmp-* file was seen while writing")
left = sorted(os.listdir(intr)) if os.path.isdir(intr) else []
check(proc.returncode == 130, f"SIGTERM: exit {proc.returncode} ({err.strip()!r})")
check("images.npy" not in left, f"SIGTERM: no images.npy ({left})")
check(not any(".tmp-" in f for f in left), f"SIGTERM: no temporary files left ({left})")

# An existing images.npy is kept without --force.
keep = outdir("keep")
shutil.rmtree(keep, ignore_errors=True)
os.makedirs(keep)
with open(os.path.join(keep, "images.npy"), "wb") as fh:
    fh.write(b"precious")
p = run("normalize", train, "-o", keep, "--stats", train_stats, "--mode", "scale", "-q", expect=None)
check(p.returncode == 1 and "images.npy" in p.stderr, f"existing images.npy: exit {p.returncode}, {p.stderr!r}")
check(open(os.path.join(keep, "images.npy"), "rb").read() == b"precious", "existing images.npy not overwritten")
check(not any(".tmp-" in f for f in os.listdir(keep)), "no temporary file after the refusal")
run("normalize", train, "-o", keep, "--stats", train_stats, "--mode", "scale", "-q", "--force")
check(np.array_equal(np.load(os.path.join(keep, "images.npy")), f32(train_u8 / 255)), "--force replaces it")

# ---- --fit == stats + normalize --stats ----------------------------------------------------------------
for mode in ("standardize", "minmax-dataset", "center"):
    normalize(f"fit-{mode}", train, "--fit", "--size", S, "--exact-decode", "--mode", mode)
    normalize(f"nofit-{mode}", train, "--stats", train_stats, "--mode", mode)
    check(raw(f"fit-{mode}", "images.npy") == raw(f"nofit-{mode}", "images.npy")
          and raw(f"fit-{mode}", "labels.npy") == raw(f"nofit-{mode}", "labels.npy"),
          f"--fit {mode} equals stats + normalize --stats")

mean_npy = os.path.join(OUT, "train-mean.npy")
run("stats", train, "--size", S, "--exact-decode", "-o", os.path.join(OUT, "train-m.json"), "--mean-image", mean_npy, "--force", "-q")
normalize("fit-mean-image", train, "--fit", "--size", S, "--exact-decode", "--mode", "mean-image", "--divide-std")
normalize("nofit-mean-image", train, "--stats", train_stats, "--mode", "mean-image", "--mean-image", mean_npy, "--divide-std")
check(raw("fit-mean-image", "images.npy") == raw("nofit-mean-image", "images.npy"), "--fit mean-image --divide-std equals stats --mean-image + normalize")

# Stats in BGR order: the default output order is the stats' order, with the same constants per colour.
bgr_stats = os.path.join(OUT, "train-bgr.json")
run("stats", train, "--size", S, "--exact-decode", "--channels", "bgr", "-o", bgr_stats, "--force", "-q")
_, img, _, man = normalize("bgr-stats", train, "--stats", bgr_stats, "--mode", "standardize")
check(img is not None and man["channels"] == "bgr" and np.array_equal(img, variants[("nhwc", "bgr", "float32")]),
      "stats in bgr order: default output bgr, equal to rgb stats with --channels bgr")

# Usage errors: exit 2, one message, nothing written.
for args, words in ((["--mode", "scale", "--range", "1,0"], "range"), (["--mode", "standardize", "--eps", "0"], "eps"),
                    (["--mode", "custom"], "--mean"), (["--mode", "custom", "--mean", "1,2"], "mean"),
                    (["--mode", "mean-image"], "--mean-image"), (["--mode", "standardize", "--fit"], "--fit"),
                    (["--mode", "mean-image", "--mean-image", mean_npy, "--size", "48"], "mean image")):
    p, _, _, _ = normalize("usage", train, "--stats", train_stats, *args, expect=None)
    check(p.returncode == 2 and words in p.stderr and not os.path.exists(os.path.join(outdir("usage"), "images.npy")),
          f"{' '.join(args)}: exit {p.returncode} {p.stderr!r}")

# ---- .npy input ------------------------------------------------------------------------------------------
for dt in ("uint8", "float32", "float64"):
    src = os.path.join(OUT, f"train_{dt}.npy")
    np.save(src, train_u8.astype(dt))
    p, img, lab, man = normalize(f"npy-{dt}", src, "--stats", train_stats, "--mode", "standardize")
    check(img is not None and img.tobytes() == variants[("nhwc", "rgb", "float32")].tobytes(),
          f".npy {dt} NHWC input gives the same images.npy as the folder")
    check(lab is None, f".npy {dt} input: no labels.npy")
    check(man is not None and len(man.get("files", [])) in (0, len(train_u8)), f".npy {dt}: manifest")
# Float input in 0-255 units is normalized per element in double (docs/normalize.md): a fractional
# value follows the formula; a NaN is refused naming the row, nothing written.
frac = train_u8[:4].astype(np.float32)
frac[2, 5, 6, 1] = 17.5
np.save(os.path.join(OUT, "frac.npy"), frac)
_, img, _, _ = normalize("npy-frac", os.path.join(OUT, "frac.npy"), "--stats", train_stats, "--mode", "standardize")
st_train = json.load(open(train_stats))
ref = ((frac.astype(np.float64) - np.array(st_train["mean"])) / np.array(st_train["std"])).astype(np.float32)
check(img is not None and np.array_equal(img, ref), "fractional float .npy input follows the formula in double")
frac[3, 0, 0, 0] = np.nan
np.save(os.path.join(OUT, "nan.npy"), frac)
p, _, _, _ = normalize("npy-nan", os.path.join(OUT, "nan.npy"), "--stats", train_stats, "--mode", "standardize", expect=None)
check(p.returncode not in (0, 130) and "nan" in p.stderr.lower() and not os.path.exists(os.path.join(outdir("npy-nan"), "images.npy")),
      f"a NaN float pixel is refused: exit {p.returncode} {p.stderr!r}")
frac = train_u8[:4].astype(np.float32)
frac[2, 5, 6, 1] = 17.5
frac[3, 0, 0, 0] = 0.25
np.save(os.path.join(OUT, "frac2.npy"), frac)
fx = frac.astype(np.float64)
for unit in (255, 1):  # per-image moments of float input: within 1 float32 ulp of the float64 formula
    _, img, _, _ = normalize(f"npy-frac-pi{unit}", os.path.join(OUT, "frac2.npy"), "--mode", "per-image", "--unit", unit)
    ref_pi = []
    for im in fx:
        mu, sd, floor = im.mean(), im.std(), 1 / np.sqrt(im.size)
        ref_pi.append((im - mu) / max(sd, floor) if unit == 255 else (im / 255 - mu / 255) / max(sd / 255, floor))
    ref_pi = np.stack(ref_pi)
    ok = img is not None and img.shape == ref_pi.shape
    d = float(np.max(np.abs(img.astype(np.float64) - ref_pi) / np.spacing(np.abs(ref_pi).astype(np.float32)))) if ok else -1
    check(ok and d <= 1.0, f"float .npy, per-image --unit {unit}: within 1 float32 ulp of the float64 formula ({d:.2f})")
p, _, _, _ = normalize("npy-frac-fit", os.path.join(OUT, "frac2.npy"), "--fit", "--mode", "standardize", expect=None)
check(p.returncode not in (0, 130) and not os.path.exists(os.path.join(outdir("npy-frac-fit"), "images.npy")),
      f"--fit on non-whole float input is refused (docs/normalize.md): exit {p.returncode} {p.stderr!r}")
gray = cv2_pixels(train_files)[..., 0]  # any (N, H, W) u8 array
np.save(os.path.join(OUT, "gray.npy"), gray)
_, img, _, man = normalize("npy-gray", os.path.join(OUT, "gray.npy"), "--mode", "scale", "--size", S)
check(img is not None and img.shape == gray.shape + (1,) and np.array_equal(img[..., 0], f32(gray / 255)),
      f"(N, H, W) gray .npy input: (N, H, W, 1) x/255 ({None if img is None else img.shape})")
_, img, _, _ = normalize("npy-gray-custom", os.path.join(OUT, "gray.npy"), "--mode", "custom", "--mean", "100",
                         "--std", "50", "--size", S, "--layout", "nchw")
check(img is not None and img.shape == (len(gray), 1, S, S) and np.array_equal(img[:, 0], f32((gray - 100.0) / 50.0)),
      "gray .npy, custom, nchw")

# ---- denormalize: exact round trip ------------------------------------------------------------------------
cases = [("standardize", "nhwc", "rgb"), ("scale", "nhwc", "rgb"), ("preset:imagenet", "nhwc", "rgb"),
         ("standardize", "nchw", "bgr"), ("preset:imagenet", "nchw", "bgr"), ("preset:caffe", "nhwc", "bgr"),
         ("minmax-dataset", "nhwc", "rgb")]
for mode, layout, order in cases:
    for dtype in ("float32", "float16"):
        name = f"rt-{mode.replace(':', '_')}-{layout}-{order}-{dtype}"
        normalize(name, train, "--stats", train_stats, "--mode", mode, "--layout", layout, "--channels", order,
                  "--dtype", dtype)
        back = os.path.join(OUT, name + "-back.npy")
        run("denormalize", os.path.join(outdir(name), "images.npy"), "-o", back, "--force")
        b = np.load(back)
        want = train_u8 if order == "rgb" else train_u8[..., ::-1]
        check(b.dtype == np.uint8 and b.shape == want.shape and np.array_equal(b, want),
              f"denormalize {mode} {layout} {order} {dtype}: exact u8 pixels")
# explicit --manifest, from another folder
name = "rt-standardize-nhwc-rgb-float16"
moved = os.path.join(OUT, "moved.npy")
shutil.copy(os.path.join(outdir(name), "images.npy"), moved)
p = run("denormalize", moved, "-o", os.path.join(OUT, "moved-back.npy"), "--force", expect=None)
check(p.returncode != 0, "denormalize without a manifest beside the input is an error")
run("denormalize", moved, "--manifest", os.path.join(outdir(name), "manifest.json"), "-o",
    os.path.join(OUT, "moved-back.npy"), "--force")
check(np.array_equal(np.load(os.path.join(OUT, "moved-back.npy")), train_u8), "denormalize --manifest")
# per-image modes: exact when the manifest carries the per-image maps, else an error message.
for mode in ("per-image", "per-image-channel", "minmax"):
    for dtype in ("float32", "float16"):
        name = f"rt-{mode}-{dtype}"
        _, _, _, man = normalize(name, train, "--stats", train_stats, "--mode", mode, "--dtype", dtype)
        back = os.path.join(OUT, f"{name}-back.npy")
        p = run("denormalize", os.path.join(outdir(name), "images.npy"), "-o", back, "--force", expect=None)
        if man.get("per_image_maps"):
            check(p.returncode == 0 and np.array_equal(np.load(back), train_u8),
                  f"denormalize {mode} {dtype} with per_image_maps: exact u8 pixels (exit {p.returncode} {p.stderr!r})")
        else:
            check(p.returncode not in (0, 130) and p.stderr.strip() and not os.path.exists(back),
                  f"denormalize {mode} {dtype} without per-image maps: error message {p.stderr!r}")

# ---- inspect ------------------------------------------------------------------------------------------------
def numbers(text):
    return [float(v) for v in re.findall(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?", text)]


def near_any(v, nums, tol):
    return any(abs(v - n) <= tol for n in nums)


_, img, _, _ = normalize("insp", train, "--stats", train_stats, "--mode", "scale")
p = run("inspect", os.path.join(outdir("insp"), "images.npy"))
nums = numbers(p.stdout)
ints = [int(v) for v in re.findall(r"\d+", p.stdout)]
shape_ok = all(d in ints for d in img.shape) and ("float32" in p.stdout or "<f4" in p.stdout or "f4" in p.stdout)
check(shape_ok, f"inspect prints the shape {img.shape} and dtype: {p.stdout!r}")
flat = img.reshape(-1, 3).astype(np.float64)
for c in range(3):
    for stat, v in (("mean", flat[:, c].mean()), ("std", flat[:, c].std()), ("max", flat[:, c].max())):
        check(near_any(v, nums, 1e-3), f"inspect: channel {c} {stat} {v:.6f} printed")
_, nchw, _, _ = normalize("insp-nchw", train, "--stats", train_stats, "--mode", "scale", "--layout", "nchw")
p2 = run("inspect", os.path.join(outdir("insp-nchw"), "images.npy"), "--layout", "nchw")
nums2 = numbers(p2.stdout)
for c in range(3):
    check(near_any(flat[:, c].mean(), nums2, 1e-3), f"inspect --layout nchw: channel {c} mean")
p3 = run("inspect", train_stats)
nums3 = numbers(p3.stdout)
for c in range(3):
    check(near_any(tk["mean"][c], nums3, 0.01) and near_any(tk["std"][c], nums3, 0.01),
          f"inspect stats.json: channel {c} mean {tk['mean'][c]:.4f} / std {tk['std'][c]:.4f}")

# ---- bad files are skipped and listed -----------------------------------------------------------------------
bad = os.path.join(WORK, "norm-bad")
shutil.rmtree(bad, ignore_errors=True)
for c in (CLASSES[0], CLASSES[2]):
    os.makedirs(os.path.join(bad, c))
good = [f for f in train_files if os.path.basename(os.path.dirname(f)) in (CLASSES[0], CLASSES[2])][:12]
for f in good:
    shutil.copy(f, os.path.join(bad, os.path.basename(os.path.dirname(f))))
open(os.path.join(bad, CLASSES[0], "empty.jpg"), "wb").close()
jpg = open(good[0], "rb").read()
with open(os.path.join(bad, CLASSES[2], "truncated.jpg"), "wb") as fh:
    fh.write(jpg[: len(jpg) // 3])
with open(os.path.join(bad, CLASSES[2], "text.png"), "w") as fh:
    fh.write("not an image\n")
bad_names = {"empty.jpg", "truncated.jpg", "text.png"}
good_files = [f for f in image_files(bad) if os.path.basename(f) not in bad_names]
p, img, lab, man = normalize("bad", bad, "--stats", train_stats, "--mode", "standardize", quiet=False)
check(img is not None and img.shape[0] == len(good_files), f"bad files: rows = good files ({None if img is None else img.shape[0]} vs {len(good_files)})")
if img is not None:
    gu8 = cv2_pixels(good_files)
    check(np.array_equal(img, f32((gu8.astype(np.float64) - tk["mean"]) / tk["std"])), "bad files: rows are the good files in order")
    check(lab.tolist() == [CLASSES.index(os.path.basename(os.path.dirname(f))) for f in good_files], "bad files: labels")
    sk = man.get("skipped", [])
    check(sorted(os.path.basename(s["path"]) for s in sk) == sorted(bad_names) and all(s.get("reason") and s.get("code") for s in sk),
          f"manifest skipped lists each bad file with a reason: {sk}")
    check(len(man["files"]) == len(good_files) and all(e["path"].endswith(os.path.relpath(f, bad)) for e, f in zip(man["files"], good_files)),
          "manifest files = good files")
    check(all(n in p.stderr for n in bad_names), f"each skipped file is reported on stderr: {p.stderr!r}")
    check(man["shape"][0] == len(good_files), "manifest shape counts the good files")
p = run("normalize", bad, "-o", outdir("bad-strict"), "--stats", train_stats, "--mode", "standardize", "--strict",
        "--force", "-q", expect=None)
check(p.returncode == 3, f"--strict with skipped files: exit {p.returncode}")

finish()
