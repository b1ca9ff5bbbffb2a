"""Scanning from Python (issue 10, items 7, 14, 16, 20): follow_links=, warnings for classes without
images and for a sample as big as the dataset, resize="none" at the images' own size."""
import os
import warnings

import cv2
import numpy as np
import pytest

import imgnorm


def png(path, w, h, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture()
def linked(tmp_path):
    png(tmp_path / "outside" / "o.png", 8, 8, 1)
    png(tmp_path / "ds" / "cat" / "1.png", 8, 8, 2)
    os.symlink(tmp_path / "outside", tmp_path / "ds" / "dog")
    return tmp_path / "ds"


def test_follow_links_keyword(linked):
    with pytest.warns(UserWarning, match="class 'dog' has no usable image"):
        s = imgnorm.stats(linked, size=8)
    assert s.images == 1 and s.classes == ["cat", "dog"]
    assert s.ignored == [(str(linked / "dog"),
                          "symlink out of the dataset folder (--follow-links follows it)")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = imgnorm.stats(linked, size=8, follow_links=True)
        x, y = imgnorm.normalize(linked, fit=True, mode="scale", size=8, follow_links=True)
    assert s.images == 2 and s.ignored == []
    assert x.shape == (2, 8, 8, 3) and y.tolist() == [0, 1]
    with pytest.warns(UserWarning, match="class 'dog' has no usable image"):
        x, y = imgnorm.normalize(linked, fit=True, mode="scale", size=8)
    assert x.shape == (1, 8, 8, 3)


def test_sample_of_the_whole_dataset_warns(linked):
    with pytest.warns(UserWarning, match="--sample 50 takes all 2 images: the sample is the whole"):
        imgnorm.stats(linked, size=8, sample=50, follow_links=True)


def test_resize_none_is_the_images_size(tmp_path):
    imgs = []
    for i in range(4):
        png(tmp_path / "c" / f"{i}.png", 12, 10, i)
        imgs.append(cv2.imread(str(tmp_path / "c" / f"{i}.png"))[:, :, ::-1])
    s = imgnorm.stats(tmp_path, resize="none")
    assert s.images == 4
    np.testing.assert_allclose(s.mean, np.stack(imgs).reshape(-1, 3).mean(axis=0), rtol=0, atol=1e-9)
    x, _ = imgnorm.normalize(tmp_path, stats=s, mode="scale")
    assert x.shape == (4, 10, 12, 3)
    np.testing.assert_array_equal(x, (np.stack(imgs) / 255).astype(np.float32))
    png(tmp_path / "c" / "9.png", 10, 10, 9)
    with pytest.raises(imgnorm.ArgumentError, match=r"9.png: image is 10x10, not 12x10 \(--resize none"):
        imgnorm.stats(tmp_path, resize="none")
