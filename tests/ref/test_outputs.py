"""Outputs claimed and committed as a set (issue 10, items 2, 6, 11), through the CLI: two runs into
the same new -o, --force over a good set when writing manifest.json fails (a full disk, simulated with
RLIMIT_FSIZE), --no-labels and a stale labels.npy, a failed run leaves nothing, stats -o equal to
--mean-image, temporaries of dead runs, and list/stats/manifest inputs that are devices, FIFOs or too
large. Every command runs with a timeout, so a regression that blocks fails instead of hanging."""
import json
import os
import resource
import shutil
import signal
import subprocess

import cv2
import numpy as np

from common import CLI, WORK, check, finish

BASE = os.path.join(WORK, "outputs")
shutil.rmtree(BASE, ignore_errors=True)
os.makedirs(BASE)


def cli(*args, timeout=60, **kw):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)


def dataset(name, count):
    root = os.path.join(BASE, name)
    rng = np.random.default_rng(7)
    for i in range(count):
        cls = os.path.join(root, "ab"[i % 2])
        os.makedirs(cls, exist_ok=True)
        cv2.imwrite(os.path.join(cls, f"{i:04d}.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    return root


def the_set(folder):
    """(rows of images.npy, rows of labels.npy or None, files in manifest.json), or None when incomplete."""
    try:
        images = np.load(os.path.join(folder, "images.npy"), mmap_mode="r").shape[0]
        manifest = json.load(open(os.path.join(folder, "manifest.json")))
    except (OSError, ValueError):
        return None
    lpath = os.path.join(folder, "labels.npy")
    labels = np.load(lpath).shape[0] if os.path.exists(lpath) else None
    return images, labels, len(manifest["files"])


def consistent(folder, labels=True):
    s = the_set(folder)
    return s is not None and s[0] == s[2] and (s[1] == s[0] if labels else s[1] is None)


def snapshot(folder):
    return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))}


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


root = dataset("ds", 240)
small_list = os.path.join(BASE, "small.txt")
with open(small_list, "w") as fh:
    for i in range(0, 40):
        fh.write(os.path.join(root, "ab"[i % 2], f"{i:04d}.png") + "\n")
NORM = ["--mode", "scale", "--size", "16", "-q"]

