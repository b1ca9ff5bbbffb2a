#!/usr/bin/env python3
"""Memory and work are bounded (issue 10, items 4, 10, 19), through the CLI.

- Running out of memory ends the run (exit 1, naming the file and what it needed); it is never a
  skipped file (run under RLIMIT_AS; skipped for a sanitized CLI, which needs terabytes of address
  space).
- --threads 1024 on 40 images takes no more memory than 2 threads (peak RSS of the child), and the
  output is the same.
- A --size whose images cannot fit in --max-memory is refused up front, naming --size, the bytes
  and the limit; a malformed --max-memory is a usage error.
- A full disk is found before writing: the error names the bytes the outputs need (a 1 MiB tmpfs
  in a private mount namespace; skipped where unshare(1) cannot mount).
"""
import glob
import os
import re
import resource
import shutil
import subprocess
import time

import numpy as np

from common import CLI, SOURCE, WORK, check, finish, run

BASE = os.path.join(WORK, "resources")
shutil.rmtree(BASE, ignore_errors=True)
os.makedirs(BASE)
FLOWERS = os.path.join(SOURCE, "examples", "flowers")


def note(msg):
    print(f"note: {msg}", flush=True)


def sanitized():
    with open(CLI, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def measured(*args, preexec_fn=None):
    """(exit status, stdout, stderr, peak RSS in MiB) of one CLI run (the child's own ru_maxrss)."""
    out_path, err_path = os.path.join(BASE, "out.txt"), os.path.join(BASE, "err.txt")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = subprocess.Popen([CLI, *map(str, args)], stdout=out, stderr=err, preexec_fn=preexec_fn)
        deadline = time.monotonic() + 300
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, open(out_path).read(), open(err_path).read(), usage.ru_maxrss / 1024


def png_zeros(path, width, height):
    """A 16-bit RGBA PNG of zeros: 8 bytes a pixel decoded, about 100 bytes a row in the file. Every row is
    deflated alone (a full flush resets the history), so one compressed row serves them all."""
    import struct
    import zlib

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\0" * (1 + 8 * width)
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = z.compress(row) + z.flush(zlib.Z_FULL_FLUSH)
    assert z.compress(row) + z.flush(zlib.Z_FULL_FLUSH) == block
    # zlib header, the rows, an empty final block, Adler-32 of len(row) * height zero bytes.
    data = b"\x78\xda" + block * height + b"\x03\x00" + struct.pack(">I", ((len(row) * height) % 65521) << 16 | 1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)) +
                chunk(b"IDAT", data) + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------------------------
# --threads 1024 on 40 images: threads and output slots are capped at the images, so memory stays
# what 2 threads take (before: 4 x 1024 slots of 196 KiB, 800 MB).
out2, out1024 = os.path.join(BASE, "t2"), os.path.join(BASE, "t1024")
rc2, _, err2, rss2 = measured("normalize", FLOWERS, "--fit", "--size", 128, "-o", out2, "--threads", 2, "-q")
rc1024, _, err1024, rss1024 = measured("normalize", FLOWERS, "--fit", "--size", 128, "-o", out1024,
                                       "--threads", 1024, "-q")
print(f"peak RSS: --threads 2 {rss2:.0f} MiB, --threads 1024 {rss1024:.0f} MiB")
check(rc2 == 0 and rc1024 == 0, f"both runs succeed: {err2} {err1024}")
check(rss1024 <= rss2 + 100, f"--threads 1024 takes no more memory than 2 threads ({rss1024:.0f} vs {rss2:.0f} MiB)")
if rc2 == 0 and rc1024 == 0:
    check(np.array_equal(np.load(os.path.join(out2, "images.npy")), np.load(os.path.join(out1024, "images.npy"))),
          "--threads 1024 gives the same rows")

# ------------------------------------------------------------------------------------------------
# Sizes that cannot fit are refused up front, naming the flag and the bytes.
start = time.monotonic()
p = run("stats", FLOWERS, "--size", 65535, "--max-memory", "4G", expect=None)
check(p.returncode == 2 and "imgnorm: --size 65535x65535: one image in flight needs 12 GiB (12 GiB for the resized "
      "65535x65535 image), more than the memory limit of 4.0 GiB (--max-memory); give a smaller --size or a larger "
      "--max-memory" in p.stderr, f"stats --size 65535: {p.returncode} {p.stderr}")
check("skipped" not in p.stderr, f"no file is blamed: {p.stderr}")
check(time.monotonic() - start < 10, "refused before decoding anything")
default_limit = re.search(r"here\s+([0-9.]+)\s+(GiB|TiB)", run("stats", "--help").stdout)
if default_limit and default_limit.group(2) == "GiB" and float(default_limit.group(1)) < 12:
    p = run("stats", FLOWERS, "--size", 65535, expect=None, timeout=60)
    check(p.returncode == 2 and "--size 65535x65535: one image in flight needs 12 GiB" in p.stderr and
          "(--max-memory; the default is half of the memory)" in p.stderr,
          f"stats --size 65535 with the default limit: {p.returncode} {p.stderr}")
