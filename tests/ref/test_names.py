#!/usr/bin/env python3
"""Names that are not UTF-8 (bytes 0xff, 0x80, 0xfe) or hold a newline, in the dataset folder, class
folders, image files, skipped and ignored files and output paths, through the CLI: stats -o, merge
of shards, normalize --stats / --fit, denormalize. Every run succeeds, the JSON files give back the
exact bytes through Python's json + os.fsencode, and stderr keeps one message per line."""
import json
import os
import shutil
import subprocess

import cv2
import numpy as np

from common import CLI, WORK, check, finish

root = os.path.join(WORK, "names").encode()
shutil.rmtree(root, ignore_errors=True)
ds = os.path.join(root, b"ds\xfe")
classes = [b"bad\xff\x80", b"good", b"nl\nx"]
rng = np.random.default_rng(10)
images = {}  # path -> RGB pixels
for cls in classes:
    os.makedirs(os.path.join(ds, cls))
    for name in [b"a.png", b"b\xff.png", b"c\nd.png"]:
        bgr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        path = os.path.join(ds, cls, name)
        with open(path, "wb") as f:
            f.write(cv2.imencode(".png", bgr)[1].tobytes())
        images[path] = bgr[:, :, ::-1]
broken = os.path.join(ds, classes[0], b"broken\x80.jpg")
with open(broken, "wb") as f:
    f.write(b"not an image")
notes = os.path.join(ds, classes[1], b"notes\xff.txt")
with open(notes, "wb") as f:
    f.write(b"text")


def run(*args, expect=0):
    p = subprocess.run([CLI, *args], capture_output=True)
    if p.returncode != expect:
        print(f"command {args} exited {p.returncode}, expected {expect}\nstdout: {p.stdout!r}\nstderr: {p.stderr!r}")
        raise SystemExit(1)
    for stream in ("stdout", "stderr"):
        text = getattr(p, stream)
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            check(False, f"{args}: {stream} is not UTF-8: {text!r}")
    for line in p.stderr.splitlines():
        check(line.startswith(b"imgnorm: "), f"{args}: every stderr line is one whole message: {p.stderr!r}")
    return p


def names(values):
    return [os.fsencode(v) for v in values]


# stats -o, into a file whose name is not UTF-8 either.
stats_path = os.path.join(root, b"stats\xff.json")
p = run("stats", ds, "--size", "8", "--threads", "2", "-o", stats_path)
check(b"imgnorm: skipped " + ds.replace(b"\xfe", b"\\xfe") + b"/bad\\xff\\x80/broken\\x80.jpg: " in p.stderr,
      f"the skipped file is named on one line, bytes shown as \\xNN: {p.stderr!r}")
with open(stats_path, "rb") as f:
    text = f.read()
check(b'"classes": ["bad\\udcff\\udc80", "good", "nl\\nx"]' in text, "classes escaped as \\udcXX in stats.json")
s = json.loads(text)
check(names(s["classes"]) == classes, f"stats.json classes are the folder names: {s['classes']!r}")
check(names(s["counts"]["per_class"]) == classes, "per_class keys are the folder names")
check(os.fsencode(s["source"]) == ds, f"source is the dataset folder: {s['source']!r}")
check(names(k["path"] for k in s["skipped"]) == [broken], f"skipped: {s['skipped']!r}")
check(notes in names(k["path"] for k in s["ignored"]), f"ignored: {s['ignored']!r}")
check(s["counts"]["images"] == 9, "all 9 images used")

# Shards merged: byte-identical to the single run (stats.json read back name for name).
parts = []
for i in range(2):
    parts.append(os.path.join(root, f"part{i}\n\x80.json".encode("utf-8", "surrogateescape")))
    run("stats", ds, "--size", "8", "--threads", "2", "-q", "--shard", f"{i}/2", "-o", parts[-1])
merged = os.path.join(root, b"merged\xff.json")
run("merge", *parts, "-o", merged)
with open(merged, "rb") as f:
    check(f.read() == text, "merged shards are byte-identical to the single run")

# A stats.json rewritten by Python (ensure_ascii: every non-ASCII escaped) reads back the same.
py_path = os.path.join(root, b"python.json")
with open(py_path, "w") as f:
    json.dump(s, f, indent=1)
again = os.path.join(root, b"again.json")
run("merge", py_path, "-o", again)
with open(again, "rb") as f:
    check(f.read() == text, "a stats.json written by Python's json.dump reads back byte for byte")


# normalize --stats into a folder whose name is not UTF-8, then denormalize: the pixels of the files
# named in manifest.json, in its order.
def check_normalized(out, fitted):
    with open(os.path.join(out, b"manifest.json"), "rb") as f:
        m = json.load(f)
    files = names(f["path"] for f in m["files"])
    expected = sorted(images)
    check(files == expected, f"manifest files are the image paths in order: {files!r}")
    check(names(m["classes"]) == classes, "manifest classes are the folder names")
    check(names(k["path"] for k in m["skipped"]) == [broken], "manifest skipped")
    check(os.fsencode(m["source"]) == ds, "manifest source")
    if not fitted:
        check(os.fsencode(m["stats"]) == stats_path, f"manifest stats: {m['stats']!r}")
    labels = np.load(os.path.join(out, b"labels.npy"))
    check(labels.tolist() == [classes.index(os.path.basename(os.path.dirname(p))) for p in files], "labels")
    den = os.path.join(root, b"den\n\xff.npy")
    run("denormalize", os.path.join(out, b"images.npy"), "-o", den, "--force")
    pixels = np.load(den)
    check(pixels.shape == (9, 8, 8, 3), f"denormalized shape {pixels.shape}")
    check(all(np.array_equal(pixels[i], images[p]) for i, p in enumerate(files)),
          "denormalized pixels are those of the files manifest.json names, in its order")


out = os.path.join(root, b"out\xff\nx")
p = run("normalize", ds, "--stats", stats_path, "-o", out)
check(len(p.stdout.splitlines()) == 3 and b"out\\xff\\nx/images.npy" in p.stdout, f"summary: {p.stdout!r}")
check_normalized(out, fitted=False)
out2 = os.path.join(root, b"fit\x80")
run("normalize", ds, "--fit", "--size", "8", "-o", out2)
check_normalized(out2, fitted=True)

shutil.rmtree(root, ignore_errors=True)
finish()
