#!/usr/bin/env python3
"""Kernel peers, timed in-process on one core over one in-memory batch: the u8 → float32
standardization as numpy users write it, ((x / 255 - m) / s), and cv2.dnn.blobFromImages.

    /usr/bin/python3 bench/peers/kernels.py make-batch DATASET SIZE COUNT OUT.npy
    /usr/bin/python3 bench/peers/kernels.py time BATCH.npy [--repeat 5]

make-batch: the first COUNT images of DATASET (sorted class folders, sorted names), cv2.imread +
cv2.resize to SIZE×SIZE, RGB, as a uint8 (N, H, W, 3) array: the batch imgnorm_bench reads too
(IMGNORM_BENCH_BATCH), so both sides work on the same pixels.

time: prints one JSON object: for each peer the median over --repeat runs of the thread CPU time
and of the wall time (seconds per batch) and the output bytes. The constants are those of
bench/kernels_bench.cpp.
  numpy_nhwc  ((x / 255 - m) / s).astype(float32)                      (N, H, W, 3)
  numpy_nchw  the same, then .transpose(0, 3, 1, 2) made contiguous     (N, 3, H, W)
  cv2_blob    cv2.dnn.blobFromImages(list of images, 1/255, mean=255·m)  (N, 3, H, W); it has one
              scale factor for all channels, so it does less than a per-channel std
"""
import json
import os
import statistics
import sys
import time

import cv2
import numpy as np

MEAN = np.array([117.9, 112.4, 87.3]) / 255  # RGB, as in kernels_bench.cpp
STD = np.array([68.1, 62.2, 67.5]) / 255


def make_batch(root, size, count, out):
    paths = []
    for cls in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))):
        folder = os.path.join(root, cls)
        paths += [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
    images = []
    for p in paths:
        img = cv2.imread(p)
        if img is None:
            continue
        images.append(cv2.cvtColor(cv2.resize(img, (size, size)), cv2.COLOR_BGR2RGB))
        if len(images) == count:
            break
    batch = np.ascontiguousarray(np.stack(images))
    np.save(out, batch)
    print(f"{out}: {batch.shape} {batch.dtype}")


def measure(fn, repeat):
    fn()  # warm-up: allocations, page faults of the first output
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.thread_time(), time.perf_counter()
        r = fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
        nbytes = r.nbytes
        del r
    return {"cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall), "bytes": nbytes}


def time_kernels(path, repeat):
    cv2.setNumThreads(1)  # one core, as the C++ micro-benchmarks
    x = np.load(path)
    assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[3] == 3
    images = list(x)
    n, h, w, _ = x.shape

    def numpy_nhwc():
        return ((x / 255 - MEAN) / STD).astype(np.float32)

    def numpy_nchw():
        return np.ascontiguousarray(((x / 255 - MEAN) / STD).astype(np.float32).transpose(0, 3, 1, 2))

    def cv2_blob():
        return cv2.dnn.blobFromImages(images, 1 / 255, (w, h), tuple(MEAN * 255), swapRB=False, crop=False)

    blob = cv2_blob()
    assert blob.shape == (n, 3, h, w) and blob.dtype == np.float32
    out = {"images": n, "height": h, "width": w}
    for name, fn in [("numpy_nhwc", numpy_nhwc), ("numpy_nchw", numpy_nchw), ("cv2_blob", cv2_blob)]:
        out[name] = measure(fn, repeat)
    print(json.dumps(out))


def main():
    if len(sys.argv) >= 6 and sys.argv[1] == "make-batch":
        make_batch(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) >= 3 and sys.argv[1] == "time":
        repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 5
        time_kernels(sys.argv[2], repeat)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
