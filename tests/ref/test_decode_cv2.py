#!/usr/bin/python3
"""Reference test: imgnorm's decoder against cv2.imread (OpenCV 4.6, Debian 12), pixel for pixel.

For every file in tests/data that cv2.imread reads, imgnorm_dump must give exactly
cv2.imread(path, IMREAD_COLOR) (as RGB and as BGR) and cv2.imread(path, IMREAD_GRAYSCALE) (gray),
with and without EXIF orientation, and so must the full-size photographs in tests/data/photos.
Files cv2 cannot read must be refused by imgnorm too. Truncated JPEGs, which cv2 fills with grey,
are refused by default and equal cv2 with --allow-truncated.

    IMGNORM_DUMP=build/tests/imgnorm_dump /usr/bin/python3 tests/ref/test_decode_cv2.py
"""
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
DUMP = os.environ.get("IMGNORM_DUMP", "/work/main/build/tests/imgnorm_dump")
IMAGE_EXTS = (".jpg", ".png", ".webp")
TRUNCATED = {"jpeg_truncated.jpg", "jpeg_truncated_progressive.jpg"}

passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}", flush=True)


def dump(path, *opts):
    """(array or None, stderr) from imgnorm_dump."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npy")
        p = subprocess.run([DUMP, path, out, *opts], capture_output=True, text=True)
        if p.returncode != 0:
            return None, p.stderr.strip()
        return np.load(out), p.stderr.strip()


def cv_read(path, flags):
    try:
        return cv2.imread(path, flags)
    except cv2.error:  # e.g. a header beyond cv2's own pixel limit
        return None


def describe(a, b):
    if a is None or b is None:
        return f"one side missing: imgnorm={None if a is None else a.shape}"
    if a.shape != b.shape:
        return f"shape {a.shape} vs cv2 {b.shape}"
    d = np.abs(a.astype(int) - b.astype(int))
    return f"max diff {d.max()}, {np.count_nonzero(d)} samples differ"


def compare(path, name, extra=(), ignore_orientation=False):
    flag = cv2.IMREAD_IGNORE_ORIENTATION if ignore_orientation else 0
    ref_bgr = cv_read(path, cv2.IMREAD_COLOR | flag)
    ref_gray = cv_read(path, cv2.IMREAD_GRAYSCALE | flag)
    opts = list(extra) + (["--no-orientation"] if ignore_orientation else [])
    for channels, ref in (("rgb", ref_bgr[:, :, ::-1]), ("bgr", ref_bgr), ("gray", ref_gray[:, :, None])):
        got, err = dump(path, "--channels", channels, *opts)
        ok = got is not None and got.dtype == np.uint8 and np.array_equal(got, ref)
        check(ok, f"{name} --channels {channels} {' '.join(opts)}: {err or describe(got, ref)}")


def main():
    if not os.access(DUMP, os.X_OK):
        print(f"imgnorm_dump not found at {DUMP} (set IMGNORM_DUMP)")
        sys.exit(1)
    names = sorted(f for f in os.listdir(DATA) if f.endswith(IMAGE_EXTS))
    check(len(names) >= 40, f"test images present ({len(names)})")
    cv_readable = 0
    for name in names:
        path = os.path.join(DATA, name)
        ref = cv_read(path, cv2.IMREAD_COLOR)
        if ref is None:
            got, err = dump(path)
            check(got is None and err.startswith("error: "), f"{name}: cv2 cannot read it, imgnorm must refuse ({err})")
            continue
        cv_readable += 1
        if name in TRUNCATED:
            got, err = dump(path)
            check(got is None and "error: " in err, f"{name}: truncated JPEG must be refused by default")
            compare(path, name, extra=["--allow-truncated"])
            continue
        compare(path, name)
        compare(path, name, ignore_orientation=True)
    check(cv_readable >= 30, f"cv2-readable test images ({cv_readable})")

    # The pixel limit is checked from the header.
    got, err = dump(os.path.join(DATA, "jpeg_420.jpg"), "--max-pixels", str(41 * 31 - 1))
    check(got is None and "exceeds the limit" in err, f"--max-pixels refuses: {err}")
    got, err = dump(os.path.join(DATA, "jpeg_420.jpg"), "--max-pixels", str(41 * 31))
    check(got is not None and got.shape == (31, 41, 3), "--max-pixels at the exact size accepts")

    # Real photographs at full size (1600 px wide, tests/data/photos), the case that matters most.
    photos = os.path.join(DATA, "photos")
    photo_names = sorted(f for f in os.listdir(photos) if f.endswith(".jpg"))
    check(len(photo_names) >= 6, f"full-size photographs present ({len(photo_names)})")
    for name in photo_names:
        compare(os.path.join(photos, name), "photos/" + name)

    unusual_names_and_small_images()

    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def unusual_names_and_small_images():
    """Names with spaces and non-ASCII characters, and images smaller than the target size (upscaled),
    through the CLI: with one image, --mean-image is that image after the recipe, so it must equal
    cv2.resize(cv2.imread(path), (S, S)) for every interpolation."""
    cli = os.environ.get("IMGNORM_CLI", os.path.join(os.path.dirname(DUMP), "..", "imgnorm"))
    if not os.access(cli, os.X_OK):
        print(f"note: imgnorm CLI not found at {cli} (set IMGNORM_CLI): names and upscaling skipped")
        return
    interps = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST,
               "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
    small = ["jpeg_1x1.jpg", "png_1x1.png", "webp_1x1.webp", "png_gray1.png", "png_palette_trns.png",
             "jpeg_cmyk.jpg", "exif_6.jpg"]
    names = ["with space.jpg", "naïve ünïcödé 写真.png", "tab\tand 'quote'.webp", "UPPER CASE.JPG",
             "x" * 200 + ".jpg", "-leading-dash.png"]
    with tempfile.TemporaryDirectory() as tmp:
        for k, src in enumerate(small):
            path = os.path.join(DATA, src)
            ref_img = cv_read(path, cv2.IMREAD_COLOR)
            if ref_img is None:
                check(False, f"{src}: cv2 reads it")
                continue
            name = names[k % len(names)]
            ext = os.path.splitext(src)[1]
            name = os.path.splitext(name)[0] + (ext.upper() if k % 2 else ext)  # the bytes decide the format anyway
            folder = os.path.join(tmp, f"set{k}", "só lo")
            os.makedirs(folder)
            target = os.path.join(folder, name)
            with open(path, "rb") as fi, open(target, "wb") as fo:
                fo.write(fi.read())
            got, err = dump(target)
            check(got is not None and np.array_equal(got, ref_img[:, :, ::-1]), f"{name!r} ({src}) decodes: {err}")
            size = 37 if ref_img.shape[0] * ref_img.shape[1] < 37 * 37 else 2 * max(ref_img.shape[:2])
            for interp, flag in interps.items():
                mean_npy = os.path.join(tmp, f"mean{k}_{interp}.npy")
                p = subprocess.run([cli, "stats", os.path.join(tmp, f"set{k}"), "--size", str(size), "--interp", interp,
                                    "--exact-decode", "--mean-image", mean_npy, "--format", "json"],
                                   capture_output=True, text=True)
                if p.returncode != 0:
                    check(False, f"{name!r} ({src}) --interp {interp}: {p.stderr.strip()}")
                    continue
                want = cv2.resize(ref_img, (size, size), interpolation=flag)[:, :, ::-1]
                got = np.load(mean_npy)
                ok = got.shape == want.shape and np.array_equal(got, want.astype(np.float64))
                check(ok, f"{src} ({ref_img.shape[1]}x{ref_img.shape[0]}) upscaled to {size} --interp {interp}: "
                          f"{describe(got, want) if got.shape == want.shape else got.shape}")


if __name__ == "__main__":
    main()
