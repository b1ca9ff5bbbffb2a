#!/usr/bin/env python3
"""Hostile and unusual input (issue 5): a corpus of broken files built deterministically from real
photographs, run through `imgnorm stats` (and `imgnorm normalize` when the CLI has it).

- No crash: exit 0 (3 with --strict); every bad file reported exactly once, with path and reason,
  on stderr and in stats.json "skipped"; images + skipped = files found; ignored entries listed once.
- The statistics equal those of the good files alone (exact integer sums and histograms).
- Decompression bombs are refused before allocation (peak memory measured with /usr/bin/time).
- Outputs are never lost or half-written: missing folder, path under a file, existing output
  without --force, disk full (RLIMIT_FSIZE), SIGINT/SIGTERM mid-run.
- Files that disappear or change between scan and read are reported, not fatal.
- `imgnorm merge` rejects malformed, newer, NaN and negative-std stats files, saying what is wrong.
"""
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import cv2
import numpy as np

from common import CLI, WORK, check, finish, photos, run

BASE = os.path.join(WORK, "corruption")
shutil.rmtree(BASE, ignore_errors=True)
os.makedirs(BASE)
IS_ROOT = os.geteuid() == 0


def note(msg):
    print(f"note: {msg}", flush=True)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def png_chunks(data):
    """[(type, start of length field, end of crc)] of a PNG."""
    out, i = [], 8
    while i + 12 <= len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        out.append((data[i + 4:i + 8], i, i + 12 + n))
        i += 12 + n
    return out


