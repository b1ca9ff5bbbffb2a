#!/usr/bin/env python3
"""imgnorm stats --threads / --shard and imgnorm merge through the CLI: identical bytes whatever the
thread count, merged shards byte-identical to one run, a shard given twice refused, a missing shard
warned about."""
import json
import os

from common import SOURCE, WORK, check, finish, run

root = os.path.join(SOURCE, "examples", "flowers")
out = os.path.join(WORK, "merge")
os.makedirs(out, exist_ok=True)


def stats(name, *extra):
    path = os.path.join(out, name)
    run("stats", root, "--size", 48, "-q", "--force", "-o", path, *extra)
    return open(path, "rb").read()


single = {t: stats(f"t{t}.json", "--threads", t) for t in (1, 2, 8)}
check(single[1] == single[2] == single[8], "stats.json is byte-identical for --threads 1, 2, 8")
parts = [os.path.join(out, f"s{i}.json") for i in range(4)]
for i in range(4):
    stats(f"s{i}.json", "--shard", f"{i}/4", "--threads", 1 + i % 2)
merged = os.path.join(out, "merged.json")
run("merge", *parts, "-o", merged, "--force", "--format", "json")
check(open(merged, "rb").read() == single[1], "4 merged shards are byte-identical to the single run")
m = json.load(open(merged))
check(m["counts"]["images"] == json.load(open(os.path.join(out, "t1.json")))["counts"]["images"], "merged image count")

p = run("merge", parts[0], parts[1], parts[1], expect=2)
check("twice" in p.stderr and parts[1] in p.stderr, f"a shard given twice is refused: {p.stderr!r}")
p = run("merge", parts[0], parts[1], parts[2])
check("3 of 4 shards" in p.stderr, f"a missing shard is warned about: {p.stderr!r}")
p = run("merge", parts[0], parts[1], "-o", merged, expect=1)
check("already exists" in p.stderr, "merge does not replace an output without --force")
finish()
