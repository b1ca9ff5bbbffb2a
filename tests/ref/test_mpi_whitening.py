"""`mpirun imgnorm normalize --mode zca|pca` (issue 13): the whitening matrix is rank 0's, broadcast
to every rank, and the committed set -- images.npy, labels.npy, manifest.json and whitening.npy --
equals a single process's byte for byte: zca with --stats, pca --components K with --fit, and with
--output-shards (the shards, concatenated, are the single images.npy; whitening.npy beside them,
named by the manifest). 8x8 RGB, D = 192.

Open MPI's environment as in test_mpi_output.py. Exits 77 (ctest: skipped) when mpirun is missing
or the CLI was built without MPI."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from common import mpi_env, CLI, WORK, check, finish, photos, run

MPIRUN = shutil.which("mpirun")
MPI_ENV = mpi_env()

work = os.path.join(WORK, "mpi-whitening")
count = 0


def mpirun(np_, *args, expect=0):
    global count
    count += 1
    tmp = os.path.join(work, "sessions", str(count))
    os.makedirs(tmp, exist_ok=True)
    p = subprocess.run([MPIRUN, "-q", "-np", str(np_), CLI, *map(str, args)], capture_output=True, text=True,
                       timeout=120, env=dict(MPI_ENV, OMPI_MCA_orte_tmpdir_base=tmp))
    if expect is not None and p.returncode != expect:
        print(f"{p.args} exited {p.returncode}, expected {expect}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        raise SystemExit(1)
    return p


if MPIRUN is None:
    print("SKIPPED: mpirun not found (scripts/install-deps.sh installs openmpi-bin)")
    sys.exit(77)
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
if mpirun(1, "--version", expect=None).returncode != 0:
    print("SKIPPED: this imgnorm does not run under mpirun (built without MPI?)")
    sys.exit(77)


def out(name):
    return os.path.join(work, name)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# 30 photographs and a broken file; the statistics with the 192x192 pixel covariance.
data = out("data")
shutil.copytree(photos(30), data)
with open(os.path.join(data, "roses", "0_broken.png"), "wb") as f:
    f.write(b"not a png")
stats = out("stats.json")
run("stats", data, "--size", "8", "--pixel-covariance", "-q", "-o", stats)

SET = ("images.npy", "labels.npy", "manifest.json", "whitening.npy")
cases = {
    "zca": ("--stats", stats, "--mode", "zca"),
    "pca": ("--size", "8", "--fit", "--mode", "pca", "--components", "10"),
}
for name, flags in cases.items():
    single = out(f"{name}-single")
    run("normalize", data, *flags, "-o", single, "-q")
    check(sorted(os.listdir(single)) == sorted(SET), f"{name}: the single run's set: {os.listdir(single)}")
    for np_ in (2, 3):
        d = out(f"{name}-{np_}")
        p = mpirun(np_, "normalize", data, *flags, "-o", d, "-q")
        # 30 images for D = 192: the singular-covariance warning of the preparation, once (rank 0).
        check(p.stderr.count(f"warning: --mode {name}: 30 images for D = 192 values per image: the pixel "
                             "covariance is singular") == 1, f"{name} -np {np_}: the warning once: {p.stderr}")
        check(sorted(os.listdir(d)) == sorted(SET), f"{name} -np {np_}: the whole set, no temporary: {os.listdir(d)}")
        for f in SET:
            check(read(os.path.join(d, f)) == read(os.path.join(single, f)),
                  f"{name} under mpirun -np {np_}: {f} equals the single process's byte for byte")
    w = np.load(os.path.join(single, "whitening.npy"))
    check(w.shape == ((193 if name == "zca" else 11), 192), f"{name}: whitening.npy is (K+1) x D: {w.shape}")

# --output-shards: one shard per rank, whitening.npy beside them, named by the manifest.
d = out("zca-shards")
mpirun(3, "normalize", data, *cases["zca"], "--output-shards", "-o", d, "-q")
m = json.load(open(os.path.join(d, "manifest.json")))
want = sorted([f"images-{r:05d}.npy" for r in range(3)] + [f"labels-{r:05d}.npy" for r in range(3)] +
              ["manifest.json", "whitening.npy"])
check(sorted(os.listdir(d)) == want, f"shards: the shards, whitening.npy and the manifest: {os.listdir(d)}")
check(m["whitening"] == "whitening.npy", f"shards: the manifest names whitening.npy: {m.get('whitening')}")
check(read(os.path.join(d, "whitening.npy")) == read(os.path.join(out("zca-single"), "whitening.npy")),
      "shards: whitening.npy equals the single process's")
rows = b"".join(np.load(os.path.join(d, s["images"])).tobytes() for s in m["shards"])
check(rows == np.load(os.path.join(out("zca-single"), "images.npy")).tobytes(),
      "shards: the shards, concatenated, are the single images.npy byte for byte")
# denormalize reads whitening.npy beside a shard.
run("denormalize", os.path.join(d, "images-00001.npy"), "-o", out("denorm-1.npy"), "-q")
run("denormalize", os.path.join(out("zca-single"), "images.npy"), "-o", out("denorm-all.npy"), "-q")
n0 = m["shards"][0]["rows"]
n1 = m["shards"][1]["rows"]
check(np.array_equal(np.load(out("denorm-1.npy")), np.load(out("denorm-all.npy"))[n0:n0 + n1]),
      "shards: denormalize of shard 1 gives its rows of the single set")

finish()
