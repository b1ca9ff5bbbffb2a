#!/usr/bin/env python3
"""The fused bilinear resize (the default) against cv::resize (IMGNORM_RESIZE_KERNEL=opencv, the
reference path) through whole jobs on real photos: stats.json, the mean image and images.npy must be
byte-identical for stretch, crop and pad, upscaling and downscaling, RGB and gray, DCT-downscaled and
--exact-decode JPEGs, PNG with alpha composited."""
import filecmp
import os
import shutil
import subprocess

from common import CLI, WORK, check, finish, photos

root = photos(60)
out = os.path.join(WORK, "resize_kernel")
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)


def cli(kernel, *args):
    env = dict(os.environ)
    env.pop("IMGNORM_RESIZE_KERNEL", None)
    if kernel:
        env["IMGNORM_RESIZE_KERNEL"] = kernel
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        print(f"command {args} ({kernel}) exited {p.returncode}\nstderr: {p.stderr}")
        raise SystemExit(1)


cases = [
    ("stretch224", ["--size", "224"]),
    ("stretch64", ["--size", "64"]),
    ("crop97x53", ["--size", "97x53", "--resize", "crop"]),
    ("pad80x120", ["--size", "80x120", "--resize", "pad", "--pad-value", "7"]),
    ("up640", ["--size", "640x480"]),
    ("gray150", ["--size", "150", "--channels", "gray"]),
    ("exact112", ["--size", "112", "--exact-decode"]),
    ("alpha64", ["--size", "64", "--alpha", "white"]),
]
for name, args in cases:
    files = {}
    for kernel in ("opencv", None):
        d = os.path.join(out, f"{name}-{kernel or 'fused'}")
        os.makedirs(d)
        cli(kernel, "stats", root, *args, "-o", os.path.join(d, "stats.json"),
            "--mean-image", os.path.join(d, "mean.npy"), "-q")
        cli(kernel, "normalize", root, *args, "--stats", os.path.join(d, "stats.json"),
            "-o", os.path.join(d, "norm"), "-q")
        files[kernel] = d
    for f in ("stats.json", "mean.npy", os.path.join("norm", "images.npy")):
        a = os.path.join(files["opencv"], f)
        b = os.path.join(files[None], f)
        check(filecmp.cmp(a, b, shallow=False), f"{name}: {f} differs between cv::resize and the fused kernel")

finish()
