"""Stats.covers and imgnorm.merge's overlap rules (issue 10, item 3), against the CLI's stats.json."""
import json
import warnings

import pytest

import imgnorm


def test_covers_matches_stats_json(tmp_path, flowers):
    part = imgnorm.stats(flowers, size=16, shard="1/4")
    path = str(tmp_path / "p.json")
    part.save(path)
    on_disk = json.load(open(path))["covers"]
    assert [dict(c, shards=[f"{i}/{n}" for i, n in c["shards"]]) for c in part.covers] == \
        [dict(c, shards=c.get("shards", [])) for c in on_disk]
    assert part.covers[0]["shards"] == [(1, 4)] and part.covers[0]["files"] == 40
    whole = imgnorm.stats(flowers, size=16)
    assert whole.covers == [dict(part.covers[0], shards=[])]
    assert imgnorm.Stats.load(path).covers == part.covers


def test_merge_refuses_overlaps_and_names_missing_shards(flowers):
    whole = imgnorm.stats(flowers, size=16)
    half = imgnorm.stats(flowers, size=16, shard="0/2")
    third = imgnorm.stats(flowers, size=16, shard="1/3")
    with pytest.raises(imgnorm.ArgumentError, match=r"stats #1 .* covers files that stats #0 .* covers too "
                       r"\(all 40 files and shard 0/2 of the same selection \(40 files\)\)"):
        imgnorm.merge([whole, half])
    with pytest.raises(imgnorm.ArgumentError, match=r"shard 0/2 and shard 1/3 of the same selection"):
        imgnorm.merge([half, third])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = imgnorm.merge([half])
    assert [str(x.message) for x in w] == [f"1 of 2 shards of {flowers} merged (missing 1/2)"]
    assert m.covers[0]["shards"] == [(0, 2)] and m.shard == (0, 2)
    assert imgnorm.merge([m, imgnorm.stats(flowers, size=16, shard="1/2")]).to_json() == whole.to_json()
