#!/usr/bin/env python3
"""The benchmark harness behind `make bench`: imgnorm against its peers, on the same files, in the
same run. See bench/README.md.

    /usr/bin/python3 bench/run.py [--build build-bench] [--runs 3] [--quick] [--scaling] [--save]
                                  [--python-only | --no-python]

Whole-program rows: wall time (median of --runs runs; the commands alternate, one round after
another, so a slow spell of the machine hits all of them) and peak RSS (getrusage of the finished
child: the largest single process, as /usr/bin/time -v reports it). Ratios are taken between
medians of this run only. Kernel rows: Google Benchmark (bench/kernels_bench.cpp) and an
in-process Python timer (bench/peers/kernels.py) on the same in-memory batch, on one core.
Python API rows (bench/peers/python_api.py, PYTHONPATH=<build>/python): `imgnorm.stats` as a whole
process against the CLI, in the same rounds; `imgnorm.Normalizer` against numpy and torchvision
in-process on one (256, 224, 224, 3) batch; two Python threads against one (GIL release).
Loader rows (bench/peers/loader.py): one epoch of `imgnorm.Loader` (standardize, NCHW, batches of
64, shuffled) against torchvision ImageFolder + DataLoader(2 workers) and against the CLI's `stats
--size 224`, whole processes in the same rounds; with --scaling also its peak RSS over 1,000 and
20,000 images (1,000 and 5,000 with --quick).
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"
# The dataset generator: the repository's copy, scripts/make_photos.py; IMGNORM_MAKE_PHOTOS overrides.
MAKE_PHOTOS = os.environ.get("IMGNORM_MAKE_PHOTOS") or os.path.join(ROOT, "scripts", "make_photos.py")
# Its photographs: IMGNORM_PHOTOS; else the 24 of the shared data folder next to the repository
# (../shared/data/photos, which the recorded results use) when it is there; else the 6 bundled in
# tests/data/photos. With IMGNORM_MAKE_PHOTOS and no IMGNORM_PHOTOS, that script picks its own.
SHARED_PHOTOS = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "photos"))
if os.environ.get("IMGNORM_PHOTOS"):
    PHOTOS = os.path.abspath(os.environ["IMGNORM_PHOTOS"])
elif os.environ.get("IMGNORM_MAKE_PHOTOS"):
    PHOTOS = None
elif os.path.isdir(SHARED_PHOTOS):
    PHOTOS = SHARED_PHOTOS
else:
    PHOTOS = os.path.join(ROOT, "tests", "data", "photos")
DATA = os.path.join(HERE, "data")
WORK = os.path.join(HERE, "work")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Datasets


def dataset(name, count, seed):
    """bench/data/NAME, made once with make_photos.py (deterministic for a seed)."""
    path = os.path.join(DATA, name)
    stamp = path + ".complete"
    want = f"count={count} seed={seed}\n"
    if PHOTOS not in (None, SHARED_PHOTOS):  # the stamp of a dataset made from the shared photos is unchanged
        want += f"photos={PHOTOS}\n"
    if os.path.isdir(path) and os.path.exists(stamp) and open(stamp).read() == want:
        return path
    if not os.path.exists(MAKE_PHOTOS):
        sys.exit(f"bench: {MAKE_PHOTOS} not found; set IMGNORM_MAKE_PHOTOS=/path/to/make_photos.py")
    photos = [] if PHOTOS is None else ["--photos", PHOTOS]
    log(f"bench: generating {count} images in {path} ({os.path.relpath(MAKE_PHOTOS, ROOT)} --seed {seed}"
        f"{' --photos ' + PHOTOS if PHOTOS else ''}, once) ...")
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([PY, MAKE_PHOTOS, tmp, "--count", str(count), "--seed", str(seed), *photos], check=True)
    os.rename(tmp, path)
    with open(stamp, "w") as f:
        f.write(want)
    return path


def image_files(root):
    out = []
    for d, _, names in os.walk(root):
        out += [os.path.join(d, n) for n in names if n.lower().endswith((".jpg", ".jpeg", ".png"))]
    return sorted(out)


def typed_lists(root):
    """Two --list files for root, next to it: every image imgnorm reads (mixed) and the JPEGs only
    (by their first bytes, as imgnorm sniffs them). The decode-only limit and the strong peer read
    the same lists, so every row of a group covers exactly the same files."""
    files = image_files(root)
    base = os.path.dirname(root)
    out = {}
    for kind in ("mixed", "jpeg"):
        path = f"{root}.{kind}.list"
        with open(path, "w") as f:
            for p in files:
                if kind == "jpeg":
                    with open(p, "rb") as img:
                        if img.read(2) != b"\xff\xd8":
                            continue
                f.write(os.path.relpath(p, base) + "\n")
        out[kind] = path
    return out


def list_file(root, n):
    """A --list file naming the first n images of root (sorted), next to root."""
    path = f"{root}.first{n}.list"
    files = image_files(root)[:n]
    base = os.path.dirname(root)
    with open(path, "w") as f:
        for p in files:
            f.write(os.path.relpath(p, base) + "\n")
    return path


# ------------------------------------------------------------------------------------------------
# Running and measuring


class Cmd:
    def __init__(self, key, label, argv, before=None, group="main", env=None):
        self.key, self.label, self.argv, self.before, self.group = key, label, argv, before, group
        self.env = env
        self.wall, self.cpu, self.rss_kb = [], [], []

    def run_once(self):
        if self.before:
            self.before()
        out_path = os.path.join(WORK, f"{self.key}.out")
        with open(out_path, "w") as out:
            t0 = time.perf_counter()
            p = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                 env=dict(os.environ, **(self.env or {})))
            _, status, ru = os.wait4(p.pid, 0)
            t1 = time.perf_counter()
            p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            sys.exit(f"bench: `{' '.join(self.argv)}` failed (exit {p.returncode}); "
                     f"output in {out_path}:\n" + open(out_path).read()[-2000:])
        self.wall.append(t1 - t0)
        self.cpu.append(ru.ru_utime + ru.ru_stime)
        self.rss_kb.append(ru.ru_maxrss)
        return t1 - t0

    @property
    def median(self):
        return statistics.median(self.wall)

    @property
    def cpu_median(self):
        return statistics.median(self.cpu)

    @property
    def peak_mb(self):
        return max(self.rss_kb) / 1024

    @property
    def peak_median_mb(self):
        """The median over runs of each run's peak RSS (for rows whose peak varies from run to run)."""
        return statistics.median(self.rss_kb) / 1024


