"""`mpirun imgnorm` (issue 14): stats.json, the mean image, images.npy, labels.npy and manifest.json
from 1 to 4 ranks are byte-identical to a single-process run — with corrupt files that land in
different ranks, with --sample, with a rank that gets no file at all — and a rank killed mid-run
leaves no images.npy.

Runs as root in CI containers without ssh or cross-memory attach, on 2 cores: the environment
below lets Open MPI start there (docs/scale-out.md). Exits 77 (ctest: skipped) when mpirun is
missing or the CLI was built without MPI."""
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

from common import mpi_env, CLI, WORK, check, finish, image_files, photos, run

MPIRUN = shutil.which("mpirun")
MPI_ENV = mpi_env()


class Launch:
    """mpirun -q -np N imgnorm ARGS, started now; result() waits for it. Launches mostly wait (Open MPI's
    start and end take ~1 s each, little CPU), so the test starts several at once."""

    count = 0

    def __init__(self, np_, *args, expect=0):
        self.what, self.expect = f"mpirun -np {np_} {args}", expect
        # Launches at once need their own session folders (plm=isolated names them alike).
        Launch.count += 1
        tmp = os.path.join(WORK, "mpi-session", str(Launch.count))
        os.makedirs(tmp, exist_ok=True)
        self.proc = subprocess.Popen([MPIRUN, "-q", "-np", str(np_), CLI, *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=dict(MPI_ENV, OMPI_MCA_orte_tmpdir_base=tmp))

    def result(self):
        out, err = self.proc.communicate(timeout=120)
        p = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)
        if self.expect is not None and p.returncode != self.expect:
            print(f"{self.what} exited {p.returncode}, expected {self.expect}\nstdout: {out}\nstderr: {err}")
            raise SystemExit(1)
        return p


def mpirun(np_, *args, expect=0):
    return Launch(np_, *args, expect=expect).result()


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def rank_block(n, rank, ranks):
    base, extra = divmod(n, ranks)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


if MPIRUN is None:
    print("SKIPPED: mpirun not found (scripts/install-deps.sh installs openmpi-bin)")
    sys.exit(77)
probe = mpirun(1, "--version", expect=None)
if probe.returncode != 0:
    print(f"SKIPPED: this imgnorm does not run under mpirun (built without MPI?): {probe.stderr.strip()}")
    sys.exit(77)

work = os.path.join(WORK, "mpi")
shutil.rmtree(work, ignore_errors=True)
shutil.rmtree(os.path.join(WORK, "mpi-session"), ignore_errors=True)
os.makedirs(work)

# 60 photographs and 3 broken files: the first of one class, the last of two others.
data = os.path.join(work, "data")
shutil.copytree(photos(60), data)
first_daisy = image_files(data)[0]
with open(first_daisy, "rb") as f:
    head = f.read(400)
with open(os.path.join(data, "daisy", "zz_truncated.jpg"), "wb") as f:
    f.write(head)
with open(os.path.join(data, "roses", "0_not_an_image.png"), "wb") as f:
    f.write(b"not a png at all")
with open(os.path.join(data, "tulips", "zz_empty.jpg"), "wb") as f:
    pass
files = image_files(data)
bad = [i for i, f in enumerate(files) if os.path.basename(f) in ("zz_truncated.jpg", "0_not_an_image.png", "zz_empty.jpg")]
check(len(bad) == 3, f"3 broken files among {len(files)}")
for np_ in (2, 3, 4):
    ranks = {r for i in bad for r in range(np_) if rank_block(len(files), r, np_)[0] <= i < rank_block(len(files), r, np_)[1]}
    check(len(ranks) >= 2, f"{np_} ranks: the broken files are in ranks {sorted(ranks)}, want at least 2")


def outdir(name):
    return os.path.join(work, name)


# --- stats: 1-4 ranks, with the mean image; and a sample ---
ref = outdir("stats1.json")
run("stats", data, "--size", "24", "-q", "-o", ref, "--mean-image", outdir("mean1.npy"))
run("stats", data, "--size", "16", "--sample", "37%", "--seed", "5", "-q", "-o", outdir("sample1.json"))
launches = [Launch(np_, "stats", data, "--size", "24", "-q", "-o", outdir(f"stats-np{np_}.json"), "--mean-image",
                   outdir(f"mean-np{np_}.npy")) for np_ in (1, 2, 3, 4)]
launches.append(Launch(3, "stats", data, "--size", "16", "--sample", "37%", "--seed", "5", "-q", "-o",
                       outdir("sample-np3.json")))
for launch in launches:
    launch.result()
for np_ in (1, 2, 3, 4):
    check(same_bytes(ref, outdir(f"stats-np{np_}.json")), f"stats.json from {np_} ranks equals the single-process run")
    check(same_bytes(outdir("mean1.npy"), outdir(f"mean-np{np_}.npy")), f"mean image from {np_} ranks")
check(same_bytes(outdir("sample1.json"), outdir("sample-np3.json")),
      "sampled stats.json from 3 ranks equals the single-process run")

# --- normalize: 1-4 ranks, standardize (and a per-image mode: maps per row in the manifest) ---
stats = outdir("stats1.json")


