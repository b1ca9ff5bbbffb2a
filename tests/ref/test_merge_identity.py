#!/usr/bin/env python3
"""stats.json records which files it covers ("covers": a digest of the selection + its shards), and
merge uses it (issue 10, item 3): the same files under another spelling, a full run with one of its
shards, and shards of different splits that share files are refused naming both inputs; different
datasets that happen to have the same name are merged; missing shards are named; files without
"covers" are merged with a warning. The digest is recomputed here with hashlib."""
import hashlib
import json
import os
import shutil

from common import SOURCE, WORK, check, finish, run

flowers = os.path.join(SOURCE, "examples", "flowers")
base = os.path.join(WORK, "merge-identity")
shutil.rmtree(base, ignore_errors=True)
os.makedirs(base)
data = os.path.join(base, "data")
shutil.copytree(flowers, data)


def stats(name, root, *extra, cwd=base):
    path = os.path.join(base, name)
    run("stats", root, "--size", 16, "-q", "--force", "-o", path, *extra, cwd=cwd)
    return path


def load(path):
    with open(path) as f:
        return json.load(f)


def rel_files(root):
    """The files imgnorm takes, relative to root, in its order (classes sorted, then paths bytewise)."""
    exts = (".jpg", ".jpeg", ".png", ".webp")
    out = []
    for c in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")):
        files = []
        for dirpath, dirs, names in os.walk(os.path.join(root, c)):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for n in names:
                if not n.startswith(".") and n.lower().endswith(exts):
                    files.append(os.path.relpath(os.path.join(dirpath, n), root))
        out += sorted(files, key=lambda p: p.encode())
    return out


def digest(rel):
    h = hashlib.sha256(b"imgnorm-selection 1\0")
    for p in rel:
        h.update(p.encode() + b"\0")
    return "sha256:" + h.hexdigest()


full = stats("full.json", "data")
f = load(full)
files = rel_files(data)
check(f["covers"] == [{"selection": digest(files), "files": len(files)}],
      f"covers of a full run is the digest of the relative paths: {f['covers']} vs {digest(files)}")
check("shard" not in f, "a full run has no 'shard'")

# 1. The same files under three spellings are one selection: refused, naming both inputs.
dot = stats("dot.json", "./data")
absolute = stats("abs.json", data)
check(load(dot)["covers"] == f["covers"] == load(absolute)["covers"], "data, ./data and an absolute path: same covers")
for other in (dot, absolute):
    p = run("merge", full, other, expect=2)
    check(full in p.stderr and other in p.stderr and "all 40 files and all 40 files of the same selection" in p.stderr
          and "merging would count them twice" in p.stderr, f"same files, other spelling, refused: {p.stderr!r}")
# A list file in the dataset folder, relative lines ("./daisy/x.jpg"), is the same files too.
with open(os.path.join(data, "list.txt"), "w") as lf:
    lf.writelines(f"./{p}\n" for p in files)
listed = os.path.join(base, "list.json")
run("stats", "--list", os.path.join(data, "list.txt"), "--size", 16, "-q", "--force", "-o", listed)
check(load(listed)["covers"] == f["covers"], "a list of the same files has the folder's covers")
os.remove(os.path.join(data, "list.txt"))
p = run("merge", listed, full, expect=2)
check("covers files that" in p.stderr and listed in p.stderr, f"list + folder refused: {p.stderr!r}")

# 2. A full run plus one of its shards.
s1 = stats("s1of4.json", "data", "--shard", "1/4")
check(load(s1)["covers"] == [dict(f["covers"][0], shards=["1/4"])] and load(s1)["shard"] == {"index": 1, "count": 4},
      f"a shard's covers: {load(s1)['covers']}")
p = run("merge", full, s1, expect=2)
check(f"{s1}: covers files that {full} covers too (all 40 files and shard 1/4" in p.stderr, f"full + shard refused: {p.stderr!r}")

# 3. Shards of different splits: 0/2 and 1/3 share files (4, 10, ...); 0/2, 1/4 and 3/4 do not.
h0 = stats("h0of2.json", "data", "--shard", "0/2")
t1 = stats("t1of3.json", "data", "--shard", "1/3")
p = run("merge", h0, t1, expect=2)
check(h0 in p.stderr and t1 in p.stderr and "shard 0/2 and shard 1/3 of the same selection (40 files)" in p.stderr,
      f"0/2 + 1/3 refused: {p.stderr!r}")
q1 = stats("q1of4.json", "data", "--shard", "1/4")
q3 = stats("q3of4.json", "data", "--shard", "3/4", "--threads", 3)
mixed = os.path.join(base, "mixed.json")
p = run("merge", q3, h0, q1, "-o", mixed, "--force")
check(open(mixed, "rb").read() == open(full, "rb").read() and "warning" not in p.stderr,
      f"0/2 + 1/4 + 3/4 are disjoint and whole: byte-identical to the single run ({p.stderr!r})")