def measure(cmds, runs):
    """Runs every command `runs` times, round after round (A B C A B C ...)."""
    for r in range(runs):
        for c in cmds:
            t = c.run_once()
            log(f"  [{r + 1}/{runs}] {c.label}: {t:.2f} s")
            if c.group == "write":
                os.sync()  # the next command must not pay for this one's writeback


def rm(path):
    def go():
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    return go


# ------------------------------------------------------------------------------------------------
# Kernel micro-benchmarks


def kernels(build, data, quick):
    batch = os.path.join(WORK, "batch-224x64.npy")
    if not os.path.exists(batch):
        subprocess.run([PY, os.path.join(HERE, "peers", "kernels.py"), "make-batch", data, "224", "64",
                        batch], check=True, stdout=subprocess.DEVNULL)
    reps = "3" if quick else "5"
    gb_json = os.path.join(WORK, "kernels_bench.json")
    log("bench: kernel micro-benchmarks (Google Benchmark) ...")
    subprocess.run([os.path.join(build, "bench", "imgnorm_bench"), f"--benchmark_repetitions={reps}",
                    "--benchmark_report_aggregates_only=true", f"--benchmark_out={gb_json}",
                    "--benchmark_out_format=json"], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, IMGNORM_BENCH_BATCH=batch))
    log("bench: kernel peers (numpy, cv2.dnn) ...")
    py = subprocess.run([PY, os.path.join(HERE, "peers", "kernels.py"), "time", batch, "--repeat", reps],
                        check=True, capture_output=True, text=True)
    peers = json.loads(py.stdout.strip().splitlines()[-1])
    res = {}
    for b in json.load(open(gb_json))["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"].replace("/real_time", "")
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        res[name] = {"cpu_s": b["cpu_time"] * scale, "wall_s": b["real_time"] * scale,
                     "bytes": b.get("bytes_per_second", 0) * b["real_time"] * scale}
    for k in ("numpy_nhwc", "numpy_nchw", "cv2_blob"):
        res[k] = peers[k]
    res["_batch"] = f"{peers['images']}×{peers['height']}×{peers['width']}×3"
    return res


# ------------------------------------------------------------------------------------------------
# Python API (python/imgnorm): in-process timings


def python_dir(build):
    """<build>/python when it holds the built package (imgnorm/_core*.so), else None."""
    d = os.path.join(build, "python")
    pkg = os.path.join(d, "imgnorm")
    if os.path.isfile(os.path.join(pkg, "__init__.py")) and any(
            n.startswith("_core") and n.endswith(".so") for n in os.listdir(pkg)):
        return d
    return None


