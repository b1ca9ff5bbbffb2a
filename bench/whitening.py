#!/usr/bin/env python3
"""Full-image whitening fit (issue 13, item 4): imgnorm's exact pixel covariance (float32 ssyrk blocks
into double, per thread) + LAPACK dsyevd (bench/whitening_bench.cpp) against numpy's float64
X.T @ X + eigh on the same u8 data (N images at 32x32 RGB from make_photos.py). Both use the same
number of threads (numpy through OPENBLAS_NUM_THREADS). Prints a markdown table.

    bench/whitening.py --build build-bench --data bench/data/photos10000 [--threads 2] [--size 32]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def numpy_fit(path, threads, eigen=True):
    code = f"""
import json, time, numpy as np
X = np.load({path!r}).reshape(-1, {{0}})
t0 = time.perf_counter()
Xf = X.astype(np.float64)
S = Xf.T @ Xf
n = len(X)
mu = Xf.mean(axis=0)
cov = (S - n * np.outer(mu, mu)) / n
t1 = time.perf_counter()
w, U = np.linalg.eigh(cov) if {eigen} else (np.linalg.eigvalsh(cov[:1, :1]), None)
t2 = time.perf_counter()
print(json.dumps(dict(covariance_s=t1 - t0, eigen_s=t2 - t1, fit_s=t2 - t0, largest_eigenvalue=float(w[-1]))))
"""
    import numpy as np
    d = int(np.prod(np.load(path, mmap_mode="r").shape[1:]))
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run(["/usr/bin/python3", "-c", code.format(d, eigen=eigen)], check=True, capture_output=True, text=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-bench")
    ap.add_argument("--data", required=True, help="image folder (make_photos.py)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", default="32")
    ap.add_argument("--no-eigen", action="store_true", help="time the covariance only")
    args = ap.parse_args()
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([os.path.join(args.build, "imgnorm"), "normalize", args.data, "--size", args.size, "--mode",
                        "scale", "--range", "0,255", "--no-labels", "-o", tmp, "-q"], check=True)
        x = np.load(os.path.join(tmp, "images.npy"))
        u8 = os.path.join(tmp, "u8.npy")
        np.save(u8, x.astype(np.uint8))
        n, d = len(x), int(np.prod(x.shape[1:]))
        del x
        ours = json.loads(subprocess.run([os.path.join(args.build, "bench", "whitening_bench"), u8,
                                          str(args.threads)] + (["--no-eigen"] if args.no_eigen else []), check=True, capture_output=True,
                                         text=True).stdout.strip())
        ref = numpy_fit(u8, args.threads, not args.no_eigen)
    rel = abs(ours["largest_eigenvalue"] - ref["largest_eigenvalue"]) / ref["largest_eigenvalue"]
    print(f"Full-image whitening fit: {n} images, D = {d}, {args.threads} threads, load average "
          f"{os.getloadavg()[0]:.1f}" + ("" if args.no_eigen else f" (largest eigenvalue agrees to {rel:.1e})") + "\n")
    print("| step | imgnorm | numpy float64 | speed-up |")
    print("|---|---|---|---|")
    for k, what in (("covariance_s", "covariance (X.T @ X)"), ("eigen_s", "eigen-decomposition"),
                    ("fit_s", "fit (both)")):
        if args.no_eigen and k != "covariance_s":
            continue
        print(f"| {what} | {ours[k]:.2f} s | {ref[k]:.2f} s | {ref[k] / ours[k]:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
