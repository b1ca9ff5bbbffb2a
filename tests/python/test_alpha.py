"""alpha= (issue 10, item 21): the Python keyword of --alpha, on every job that takes a recipe."""
import json
import os

import cv2
import numpy as np
import pytest

import imgnorm
import util


@pytest.fixture(scope="module")
def clipart(tmp_path_factory):
    """Two 16x16 RGBA PNGs: an opaque square with a half-transparent edge on transparent black."""
    d = tmp_path_factory.mktemp("clipart")
    os.makedirs(d / "shapes")
    art = np.zeros((16, 16, 4), np.uint8)
    art[4:12, 4:12] = (40, 160, 220, 255)  # BGRA
    art[4:12, 12] = (40, 160, 220, 128)
    for i in range(2):
        cv2.imwrite(str(d / "shapes" / f"s{i}.png"), np.roll(art, i, axis=1))
    return d


def composite(file, bg):
    """Reference: RGBA from cv2.imread(IMREAD_UNCHANGED), (c*a + bg*(255 - a)) / 255 rounded."""
    bgra = cv2.imread(str(file), cv2.IMREAD_UNCHANGED).astype(np.int64)
    c, a = bgra[..., [2, 1, 0]], bgra[..., 3:]
    return ((c * a + np.array(bg) * (255 - a) + 127) // 255).astype(np.uint8)


def test_load(clipart):
    f = clipart / "shapes" / "s0.png"
    np.testing.assert_array_equal(imgnorm.load(f, size=16, alpha="white"), composite(f, (255, 255, 255)))
    np.testing.assert_array_equal(imgnorm.load(f, size=16, alpha=(10, 20, 30)), composite(f, (10, 20, 30)))
    np.testing.assert_array_equal(imgnorm.load(f, size=16), cv2.imread(str(f))[..., ::-1])
    with pytest.raises(imgnorm.ArgumentError, match=r"invalid alpha 'grey' \(expected drop\|white\|black\|R,G,B"):
        imgnorm.load(f, alpha="grey")


def test_stats_records_alpha_as_the_cli(clipart, tmp_path):
    s = imgnorm.stats(clipart, size=16, alpha=(255, 255, 255))
    assert s.recipe["alpha"] == "white"
    assert imgnorm.stats(clipart, size=16).recipe["alpha"] == "drop"
    util.cli("stats", clipart, "--size", 16, "--alpha", "white", "-o", tmp_path / "cli.json", "-q")
    s.save(str(tmp_path / "py.json"))
    assert util.load_json(tmp_path / "py.json")["recipe"] == util.load_json(tmp_path / "cli.json")["recipe"]
    ref = np.stack([composite(f, (255, 255, 255)) for f in sorted((clipart / "shapes").iterdir())])
    np.testing.assert_allclose(s.mean, ref.reshape(-1, 3).mean(axis=0), rtol=0, atol=1e-9)


def test_normalize_and_loader_use_the_training_alpha(clipart):
    s = imgnorm.stats(clipart, size=16, alpha="white")
    x, _ = imgnorm.normalize(clipart, stats=s, mode="scale")
    ref = np.stack([composite(f, (255, 255, 255)) for f in sorted((clipart / "shapes").iterdir())])
    np.testing.assert_array_equal(x, (ref / 255).astype(np.float32))
    batch = next(iter(imgnorm.Loader(clipart, stats=s, dtype="uint8", batch_size=2)))
    np.testing.assert_array_equal(batch[0], ref)
    # An explicit alpha= overrides the training recipe, with the CLI's warning.
    with pytest.warns(UserWarning, match=r"alpha white vs drop"):
        y, _ = imgnorm.normalize(clipart, stats=s, mode="scale", alpha="drop")
    assert y[0].max() > 0 and y[0, 0, 0].tolist() == [0, 0, 0]