def same_outputs(single, multi, what):
    for f in ("images.npy", "labels.npy", "manifest.json"):
        check(same_bytes(os.path.join(single, f), os.path.join(multi, f)), f"{what}: {f} equals the single-process run's")
    check(sorted(os.listdir(multi)) == ["images.npy", "labels.npy", "manifest.json"],
          f"{what}: no temporary left: {os.listdir(multi)}")


perimg = ("--mode", "per-image", "--dtype", "float16", "--layout", "nchw")
run("normalize", data, "--stats", stats, "-o", outdir("std-single"), "-q")
run("normalize", data, "--stats", stats, "-o", outdir("perimg-single"), "-q", *perimg)
launches = {np_: Launch(np_, "normalize", data, "--stats", stats, "-o", outdir(f"std-np{np_}"), "-q")
            for np_ in (1, 2, 3, 4)}
perimg_launch = Launch(3, "normalize", data, "--stats", stats, "-o", outdir("perimg-np3"), "-q", *perimg)
for np_, launch in launches.items():
    p = launch.result()
    check(p.stdout.count("imgnorm normalize: 60 images") == 1, f"{np_} ranks: the result printed once: {p.stdout!r}")
    same_outputs(outdir("std-single"), outdir(f"std-np{np_}"), f"standardize, {np_} ranks")
perimg_launch.result()
same_outputs(outdir("perimg-single"), outdir("perimg-np3"), "per-image float16 nchw, 3 ranks")

# --- a rank with no file at all (4 ranks, 3 files), one whose only file is broken ---
tiny = os.path.join(work, "tiny")
os.makedirs(os.path.join(tiny, "a"))
os.makedirs(os.path.join(tiny, "b"))
shutil.copy(files[1], os.path.join(tiny, "a", "1.jpg"))
shutil.copy(os.path.join(data, "roses", "0_not_an_image.png"), os.path.join(tiny, "a", "2.png"))
shutil.copy(files[-2], os.path.join(tiny, "b", "3" + os.path.splitext(files[-2])[1]))
run("stats", tiny, "--size", "20", "-q", "-o", outdir("tiny1.json"))
tiny_stats = Launch(4, "stats", tiny, "--size", "20", "-q", "-o", outdir("tiny4.json"))
run("normalize", tiny, "--stats", outdir("tiny1.json"), "-o", outdir("tiny-single"), "-q")
mpirun(4, "normalize", tiny, "--stats", outdir("tiny1.json"), "-o", outdir("tiny-np4"), "-q")
tiny_stats.result()
check(same_bytes(outdir("tiny1.json"), outdir("tiny4.json")), "4 ranks over 3 files: stats.json")
same_outputs(outdir("tiny-single"), outdir("tiny-np4"), "4 ranks over 3 files")

# --- an error every rank finds: one message, the usual status ---
missing = Launch(3, "stats", os.path.join(work, "missing"), "-q", expect=1)
merge = Launch(2, "merge", outdir("stats1.json"), "-o", outdir("merged.json"), expect=2)
p = missing.result()
check(p.stderr.count("imgnorm:") == 1 and "missing: no such folder" in p.stderr, f"one message: {p.stderr!r}")
p = merge.result()
check(p.stderr.strip() == "imgnorm: imgnorm merge runs in one process; run it without mpirun/srun", p.stderr)
check(not os.path.exists(outdir("merged.json")), "merge under mpirun writes nothing")

# --- a rank killed mid-run: non-zero status, no images.npy ---
# A list naming the photographs 40 times over (duplicates are kept) at a large size: long enough.
lst = os.path.join(work, "many.txt")
good = [f for i, f in enumerate(files) if i not in bad]
with open(lst, "w") as f:
    f.write("\n".join(good * 40) + "\n")
killed = outdir("killed")
proc = subprocess.Popen([MPIRUN, "-q", "-np", "2", CLI, "normalize", "--list", lst, "--stats", stats, "--size", "256",
                         "--exact-decode", "-j", "1", "-o", killed, "-q"],
                        env=MPI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ranks_of(pid):
    """The imgnorm processes mpirun started."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(stat[:-4] + "comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if int(fields[1]) == pid and comm == "imgnorm":
            out.append(int(stat.split("/")[2]))
    return sorted(out)


deadline = time.time() + 60
victim = None
while time.time() < deadline and proc.poll() is None:
    temps = glob.glob(os.path.join(killed, "images.npy.tmp-*"))
    ranks = ranks_of(proc.pid)
    if temps and len(ranks) == 2:
        time.sleep(0.3)  # rows are being written
        victim = ranks[1]
        os.kill(victim, signal.SIGKILL)
        break
    time.sleep(0.05)
_, err = proc.communicate(timeout=60)
check(victim is not None, "a rank was killed while the images were being written")
check(proc.returncode != 0, f"mpirun exits non-zero after a rank died: {proc.returncode}")
check(not os.path.exists(os.path.join(killed, "images.npy")), "no images.npy after a rank died")
check(not os.path.exists(os.path.join(killed, "manifest.json")), "no manifest.json after a rank died")

finish()
