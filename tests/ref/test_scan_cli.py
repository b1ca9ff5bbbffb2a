#!/usr/bin/env python3
"""Scanning a folder through the CLI (issue 10, items 7, 8, 14, 16, 20): links out of the dataset
folder, Ctrl-C during the scan, missing files in a list, classes without images, --resize none,
and a sample as big as the dataset. References: cv2 + numpy."""
import json
import os
import shutil
import signal
import subprocess
import time

import cv2
import numpy as np

from common import CLI, WORK, check, finish, run

W = os.path.join(WORK, "scan_cli")
shutil.rmtree(W, ignore_errors=True)
os.makedirs(W)


def path(*p):
    return os.path.join(W, *p)


def png(p, w, h, seed):
    os.makedirs(os.path.dirname(p), exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(p, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def warnings_of(stderr):
    return [l for l in stderr.splitlines() if l.startswith("imgnorm: warning: ")]


# ---- item 8: SIGINT during the scan ends the run promptly with the interrupted status ----------
# Many empty folders (no image, so a scan that ignores the signal ends with "no image files found",
# status 1). The signal is sent once the CLI holds one of them open: surely during the scan.
# The tree is kept between runs (creating and removing folders is slow on a busy disk).
big = os.path.join(WORK, "scan_cli_tree")
if not os.path.exists(big + ".done"):
    shutil.rmtree(big, ignore_errors=True)
    for i in range(8):
        for j in range(500):
            os.makedirs(os.path.join(big, f"c{i}", f"d{j:03}"))
    open(big + ".done", "w").close()
proc = subprocess.Popen([CLI, "stats", big, "-q"], stderr=subprocess.PIPE, text=True)
fd_dir = f"/proc/{proc.pid}/fd"
deadline = time.monotonic() + 20
scanning = False
while not scanning and time.monotonic() < deadline and proc.poll() is None:
    try:
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(os.path.join(fd_dir, fd)).startswith(big + "/"):
                    scanning = True
                    break
            except OSError:
                pass
    except OSError:
        pass
check(scanning, "the scan was seen in progress (a folder of the tree open)")
sent = time.monotonic()
proc.send_signal(signal.SIGINT)
try:
    _, err = proc.communicate(timeout=30)
except subprocess.TimeoutExpired:
    proc.kill()
    _, err = proc.communicate()
took = time.monotonic() - sent
check(proc.returncode == 130 and "interrupted" in err, f"SIGINT during the scan: status {proc.returncode}, {err!r}")
check(took < 5, f"stopped promptly after SIGINT: {took:.2f} s")

# ---- item 7: links out of the dataset folder need --follow-links --------------------------------
png(path("outside", "pics", "o.png"), 8, 8, 1)
png(path("links", "cat", "1.png"), 8, 8, 2)
os.symlink(path("outside", "pics"), path("links", "dog"))
os.symlink("/", path("links", "cat", "slash"))
p = run("stats", path("links"), "--size", 8, "-o", path("links.json"), "-q")
st = json.load(open(path("links.json")))
ignored = {i["path"]: i["reason"] for i in st["ignored"]}
reason = "symlink out of the dataset folder (--follow-links follows it)"
check(st["classes"] == ["cat", "dog"] and st["counts"]["images"] == 1, f"classes kept, one image: {st['classes']} {st['counts']}")
check(ignored == {path("links", "cat", "slash"): reason, path("links", "dog"): reason}, f"links listed as ignored: {ignored}")
check(warnings_of(p.stderr) == ["imgnorm: warning: class 'dog' has no usable image (its label is kept; --strict fails on it)"],
      f"the class without images is warned about: {p.stderr!r}")
p = run("stats", path("links"), "--size", 8, "--strict", "-q", expect=3)
check("1 classes have no usable image (--strict)" in p.stderr, f"--strict fails on it: {p.stderr!r}")
os.remove(path("links", "cat", "slash"))
p = run("stats", path("links"), "--size", 8, "--follow-links", "--format", "json", "-q")
st = json.loads(p.stdout)
check(st["counts"]["images"] == 2 and st["ignored"] == [] and warnings_of(p.stderr) == [], f"--follow-links: {st['counts']} {p.stderr!r}")

# ---- item 14: a mistyped line in a list is a skipped file, not a class --------------------------
train = path("train")
for k, c in enumerate(["daisy", "roses", "tulips"]):
    for i in range(2):
        png(os.path.join(train, c, f"{i}.png"), 8, 8, 10 * k + i)
run("stats", train, "--size", 8, "-o", path("train.json"), "-q")
lines = ["daisy/0.png", "rosse/1.png", "roses/0.png", "tulips/1.png"]
with open(os.path.join(train, "test.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
p = run("stats", "--list", os.path.join(train, "test.txt"), "--size", 8, "--format", "json")
st = json.loads(p.stdout)
check(st["classes"] == ["daisy", "roses", "tulips"], f"no class 'rosse': {st['classes']}")
check([(s["path"], s["reason"]) for s in st["skipped"]] == [(os.path.join(train, "rosse/1.png"), "no such file")],
      f"the missing file is skipped: {st['skipped']}")
check(f"skipped {os.path.join(train, 'rosse/1.png')}: no such file" in p.stderr, f"and reported: {p.stderr!r}")
p = run("normalize", "--list", os.path.join(train, "test.txt"), "--stats", path("train.json"), "-o", path("test_out"))
check("not among" not in p.stderr and "no such file" in p.stderr, f"normalize --list reports the missing file: {p.stderr!r}")
labels = np.load(path("test_out", "labels.npy"))
check(labels.tolist() == [0, 1, 2], f"labels keep the training ids: {labels.tolist()}")
run("normalize", "--list", os.path.join(train, "test.txt"), "--stats", path("train.json"), "-o", path("test_out2"), "--strict", expect=3)

# A class whose files all fail, and an empty class folder: warned about, --strict fails.
shutil.copytree(train, path("train2"))
for f in os.listdir(path("train2", "roses")):
    open(path("train2", "roses", f), "wb").write(b"not an image")
for f in os.listdir(path("train2", "tulips")):
    os.remove(path("train2", "tulips", f))
p = run("normalize", path("train2"), "--stats", path("train.json"), "-o", path("n2"), "-q")
check(warnings_of(p.stderr) == [f"imgnorm: warning: class '{c}' has no usable image (its label is kept; --strict fails on it)"
                                for c in ["roses", "tulips"]], f"normalize warns about both: {p.stderr!r}")
shutil.rmtree(path("train2", "roses"))
p = run("normalize", path("train2"), "--stats", path("train.json"), "-o", path("n3"), "-q", "--strict", expect=3)
check("1 classes have no usable image (--strict)" in p.stderr, f"normalize --strict fails on an empty class: {p.stderr!r}")

# ---- item 16: --resize none uses the images' own size, and one message when one differs ---------
same = path("same")
imgs = []
for i in range(30):
    png(os.path.join(same, "c", f"{i:02}.png"), 20, 20, 100 + i)
    imgs.append(cv2.cvtColor(cv2.imread(os.path.join(same, "c", f"{i:02}.png")), cv2.COLOR_BGR2RGB))
p = run("stats", same, "--resize", "none", "-o", path("same.json"), "-q")
st = json.load(open(path("same.json")))
ref = np.stack(imgs).astype(np.float64)
check(st["recipe"]["size"] == [20, 20] and st["recipe"]["resize"] == "none", f"the images' size is recorded: {st['recipe']}")
check(np.allclose(st["mean"], ref.mean(axis=(0, 1, 2)), rtol=0, atol=1e-9), f"mean at the images' size: {st['mean']}")
run("normalize", same, "--fit", "--resize", "none", "--mode", "scale", "-o", path("same_out"), "-q")
x = np.load(path("same_out", "images.npy"))
check(x.shape == (30, 20, 20, 3) and np.array_equal(x, (ref / 255).astype(np.float32)), f"normalize --resize none: {x.shape}")
run("normalize", same, "--stats", path("same.json"), "--mode", "standardize", "-o", path("same_out2"), "-q")
check(np.load(path("same_out2", "images.npy")).shape == (30, 20, 20, 3), "normalize with a --resize none stats.json")

png(os.path.join(same, "c", "15b.png"), 24, 20, 7)
p = run("stats", same, "--resize", "none", "-o", path("same2.json"), expect=2)
msgs = [l for l in p.stderr.splitlines() if "image is" in l]
check(len(msgs) == 1 and f"{os.path.join(same, 'c', '15b.png')}: image is 24x20, not 20x20 (--resize none" in msgs[0]
      and not os.path.exists(path("same2.json")), f"one message for a size that differs: {p.stderr!r}")
p = run("normalize", same, "--fit", "--resize", "none", "--mode", "scale", "-o", path("same_out3"), expect=2)
check(sum("image is 24x20" in l for l in p.stderr.splitlines()) == 1 and not os.path.exists(path("same_out3", "images.npy")),
      f"normalize: one message, no array: {p.stderr!r}")

# ---- item 20: a sample as big as the dataset is warned about -----------------------------------
p = run("stats", train, "--size", 8, "--sample", 99999, "-q")
check(warnings_of(p.stderr) == ["imgnorm: warning: --sample 99999 takes all 6 images: the sample is the whole dataset"],
      f"--sample bigger than the dataset: {p.stderr!r}")
p = run("stats", train, "--size", 8, "--sample", 5, "-q")
check(warnings_of(p.stderr) == [], f"a real sample: {p.stderr!r}")

finish()
