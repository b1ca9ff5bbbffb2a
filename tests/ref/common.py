"""Helpers shared by the Python reference tests (run with /usr/bin/python3)."""
import fcntl
import os
import shutil
import subprocess
import sys

SOURCE = os.environ.get("IMGNORM_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
CLI = os.environ.get("IMGNORM_CLI", os.path.join(SOURCE, "build", "imgnorm"))
DUMP = os.environ.get("IMGNORM_DUMP", os.path.join(SOURCE, "build", "tests", "imgnorm_dump"))
WORK = os.environ.get("IMGNORM_WORK", os.path.join(SOURCE, "build", "tests", "ref-work"))
os.makedirs(WORK, exist_ok=True)

_results = {"passed": 0, "failed": 0}


def mpi_env(**extra):
    """The environment for `mpirun` in these tests: root allowed (CI runs as root), this node only
    (no ssh/rsh agent), more ranks than cores, shared memory only (no network, no ptrace/CMA in
    containers), no SLURM job inherited; `extra` adds variables (e.g. OMPI_MCA_orte_tmpdir_base).
    Under ASan (make test-sanitize) Open MPI's dlopen()ed MCA and PMIx plug-ins, unloaded at
    MPI_Finalize, keep allocations to exit that LeakSanitizer reports with unknown frames, so no
    suppression can name them: leak checking is off for the MPI runs only (address and UB checks
    stay on; the distributed code itself is leak-checked by distributed_test, without MPI)."""
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_plm="isolated", OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl="self,vader",
               OMPI_MCA_btl_vader_single_copy_mechanism="none", **extra)
    env.pop("SLURM_NTASKS", None)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    return env


def check(cond, what):
    if cond:
        _results["passed"] += 1
    else:
        _results["failed"] += 1
        print(f"FAIL: {what}", flush=True)


def finish():
    print(f"{_results['passed']} passed, {_results['failed']} failed")
    sys.exit(1 if _results["failed"] else 0)


def run(*args, expect=0, **kw):
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, **kw)
    if expect is not None and p.returncode != expect:
        print(f"command {args} exited {p.returncode}, expected {expect}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        raise SystemExit(1)
    return p


# The reference datasets come from the repository alone: scripts/make_photos.py (the project's copy of
# the generator) cutting crops from the 6 photographs in tests/data/photos.
MAKE_PHOTOS = os.path.join(SOURCE, "scripts", "make_photos.py")
PHOTOS = os.path.join(SOURCE, "tests", "data", "photos")
# Seed 16 puts every kind of file make_photos.py writes (baseline 4:2:0 and 4:4:4, progressive and
# grayscale JPEG, RGB and RGBA PNG) in the first 60 images already, so photos(60) has them all too
# (photos(60): 2 RGB + 2 RGBA PNG, 3 gray JPEG, 3 progressive; photos(200): 5 + 4 PNG, 7 gray, 17 progressive).
PHOTOS_SEED = 16


def _photos_key(count):
    """Names the cached dataset after everything it is made from (generator, photographs, count, seed)."""
    import hashlib

    h = hashlib.sha256(f"{count} {PHOTOS_SEED}\n".encode())
    for path in [MAKE_PHOTOS] + [os.path.join(PHOTOS, f) for f in sorted(os.listdir(PHOTOS))]:
        with open(path, "rb") as f:
            h.update(os.path.basename(path).encode() + b"\0" + hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:12]


def photos(count=200):
    """A flower_photos-like dataset of `count` images made by scripts/make_photos.py from tests/data/photos
    (cached in WORK)."""
    out = os.path.join(WORK, f"photos{count}-{_photos_key(count)}")
    done = out + ".done"
    # ctest runs several reference tests at once: one builds the dataset, the others wait for it.
    with open(out + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(done):
            shutil.rmtree(out, ignore_errors=True)  # a run that died half-way
            subprocess.run(["/usr/bin/python3", MAKE_PHOTOS, out, "--count", str(count), "--seed", str(PHOTOS_SEED),
                            "--photos", PHOTOS], check=True)
            open(done, "w").close()
    return out


def image_files(root):
    """The files imgnorm takes from a class-folder tree, in its order (class, relative path)."""
    exts = (".jpg", ".jpeg", ".png", ".webp")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
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


def tutorial_pixels(files, size):
    """The tutorial's pixels: cv2.resize(cv2.imread(f), (size, size)) as RGB, (N, size, size, 3) uint8."""
    import cv2
    import numpy as np

    return np.stack([cv2.resize(cv2.imread(f, cv2.IMREAD_COLOR), (size, size))[:, :, ::-1] for f in files])


def load_stats(path):
    """stats.json as (per-channel mean/std/min/max as float64 arrays, the whole dict)."""
    import json

    import numpy as np

    st = json.load(open(path))
    return {k: np.array(st[k], dtype=np.float64) for k in ("mean", "std", "min", "max")}, st
