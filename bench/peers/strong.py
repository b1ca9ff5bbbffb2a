#!/usr/bin/env python3
"""The strongest Python peer of `imgnorm stats`: what a competent engineer writes when speed
matters. Run by bench/run.py, timed there as a whole process in the same rounds as the CLI.

    /usr/bin/python3 bench/peers/strong.py LIST SIZE [--threads 2]

LIST is an `imgnorm --list` file (one path per line, relative to the list's folder), so the peer
reads exactly the files imgnorm reads. Per file, on a pool of THREADS Python threads (every heavy
call below releases the GIL):
- JPEG: TurboJPEG through ctypes (libturbojpeg.so.0, Debian's libturbojpeg0), decoded at the
  largest DCT scale 1/8, 1/4 or 1/2 whose output still covers SIZE x SIZE: the rule imgnorm uses
  without --exact-decode. Whatever TurboJPEG refuses (CMYK, say) falls back to cv2.imdecode.
- other formats: cv2.imdecode(IMREAD_COLOR).
- cv2.resize to SIZE x SIZE (INTER_LINEAR), then cv2.meanStdDev; per-channel sums of n*mean and
  n*(std^2 + mean^2) in float64, per thread, added at the end. No dataset-sized array.
cv2.setNumThreads(1): the pool is the parallelism.

Prints one JSON line: images, mean and std per channel (RGB, 0-255, population std), seconds.
"""
import argparse
import ctypes
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

TJPF_BGR = 1


def turbojpeg():
    lib = ctypes.CDLL("libturbojpeg.so.0")  # CDLL calls release the GIL
    lib.tjInitDecompress.restype = ctypes.c_void_p
    lib.tjDecompressHeader3.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong] + \
        [ctypes.POINTER(ctypes.c_int)] * 4
    lib.tjDecompress2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p,
                                  ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.tjDestroy.argtypes = [ctypes.c_void_p]
    return lib


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("list")
    ap.add_argument("size", type=int)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    cv2.setNumThreads(1)
    base = os.path.dirname(os.path.abspath(args.list))
    with open(args.list) as f:
        files = [os.path.join(base, line.strip()) for line in f if line.strip() and not line.startswith("#")]
    tj = turbojpeg()
    size = args.size
    local = threading.local()
    totals, lock = [], threading.Lock()

    class State:
        def __init__(self):
            self.handle = tj.tjInitDecompress()
            self.sums = np.zeros((2, 3))
            self.n = 0

    def state():
        if not hasattr(local, "st"):
            local.st = State()
            with lock:
                totals.append(local.st)
        return local.st

    def decode_jpeg(st, data):
        w, h, sub, cs = (ctypes.c_int() for _ in range(4))
        if tj.tjDecompressHeader3(st.handle, data, len(data), ctypes.byref(w), ctypes.byref(h),
                                  ctypes.byref(sub), ctypes.byref(cs)) != 0:
            return None
        denom = 1
        for d in (8, 4, 2):
            if -(-w.value // d) >= size and -(-h.value // d) >= size:
                denom = d
                break
        sw, sh = -(-w.value // denom), -(-h.value // denom)
        img = np.empty((sh, sw, 3), np.uint8)
        if tj.tjDecompress2(st.handle, data, len(data), img.ctypes.data, sw, 0, sh, TJPF_BGR, 0) != 0:
            return None
        return img

    def one(path):
        st = state()
        with open(path, "rb") as f:
            data = f.read()
        img = decode_jpeg(st, data) if data[:2] == b"\xff\xd8" else None
        if img is None:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        r = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
        m, s = cv2.meanStdDev(r)
        n = size * size
        st.sums[0] += n * m[:, 0]
        st.sums[1] += n * (s[:, 0] ** 2 + m[:, 0] ** 2)
        st.n += n

    with ThreadPoolExecutor(args.threads) as pool:
        for _ in pool.map(one, files, chunksize=16):
            pass
    sums = sum(t.sums for t in totals)
    n = sum(t.n for t in totals)
    for t in totals:
        tj.tjDestroy(t.handle)
    mean = sums[0] / n
    std = np.sqrt(np.maximum(sums[1] / n - mean ** 2, 0))
    print(json.dumps({"images": len(files), "mean": mean[::-1].tolist(), "std": std[::-1].tolist(),
                      "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
