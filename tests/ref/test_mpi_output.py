"""`mpirun imgnorm normalize` outputs (issue 14): --output-shards (one shard per rank, one without
mpirun; their rows in order are the single images.npy's data, byte for byte; inspect reads the set
as one array; denormalize takes a shard), the commit through the claimed output folder (a second
run into a folder an MPI run holds is refused; killing the rank that holds it leaves the old set
intact; the next run removes the dead run's temporaries), --fit under mpirun (as one process) and
the refusal of a .npy input.

Open MPI's environment as in test_mpi.py. Exits 77 (ctest: skipped) when mpirun is missing or the
CLI was built without MPI."""
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from common import mpi_env, CLI, WORK, check, finish, image_files, photos, run

MPIRUN = shutil.which("mpirun")
MPI_ENV = mpi_env()

work = os.path.join(WORK, "mpi-output")
sessions = os.path.join(work, "sessions")
count = 0


def launch(np_, *args):
    """mpirun -q -np N imgnorm ARGS, started now (its own session folder)."""
    global count
    count += 1
    tmp = os.path.join(sessions, str(count))
    os.makedirs(tmp, exist_ok=True)
    return subprocess.Popen([MPIRUN, "-q", "-np", str(np_), CLI, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(MPI_ENV, OMPI_MCA_orte_tmpdir_base=tmp))


def result(proc, expect=0):
    out, err = proc.communicate(timeout=120)
    if expect is not None and proc.returncode != expect:
        print(f"{proc.args} exited {proc.returncode}, expected {expect}\nstdout: {out}\nstderr: {err}")
        raise SystemExit(1)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def mpirun(np_, *args, expect=0):
    return result(launch(np_, *args), expect)


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


def data_bytes(path):
    return np.load(path).tobytes()


def same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


# 30 photographs and a broken file.
data = out("data")
shutil.copytree(photos(30), data)
with open(os.path.join(data, "roses", "0_broken.png"), "wb") as f:
    f.write(b"not a png")
files = image_files(data)
stats = out("stats.json")
run("stats", data, "--size", "20", "-q", "-o", stats)
perimg = ("--mode", "per-image", "--dtype", "float16")

# --- shards: 1 process, 3 and 4 ranks; the concatenation is images.npy ---
run("normalize", data, "--stats", stats, "-o", out("single"), "-q", *perimg)
p = run("normalize", data, "--stats", stats, "-o", out("shard1"), "--output-shards", *perimg)
check("-> " + out("shard1") + "/images-RRRRR.npy, 1 shard " in p.stdout, p.stdout)
launches = {np_: launch(np_, "normalize", data, "--stats", stats, "-o", out(f"shards{np_}"), "--output-shards", "-q",
                        *perimg) for np_ in (3, 4)}
for np_, proc in launches.items():
    result(proc)
single_images = data_bytes(os.path.join(out("single"), "images.npy"))
single_labels = np.load(os.path.join(out("single"), "labels.npy"))
single_manifest = __import__("json").load(open(os.path.join(out("single"), "manifest.json")))
for name, shards in (("shard1", 1), ("shards3", 3), ("shards4", 4)):
    d = out(name)
    want = sorted([f"images-{r:05d}.npy" for r in range(shards)] + [f"labels-{r:05d}.npy" for r in range(shards)] +
                  ["manifest.json"])
    check(sorted(os.listdir(d)) == want, f"{name}: the shards and the manifest, no temporary: {os.listdir(d)}")
    m = __import__("json").load(open(os.path.join(d, "manifest.json")))
    check([s["images"] for s in m["shards"]] == [f"images-{r:05d}.npy" for r in range(shards)],
          f"{name}: the manifest lists the shards in rank order")
    arrays = [np.load(os.path.join(d, s["images"])) for s in m["shards"]]
    check([len(a) for a in arrays] == [s["rows"] for s in m["shards"]], f"{name}: the shards' rows as listed")
    check(b"".join(a.tobytes() for a in arrays) == single_images,
          f"{name}: the shards, concatenated, are images.npy byte for byte")
    labels = np.concatenate([np.load(os.path.join(d, s["labels"])) for s in m["shards"]])
    check(np.array_equal(labels, single_labels), f"{name}: the label shards are labels.npy")
    rest = {k: v for k, v in m.items() if k not in ("shards", "labels")}
    check(rest == {k: v for k, v in single_manifest.items() if k != "labels"},
          f"{name}: the manifest is the single run's plus the shard list")
    # inspect reads the set as the one array it stands for.
    a = run("inspect", d).stdout
    b = run("inspect", os.path.join(out("single"), "images.npy")).stdout
    check(a.split("\n", 1)[1] == b.split("\n", 1)[1] and a.split(":", 1)[1] == b.split(":", 1)[1],
          f"{name}: inspect of the set equals inspect of images.npy:\n{a}\n{b}")
# denormalize takes one shard: its rows of the whole set.
run("denormalize", os.path.join(out("single"), "images.npy"), "-o", out("denorm-all.npy"), "-q")
whole = np.load(out("denorm-all.npy"))
at = 0
for r in range(3):
    shard = np.load(os.path.join(out("shards3"), f"images-{r:05d}.npy"))
    run("denormalize", os.path.join(out("shards3"), f"images-{r:05d}.npy"), "-o", out(f"denorm-{r}.npy"), "-q")
    check(np.array_equal(np.load(out(f"denorm-{r}.npy")), whole[at:at + len(shard)]), f"denormalize of shard {r}")
    at += len(shard)

# --- --fit under mpirun: the statistics over all ranks, then the normalize; as one process ---
fit_stats = out("fit-stats.json")
for np_ in (1, 3):
    args = ("normalize", data, "--size", "20", "--fit", "--save-stats", fit_stats, "-o", out(f"fit{np_}"), "-q")
    if np_ == 1:
        run(*args)
        os.rename(fit_stats, out("fit-stats-single.json"))
    else:
        mpirun(np_, *args)
for f in ("images.npy", "labels.npy", "manifest.json"):
    check(same_file(os.path.join(out("fit1"), f), os.path.join(out("fit3"), f)),
          f"--fit under mpirun -np 3: {f} equals the single-process run's")
check(same_file(out("fit-stats-single.json"), fit_stats), "--fit under mpirun: --save-stats equals the single run's")
check(__import__("json").load(open(os.path.join(out("fit3"), "manifest.json")))["fit"] is True, "the manifest says fit")

# --- refusals under mpirun, before any work ---
np.save(out("x.npy"), np.zeros((2, 4, 4, 3), np.uint8))
p = mpirun(2, "normalize", out("x.npy"), "--stats", stats, "-o", out("from-array"), expect=2)
check(p.stderr.count("imgnorm:") == 1 and "an array is normalized by one process; run it without mpirun" in p.stderr,
      p.stderr)
check(not os.path.exists(out("from-array")), "an array under mpirun: nothing written")
# (--mode zca|pca under mpirun: tests/ref/test_mpi_whitening.py.)

# --- the commit goes through the claimed folder ---
# An old set, then a long MPI run replacing it (--force): a list naming the photographs 40 times.
held = out("held")
run("normalize", data, "--stats", stats, "-o", held, "-q")
old = {f: open(os.path.join(held, f), "rb").read() for f in ("images.npy", "labels.npy", "manifest.json")}
lst = out("many.txt")
with open(lst, "w") as f:
    f.write("\n".join([x for x in files if "broken" not in x] * 40) + "\n")
proc = launch(2, "normalize", "--list", lst, "--stats", stats, "--size", "128", "--exact-decode", "-j", "1", "-o", held,
              "--force", "-q")
deadline = time.time() + 60
holder = None
while time.time() < deadline and proc.poll() is None:
    if glob.glob(os.path.join(held, "images.npy.tmp-*")):
        with open(os.path.join(held, ".imgnorm.lock")) as f:
            holder = int(f.read().split()[0])
        break
    time.sleep(0.05)
check(holder is not None, "the MPI run claimed the folder and started writing")
# A second run into the folder the MPI run holds is refused at once.
p = run("normalize", data, "--stats", stats, "-o", held, "--force", "-q", expect=1)
check(f"{held}: in use by another imgnorm run (pid {holder})" in p.stderr, p.stderr)
# Rank 0 (it holds the folder and owns the temporaries) killed mid-run.
time.sleep(0.3)
os.kill(holder, signal.SIGKILL)
proc.communicate(timeout=60)
check(proc.returncode != 0, f"mpirun exits non-zero after rank 0 died: {proc.returncode}")
for f, content in old.items():
    check(open(os.path.join(held, f), "rb").read() == content, f"{f}: the old set is intact after the kill")
dead = glob.glob(os.path.join(held, "images.npy.tmp-*"))
check(dead, f"the dead run left its temporary: {os.listdir(held)}")
# The next run claims the folder and removes the dead run's temporaries; an MPI run with
# --output-shards replaces the old set whole (images.npy and labels.npy go).
mpirun(2, "normalize", data, "--stats", stats, "-o", held, "--force", "--output-shards", "-q")
check(sorted(os.listdir(held)) == ["images-00000.npy", "images-00001.npy", "labels-00000.npy", "labels-00001.npy",
                                   "manifest.json"], f"no temporary, no old member left: {os.listdir(held)}")

finish()
