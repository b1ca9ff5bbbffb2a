"""normalize(out=DIR, output_shards=True): one shard, images-00000.npy and labels-00000.npy listed
in manifest.json's "shards", equal to the images.npy and labels.npy of out=DIR (issue 14)."""
import json
import os

import numpy as np

import imgnorm


def test_output_shards_writes_one_shard_equal_to_images_npy(tmp_path, photos, photo_stats):
    stats, _ = photo_stats
    single, shards = str(tmp_path / "single"), str(tmp_path / "shards")
    rows, _ = imgnorm.normalize(photos, stats=stats, out=single, threads=2)
    rows2, _ = imgnorm.normalize(photos, stats=stats, out=shards, output_shards=True, threads=2)
    assert rows2 == rows
    assert sorted(os.listdir(shards)) == ["images-00000.npy", "labels-00000.npy", "manifest.json"]
    m = json.load(open(os.path.join(shards, "manifest.json")))
    assert m["shards"] == [{"images": "images-00000.npy", "labels": "labels-00000.npy", "rows": rows}]
    assert np.load(os.path.join(shards, "images-00000.npy")).tobytes() == \
        np.load(os.path.join(single, "images.npy")).tobytes()
    assert np.array_equal(np.load(os.path.join(shards, "labels-00000.npy")),
                          np.load(os.path.join(single, "labels.npy")))
