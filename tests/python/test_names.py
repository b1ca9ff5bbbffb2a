"""Names that are not UTF-8 in the Python package: paths go in as str (os.fsdecode'd), bytes or
pathlib, names come back as os.fsdecode gives them (os.fsencode restores the bytes), the same as
json.load of the files the CLI writes; error messages and warnings stay one line of valid text."""
import json
import os
import pathlib
import warnings

import cv2
import numpy as np
import pytest

import imgnorm

CLASSES = [b"bad\xff\x80", b"good", b"nl\nx"]


@pytest.fixture()
def dataset(tmp_path):
    ds = os.path.join(os.fsencode(tmp_path), b"ds\xfe")
    rng = np.random.default_rng(3)
    for cls in CLASSES:
        os.makedirs(os.path.join(ds, cls))
        for name in [b"a.png", b"b\xff.png", b"c\nd.png"]:
            bgr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            with open(os.path.join(ds, cls, name), "wb") as f:
                f.write(cv2.imencode(".png", bgr)[1].tobytes())
    with open(os.path.join(ds, CLASSES[0], b"broken\x80.jpg"), "wb") as f:
        f.write(b"not an image")
    return ds


def test_stats_names_are_fsdecoded_and_round_trip(dataset, tmp_path):
    s = imgnorm.stats(os.fsdecode(dataset), size=8, threads=1)
    assert s.classes == [os.fsdecode(c) for c in CLASSES]
    assert [os.fsencode(c) for c in s.classes] == CLASSES
    assert os.fsencode(s.source) == dataset
    broken = os.path.join(dataset, CLASSES[0], b"broken\x80.jpg")
    assert [os.fsencode(p) for p, _ in s.skipped] == [broken]
    # bytes and pathlib paths are the same dataset
    assert imgnorm.stats(dataset, size=8, threads=1).to_json() == s.to_json()
    assert imgnorm.stats(pathlib.Path(os.fsdecode(dataset)), size=8, threads=1).to_json() == s.to_json()
    # save/load under a name that is not UTF-8; json.load gives the same str
    path = os.path.join(os.fsencode(tmp_path), b"s\xff\n.json")
    s.save(path)
    back = imgnorm.Stats.load(os.fsdecode(path))
    assert back.classes == s.classes and back.skipped == s.skipped
    with open(path) as f:
        j = json.load(f)
    assert j["classes"] == s.classes and j["skipped"][0]["path"] == s.skipped[0][0]


def test_normalize_files_are_fsdecoded(dataset, tmp_path):
    s = imgnorm.stats(dataset, size=8, threads=1)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        x, y = imgnorm.normalize(dataset, stats=s)
    assert x.shape == (9, 8, 8, 3)
    message = str(w[0].message)
    assert "\n" not in message and "broken\\x80.jpg" in message, message
    out = os.path.join(os.fsencode(tmp_path), b"out\xff")
    rows, skipped = imgnorm.normalize(os.fsdecode(dataset), stats=s, out=out)
    assert rows == 9 and [os.fsencode(p) for p, _ in skipped] == [os.path.join(dataset, CLASSES[0], b"broken\x80.jpg")]
    with open(os.path.join(out, b"manifest.json")) as f:
        m = json.load(f)
    files = [os.fsencode(f["path"]) for f in m["files"]]
    assert all(os.path.isfile(p) for p in files) and len(files) == 9
    loader = imgnorm.Loader(dataset, stats=s, batch_size=4)
    assert [os.fsencode(p) for p in loader.files if "broken" not in p] == files
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert sum(len(b[0]) for b in loader) == 9
    message = str(w[0].message)
    assert "\n" not in message and "broken\\x80.jpg" in message, message
    assert [os.fsencode(p) for p, _ in loader.skipped] == [os.path.join(dataset, CLASSES[0], b"broken\x80.jpg")]


def test_errors_name_the_file_on_one_line(tmp_path):
    missing = os.path.join(os.fsencode(tmp_path), b"no\nsuch\xff")
    with pytest.raises(imgnorm.FileError) as e:
        imgnorm.Stats.load(missing)
    assert "no\\nsuch\\xff" in str(e.value) and "\n" not in str(e.value)
