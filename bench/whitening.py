#!/usr/bin/env python3
"""Full-image whitening (issue 13, item 4) against numpy on the same u8 data (N images at 32x32 RGB
from make_photos.py), in the same run. Prints a markdown table of medians of RUNS runs:

- the fit: imgnorm's exact pixel covariance (float32 ssyrk blocks into double, T threads) and
  LAPACK dsyevd on T threads, against numpy's float64 X.T @ X + eigh (OpenBLAS on T threads); and
  the fit as the CLI does it (covariance on T threads, then dsyevd and W = U.S.U^T on ONE thread,
  for reproducible bits);
- numpy's literal `X.T @ X` on the u8 array itself: numpy's integer matmul (no BLAS, and the
  uint8 result wraps modulo 256, so it is not even a covariance), timed once on a subset of
  --u8-subset images and scaled linearly to N (it takes about 130 s at 10,000 images);
- the apply: imgnorm's zca of the N images (normalize_rows: the batched whitening kernel, the
  centring and the float32 store, T threads) against numpy's float64 `(X/255 - mu) @ W.T` (the
  conversion included, as a user writes it; OpenBLAS dgemm on T threads).

    bench/whitening.py --build build-bench --data bench/data/photos-10000 [--threads 2] [--size 32]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


NUMPY = r"""
import json, sys, time, numpy as np
path, runs, subset, eps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
X = np.load(path)
X = X.reshape(len(X), -1)
n, d = X.shape

def median(f):
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2], out

def covariance():
    Xf = X.astype(np.float64)
    S = Xf.T @ Xf
    mu = Xf.mean(axis=0)
    return (S - n * np.outer(mu, mu)) / n, mu

cov_s, (cov, mu) = median(covariance)
eig_s, (lam, U) = median(lambda: np.linalg.eigh(cov))
# W in 0-1 units, as imgnorm's zca: U diag(1/sqrt(lam/255^2 + eps)) U^T.
W = (U / np.sqrt(lam / 255.0**2 + eps)) @ U.T
mu1 = mu / 255.0
apply_s, Y = median(lambda: (X / 255.0 - mu1) @ W.T)
np.save(path + ".numpy-first.npy", Y[:16])
del Y
res = dict(covariance_s=cov_s, eigen_s=eig_s, fit_s=cov_s + eig_s, apply_s=apply_s,
           largest_eigenvalue=float(lam[-1]))
if subset > 0:
    Xs = X[:subset]
    t0 = time.perf_counter()
    Xs.T @ Xs  # uint8 result: wraps modulo 256
    res["u8_subset"] = len(Xs)
    res["u8_subset_s"] = time.perf_counter() - t0
print(json.dumps(res))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-bench")
    ap.add_argument("--data", required=True, help="image folder (make_photos.py)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", default="32")
    ap.add_argument("--runs", type=int, default=3, help="runs per step; medians are reported")
    ap.add_argument("--u8-subset", type=int, default=1000,
                    help="images for numpy's u8 X.T @ X (once, scaled linearly to N; 0: skip)")
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
        first = os.path.join(tmp, "imgnorm-first.npy")
        ours = json.loads(subprocess.run([os.path.join(args.build, "bench", "whitening_bench"), u8,
                                          str(args.threads), str(args.runs), first],
                                         check=True, capture_output=True, text=True).stdout.strip())
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
        ref = json.loads(subprocess.run(["/usr/bin/python3", "-c", NUMPY, u8, str(args.runs), str(args.u8_subset),
                                         "1e-5"], check=True, capture_output=True, text=True,
                                        env=env).stdout.strip().splitlines()[-1])
        diff = float(np.max(np.abs(np.load(first).astype(np.float64) - np.load(u8 + ".numpy-first.npy"))))
    load = os.getloadavg()[0]
    rel = abs(ours["largest_eigenvalue"] - ref["largest_eigenvalue"]) / ref["largest_eigenvalue"]
    t = args.threads
    print(f"Full-image whitening: {n} images, D = {d}, medians of {args.runs}, load average {load:.1f} "
          f"(largest eigenvalue agrees to {rel:.1e}; zca outputs of the first 16 images within {diff:.1e} "
          f"of numpy's, float32 against float64)\n")
    print("| step | imgnorm | numpy | numpy / imgnorm |")
    print("|---|---|---|---|")
    rows = [
        (f"covariance: exact (imgnorm, {t} threads) / float64 `X.T @ X` (numpy, {t} BLAS threads)",
         ours["covariance_s"], ref["covariance_s"]),
        (f"eigen-decomposition: dsyevd / eigh, {t} LAPACK threads each", ours["eigen_s"], ref["eigen_s"]),
        (f"fit (both), {t} threads each", ours["fit_s"], ref["fit_s"]),
        (f"fit as the CLI does it (covariance on {t} threads, dsyevd + W on 1) / numpy's fit on {t}",
         ours["cli_fit_s"], ref["fit_s"]),
    ]
    if "u8_subset_s" in ref:
        scaled = ref["u8_subset_s"] * n / ref["u8_subset"]
        rows.append((f"covariance / numpy's literal u8 `X.T @ X` (integer matmul, no BLAS, 1 thread, wraps "
                     f"modulo 256; {ref['u8_subset_s']:.1f} s on {ref['u8_subset']} images, x{n / ref['u8_subset']:g})",
                     ours["covariance_s"], scaled))
        rows.append((f"fit as the CLI does it / numpy's literal u8 `X.T @ X` (scaled, above) + eigh on {t} threads: "
                     f"the peer issue 13 names", ours["cli_fit_s"], scaled + ref["eigen_s"]))
    rows.append((f"apply zca to the {n} images: batched kernel, {t} threads / float64 `(X/255 - mu) @ W.T`, "
                 f"{t} BLAS threads", ours["apply_s"], ref["apply_s"]))
    for what, a, b in rows:
        print(f"| {what} | {a:.2f} s | {b:.2f} s | {b / a:.2f}x |")
    if not ours.get("vectorized"):
        print("\nThe whitening kernel ran its portable path (no AVX2+FMA on this CPU).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