out = os.path.join(BASE, "big")
stats_json = os.path.join(BASE, "stats.json")
run("stats", FLOWERS, "--size", 16, "-o", stats_json, "-q")
p = run("normalize", FLOWERS, "--stats", stats_json, "--size", 20000, "--max-memory", "2G", "-o", out, "-q",
        expect=None)
check(p.returncode == 2 and "--size 20000x20000: one image in flight needs 5.6 GiB (1.1 GiB for the resized "
      "20000x20000 image + 4.5 GiB for its output row), more than the memory limit of 2.0 GiB (--max-memory)"
      in p.stderr, f"normalize --size 20000: {p.returncode} {p.stderr}")
check(not os.path.exists(out), "refused before the output folder is created")
for bad in ("12X", "0", "-5G"):
    p = run("stats", FLOWERS, "--max-memory", bad, expect=None)
    check(p.returncode == 2 and f"--max-memory: '{bad}'" in p.stderr, f"--max-memory {bad}: {p.returncode} {p.stderr}")
help_text = run("stats", "--help").stdout
check("--max-memory" in help_text and "half of the physical memory" in help_text, "--help documents --max-memory")
# A limit below what one decode needs throttles, it does not fail: the same statistics.
a = run("stats", FLOWERS, "--size", 32, "--format", "json", "--threads", 2).stdout
b = run("stats", FLOWERS, "--size", 32, "--format", "json", "--threads", 2, "--max-memory", "64K").stdout
check(a == b, "--max-memory 64K: every image loads (one at a time), same statistics")

# ------------------------------------------------------------------------------------------------
# Out of memory is a run error, never a skipped file: the same command must not give a different
# stats.json from run to run (exit 0 each time) depending on what else the machine was doing.
if sanitized():
    note("sanitized CLI: it reserves terabytes of address space, RLIMIT_AS checks skipped")
else:
    oom = os.path.join(BASE, "oom")
    for f in sorted(glob.glob(os.path.join(FLOWERS, "*", "*.jpg")))[:3]:
        os.makedirs(os.path.join(oom, "a"), exist_ok=True)
        shutil.copy(f, os.path.join(oom, "a"))
    # The file: 13,377 x 13,377 16-bit RGBA pixels (under the default pixel limit), 1.9 GB to decode.
    png_zeros(os.path.join(oom, "a", "big.png"), 13377, 13377)

    def address_space(limit):
        return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    limit = 1 << 30  # the CLI with one thread needs about 300 MB of address space
    stats_out = os.path.join(BASE, "oom-stats.json")
    rc, stdout, stderr, _ = measured("stats", oom, "--threads", 1, "--size", 16, "-o", stats_out, "--format", "json",
                                     preexec_fn=address_space(limit))
    big = os.path.join(oom, "a", "big.png")
    check(rc == 1 and f"imgnorm: {big}: out of memory while loading this image" in stderr
          and "lower --max-memory" in stderr, f"out of memory ends the run: {rc} {stderr}")
    check("skipped" not in stderr and not os.path.exists(stats_out), f"no stats.json blaming the file: {stderr}")

# ------------------------------------------------------------------------------------------------
# A full disk is found before writing anything: the error says how many bytes the outputs need.
mnt = os.path.join(BASE, "tmpfs")
os.makedirs(mnt)
probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mnt}"],
                       capture_output=True, text=True)
if probe.returncode != 0:
    note(f"cannot mount a tmpfs in a private mount namespace ({probe.stderr.strip()}): disk-full check skipped")
else:
    script = (f"mount -t tmpfs -o size=1m tmpfs {mnt} && {CLI} normalize {FLOWERS} --stats {stats_json} "
              f"--size 64 -o {mnt}/out -q; rc=$?; ls -A {mnt}/out 2>/dev/null; exit $rc")
    p = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
    m = re.search(r"images\.npy and labels\.npy of 40 rows needs (\d+) bytes \(.*\), but its filesystem has only "
                  r"(\d+) bytes", p.stderr)
    check(p.returncode == 1 and m is not None, f"disk full: {p.returncode} {p.stderr}")
    if m:
        check(int(m.group(1)) >= 40 * 64 * 64 * 3 * 4 + 40 * 8 and int(m.group(2)) <= 1 << 20,
              f"the bytes needed and free: {m.groups()}")
    check(p.stdout.strip() == "", f"nothing written: {p.stdout}")

finish()
