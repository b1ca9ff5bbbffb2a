"""Helpers shared by the tests of the imgnorm Python package (tests/python): where the CLI, the
sources and the work folder are, running the CLI, and the repository-only datasets."""
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np

SOURCE = os.environ.get("IMGNORM_SOURCE_DIR",
                        os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
CLI = os.environ.get("IMGNORM_CLI", os.path.join(SOURCE, "build", "imgnorm"))
WORK = os.environ.get("IMGNORM_PY_WORK", os.path.join(SOURCE, "build", "tests", "python-work"))
PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))

FLOWERS = os.path.join(SOURCE, "examples", "flowers")
TEST_DATA = os.path.join(SOURCE, "tests", "data")
MAKE_PHOTOS = os.path.join(SOURCE, "scripts", "make_photos.py")
PHOTOS = os.path.join(TEST_DATA, "photos")
# As tests/ref/common.py: seed 16 puts every kind of file make_photos.py writes (baseline and
# progressive JPEG, gray JPEG, RGB and RGBA PNG) in the first 60 images.
PHOTOS_SEED = 16


def cli(*args, expect=0, **kw):
    """Runs the imgnorm CLI; fails the test when the exit status is not `expect`."""
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, **kw)
    if expect is not None and p.returncode != expect:
        raise AssertionError(f"imgnorm {' '.join(map(str, args))} exited {p.returncode}, "
                             f"expected {expect}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def flags(kw):
    """The CLI flags of Python keywords (the same names with - for _; True: the bare flag)."""
    out = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif v is False or v is None:
            continue
        elif isinstance(v, (tuple, list)):
            out += [flag, ",".join(map(str, v))]
        else:
            out += [flag, str(v)]
    return out


def read_npy(path):
    """(array, raw file bytes) of a .npy file."""
    with open(path, "rb") as f:
        raw = f.read()
    return np.load(path), raw


def load_json(path):
    with open(path) as f:
        return json.load(f)


def _locked_build(out, build):
    """Builds a cached dataset once (ctest may run several test processes at a time)."""
    os.makedirs(WORK, exist_ok=True)
    done = out + ".done"
    with open(out + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(done):
            shutil.rmtree(out, ignore_errors=True)  # a run that died half-way
            build(out)
            open(done, "w").close()
    return out


def _key(*parts_and_files):
    h = hashlib.sha256()
    for p in parts_and_files:
        if isinstance(p, str) and os.path.isfile(p):
            with open(p, "rb") as f:
                h.update(os.path.basename(p).encode() + b"\0" + hashlib.sha256(f.read()).digest())
        else:
            h.update(repr(p).encode() + b"\0")
    return h.hexdigest()[:12]


def photos(count=60):
    """A flower_photos-like dataset made by scripts/make_photos.py from tests/data/photos (cached)."""
    srcs = [os.path.join(PHOTOS, f) for f in sorted(os.listdir(PHOTOS))]
    out = os.path.join(WORK, f"photos{count}-{_key(count, PHOTOS_SEED, MAKE_PHOTOS, *srcs)}")

    def build(d):
        subprocess.run([PYTHON, MAKE_PHOTOS, d, "--count", str(count), "--seed", str(PHOTOS_SEED),
                        "--photos", PHOTOS], check=True, capture_output=True)

    return _locked_build(out, build)


# Files of tests/data in a 2-class tree: good ones of every format, and some that are skipped.
MIXED = {
    "a": ["jpeg_420.jpg", "jpeg_444.jpg", "jpeg_gray.jpg", "jpeg_progressive.jpg", "png_rgb.png",
          "png_rgba16.png", "png_palette.png", "webp_lossy.webp", "exif_6.jpg"],
    "b": ["png_gray16.png", "png_gray_alpha.png", "webp_lossless.webp", "jpeg_cmyk.jpg",
          "jpeg_truncated.jpg", "empty.jpg", "text.jpg", "png_truncated.png"],
}
MIXED_BAD = {"jpeg_truncated.jpg", "empty.jpg", "text.jpg", "png_truncated.png"}


def mixed():
    """tests/data files in class folders a/ and b/, 4 of them unusable (skipped), plus an ignored
    root-level file."""
    files = [os.path.join(TEST_DATA, f) for fs in MIXED.values() for f in fs]
    out = os.path.join(WORK, f"mixed-{_key(sorted(MIXED.items()), *files)}")

    def build(d):
        for c, fs in MIXED.items():
            os.makedirs(os.path.join(d, c))
            for f in fs:
                shutil.copy(os.path.join(TEST_DATA, f), os.path.join(d, c, f))
        with open(os.path.join(d, "README.txt"), "w") as f:
            f.write("not an image\n")

    return _locked_build(out, build)


def big(links=50):
    """A slow dataset for the Ctrl-C tests: the 6 photographs of tests/data/photos upscaled to
    3000x2000 JPEGs, each hard-linked `links` times into class folders daisy/ and roses/ (cheap on
    disk; each file costs a full-size decode with exact_decode)."""
    srcs = [os.path.join(PHOTOS, f) for f in sorted(os.listdir(PHOTOS)) if f.endswith(".jpg")]
    out = os.path.join(WORK, f"big{links}-{_key(links, *srcs)}")

    def build(d):
        import cv2

        base = os.path.join(d + ".base")
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        for i, f in enumerate(srcs):
            im = cv2.resize(cv2.imread(f, cv2.IMREAD_COLOR), (3000, 2000))
            cv2.imwrite(os.path.join(base, f"b{i}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, 90])
        for c in ("daisy", "roses"):
            os.makedirs(os.path.join(d, c))
        n = 0
        for k in range(links):
            for i in range(len(srcs)):
                c = ("daisy", "roses")[n % 2]
                os.link(os.path.join(base, f"b{i}.jpg"), os.path.join(d, c, f"{k:03d}_{i}.jpg"))
                n += 1

    return _locked_build(out, build)


def child_env():
    """The environment for child Python processes: this one's (PYTHONPATH finds imgnorm)."""
    env = dict(os.environ)
    paths = [p for p in sys.path if p and os.path.isdir(os.path.join(p, "imgnorm"))]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join([paths[0], env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def image_files_of(root):
    """The files imgnorm takes from a class-folder tree, in its order (class, relative path), as
    tests/ref/common.py image_files."""
    exts = (".jpg", ".jpeg", ".png", ".webp")
    classes = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    files = []
    for c in classes:
        found = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, c)):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for f in filenames:
                if not f.startswith(".") and f.lower().endswith(exts):
                    found.append(os.path.relpath(os.path.join(dirpath, f), os.path.join(root, c)))
        files += [os.path.join(root, c, f) for f in sorted(found, key=lambda s: s.encode())]
    return files