# 4. Two different datasets both spelled "data" (disjoint files, same classes) are merged.
for side, keep in (("x", 0), ("y", 1)):
    root = os.path.join(base, side, "data")
    for i, rel in enumerate(files):
        if i % 2 == keep:
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            shutil.copy(os.path.join(data, rel), os.path.join(root, rel))
x = stats("x.json", "data", cwd=os.path.join(base, "x"))
y = stats("y.json", "data", cwd=os.path.join(base, "y"))
xy = os.path.join(base, "xy.json")
p = run("merge", x, y, "-o", xy, "--force")
m = load(xy)
check("different selection of 'data'" in p.stderr, f"same name, different files: warned about: {p.stderr!r}")
check(sorted(c["selection"] for c in m["covers"]) == sorted([load(x)["covers"][0]["selection"], load(y)["covers"][0]["selection"]])
      and all("shards" not in c for c in m["covers"]), f"the union records both selections: {m['covers']}")
check(m["sums"] == f["sums"] and m["histograms"] == f["histograms"] and m["counts"]["images"] == 40,
      "the union of the two halves has the sums of the whole dataset")
p = run("merge", xy, x, expect=2)
check(f"{x}: covers files that {xy} covers too" in p.stderr, f"a merged union + one of its parts refused: {p.stderr!r}")

# 5. Missing shards are named, and recorded; the rest can be merged in later.
parts = [stats(f"p{i}of4.json", "data", "--shard", f"{i}/4") for i in range(4)]
half = os.path.join(base, "half.json")
p = run("merge", parts[2], parts[0], "-o", half, "--force")
check("2 of 4 shards of data merged (missing 1/4, 3/4)" in p.stderr, f"missing shards named: {p.stderr!r}")
hj = load(half)
check(hj["covers"] == [dict(f["covers"][0], shards=["0/4", "2/4"])] and "shard" not in hj,
      f"a partial merge records its shards: {hj['covers']}")
check(hj["counts"]["files_found"] == 20, "a partial merge counts its files")
p = run("merge", half, parts[0], expect=2)
check(f"{parts[0]}: covers files that {half} covers too (shard 0/4 and shard 0/4" in p.stderr, f"re-merging a shard refused: {p.stderr!r}")
rest = os.path.join(base, "rest.json")
run("merge", half, parts[3], parts[1], "-o", rest, "--force")
check(open(rest, "rb").read() == open(full, "rb").read(), "partial merge + the missing shards = the single run, byte for byte")
one = os.path.join(base, "one.json")
run("merge", parts[1], "-o", one, "--force")
check(load(one)["shard"] == {"index": 1, "count": 4}, "merging one shard keeps it a shard")

# 6. Older files without "covers": merged with a warning; the result does not claim a coverage.
old = []
for i in (0, 1):
    j = load(parts[i])
    del j["covers"]
    old.append(os.path.join(base, f"old{i}.json"))
    with open(old[-1], "w") as o:
        json.dump(j, o)
oldm = os.path.join(base, "oldm.json")
p = run("merge", old[0], old[1], parts[2], "-o", oldm, "--force")
check(f"{old[0]}: does not record which files it covers" in p.stderr and f"{old[1]}: does not" in p.stderr,
      f"files without covers are warned about: {p.stderr!r}")
check("covers" not in load(oldm) and load(oldm)["counts"]["images"] == sum(load(parts[i])["counts"]["images"] for i in range(3)),
      "the merge of files without covers records none")
p = run("merge", old[0], old[0], expect=2)
check("merging would count it twice" in p.stderr, f"an old file twice is still refused: {p.stderr!r}")

# 7. "recipes differ" names the field, as normalize does.
big = os.path.join(base, "big.json")
run("stats", "data", "--size", 24, "--shard", "1/2", "-q", "--force", "-o", big, cwd=base)
p = run("merge", h0, big, expect=2)
check(f"{big}: cannot merge statistics: recipes differ (size 16x16 vs 24x24)" in p.stderr, f"recipe field named: {p.stderr!r}")
bgr = os.path.join(base, "bgr.json")
run("stats", "data", "--size", 16, "--channels", "bgr", "--shard", "1/2", "-q", "--force", "-o", bgr, cwd=base)
p = run("merge", h0, bgr, expect=2)
check("recipes differ (channels rgb vs bgr)" in p.stderr, f"channel order named: {p.stderr!r}")

# 8. A hand-edited "covers" is refused by the reader.
j = load(s1)
j["covers"][0]["shards"] = ["1/4", "5/8"]
bad = os.path.join(base, "bad.json")
with open(bad, "w") as o:
    json.dump(j, o)
p = run("merge", bad, expect=1)
check(f"{bad}: field 'covers.shards' lists overlapping shards (1/4 and 5/8)" in p.stderr, f"overlapping shards refused: {p.stderr!r}")
j["covers"][0]["shards"] = ["1/2"]
with open(bad, "w") as o:
    json.dump(j, o)
p = run("merge", bad, expect=1)
check("field 'covers' accounts for 20 files, 'counts.files_found' is 10" in p.stderr, f"covers vs files_found: {p.stderr!r}")
finish()
