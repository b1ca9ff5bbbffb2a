#!/usr/bin/python3
"""Regenerates the small hand-made seed corpora in fuzz/seeds/ (committed; run once by hand).

    /usr/bin/python3 fuzz/make_seeds.py [build/imgnorm]

decode seeds are the images of tests/data (copied by fuzz/run.sh); this writes the others:
exif (APP1 payloads of tests/data/exif_*.jpg), npy (numpy-written arrays), cli_values (one file per
parser, first byte = parser index as in fuzz/harness.hpp) and stats_json (from the CLI, when given).
"""
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")
SEEDS = os.path.join(HERE, "seeds")


def fresh(name):
    d = os.path.join(SEEDS, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def app1_payloads(jpeg):
    """Payloads of the APP1 segments of a JPEG (the bytes after the length field)."""
    out, i = [], 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker, length = jpeg[i + 1], struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        if marker == 0xE1:
            out.append(jpeg[i + 4:i + 2 + length])
        if marker == 0xDA:
            break
        i += 2 + length
    return out


d = fresh("exif")
for name in sorted(os.listdir(DATA)):
    if name.startswith("exif") and name.endswith(".jpg"):
        for k, p in enumerate(app1_payloads(open(os.path.join(DATA, name), "rb").read())):
            open(os.path.join(d, f"{name[:-4]}_{k}.bin"), "wb").write(p)
# Big-endian and little-endian minimal TIFF headers with one orientation entry.
for order, tag in ((b"II", "<"), (b"MM", ">")):
    tiff = order + struct.pack(tag + "HI", 42, 8) + struct.pack(tag + "H", 1)
    tiff += struct.pack(tag + "HHIHH", 0x0112, 3, 1, 6, 0) + b"\0\0\0\0"
    open(os.path.join(d, f"tiff_{order.decode()}.bin"), "wb").write(b"Exif\0\0" + tiff)

d = fresh("npy")
arrays = {
    "u8_hwc": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
    "f32_nchw": np.linspace(-1, 1, 2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2),
    "f16": np.array([0.5, -2, np.inf], dtype=np.float16),
    "f64_be": np.array([[1.5, 2.5]], dtype=">f8"),
    "i64_be": np.array([1, -2, 3], dtype=">i8"),
    "i32": np.array([[7]], dtype=np.int32),
    "u16": np.array([65535, 1], dtype=np.uint16),
    "bool": np.array([True, False]),
    "scalar": np.array(3.0),
    "empty": np.zeros((0, 4), dtype=np.float32),
}
for name, a in arrays.items():
    b = io.BytesIO()
    np.save(b, a)
    open(os.path.join(d, name + ".npy"), "wb").write(b.getvalue())
for major in (2, 3):
    b = io.BytesIO()
    np.lib.format.write_array(b, np.arange(6, dtype=np.uint8).reshape(2, 3), version=(major, 0))
    open(os.path.join(d, f"v{major}.npy"), "wb").write(b.getvalue())

d = fresh("cli_values")
values = {
    0: ["224", "320x240", "1x1", "65536", "0", "-3", "12x", "x12", "99999999999999999999"],
    1: ["stretch", "crop", "pad", "none", "Crop"],
    2: ["linear", "area", "nearest", "cubic", "lanczos"],
    3: ["rgb", "bgr", "gray"],
    4: ["500", "10%", "0.5%", "100%", "101%", "0", "1.123456789%"],
    5: ["3\0\0\0\0\0\0\0\x10\0", "50%\0\0\0\0\0\0\0\0\x07"],
    6: ["0/4", "3/4", "4/4", "-1/2", "1/0", "0/2147483647", " 1/2"],
    7: ["nhwc", "nchw"],
    8: ["float32", "float16", "f32"],
    9: ["scale", "center", "standardize", "mean-image", "mean_image", "minmax", "per-image-channel",
        "imagenet", "caffe", "inception", "clip", "custom"],
    10: ["a/x.jpg\n# comment\n\n/abs/b/y.png\r\n  ../c/z.webp  \n", "x.jpg\0y.jpg\n"],
    11: ["0.485,0.456,0.406", "1e3,-2.5,0x1p3", "nan", "1,,2", " 3", "inf,1"],
    12: ["standardize", "preset:imagenet", "preset:caffe", "preset:scale", "mean_image"],
}
for which, texts in values.items():
    for k, t in enumerate(texts):
        open(os.path.join(d, f"p{which}_{k}.txt"), "wb").write(bytes([which]) + t.encode("latin-1"))

if len(sys.argv) > 1:
    cli = sys.argv[1]
    d = fresh("stats_json")
    flowers = os.path.join(HERE, "..", "examples", "flowers")
    runs = {
        "plain": ["--size", "16"],
        "gray_sample": ["--size", "8x6", "--channels", "gray", "--sample", "50%", "--seed", "3"],
        "crop_shard": ["--size", "12", "--resize", "crop", "--interp", "area", "--shard", "1/3"],
        "ddof1_pad": ["--size", "10", "--resize", "pad", "--pad-value", "7", "--ddof", "1", "--exact-decode"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in runs.items():
            out = os.path.join(tmp, name + ".json")
            subprocess.run([cli, "stats", flowers, *args, "-o", out, "-q", "--format", "json"],
                           check=True, stdout=subprocess.DEVNULL)
            shutil.copy(out, os.path.join(d, name + ".json"))
print("seeds written to", SEEDS)