def png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def patch_jpeg_size(data, w, h):
    """The same JPEG with the frame header (SOFn) claiming w x h pixels."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return data[:i + 5] + struct.pack(">HH", h, w) + data[i + 9:]
        i += 2 + length
    raise ValueError("no SOF marker")


def patch_png_size(data, w, h):
    ihdr = data[16:29]
    payload = struct.pack(">II", w, h) + ihdr[8:]
    return data[:8] + png_chunk(b"IHDR", payload) + data[33:]


def stderr_skips(stderr):
    """{path: [reason, ...]} from the 'imgnorm: skipped PATH: REASON' lines."""
    out = {}
    for line in stderr.splitlines():
        if line.startswith("imgnorm: skipped "):
            rest = line[len("imgnorm: skipped "):]
            path, _, reason = rest.partition(": ")
            out.setdefault(path, []).append(reason)
    return out


def no_crash(p, what):
    bad = [s for s in ("AddressSanitizer", "LeakSanitizer", "runtime error", "internal error", "terminate called")
           if s in p.stderr]
    check(p.returncode >= 0 and not bad, f"{what}: no crash (exit {p.returncode}, {bad}) {p.stderr[-2000:]}")


def leftovers(folder):
    return sorted(f for f in os.listdir(folder) if ".tmp-" in f)


# ------------------------------------------------------------------------------------------------
# The corpus

src_root = photos(60)
src_files = []
for dirpath, dirnames, filenames in os.walk(src_root):
    dirnames.sort()
    for f in sorted(filenames):
        if f.lower().endswith((".jpg", ".png")):
            src_files.append(os.path.join(dirpath, f))
jpegs = [f for f in src_files if f.endswith(".jpg")]
pngs_src = [f for f in src_files if f.endswith(".png")]
check(len(jpegs) >= 20, f"source photographs ({len(jpegs)} JPEGs)")
# PNGs and a WebP from the photographs, so that every format is there whatever make_photos gave.
png_bytes = [cv2.imencode(".png", cv2.imread(f))[1].tobytes() for f in jpegs[20:23]]
png_bytes += [open(f, "rb").read() for f in pngs_src[:2]]
webp_bytes = cv2.imencode(".webp", cv2.imread(jpegs[23]), [cv2.IMWRITE_WEBP_QUALITY, 80])[1].tobytes()
jpeg_bytes = [open(f, "rb").read() for f in jpegs[:20]]

ROOT = os.path.join(BASE, "corpus")
good, bad, maybe, ignored = {}, {}, {}, {}  # relative path -> bytes / expected reason

# Good files: plain, odd names, wrong extensions (the bytes decide), a folder named like an image.
for k, b in enumerate(jpeg_bytes[:10]):
    good[f"good/photo_{k:02d}.jpg"] = b
for k, b in enumerate(png_bytes):
    good[f"good/png_{k}.png"] = b
good["good/lossy.webp"] = webp_bytes
good["good/name with spaces.jpg"] = jpeg_bytes[10]
good["good/naïve ünïcödé 写真.jpg"] = jpeg_bytes[11]
good["good/UPPER.JPEG"] = jpeg_bytes[12]
good["good/png_named.jpg"] = png_bytes[0]
good["good/jpeg_named.png"] = jpeg_bytes[13]
good["good/webp_named.jpg"] = webp_bytes
good["good/dir.jpg/inside.jpg"] = jpeg_bytes[14]
good["good/deep/er/nested.png"] = png_bytes[1]

J = jpeg_bytes[15]
P = png_bytes[2]
n = len(J)
for off in (1, 2, 3, 4, 20, 100, 600, n // 4, n // 2, 3 * n // 4, n - 64, n - 2, n - 1):
    bad[f"bad/jpeg_trunc_{off:07d}.jpg"] = J[:off]
chunks = png_chunks(P)
idats = [c for c in chunks if c[0] == b"IDAT"]
first_idat, last_idat = idats[0], idats[-1]
for off in (8, 20, 33, first_idat[1] + 20, len(P) // 2, last_idat[2] - 5, last_idat[2] - 1, last_idat[2]):
    bad[f"bad/png_trunc_{off:07d}.png"] = P[:off]
W = webp_bytes
for off in (12, 20, 40, len(W) // 2):
    bad[f"bad/webp_trunc_{off:07d}.webp"] = W[:off]
maybe["bad/webp_trunc_last.webp"] = W[:-1]  # may be only the RIFF padding byte
# Bit flips: in the JPEG entropy data a flip may decode to other pixels (allowed either way);
# in a PNG IDAT the CRC catches it; in a signature the format is gone.
for k, pos in enumerate(range(n // 3, n - 100, max(1, (n - 100 - n // 3) // 8))):
    b = bytearray(J)
    b[pos] ^= 1 << (k % 8)
    maybe[f"bad/jpeg_flip_{pos:07d}.jpg"] = bytes(b)
b = bytearray(J)
b[0] ^= 0x01
bad["bad/jpeg_flip_soi.jpg"] = bytes(b)
b = bytearray(P)
b[first_idat[1] + 30] ^= 0x10
bad["bad/png_flip_idat.png"] = bytes(b)
b = bytearray(P)
b[1] ^= 0x20
bad["bad/png_flip_signature.png"] = bytes(b)
# Zeroed blocks.
for pos in (n // 4, n // 2, 3 * n // 4):
    b = bytearray(J)
    b[pos:pos + 256] = bytes(256)
    maybe[f"bad/jpeg_zero_{pos:07d}.jpg"] = bytes(b)
b = bytearray(P)
b[first_idat[1] + 16:first_idat[1] + 16 + 256] = bytes(256)
bad["bad/png_zero_idat.png"] = bytes(b)
b = bytearray(J)
b[2:2 + 512] = bytes(512)
bad["bad/jpeg_zero_header.jpg"] = bytes(b)
# Not images at all.
bad["bad/empty.jpg"] = b""
bad["bad/empty.png"] = b""
bad["bad/text.jpg"] = b"this is not a picture\n" * 20
bad["bad/html.png"] = b"<html><body>404 Not Found</body></html>\n"
bad["bad/random.webp"] = np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8).tobytes()
bad["bad/riff_not_webp.webp"] = b"RIFF\x10\0\0\0WAVEfmt " + bytes(64)
# Headers claiming 60000 x 60000 pixels (3.6 gigapixels).
bad["bad/huge_60000.jpg"] = patch_jpeg_size(J, 60000, 60000)
bad["bad/huge_60000.png"] = patch_png_size(P, 60000, 60000)
# A PNG whose IDAT CRC is wrong (the data is intact).
b = bytearray(P)
b[first_idat[2] - 1] ^= 0xFF
bad["bad/png_bad_crc.png"] = bytes(b)

for rel, data in {**good, **bad, **maybe}.items():
    write(os.path.join(ROOT, rel), data)

# An unreadable file. chmod 000 does not stop root (CAP_DAC_OVERRIDE): then it is a good file.
locked = "bad/locked.jpg"
write(os.path.join(ROOT, locked), jpeg_bytes[16])
os.chmod(os.path.join(ROOT, locked), 0)
try:
    open(os.path.join(ROOT, locked), "rb").close()
    note("running as root: chmod 000 does not make a file unreadable; the unreadable-file check is skipped")
    good[locked] = jpeg_bytes[16]
except PermissionError:
    bad[locked] = b""

# Entries the scan ignores (not errors), each listed once with its reason.
os.symlink("..", os.path.join(ROOT, "bad", "loop"))  # a folder symlink loop
os.symlink("self.jpg", os.path.join(ROOT, "bad", "self.jpg"))  # a file symlink to itself
os.symlink("nowhere.jpg", os.path.join(ROOT, "bad", "dangling.jpg"))
write(os.path.join(ROOT, "bad", "notes.txt"), b"not an image extension\n")
write(os.path.join(ROOT, "bad", ".hidden.jpg"), J)
write(os.path.join(ROOT, "README.txt"), b"root-level file\n")
os.mkfifo(os.path.join(ROOT, "bad", "fifo.jpg"))
ignored = {
    "bad/loop": "symlink loop",
    "bad/self.jpg": "symlink loop",
    "bad/dangling.jpg": "broken symlink",
    "bad/notes.txt": "not an image extension",
    "bad/.hidden.jpg": "hidden",
    "README.txt": "root-level file",
    "bad/fifo.jpg": "not a regular file",
}

tried = len(good) + len(bad) + len(maybe)
print(f"corpus: {tried} image files ({len(good)} good, {len(bad)} bad, {len(maybe)} may decode), "
      f"{len(ignored)} ignored entries")


def full(rel):
    return os.path.join(ROOT, rel)


# ------------------------------------------------------------------------------------------------
# imgnorm stats over the corpus

out = os.path.join(BASE, "stats.json")
# Without -q: --quiet also silences the per-file warnings.
p = run("stats", ROOT, "--size", 32, "-o", out, "--threads", 2, expect=None)
no_crash(p, "stats over the corpus")
check(p.returncode == 0, f"stats over the corpus exits 0 (got {p.returncode}): {p.stderr[-500:]}")
st = json.load(open(out))
skipped = {s["path"]: s for s in st["skipped"]}
on_stderr = stderr_skips(p.stderr)
check(len(skipped) == len(st["skipped"]), "each skipped file listed once in stats.json")
for path, reasons in on_stderr.items():
    check(len(reasons) == 1, f"{path} reported {len(reasons)} times on stderr")
check(set(on_stderr) == set(skipped), f"stderr and stats.json report the same files: "
      f"{sorted(set(on_stderr) ^ set(skipped))}")
for path, s in skipped.items():
    check(s["reason"] != "" and s["code"] != "", f"{path}: reason and code given")
    check(on_stderr.get(path, [""])[0] == s["reason"], f"{path}: same reason on stderr and in stats.json")
for rel in bad:
    check(full(rel) in skipped, f"bad file {rel} is reported")
for rel in good:
    check(full(rel) not in skipped, f"good file {rel} is used ({skipped.get(full(rel))})")
for path in skipped:
    rel = os.path.relpath(path, ROOT)
    check(rel in bad or rel in maybe, f"only bad files are skipped: {rel}")
used_maybe = [rel for rel in maybe if full(rel) not in skipped]
print(f"stats: {st['counts']['images']} used, {len(skipped)} skipped, {st['counts']['ignored']} ignored; "
      f"{len(maybe) - len(used_maybe)} of {len(maybe)} damaged-but-maybe-decodable files refused")
c = st["counts"]
check(c["files_found"] == tried, f"files_found {c['files_found']} == files in the corpus {tried}")
check(c["images"] + c["skipped"] == c["files_found"], f"images + skipped == found: {c}")
check(c["images"] == len(good) + len(used_maybe), f"images {c['images']} == good files")
check(c["skipped"] == len(st["skipped"]), "counts.skipped matches the list")
ign = {os.path.relpath(i["path"], ROOT): i["reason"] for i in st["ignored"]}
check(len(ign) == len(st["ignored"]) == c["ignored"], f"each ignored entry listed once: {st['ignored']}")
check(ign == ignored, f"ignored entries and reasons: {ign}")
reason = {os.path.relpath(k, ROOT): v for k, v in skipped.items()}
check("empty" in reason.get("bad/empty.jpg", {}).get("reason", ""), "empty file: reason says empty")
check("not a JPEG, PNG or WebP" in reason.get("bad/text.jpg", {}).get("reason", ""), "text file: reason")
for rel in ("bad/huge_60000.jpg", "bad/huge_60000.png"):
    r = reason.get(rel, {})
    check(r.get("code") == "too_large" and "60000x60000" in r.get("reason", ""), f"{rel}: too_large ({r})")
check("checksum" in reason.get("bad/png_bad_crc.png", {}).get("reason", "").lower(),
      f"bad CRC named: {reason.get('bad/png_bad_crc.png')}")
if locked in bad:
    check("permission denied" in reason.get(locked, {}).get("reason", ""), f"unreadable: {reason.get(locked)}")

# The same statistics as the good files alone: exact integer sums and histograms.
CLEAN = os.path.join(BASE, "clean")
for rel in list(good) + used_maybe:
    data = open(full(rel), "rb").read() if rel != locked else good[rel]
    write(os.path.join(CLEAN, rel), data)
clean_out = os.path.join(BASE, "clean.json")
run("stats", CLEAN, "--size", 32, "-o", clean_out, "-q", "--threads", 1)
ref = json.load(open(clean_out))
check(ref["counts"]["skipped"] == 0, "the clean folder has no bad file")
check(st["sums"] == ref["sums"], "exact sums equal those of the good files alone")
check(st["histograms"] == ref["histograms"], "histograms equal those of the good files alone")
check(st["mean"] == ref["mean"] and st["std"] == ref["std"], "mean and std equal")

# --strict: exit 3, same report.
p = run("stats", ROOT, "--size", 32, "-o", os.path.join(BASE, "strict.json"), "--strict", expect=None)
no_crash(p, "--strict")
check(p.returncode == 3, f"--strict exits 3 when files were skipped (got {p.returncode})")
check(set(stderr_skips(p.stderr)) == set(skipped), "--strict reports the same files")

# --max-pixels below a good photo's size refuses it (too_large) without failing the run.
p = run("stats", CLEAN, "--size", 32, "--max-pixels", 1000, "--format", "json", expect=None)
no_crash(p, "--max-pixels 1000")
check(p.returncode != 0 and "exceeds the limit" in p.stderr, f"--max-pixels 1000: every image refused: {p.returncode}")

# ------------------------------------------------------------------------------------------------
# Decompression bombs: 150-megapixel PNGs (a one-colour palette image compresses to a few KB).


def bomb_png(side, rgb):
    row = bytes(1 + (side + 7) // 8)  # filter 0, palette index 0
    z = zlib.compressobj(9)
    parts = [z.compress(row) for _ in range(side)]
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 3, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"PLTE", bytes(rgb)) +
            png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b""))


BOMBS = os.path.join(BASE, "bombs")
SIDE = 12248  # 150,013,504 pixels: under the default limit of 178,956,970
for k, rgb in enumerate([(200, 30, 40), (10, 220, 90), (60, 70, 250)]):
    data = bomb_png(SIDE, rgb)
    write(os.path.join(BOMBS, "three", f"bomb{k}.png"), data)
    if k == 0:
        write(os.path.join(BOMBS, "one", "bomb0.png"), data)
print(f"bombs: {len(data)} bytes each for {SIDE}x{SIDE} pixels")


def peak_mb(*args):
    """(process, peak RSS in MB) of one CLI run, measured by /usr/bin/time."""
    tf = os.path.join(BASE, "time.txt")
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf, CLI, *map(str, args)],
                       capture_output=True, text=True)
    return p, int(open(tf).read().split()[-1]) / 1024


if os.access("/usr/bin/time", os.X_OK):
    p1, one = peak_mb("stats", os.path.join(BOMBS, "one"), "--size", 16, "--threads", 1, "--format", "json", "-q")
    p3, three = peak_mb("stats", os.path.join(BOMBS, "three"), "--size", 16, "--threads", 1, "--format", "json", "-q")
    no_crash(p1, "one 150 MP PNG")
    no_crash(p3, "three 150 MP PNGs")
    check(p1.returncode == 0 and p3.returncode == 0, f"150 MP PNGs under the default limit are used: {p3.stderr}")
    decoded_mb = SIDE * SIDE * 3 / 2**20
    print(f"peak RSS: one 150 MP PNG {one:.0f} MB, three {three:.0f} MB (decoded image {decoded_mb:.0f} MB)")
    check(three <= one * 1.25 + 64, f"peak memory does not grow with the number of bombs ({one:.0f} vs {three:.0f} MB)")
    check(three < 3 * decoded_mb, f"peak memory bounded: {three:.0f} MB")
    p, low = peak_mb("stats", os.path.join(BOMBS, "three"), "--size", 16, "--max-pixels", 100_000_000,
                     "--format", "json")
    no_crash(p, "bombs over --max-pixels")
    sk = stderr_skips(p.stderr)
    check(p.returncode != 0 and len(sk) == 3 and all("exceeds the limit" in r[0] for r in sk.values()),
          f"--max-pixels 100000000 refuses all three: {p.stderr}")
    print(f"peak RSS with --max-pixels 100000000: {low:.0f} MB")
    check(low < decoded_mb / 2, f"refused before allocation: peak {low:.0f} MB")
    # A 60000 x 60000 header with the default limit: refused, and nothing near its size allocated.
    huge_list = os.path.join(BASE, "huge.list")
    write(huge_list, b"corpus/bad/huge_60000.png\ncorpus/bad/huge_60000.jpg\n")
    p, huge = peak_mb("stats", "--list", huge_list, "--format", "json", "-q")
    check(p.returncode != 0 and huge < 1024, f"60000x60000 headers refused cheaply: peak {huge:.0f} MB")
else:
    note("/usr/bin/time not found (apt-get install time): peak-memory checks skipped")

# ------------------------------------------------------------------------------------------------
# Outputs are never lost or half-written.

small = CLEAN
outdir = os.path.join(BASE, "out")
os.makedirs(outdir)

p = run("stats", small, "-o", os.path.join(BASE, "missing", "stats.json"), "-q", expect=None)
check(p.returncode == 1 and "does not exist" in p.stderr, f"missing output folder: {p.returncode} {p.stderr}")
check(not os.path.exists(os.path.join(BASE, "missing")), "missing output folder is not created")
afile = os.path.join(BASE, "a_file")
write(afile, b"x")
p = run("stats", small, "-o", os.path.join(afile, "stats.json"), "-q", expect=None)
check(p.returncode == 1 and "a_file" in p.stderr, f"output under a file: {p.returncode} {p.stderr}")
if IS_ROOT:
    note("running as root: a read-only folder is writable for root; the read-only output check is skipped")
else:
    ro = os.path.join(BASE, "readonly")
    os.makedirs(ro)
    os.chmod(ro, 0o555)
    p = run("stats", small, "-o", os.path.join(ro, "stats.json"), "-q", expect=None)
    check(p.returncode == 1 and "not writable" in p.stderr, f"read-only output folder: {p.stderr}")
    os.chmod(ro, 0o755)

existing = os.path.join(outdir, "stats.json")
write(existing, b"precious\n")
p = run("stats", small, "-o", existing, "-q", expect=None)
check(p.returncode == 1 and "already exists" in p.stderr, f"existing output kept without --force: {p.stderr}")
check(open(existing, "rb").read() == b"precious\n", "existing output unchanged")
run("stats", small, "-o", existing, "-q", "--force")
check(json.load(open(existing))["counts"]["images"] == ref["counts"]["images"], "--force replaces it")
os.remove(existing)


def fsize_limit(limit):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


# Disk full: the file size limit makes write() fail with EFBIG part-way.
p = run("stats", small, "--size", 16, "-o", existing, "-q", expect=None, preexec_fn=fsize_limit(1000))
no_crash(p, "disk full (stats.json)")
check(p.returncode == 1 and "stats.json" in p.stderr, f"disk full: error naming the file: {p.returncode} {p.stderr}")
check(not os.path.exists(existing) and leftovers(outdir) == [], f"disk full: nothing left: {os.listdir(outdir)}")
mean_npy = os.path.join(outdir, "mean.npy")
p = run("stats", small, "--size", 64, "-o", existing, "--mean-image", mean_npy, "-q", expect=None,
        preexec_fn=fsize_limit(32768))
no_crash(p, "disk full (mean image)")
check(p.returncode == 1 and "mean.npy" in p.stderr, f"disk full on the mean image: {p.returncode} {p.stderr}")
check(not os.path.exists(mean_npy) and leftovers(outdir) == [], f"no partial mean image: {os.listdir(outdir)}")
# stats.json is written last: a run that failed on the mean image leaves no stats.json either.
check(not os.path.exists(existing), "disk full on the mean image: no stats.json")

# SIGINT / SIGTERM mid-run on a larger dataset (a list file repeating the photographs).
big_list = os.path.join(BASE, "big.list")
with open(big_list, "w") as f:
    for _ in range(150):
        for path in src_files:
            f.write(path + "\n")
for sig in (signal.SIGINT, signal.SIGTERM):
    target = os.path.join(outdir, "big.json")
    mean_big = os.path.join(outdir, "big_mean.npy")
    proc = subprocess.Popen([CLI, "stats", "--list", big_list, "--exact-decode", "--interp", "lanczos", "--threads", "2",
                             "-o", target, "--mean-image", mean_big, "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    running = proc.poll() is None
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    check(running, f"{sig.name}: the run was still going after 1.5 s")
    check(proc.returncode == 130, f"{sig.name}: exit 130 (got {proc.returncode}): {err[-500:]}")
    check("interrupted" in err, f"{sig.name}: says interrupted: {err[-300:]}")
    check(not os.path.exists(target) and not os.path.exists(mean_big) and leftovers(outdir) == [],
          f"{sig.name}: no output and no temporary file left: {os.listdir(outdir)}")

# ------------------------------------------------------------------------------------------------
# Files that disappear or change between scan and read.

# Listed but missing: the same path the scan would have taken, gone by the time it is read.
race_list = os.path.join(BASE, "race.list")
victims = os.path.join(BASE, "victims")
for k in range(8):
    write(os.path.join(victims, f"v{k}.jpg"), jpeg_bytes[k])
with open(race_list, "w") as f:
    f.write(os.path.join(victims, "never_there.jpg") + "\n")
    for _ in range(40):
        for path in src_files:
            f.write(path + "\n")
    for k in range(8):
        f.write(os.path.join(victims, f"v{k}.jpg") + "\n")
proc = subprocess.Popen([CLI, "stats", "--list", race_list, "--exact-decode", "--interp", "lanczos", "--threads", "1",
                         "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
time.sleep(0.5)
raced = proc.poll() is None
for k in range(8):
    v = os.path.join(victims, f"v{k}.jpg")
    if k < 3:
        os.remove(v)  # disappears
    elif k < 5:
        write(v, b"now a text file\n")  # changes into something else
    elif k < 7:
        write(v, jpeg_bytes[k][:len(jpeg_bytes[k]) // 3])  # shrinks
    else:
        os.remove(v)
        os.makedirs(v)  # becomes a folder
out_text, err = proc.communicate(timeout=600)
check(raced, "the run was still going when the files changed")
no_crash(subprocess.CompletedProcess(proc.args, proc.returncode, out_text, err), "files changing during the run")
check(proc.returncode == 0, f"changed files are not fatal (exit {proc.returncode}): {err[-500:]}")
sk = stderr_skips(err)
check(all(len(r) == 1 for r in sk.values()), "each changed file reported once")
check(os.path.join(victims, "never_there.jpg") in sk, "a listed file that is missing is reported")
for k in range(8):
    v = os.path.join(victims, f"v{k}.jpg")
    check(v in sk, f"changed file v{k} reported ({sk.get(v)})")
check("no such file" in sk.get(os.path.join(victims, "v0.jpg"), [""])[0], f"vanished: {sk.get(os.path.join(victims, 'v0.jpg'))}")
rs = json.loads(out_text)
check(rs["counts"]["images"] + rs["counts"]["skipped"] == rs["counts"]["files_found"], "counts add up after the race")

# ------------------------------------------------------------------------------------------------
# merge rejects broken stats files and says what is wrong.

good_stats = open(clean_out).read()
broken = {
    "malformed": (good_stats[: len(good_stats) // 2], "not valid JSON"),
    "not_json": ("hello", "not valid JSON"),
    "newer": (good_stats.replace('"format_version": 1', '"format_version": 2', 1), "newer"),
    "nan_std": (good_stats.replace('"std": [', '"std": [NaN, ', 1), "JSON"),
    "nan_string": (good_stats.replace('"std": [', '"std": ["NaN", ', 1), "std"),
}
d = json.loads(good_stats)
d["std"][0] = -d["std"][0]
broken["negative_std"] = (json.dumps(d), "negative")
d = json.loads(good_stats)
d["format"] = "something-else"
broken["wrong_format"] = (json.dumps(d), "format")
d = json.loads(good_stats)
del d["sums"]
broken["missing_sums"] = (json.dumps(d), "sums")
check('"format_version": 1' in good_stats, "stats.json has format_version 1")
for name, (text, expect_word) in broken.items():
    path = os.path.join(BASE, f"broken_{name}.json")
    write(path, text.encode())
    p = run("merge", path, "-o", os.path.join(outdir, "merged.json"), expect=None)
    no_crash(p, f"merge {name}")
    check(p.returncode == 1 and path in p.stderr and expect_word in p.stderr,
          f"merge rejects {name} naming the file and '{expect_word}': {p.returncode} {p.stderr.strip()}")
    check(not os.path.exists(os.path.join(outdir, "merged.json")), f"merge {name}: nothing written")

# ------------------------------------------------------------------------------------------------
# imgnorm normalize over the same corpus (when this CLI has it).

has_normalize = run("normalize", "--help", expect=None).returncode == 0
if not has_normalize:
    note("this imgnorm has no 'normalize' command yet: its corruption checks are skipped")
else:
    nout = os.path.join(BASE, "norm")
    p = run("normalize", ROOT, "--stats", out, "--mode", "standardize", "-o", nout, expect=None)
    no_crash(p, "normalize over the corpus")
    check(p.returncode == 0, f"normalize over the corpus exits 0 (got {p.returncode}): {p.stderr[-500:]}")
    man = json.load(open(os.path.join(nout, "manifest.json")))
    nsk = {s["path"]: s for s in man.get("skipped", [])}
    check(len(nsk) == len(man.get("skipped", [])), "normalize: each skipped file listed once in manifest.json")
    check(set(nsk) == set(skipped), f"normalize skips the same files as stats: {sorted(set(nsk) ^ set(skipped))}")
    on_err = stderr_skips(p.stderr)
    check(set(on_err) == set(skipped) and all(len(r) == 1 for r in on_err.values()),
          "normalize: each bad file reported once on stderr")
    images = np.load(os.path.join(nout, "images.npy"), mmap_mode="r")
    labels = np.load(os.path.join(nout, "labels.npy"))
    check(images.shape[0] == st["counts"]["images"] == labels.shape[0],
          f"normalize: rows {images.shape[0]} == good files {st['counts']['images']}")
    check(bool(np.isfinite(images).all()), "normalize: every value finite")
    # Interrupted: no images.npy, no temporary file.
    nbig = os.path.join(BASE, "norm_big")
    big_stats = os.path.join(BASE, "photos_stats.json")  # the classes of the photographs, a slow recipe
    run("stats", src_root, "--size", 64, "--exact-decode", "--interp", "lanczos", "-o", big_stats, "-q")
    proc = subprocess.Popen([CLI, "normalize", "--list", big_list, "--stats", big_stats, "--mode", "standardize",
                             "--threads", "2", "-o", nbig, "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(1.5)
    running = proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    check(running and proc.returncode == 130, f"normalize interrupted: exit {proc.returncode}: {err[-300:]}")
    left = os.listdir(nbig) if os.path.isdir(nbig) else []
    check("images.npy" not in left and not any(".tmp-" in f for f in left),
          f"interrupted normalize leaves no images.npy and no temporary file: {left}")

finish()
