"""`stats --pixel-covariance` (issue 13, part 2): the exact (D+1)x(D+1) moment matrix of whole images in
a sidecar .npy beside stats.json, against numpy's integer X_augᵀ·X_aug of the very pixels imgnorm used;
identical bytes for any --threads, for merged shards and under mpirun; refusals (size before
allocating, a missing or altered sidecar, merging with and without)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from common import mpi_env, CLI, WORK, check, finish, photos, run

work = os.path.join(WORK, "pixcov")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
data = photos(200)
SIZE = "6x6"


def out(name):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    return d


def read(path):
    with open(path, "rb") as f:
        return f.read()


# The pixels imgnorm uses: scale mode with range 0,255 writes each u8 value exactly as float32.
run("normalize", data, "--size", SIZE, "--mode", "scale", "--range", "0,255", "-o", out("pixels"), "-q", "--no-labels")
X = np.load(os.path.join(work, "pixels", "images.npy"))
check(np.array_equal(X, np.round(X)), "scale 0,255 gives whole values")
X = X.reshape(len(X), -1).astype(np.int64)
n, D = X.shape
Xa = np.hstack([np.ones((n, 1), np.int64), X])
M_ref = Xa.T @ Xa  # exact in int64

one = os.path.join(out("t1"), "stats.json")
run("stats", data, "--size", SIZE, "--pixel-covariance", "-o", one, "--threads", "1", "-q")
side = os.path.join(work, "t1", "stats.pixel-covariance.npy")
M = np.load(side)
check(M.dtype == np.float64 and M.shape == (D + 1, D + 1), f"sidecar shape {M.shape}, want {(D + 1, D + 1)}")
check(np.array_equal(M, M_ref.astype(np.float64)), "sidecar = numpy's exact X_augᵀ·X_aug")
rec = json.load(open(one))["pixel_covariance"]
check(rec["file"] == "stats.pixel-covariance.npy" and rec["dimension"] == D, f"stats.json record {rec}")
check(rec["sha256"] == hashlib.sha256(read(side)).hexdigest(), "stats.json records the sidecar's SHA-256")

# Threads never change a bit.
for t in (2, 3):
    p = os.path.join(out(f"t{t}"), "stats.json")
    run("stats", data, "--size", SIZE, "--pixel-covariance", "-o", p, "--threads", str(t), "-q")
    check(read(p) == read(one), f"stats.json identical with --threads {t}")
    check(read(os.path.join(work, f"t{t}", "stats.pixel-covariance.npy")) == read(side),
          f"sidecar identical with --threads {t}")

# Shards merged: the same bytes as the single run.
parts = []
for i in range(3):
    p = os.path.join(out(f"shard{i}"), "stats.json")
    run("stats", data, "--size", SIZE, "--pixel-covariance", "-o", p, "--shard", f"{i}/3", "-q")
    parts.append(p)
merged = os.path.join(out("merged"), "stats.json")
run("merge", *parts, "-o", merged)
check(read(merged) == read(one), "merged shards: stats.json identical to the single run")
check(read(os.path.join(work, "merged", "stats.pixel-covariance.npy")) == read(side),
      "merged shards: sidecar identical to the single run")

# Refusals.
# D too large: refused before allocating (instantly, whatever the memory), naming what is needed.
p = run("stats", data, "--size", "224", "--pixel-covariance", "-o", os.path.join(out("big"), "stats.json"),
        "--max-memory", "1G", "-q", expect=None)
check(p.returncode != 0 and "needs" in p.stderr and "--max-memory" in p.stderr and "zca-patch" in p.stderr
      and "zca-channels" in p.stderr and "D = 150528" in p.stderr, f"D too large: {p.stderr}")
check(not os.listdir(os.path.join(work, "big")), "D too large: nothing written")
p = run("stats", data, "--size", SIZE, "--pixel-covariance", "-q", expect=None)
check(p.returncode != 0 and "--pixel-covariance needs -o" in p.stderr, f"without -o: {p.stderr}")

# A merge of statistics with and without the moments is refused.
plain = os.path.join(out("plain"), "stats.json")
run("stats", data, "--size", SIZE, "--shard", "1/3", "-o", plain, "-q")
p = run("merge", parts[0], plain, expect=None)
check(p.returncode != 0 and "with and without a pixel covariance" in p.stderr, f"mixed merge: {p.stderr}")

# An altered sidecar (one sum changed, still a valid moment matrix): the checksum refuses it.
alt = out("altered")
shutil.copy(one, alt)
A = M.copy()
A[1, 1] += 1
A[1, 1] -= 1
A[0, 1] -= 1
A[1, 0] -= 1
np.save(os.path.join(alt, "stats.pixel-covariance.npy"), A)
p = run("merge", os.path.join(alt, "stats.json"), expect=None)
check(p.returncode != 0 and "SHA-256 differs" in p.stderr and "stats.pixel-covariance.npy" in p.stderr,
      f"altered sidecar: {p.stderr}")
# A missing one.
os.remove(os.path.join(alt, "stats.pixel-covariance.npy"))
p = run("merge", os.path.join(alt, "stats.json"), expect=None)
check(p.returncode != 0 and "missing" in p.stderr and "stats.pixel-covariance.npy" in p.stderr,
      f"missing sidecar: {p.stderr}")

# Under mpirun (issue 14: every exact accumulator is reduced): the same bytes as one process.
MPIRUN = shutil.which("mpirun")
if MPIRUN:
    env = mpi_env(OMPI_MCA_orte_tmpdir_base=out("mpi-session"))
    probe = subprocess.run([MPIRUN, "-q", "-np", "1", CLI, "--version"], capture_output=True, text=True, env=env)
    if probe.returncode == 0:
        p3 = os.path.join(out("mpi3"), "stats.json")
        q = subprocess.run([MPIRUN, "-q", "-np", "3", CLI, "stats", data, "--size", SIZE, "--pixel-covariance",
                            "-o", p3, "-q", "--threads", "1"], capture_output=True, text=True, env=env, timeout=300)
        check(q.returncode == 0, f"mpirun -np 3 stats --pixel-covariance: {q.stderr}")
        if q.returncode == 0:
            check(read(p3) == read(one), "mpirun -np 3: stats.json identical to one process")
            check(read(os.path.join(work, "mpi3", "stats.pixel-covariance.npy")) == read(side),
                  "mpirun -np 3: sidecar identical to one process")
    else:
        print(f"mpirun case skipped: {probe.stderr.strip()}")
else:
    print("mpirun case skipped: no mpirun")

finish()
