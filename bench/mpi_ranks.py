"""`mpirun -np K imgnorm` (K = 1..4) against one process on the same files, in one loop: medians of
wall times, outputs checked byte-identical. The figures in docs/scale-out.md come from it.

    /usr/bin/python3 bench/mpi_ranks.py build/imgnorm bench/data/photos /tmp/mpi-ranks [runs]
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

cli, data, out = sys.argv[1:4]
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_plm="isolated",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl="self,vader",
           OMPI_MCA_btl_vader_single_copy_mechanism="none")
os.makedirs(out, exist_ok=True)
stats = os.path.join(out, "stats.json")
subprocess.run([cli, "stats", data, "--size", "224", "-o", stats, "-q", "--force"], check=True, stdout=subprocess.DEVNULL)


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


times = {}
for _ in range(runs):
    for job in ("stats", "normalize"):
        for k in (0, 1, 2, 3, 4):  # 0: one process, no mpirun
            pre = ["mpirun", "-q", "-np", str(k)] if k else []
            if job == "stats":
                cmd = [cli, "stats", data, "--size", "224", "-o", os.path.join(out, f"s{k}.json"), "-q", "--force"]
            else:
                shutil.rmtree(os.path.join(out, f"n{k}"), ignore_errors=True)
                cmd = [cli, "normalize", data, "--stats", stats, "-o", os.path.join(out, f"n{k}"), "-q"]
            times.setdefault((job, k), []).append(timed(pre + cmd))
    for k in (1, 2, 3, 4):
        times.setdefault(("launch", k), []).append(timed(["mpirun", "-q", "-np", str(k), cli, "--version"]))
    times.setdefault(("stats -j1", 0), []).append(
        timed([cli, "stats", data, "--size", "224", "-o", os.path.join(out, "j1.json"), "-q", "--force", "-j", "1"]))


def same(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 24), fb.read(1 << 24)
            if x != y:
                return False
            if not x:
                return True


for k in (1, 2, 3, 4):
    assert same(os.path.join(out, f"s{k}.json"), os.path.join(out, "s0.json")), k
    for f in ("images.npy", "labels.npy", "manifest.json"):
        assert same(os.path.join(out, f"n{k}", f), os.path.join(out, "n0", f)), (k, f)
print(f"{'job':10} {'K':>2} {'median':>8}  runs")
for (job, k), v in sorted(times.items()):
    print(f"{job:10} {k:>2} {statistics.median(v):8.2f}  " + " ".join(f"{x:.2f}" for x in v))
print("outputs of 1-4 ranks byte-identical to one process")
