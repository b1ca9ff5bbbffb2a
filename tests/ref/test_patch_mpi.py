"""`mpirun imgnorm stats --patch K` (issue 13 part 3): the exact patch moments travel with each rank's
accumulator (AccumulatorAccess::append_raw) and are merged on rank 0, so stats.json from 2 and 3
ranks is byte-identical to a single-process run. Exits 77 (ctest: skipped) when mpirun is missing
or the CLI was built without MPI. The environment is test_mpi.py's (Open MPI as root, no ssh)."""
import json
import os
import shutil
import subprocess
import sys

from common import mpi_env, CLI, WORK, check, finish, photos, run

MPIRUN = shutil.which("mpirun")
MPI_ENV = mpi_env()

work = os.path.join(WORK, "patch-mpi")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)


def mpirun(np_, *args):
    tmp = os.path.join(work, f"session{np_}")
    os.makedirs(tmp, exist_ok=True)
    return subprocess.run([MPIRUN, "-q", "-np", str(np_), CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=dict(MPI_ENV, OMPI_MCA_orte_tmpdir_base=tmp))


if MPIRUN is None:
    print("SKIPPED: mpirun not found (scripts/install-deps.sh installs openmpi-bin)")
    sys.exit(77)
if mpirun(1, "--version").returncode != 0:
    print("SKIPPED: this imgnorm does not run under mpirun (built without MPI?)")
    sys.exit(77)

data = photos(60)
ref = os.path.join(work, "stats1.json")
run("stats", data, "--size", "20", "--patch", "3", "-q", "-o", ref)
with open(ref, "rb") as f:
    ref_bytes = f.read()
check(json.loads(ref_bytes)["sums"]["patch"]["size"] == 3, "stats.json has the 3x3 patch moments")
for np_ in (2, 3):
    out = os.path.join(work, f"stats-np{np_}.json")
    p = mpirun(np_, "stats", data, "--size", "20", "--patch", "3", "-q", "-o", out)
    check(p.returncode == 0, f"mpirun -np {np_} stats --patch 3 exits 0 ({p.stderr.strip()})")
    same = False
    if os.path.exists(out):
        with open(out, "rb") as f:
            same = f.read() == ref_bytes
    check(same, f"stats.json with patch moments from {np_} ranks equals the single-process run")
finish()