def python_kernels(pydir, data, quick, stats_json):
    """Normalizer vs numpy vs torchvision on one (256, 224, 224, 3) batch, and the GIL test; each in
    its own process (the GIL test without torch's thread pools)."""
    batch = os.path.join(WORK, f"batch-{os.path.basename(data)}-224x256.npy")
    if not os.path.exists(batch):
        subprocess.run([PY, os.path.join(HERE, "peers", "kernels.py"), "make-batch", data, "224", "256",
                        batch], check=True, stdout=subprocess.DEVNULL)
    script = os.path.join(HERE, "peers", "python_api.py")
    env = dict(os.environ, PYTHONPATH=pydir)
    res = {}
    for what, reps in (("normalize", "5" if quick else "11"), ("gil", "11" if quick else "31")):
        log(f"bench: Python API, {what} (in-process, {reps} repetitions) ...")
        p = subprocess.run([PY, script, what, stats_json, batch, "--repeat", reps], capture_output=True,
                           text=True, env=env)
        if p.returncode != 0:
            sys.exit(f"bench: python_api.py {what} failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
        res[what] = json.loads(p.stdout.strip().splitlines()[-1])
    return res


# ------------------------------------------------------------------------------------------------
# Report


def fmt_s(x):
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def check(ok):
    return "met" if ok else "**not met**"


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Linux {platform.release()}"


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (+ uncommitted changes)" if dirty else "")
    except OSError:
        return "?"


def epoch_output(cmd):
    """The JSON line bench/peers/loader.py printed in its last run (images, batches, ...)."""
    try:
        lines = open(os.path.join(WORK, f"{cmd.key}.out")).read().strip().splitlines()
        return json.loads(lines[-1])
    except (OSError, ValueError, IndexError):
        return None


def report(args, n_images, cmds, by, kern, pyk, scaling, notes, loader_scaling=()):
    L = []
    L.append(f"# imgnorm benchmark, {datetime.date.today().isoformat()}")
    L.append("")
    L.append(f"- machine: {machine()}")
    L.append(f"- commit: {git_rev()}")
    L.append(f"- dataset: {n_images} images (make_photos.py{' --count 1000' if args.quick else ''}"
             f"{' from ' + os.path.relpath(PHOTOS, ROOT) if PHOTOS else ''}), "
             f"page cache warm; {args.runs} runs per command, alternating; wall time median (min–max)")
    L.append("- peak RSS: getrusage of the finished command (the largest single process)")
    L.append(f"- load average (1 min) at the start / end: {args.load_start:.1f} / {os.getloadavg()[0]:.1f}: "
             "anything above 0 is other work competing for the same cores; wall times and the thread "
             "ratio are only meaningful on an otherwise idle machine, CPU times less affected")
    L.append("")
    L.append("| command | wall s | min–max | CPU s | peak RSS MB |")
    L.append("|---|---:|---:|---:|---:|")
    for c in cmds:
        L.append(f"| {c.label} | {fmt_s(c.median)} | {fmt_s(min(c.wall))}–{fmt_s(max(c.wall))} | "
                 f"{fmt_s(c.cpu_median)} | {c.peak_mb:.0f} |")
    L.append("")

    rows = []  # (what, value text, target text, ok)

    def ratio(a, b):
        return by[a].median / by[b].median

    if "stats224" in by and "decode_full" in by:
        r = ratio("stats224", "decode_full")
        rows.append(("`stats --size 224` / decode-only full size", f"{r:.2f}×", "≤ 1.25×", r <= 1.25))
        rc = by["stats224"].cpu_median / by["decode_full"].cpu_median
        rows.append(("… same, CPU time", f"{rc:.2f}×", "(info)", None))
        r = ratio("stats224", "decode_224")
        rows.append(("`stats --size 224` / decode-only at its DCT scale", f"{r:.2f}×", "(info)", None))
        if "tutorial" in by:
            r = ratio("tutorial", "stats224")
            rows.append(("tutorial pipeline / `stats --size 224`", f"{r:.1f}× faster", "≥ 25×", r >= 25))
        if "torch" in by:
            r = ratio("torch", "stats224")
            rows.append(("PyTorch recipe / `stats --size 224`", f"{r:.1f}× faster", "≥ 8×", r >= 8))
    for size in ("224", "64"):
        if f"strong{size}" in by and f"stats{size}" in by:
            r = ratio(f"strong{size}", f"stats{size}")
            rows.append((f"strongest Python peer / `stats --size {size}` (mixed JPEG + PNG)",
                         f"{r:.2f}× slower", "(the peer to beat)", None))
            r = ratio(f"strong{size}", f"decode_{size}")
            rows.append((f"… strongest Python peer / decode-only at the DCT scale ({size})", f"{r:.2f}×",
                         "(info)", None))
    if "stats224_jpeg" in by:
        r = ratio("stats224_jpeg", "decode_224_jpeg")
        rows.append(("JPEG files only: `stats --size 224` / decode-only at its DCT scale", f"{r:.2f}×",
                     "(info)", None))
        r = ratio("strong224_jpeg", "stats224_jpeg")
        rows.append(("JPEG files only: strongest Python peer / `stats --size 224`", f"{r:.2f}× slower",
                     "(info)", None))
    if "stats64" in by:
        r = ratio("stats64", "decode_64")
        rows.append(("`stats --size 64` / decode-only at the DCT scale used", f"{r:.2f}×", "≤ 1.3×",
                     r <= 1.3))
        rc = by["stats64"].cpu_median / by["decode_64"].cpu_median
        rows.append(("… same, CPU time", f"{rc:.2f}×", "(info)", None))
    if "normalize" in by:
        limit = by["decode_full"].median + by["write"].median
        r = by["normalize"].median / limit
        rows.append(("`normalize --size 224` / (decode-only full size + write same bytes)", f"{r:.2f}×",
                     "≤ 1.5×", r <= 1.5))
    if "stats224_t1" in by:
        r = ratio("stats224_t1", "stats224")
        rows.append(("`stats --size 224`: 2 threads vs 1 thread", f"{r:.2f}× faster", "≥ 1.8×", r >= 1.8))
    if "py_stats224" in by:
        r = ratio("py_stats224", "stats224")
        rows.append(("Python `imgnorm.stats(DIR, size=224)` process / CLI `stats --size 224`, wall",
                     f"{r:.3f}×", "≤ 1.05×", r <= 1.05))
        rc = by["py_stats224"].cpu_median / by["stats224"].cpu_median
        rows.append(("… same, CPU time", f"{rc:.3f}×", "(info)", None))
        rm_ = by["py_stats224"].peak_mb / by["stats224"].peak_mb
        rows.append(("… same, peak RSS", f"{rm_:.2f}× ({by['py_stats224'].peak_mb:.0f} / "
                     f"{by['stats224'].peak_mb:.0f} MB; the interpreter alone is the difference)",
                     "(info)", None))
        if "py_import" in by:
            extra = (by["py_stats224"].median - by["stats224"].median) * 1e3
            rows.append(("… Python process − CLI, wall; `python3 -c \"import imgnorm\"` alone",
                         f"{extra:+.0f} ms; {by['py_import'].median * 1e3:.0f} ms, "
                         f"{by['py_import'].peak_mb:.0f} MB", "(info)", None))
    if "loader" in by:
        ld = by["loader"]
        ips = n_images / ld.median
        if "torch_loader" in by:
            tl = by["torch_loader"]
            r = tl.median / ld.median
            rows.append(("one epoch, `imgnorm.Loader` (standardize, NCHW, 64, shuffled) vs torchvision "
                         "ImageFolder + Resize + ToTensor + Normalize, DataLoader 2 workers: images/s, "
                         "whole process", f"{ips:.0f} vs {n_images / tl.median:.0f} images/s: {r:.1f}× faster",
                         "≥ 4×", r >= 4))
            rc = tl.cpu_median / ld.cpu_median
            rows.append(("… same, CPU time (torchvision's includes its 2 worker processes)",
                         f"{rc:.1f}× less ({ld.cpu_median:.2f} / {tl.cpu_median:.2f} s)", "(info)", None))
            rows.append(("… same, peak RSS (the largest single process)",
                         f"{ld.peak_mb:.0f} / {tl.peak_mb:.0f} MB", "(info)", None))
        else:
            rows.append(("one epoch, `imgnorm.Loader`, whole process", f"{ips:.0f} images/s", "(info)", None))
        if "stats224" in by:
            r = ld.median / by["stats224"].median
            rows.append(("`imgnorm.Loader` epoch / CLI `stats --size 224`, same files, wall", f"{r:.2f}×",
                         "≤ 1.3×", r <= 1.3))
            rc = ld.cpu_median / by["stats224"].cpu_median
            rows.append(("… same, CPU time", f"{rc:.2f}×", "(info)", None))
    stats_peaks = [by[k].peak_mb for k in ("stats224", "stats64", "stats224_t1") if k in by]
    if stats_peaks:
        p = max(stats_peaks)
        rows.append(("peak RSS of `stats`", f"{p:.0f} MB", "≤ 300 MB", p <= 300))

    if kern:
        L.append(f"Kernels, one core, batch {kern['_batch']} u8 → float32 "
                 f"({kern['BM_memcpy_output_bytes']['bytes'] / 1e6:.1f} MB out); "
                 "median of repetitions, CPU time (wall in brackets)")
        L.append("")
        L.append("| kernel | ms/batch | GB/s out |")
        L.append("|---|---:|---:|")
        names = [("BM_memcpy_output_bytes", "memcpy of the output bytes"),
                 ("BM_normalize/nchw:0/bgr:0", "imgnorm normalize NHWC RGB"),
                 ("BM_normalize/nchw:0/bgr:1", "imgnorm normalize NHWC BGR"),
                 ("BM_normalize/nchw:1/bgr:0", "imgnorm normalize NCHW RGB"),
                 ("BM_normalize/nchw:1/bgr:1", "imgnorm normalize NCHW BGR"),
                 ("BM_normalize_reference", "imgnorm reference path (formula per pixel), NCHW"),
                 ("numpy_nhwc", "numpy ((x/255-m)/s).astype(float32), NHWC"),
                 ("numpy_nchw", "numpy, same + transpose to NCHW"),
                 ("cv2_blob", "cv2.dnn.blobFromImages (NCHW)"),
                 ("BM_accumulate", "imgnorm Accumulator::add (exact stats)"),
                 ("BM_accumulate_reference", "exact stats, plain reference loop")]
        out_bytes = kern["BM_memcpy_output_bytes"]["bytes"]
        for k, label in names:
            if k not in kern:
                continue
            v = kern[k]
            gbs = out_bytes / v["cpu_s"] / 1e9 if "accumulate" not in k else float("nan")
            gbs_text = f"{gbs:.2f}" if gbs == gbs else "–"
            L.append(f"| {label} | {v['cpu_s'] * 1e3:.2f} ({v['wall_s'] * 1e3:.2f}) | {gbs_text} |")
        L.append("")
        k = kern.get("BM_normalize/nchw:1/bgr:0")
        if k:
            r = kern["BM_memcpy_output_bytes"]["cpu_s"] / k["cpu_s"]
            rows.append(("normalize kernel NCHW: bandwidth / memcpy bandwidth", f"{r * 100:.0f} %",
                         "≥ 70 %", r >= 0.7))
            r = kern["numpy_nchw"]["cpu_s"] / k["cpu_s"]
            rows.append(("normalize kernel NCHW vs numpy", f"{r:.1f}× faster", "≥ 3×", r >= 3))
            r = kern["cv2_blob"]["cpu_s"] / k["cpu_s"]
            rows.append(("normalize kernel NCHW vs cv2.dnn.blobFromImages", f"{r:.1f}× faster", "≥ 1.5×",
                         r >= 1.5))

    if pyk:
        nz, gil = pyk["normalize"], pyk["gil"]
        b = "×".join(str(v) for v in nz["batch"])
        L.append(f"Python API, in-process, one uint8 batch {b} → float32 ({nz['out_bytes'] / 1e6:.0f} MB "
                 f"out), standardize; wall time of the call (time.perf_counter), median of "
                 f"{nz['imgnorm_nhwc']['n']} repetitions after a warm-up, alternating")
        L.append("")
        L.append("| call | ms/batch | min–max | GB/s out |")
        L.append("|---|---:|---:|---:|")
        ncpu = os.cpu_count()
        for k, label in (("imgnorm_nhwc", f"`imgnorm.Normalizer(stats)(x)`, NHWC, threads=0 ({ncpu} cores)"),
                         ("imgnorm_nchw", f"`imgnorm.Normalizer(stats, layout=\"nchw\")(x)`, threads=0"),
                         ("numpy", "numpy `((x - mean) / std).astype(np.float32)`, NHWC"),
                         ("torch", f"torchvision `Normalize(m, s)(torch.from_numpy(x).permute(0,3,1,2)"
                                   f".float().div(255))`, NCHW, {nz['torch_threads']} threads")):
            v = nz[k]
            L.append(f"| {label} | {v['median_s'] * 1e3:.1f} | {v['min_s'] * 1e3:.1f}–{v['max_s'] * 1e3:.1f} | "
                     f"{nz['out_bytes'] / v['median_s'] / 1e9:.2f} |")
        gb = "×".join(str(v) for v in gil["batch"])
        for k, label in (("serial", f"GIL: two `Normalizer(threads=1)` calls, {gb} each, one thread"),
                         ("threads", "GIL: the same two calls, one Python thread each")):
            v = gil[k]
            L.append(f"| {label} | {v['median_s'] * 1e3:.1f} | {v['min_s'] * 1e3:.1f}–{v['max_s'] * 1e3:.1f} "
                     f"| – |")
        L.append("")
        d = nz["max_abs_diff"]
        d_imgnorm = max(d["imgnorm_nhwc_vs_numpy"], d["imgnorm_nchw_vs_numpy"])
        layout = ("contiguous" if nz["torch_result_contiguous"] else
                  "NCHW in shape with channels-last strides (not made contiguous; imgnorm writes contiguous NCHW)")
        L.append(f"Largest |difference| from numpy's result: imgnorm {d_imgnorm:.2g}, torchvision "
                 f"{d['torch_vs_numpy']:.2g}. torchvision's result is {layout}.")
        L.append("")
        r_np = nz["numpy"]["median_s"] / nz["imgnorm_nhwc"]["median_s"]
        r_tv = nz["torch"]["median_s"] / nz["imgnorm_nchw"]["median_s"]
        # The faster peer, against imgnorm in the same layout (numpy: NHWC, torchvision: NCHW).
        faster, r_fast = (("numpy", r_np) if nz["numpy"]["median_s"] <= nz["torch"]["median_s"]
                          else ("torchvision", r_tv))
        rows.append((f"`Normalizer` vs the faster peer ({faster}), same layout", f"{r_fast:.1f}× faster",
                     "≥ 4×", r_fast >= 4))
        rows.append(("`Normalizer` NHWC vs numpy NHWC", f"{r_np:.1f}× faster", "(info)", None))
        rows.append(("`Normalizer` NCHW vs torchvision NCHW", f"{r_tv:.1f}× faster", "(info)", None))
        r = gil["threads"]["median_s"] / gil["serial"]["median_s"]
        rows.append((f"GIL: two threads / one thread, 2 × `Normalizer(threads=1)` ({ncpu} cores)", f"{r:.2f}",
                     "≤ 0.6", r <= 0.6))

    if scaling:
        L.append("Scaling: `stats --size 224` on the first N images of a 20,000-image set (seed 11)")
        L.append("")
        L.append("| images | wall s | ms/image | peak RSS MB |")
        L.append("|---:|---:|---:|---:|")
        per = []
        for n, c in scaling:
            per.append(c.median / n * 1e3)
            L.append(f"| {n} | {fmt_s(c.median)} | {per[-1]:.3f} | {c.peak_mb:.0f} |")
        L.append("")
        mid = statistics.median(per)
        dev = max(abs(p / mid - 1) for p in per)
        rows.append(("time per image, 1,000 → 20,000 images: largest deviation from their median",
                     f"{dev * 100:.0f} %", "≤ 15 %", dev <= 0.15))
        small_n, small = (n_images, by["stats224"]) if "stats224" in by else scaling[0]
        big_n, big = scaling[-1]
        rows.append((f"peak RSS of `stats --size 224`, {small_n:,} vs {big_n:,} images",
                     f"{small.peak_mb:.0f} / {big.peak_mb:.0f} MB", "the same",
                     big.peak_mb <= small.peak_mb * 1.1 + 5))

    if loader_scaling:
        L.append("Loader memory: one `imgnorm.Loader` epoch (as above, `list=` the first N images of the "
                 "20,000-image set, seed 11), whole process")
        L.append("")
        L.append("| images | wall s | images/s | peak RSS MB, median of runs | min–max |")
        L.append("|---:|---:|---:|---:|---:|")
        for n, c in loader_scaling:
            L.append(f"| {n} | {fmt_s(c.median)} | {n / c.median:.0f} | {c.peak_median_mb:.0f} | "
                     f"{min(c.rss_kb) / 1024:.0f}–{c.peak_mb:.0f} |")
        L.append("")
        (small_n, small), (big_n, big) = loader_scaling[0], loader_scaling[-1]
        r = big.peak_median_mb / small.peak_median_mb
        rows.append((f"peak RSS of a `Loader` epoch, {big_n:,} / {small_n:,} images (medians of the runs' peaks)",
                     f"{r:.2f}× ({big.peak_median_mb:.0f} / {small.peak_median_mb:.0f} MB)", "within 10 %",
                     abs(r - 1) <= 0.10))
        r = big.peak_mb / small.peak_mb
        rows.append(("… same, largest peak of all runs", f"{r:.2f}× ({big.peak_mb:.0f} / {small.peak_mb:.0f} MB)",
                     "(info)", None))

    L.append("| ratio | measured | target | |")
    L.append("|---|---:|---:|---|")
    for what, val, target, ok in rows:
        L.append(f"| {what} | {val} | {target} | {'' if ok is None else check(ok)} |")
    L.append("")
    for n in notes:
        L.append(f"- {n}")
    return "\n".join(L) + "\n"


# ------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--runs", type=int, default=0, help="runs per command (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="1,000 images, 1 run")
    ap.add_argument("--scaling", action="store_true", help="also 1,000 → 20,000 images (generates 20,000)")
    ap.add_argument("--save", action="store_true", help="write bench/results/<date>.md")
    ap.add_argument("--no-peers", action="store_true", help="skip the Python pipeline peers")
    ap.add_argument("--no-kernels", action="store_true", help="skip the kernel micro-benchmarks")
    ap.add_argument("--no-python", action="store_true", help="skip the Python API rows")
    ap.add_argument("--python-only", action="store_true",
                    help="only the Python API rows (and the CLI `stats --size 224` they compare with)")
    args = ap.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    user_no_peers = args.no_peers
    args.load_start = os.getloadavg()[0]
    build = os.path.abspath(args.build)
    imgnorm = os.path.join(build, "imgnorm")
    decode_only = os.path.join(build, "bench", "decode_only")
    for exe in (imgnorm, decode_only):
        if not os.access(exe, os.X_OK):
            sys.exit(f"bench: {exe} missing: build with -DIMGNORM_BUILD_BENCH=ON (make bench does)")
    os.makedirs(WORK, exist_ok=True)
    notes = []
    if args.no_python and args.python_only:
        sys.exit("bench: --no-python and --python-only exclude each other")
    pydir = None if args.no_python else python_dir(build)
    if args.python_only and not pydir:
        sys.exit(f"bench: {build}/python/imgnorm is not built: cmake --build {args.build} "
                 "--target imgnorm_python imgnorm_python_files")
    if pydir:
        probe = subprocess.run([PY, "-c", "import imgnorm"], capture_output=True, text=True,
                               env=dict(os.environ, PYTHONPATH=pydir))
        if probe.returncode != 0:
            sys.exit(f"bench: `import imgnorm` failed with PYTHONPATH={pydir}:\n{probe.stderr[-2000:]}")
    elif not args.no_python:
        notes.append(f"The Python module is not built in {os.path.relpath(build, ROOT)} "
                     "(python/imgnorm/_core*.so): the Python API rows are skipped.")
    has_loader = bool(pydir) and subprocess.run(
        [PY, "-c", "import imgnorm; imgnorm.Loader"], capture_output=True,
        env=dict(os.environ, PYTHONPATH=pydir)).returncode == 0
    if pydir and not has_loader:
        notes.append("This build's Python module has no `imgnorm.Loader`: the Loader rows are skipped.")

    data = dataset("photos-1000", 1000, 7) if args.quick else dataset("photos", 3670, 7)
    n_images = len(image_files(data))
    lists = typed_lists(data)
    strong_py = os.path.join(HERE, "peers", "strong.py")
    w = lambda name: os.path.join(WORK, name)  # noqa: E731
    stats_json = w("stats224.json")
    log(f"bench: {n_images} images in {data}; warming the page cache ...")
    subprocess.run([imgnorm, "stats", data, "--size", "224", "-q", "-o", stats_json, "--force"], check=True,
                   stdout=subprocess.DEVNULL)
    if pydir:  # the interpreter, numpy and the module in the page cache too
        subprocess.run([PY, os.path.join(HERE, "peers", "python_api.py"), "stats", data, "224",
                        w("pys224.json")], check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, PYTHONPATH=pydir))

    cmds = [
        Cmd("stats224", "imgnorm stats --size 224", [imgnorm, "stats", data, "--size", "224", "-q", "-o",
                                                      w("s224.json"), "--force"]),
        Cmd("py_stats224", "Python: imgnorm.stats(DIR, size=224) + Stats.save, whole process",
            [PY, os.path.join(HERE, "peers", "python_api.py"), "stats", data, "224", w("pys224.json")],
            env={"PYTHONPATH": pydir or ""}),
        Cmd("py_import", "Python: import imgnorm only (the fixed cost of a Python process)",
            [PY, "-c", "import imgnorm"], env={"PYTHONPATH": pydir or ""}),
        Cmd("stats64", "imgnorm stats --size 64", [imgnorm, "stats", data, "--size", "64", "-q", "-o",
                                                    w("s64.json"), "--force"]),
        Cmd("stats224_t1", "imgnorm stats --size 224 --threads 1",
            [imgnorm, "stats", data, "--size", "224", "--threads", "1", "-q", "-o", w("s224t1.json"), "--force"]),
        Cmd("decode_full", "decode-only, full size", [decode_only, "--list", lists["mixed"]]),
        Cmd("decode_224", "decode-only, DCT scale of --size 224",
            [decode_only, "--list", lists["mixed"], "--min-size", "224"]),
        Cmd("decode_64", "decode-only, DCT scale of --size 64",
            [decode_only, "--list", lists["mixed"], "--min-size", "64"]),
        Cmd("strong224", "strongest Python peer: TurboJPEG (ctypes, same DCT scale) + cv2.resize + "
                         "cv2.meanStdDev, 2 threads (224)", [PY, strong_py, lists["mixed"], "224"]),
        Cmd("strong64", "strongest Python peer, same (64)", [PY, strong_py, lists["mixed"], "64"]),
        Cmd("stats224_jpeg", "imgnorm stats --size 224, JPEG files only",
            [imgnorm, "stats", "--list", lists["jpeg"], "--size", "224", "-q", "-o", w("s224j.json"), "--force"]),
        Cmd("decode_224_jpeg", "decode-only, DCT scale of --size 224, JPEG files only",
            [decode_only, "--list", lists["jpeg"], "--min-size", "224"]),
        Cmd("strong224_jpeg", "strongest Python peer (224), JPEG files only",
            [PY, strong_py, lists["jpeg"], "224"]),
    ]
    loader_py = os.path.join(HERE, "peers", "loader.py")
    if has_loader:
        cmds.insert(3, Cmd("loader", "Python: imgnorm.Loader, one epoch (standardize, NCHW, 64, shuffled)",
                           [PY, loader_py, "imgnorm", data, stats_json], env={"PYTHONPATH": pydir}))
        if not user_no_peers:
            cmds.insert(4, Cmd("torch_loader", "torchvision ImageFolder + Resize + ToTensor + Normalize, "
                                               "DataLoader 2 workers, one epoch (64, shuffled)",
                               [PY, loader_py, "torch", data, stats_json]))
    if not pydir:
        cmds = [c for c in cmds if not c.key.startswith("py_")]
    if user_no_peers:
        cmds = [c for c in cmds if not c.key.startswith("strong")]
    if args.python_only:
        cmds = [c for c in cmds if c.key in ("stats224", "py_stats224", "py_import", "loader", "torch_loader")]
        args.no_peers = args.no_kernels = True
        args.scaling = False
    has_normalize = not args.python_only and subprocess.run(
        [imgnorm, "normalize", "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    if has_normalize:
        out_dir = w("normalize-out")
        out_bytes = n_images * 224 * 224 * 3 * 4
        cmds.append(Cmd("normalize", "imgnorm normalize --mode standardize --size 224 (float32)",
                        [imgnorm, "normalize", data, "--stats", stats_json, "--mode", "standardize", "-o",
                         out_dir, "--force", "-q"], before=rm(out_dir), group="write"))
        cmds.append(Cmd("write", f"write {out_bytes / 1e9:.2f} GB from memory (same disk)",
                        [decode_only, "--write", w("write.bin"), "--bytes", str(out_bytes)],
                        before=rm(w("write.bin")), group="write"))
    elif not args.python_only:
        notes.append("`imgnorm normalize` is not available in this build (`imgnorm normalize --help` "
                     "failed): its row is skipped.")
    if not args.no_peers:
        cmds.append(Cmd("tutorial", "tutorial: cv2.imread + resize, float64 array, numpy (224)",
                        [PY, os.path.join(HERE, "peers", "tutorial.py"), data, "224"]))
        cmds.append(Cmd("torch", "PyTorch: ImageFolder + Resize + ToTensor, DataLoader 2 workers (224)",
                        [PY, os.path.join(HERE, "peers", "torch_recipe.py"), data, "224"]))

    if any(c.key in ("torch", "torch_loader") for c in cmds):  # torch's libraries in the page cache
        subprocess.run([PY, "-c", "import torch, torchvision"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log(f"bench: {len(cmds)} commands × {args.runs} runs, alternating ...")
    measure(cmds, args.runs)
    for c in cmds:
        if c.group == "write":
            c.before()  # remove the 2.2 GB outputs
    by = {c.key: c for c in cmds}
    for key, ref in (("strong224", "s224.json"), ("strong224_jpeg", "s224j.json")):
        out = epoch_output(by[key]) if key in by else None
        if key not in by:
            continue
        try:
            want = json.load(open(w(ref)))
            d = max(max(abs(a - b) for a, b in zip(out[k], want[k])) for k in ("mean", "std"))
            notes.append(f"{by[key].label}: {out['images']} images; its mean and std differ from imgnorm's "
                         f"by at most {d:.2g} (0–255 units): the same pixels, summed in float64.")
        except (OSError, ValueError, KeyError, TypeError) as e:
            notes.append(f"{by[key].label}: could not compare with imgnorm's {ref} ({e}).")
    for key in ("loader", "torch_loader"):
        out = epoch_output(by[key]) if key in by else None
        if key in by and (out is None or out.get("images") != n_images):
            notes.append(f"{by[key].label}: read {out and out.get('images')} images, not {n_images} "
                         f"(see {os.path.relpath(os.path.join(WORK, key + '.out'), ROOT)}).")

    kern = None if args.no_kernels else kernels(build, data, args.quick)
    pyk = python_kernels(pydir, data, args.quick, stats_json) if pydir else None

    scaling, loader_scaling = [], []
    if args.scaling:
        big = dataset("photos-20000", 20000, 11)
        sc = []
        for n in (1000, 5000, 20000):
            lst = list_file(big, n)
            sc.append((n, Cmd(f"scale{n}", f"stats --size 224, {n} images",
                              [imgnorm, "stats", "--list", lst, "--size", "224", "-q", "-o", w(f"sc{n}.json"),
                               "--force"])))
        log("bench: scaling runs ...")
        subprocess.run(sc[-1][1].argv, check=True, stdout=subprocess.DEVNULL)  # page cache
        measure([c for _, c in sc], args.runs)
        scaling = sc
        if has_loader:  # the Loader's peak RSS must not grow with the dataset
            for n in ((1000, 5000) if args.quick else (1000, 20000)):
                loader_scaling.append((n, Cmd(f"loader_scale{n}", f"imgnorm.Loader epoch, {n} images",
                                              [PY, loader_py, "imgnorm", big, stats_json, "--list",
                                               list_file(big, n)], env={"PYTHONPATH": pydir})))
            log("bench: Loader memory runs ...")  # at least 3: its peak varies from run to run
            measure([c for _, c in loader_scaling], max(args.runs, 3))
            for n, c in loader_scaling:
                out = epoch_output(c)
                if out is None or out.get("images") != n:
                    notes.append(f"{c.label}: read {out and out.get('images')} images, not {n}.")

    text = report(args, n_images, cmds, by, kern, pyk, scaling, notes, loader_scaling)
    # Full-image whitening fit (issue 13, item 4) on 10,000 images at 32x32 (bench/whitening.py).
    wb = os.path.join(build, "bench", "whitening_bench")
    if os.access(wb, os.X_OK) and not args.python_only:
        wdata = dataset("photos-1000", 1000, 7) if args.quick else dataset("photos-10000", 10000, 7)
        log("bench: full-image whitening fit against numpy ...")
        text += "\n" + subprocess.run([PY, os.path.join(HERE, "whitening.py"), "--build", build, "--data", wdata],
                                      check=True, capture_output=True, text=True).stdout
    print(text)
    if args.save:
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        base = os.path.join(HERE, "results", datetime.date.today().isoformat())
        path, k = base + ".md", 2
        while os.path.exists(path):
            path, k = f"{base}-{k}.md", k + 1
        with open(path, "w") as f:
            f.write(text)
        log(f"bench: saved {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