# ---- two runs into the same new -o: one claims it, the other fails at once ------------------------
# The runs write different sets (240 and 40 rows), so a mix of the two shows in the row counts.
in_use = 0
for attempt in range(8):
    out = os.path.join(BASE, f"race{attempt}")
    procs = [subprocess.Popen([CLI, "normalize", *inp, "-o", out, *NORM, "--threads", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for inp in ([root], ["--list", small_list])]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    errs = [err for rc, err in results if rc != 0]
    check(codes == [0, 1], f"race {attempt}: one run succeeds, the other fails: {results}")
    check(all(("in use by another imgnorm run" in e) or ("already exists" in e) for e in errs),
          f"race {attempt}: the refused run says why: {errs}")
    in_use += sum("in use by another imgnorm run" in e for e in errs)
    check(consistent(out), f"race {attempt}: images, labels and manifest from one run: {the_set(out)}")
    check(sorted(os.listdir(out)) == ["images.npy", "labels.npy", "manifest.json"],
          f"race {attempt}: nothing else in the folder: {os.listdir(out)}")
check(in_use > 0, "the runs overlapped at least once and the second was told the folder is in use")

# ---- --force over a good set: writing manifest.json fails (disk full) -> the old set stays ----------
# At --size 1 the arrays are small and manifest.json (a line per file) is the largest file.
good = os.path.join(BASE, "good")
TINY = ["--mode", "scale", "--size", "1", "-q"]
p = cli("normalize", "--list", small_list, "-o", good, *TINY)
check(p.returncode == 0 and the_set(good) == (40, 40, 40), f"a good set of 40 rows: {p.stderr} {the_set(good)}")
before = snapshot(good)
new_size = 240 * 3 * 4 + 1024  # images.npy (240 rows) and labels.npy fit, manifest.json does not


def full_disk():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (new_size, new_size))


p = cli("normalize", root, "-o", good, *TINY, "--force", preexec_fn=full_disk)
check(p.returncode == 1 and "manifest.json" in p.stderr and "File too large" in p.stderr,
      f"manifest.json cannot be written: exit {p.returncode}, {p.stderr!r}")
check(snapshot(good) == before, f"the old set is kept byte for byte, nothing added: {sorted(os.listdir(good))}")
p = cli("normalize", root, "-o", good, *NORM, "--force")
check(p.returncode == 0 and the_set(good) == (240, 240, 240), f"--force then replaces it: {the_set(good)}")

# ---- --no-labels: a stale labels.npy is part of the old set --------------------------------------
p = cli("normalize", root, "-o", good, *NORM, "--no-labels")
check(p.returncode == 1 and "already exists" in p.stderr, f"--no-labels without --force refused: {p.stderr}")
p = cli("normalize", "--list", small_list, "-o", good, *NORM, "--no-labels", "--force")
check(p.returncode == 0 and the_set(good) == (40, None, 40),
      f"--no-labels --force leaves no stale labels.npy: {sorted(os.listdir(good))} {the_set(good)}")
stale = os.path.join(BASE, "stale")
os.makedirs(stale)
open(os.path.join(stale, "labels.npy"), "wb").write(b"old labels")
p = cli("normalize", root, "-o", stale, *NORM, "--no-labels")
check(p.returncode == 1 and "labels.npy: already exists" in p.stderr,
      f"a labels.npy alone is an old output too: {p.returncode} {p.stderr}")

# ---- a failed run leaves nothing: no folder, no labels.npy beside nothing -------------------------
broken = os.path.join(BASE, "broken")
os.makedirs(os.path.join(broken, "a"))
for i in range(3):
    open(os.path.join(broken, "a", f"{i}.png"), "wb").write(b"not a png")
for args in (["--mode", "scale"], ["--fit", "--mode", "standardize"]):
    out = os.path.join(BASE, "failed-" + args[0].strip("-"))
    p = cli("normalize", broken, "-o", out, "--size", "16", "-q", *args)
    check(p.returncode == 1 and not os.path.exists(out),
          f"{args}: a failed run leaves no output folder: exit {p.returncode} {p.stderr!r} "
          f"{os.listdir(out) if os.path.isdir(out) else ''}")

# ---- stats -o equal to --mean-image: refused before any work -----------------------------------
same = os.path.join(BASE, "same.npy")
p = cli("stats", root, "-o", same, "--mean-image", same, "--size", "16")
check(p.returncode == 2 and f"{same}: -o and --mean-image name the same file" in p.stderr
      and not os.path.exists(same) and "imgnorm stats:" not in p.stdout,
      f"-o == --mean-image refused, nothing written: exit {p.returncode} {p.stderr!r}")
os.symlink(same, os.path.join(BASE, "link.npy"))
p = cli("stats", root, "-o", same, "--mean-image", os.path.join(BASE, "link.npy"), "--size", "16")
check(p.returncode == 2 and "name the same file" in p.stderr, f"also through a symlink: {p.stderr!r}")

# ---- temporaries of dead runs are removed by the next run --------------------------------------
killed = os.path.join(BASE, "killed")
p = cli("normalize", "--list", small_list, "-o", killed, *NORM)
gone = dead_pid()
for name in ("images.npy", "labels.npy"):
    open(os.path.join(killed, f"{name}.tmp-{gone}-0"), "wb").truncate(1 << 20)
alive = f"manifest.json.tmp-{os.getpid()}-0"
open(os.path.join(killed, alive), "wb").close()
p = cli("normalize", "--list", small_list, "-o", killed, *NORM, "--force")
check(p.returncode == 0 and sorted(os.listdir(killed)) == sorted([alive, "images.npy", "labels.npy", "manifest.json"]),
      f"normalize removed the dead run's temporaries, kept a live one's: {sorted(os.listdir(killed))}")
sjson = os.path.join(BASE, "stats.json")
open(f"{sjson}.tmp-{gone}-3", "wb").close()
p = cli("stats", root, "-o", sjson, "--size", "16", "-q")
check(p.returncode == 0 and not os.path.exists(f"{sjson}.tmp-{gone}-3"), "stats -o removed a dead run's temporary")

# ---- inputs that are not regular files, or too large ---------------------------------------------
fifo = os.path.join(BASE, "fifo.json")
os.mkfifo(fifo)
cases = [
    (["stats", "--list", "/dev/zero", "-q"], "/dev/zero: not a regular file (a character device)"),
    (["merge", "/dev/zero"], "/dev/zero: not a regular file (a character device)"),
    (["merge", fifo, fifo], f"{fifo}: not a regular file (a FIFO)"),
    (["normalize", root, "-o", os.path.join(BASE, "fifo-out"), "--stats", fifo], f"{fifo}: not a regular file (a FIFO)"),
    (["normalize", root, "-o", os.path.join(BASE, "zero-out"), "--stats", "/dev/zero"],
     "/dev/zero: not a regular file (a character device)"),
    (["denormalize", os.path.join(good, "images.npy"), "--manifest", fifo, "-o", os.path.join(BASE, "d.npy")],
     f"{fifo}: not a regular file (a FIFO)"),
]
for args, message in cases:
    try:  # a short timeout: a regression reads /dev/zero into memory at GB/s
        p = cli(*args, timeout=5)
        check(p.returncode == 1 and message in p.stderr, f"{args}: exit {p.returncode}, {p.stderr!r}")
    except subprocess.TimeoutExpired:
        check(False, f"{args}: still reading after 5 s")
check(not os.path.exists(os.path.join(BASE, "fifo-out")), "a refused --stats leaves no output folder")
big = os.path.join(BASE, "big.json")
with open(big, "wb") as fh:
    fh.truncate((1 << 30) + 1)  # sparse: one byte over the documented limit
p = cli("merge", big, timeout=20)
check(p.returncode == 1 and f"{big}: larger than 1 GiB, the limit for a stats file" in p.stderr,
      f"a stats file over 1 GiB is refused before reading: {p.stderr!r}")
# A list from a pipe (a shell's <(find ...)) still works.
r, w = os.pipe()
os.write(w, "\n".join(os.path.join(root, "ab"[i % 2], f"{i:04d}.png") for i in range(10)).encode() + b"\n")
os.close(w)
p = cli("stats", "--list", f"/dev/fd/{r}", "--size", "16", "--format", "json", pass_fds=(r,), timeout=20)
os.close(r)
check(p.returncode == 0 and json.loads(p.stdout)["counts"]["images"] == 10, f"--list from a pipe: {p.stderr!r}")

finish()
