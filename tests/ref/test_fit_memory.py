"""normalize --mode zca/pca (issue 13): the memory of the fit (the (D+1)² moments, the D×D covariance,
its eigen-decomposition and W) is checked against --max-memory before any of it is allocated and
before anything is written. The refusal names the figure in bytes; a limit one byte under it is
refused and the figure itself accepted, for --stats and --fit; the figure agrees with the measured
peak (ru_maxrss of the run less that of a --mode scale run of the same data) within 5%
(docs/design.md, "Memory and eigen-solver of the full-image fit")."""
import os
import re
import shutil
import subprocess

from common import CLI, WORK, check, finish, photos, run

work = os.path.join(WORK, "fitmem")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
data = photos(60)
SIZE = "24"  # D = 24·24·3 = 1728: a fit of about 90 MiB, a second or two


def path(*names):
    return os.path.join(work, *names)


os.makedirs(path("s"))
stats = path("s", "stats.json")
run("stats", data, "--size", SIZE, "--pixel-covariance", "-o", stats, "-q")


def figure(*args, mode="zca"):
    """The bytes the refusal under a 100 KiB limit names (enough for the images in flight)."""
    out = path("refused")
    p = run("normalize", data, *args, "--mode", mode, "--max-memory", "100K", "-o", out, "-q",
            expect=None)
    m = re.search(r"--mode (\w+): fitting the whitening of images of D = 1728 values needs \S+ \w+ "
                  r"\((\d+) bytes: ", p.stderr)
    check(p.returncode != 0 and m is not None and m.group(1) == mode, f"{mode} {args}: {p.stderr}")
    check("--max-memory" in p.stderr and "zca-patch" in p.stderr and "zca-channels" in p.stderr
          and "smaller --size" in p.stderr, f"{mode} {args}: the way out: {p.stderr}")
    check(not os.path.exists(out), f"{mode} {args}: refused before the output folder")
    return int(m.group(2))


def peak(*args):
    """Exit status and the peak resident memory (bytes) of one run."""
    with open(path("log"), "w") as log:
        child = subprocess.Popen([CLI, *map(str, args)], stdout=log, stderr=log)
        _, status, usage = os.wait4(child.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024


with open(CLI, "rb") as f:
    sanitized = b"__asan_init" in f.read()  # ASan's shadow memory and quarantine: no RSS figures

need = figure("--stats", stats)
# --fit: the same figure, before the fit's pass (whose accumulators, 72 MiB here, are checked first).
p = run("normalize", data, "--fit", "--size", SIZE, "--threads", "1", "--mode", "zca", "--max-memory",
        need - 1, "-o", path("refused"), "-q", expect=None)
check(p.returncode != 0 and f"D = 1728 values needs 91 MiB ({need} bytes: " in p.stderr
      and not os.path.exists(path("refused")), f"--fit names the figure of --stats: {p.stderr}")
p = run("normalize", data, "--fit", "--size", SIZE, "--threads", "2", "--mode", "zca", "--max-memory",
        "100K", "-o", path("refused"), "-q", expect=None)
check(p.returncode != 0 and "D = 1728 values needs 108 MiB (3 x a (D+1)x(D+1) moment matrix" in p.stderr
      and "fewer --threads" in p.stderr, f"--fit: its accumulators first: {p.stderr}")
pca10 = figure("--stats", stats, "--components", "10", mode="pca")
check(pca10 < need * 0.6, f"pca --components 10 (dsyevr) needs less: {pca10} of {need}")
# D/8 < K < D: dsyevd for all, then the top K kept (its workspace freed before the K×D copy).
pca1000 = figure("--stats", stats, "--components", "1000", mode="pca")

# The check runs before the sidecar is read: a missing one is not even looked for.
os.makedirs(path("nosidecar"))
shutil.copy(stats, path("nosidecar", "stats.json"))
check(figure("--stats", path("nosidecar", "stats.json")) == need, "refused before the sidecar is read")

# One byte under: refused; the figure: accepted; and the measured peak agrees with it.
for mode, want, extra in (("zca", need, []), ("pca", pca10, ["--components", "10"]),
                          ("pca", pca1000, ["--components", "1000"])):
    out = path(mode + "".join(extra[1:]))
    p = run("normalize", data, "--stats", stats, "--mode", mode, *extra, "--max-memory", want - 1,
            "-o", out, "-q", expect=None)
    check(p.returncode != 0 and f"({want} bytes: " in p.stderr and not os.path.exists(out),
          f"{mode}: one byte under is refused: {p.stderr}")
    rc, used = peak("normalize", data, "--stats", stats, "--mode", mode, *extra, "--max-memory",
                    want, "-o", out, "-q", "--threads", "1")
    check(rc == 0 and os.path.exists(os.path.join(out, "whitening.npy")),
          f"{mode}: the figure itself is accepted: {open(path('log')).read()}")
    rc, base = peak("normalize", data, "--size", SIZE, "--mode", "scale", "-o", path("scale"), "-q",
                    "--force", "--threads", "1")
    check(rc == 0, "the --mode scale run")
    fit = used - base
    if sanitized:
        print(f"note: sanitized CLI, the peak of {mode} ({fit} bytes) not compared")
        continue
    check(abs(fit - want) <= 0.05 * want,
          f"{mode}: measured {fit} bytes above the process's baseline, the figure {want}")
    print(f"{mode}: figure {want}, measured {fit} ({(fit - want) / want:+.1%})")

finish()
