"""imgnorm.Normalizer with mode="zca" and mode="pca" (issue 13): the size follows from the
statistics' pixel covariance (D = H·W·C); rows against a numpy float64 reference (as in
test_zca_full.py) and identical to imgnorm.normalize(..., mode=...) of the same array; a
wrong-size image is refused naming both sizes."""
import os
import pickle

import cv2
import numpy as np
import pytest

import imgnorm


def _pixels(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _reference(x, ddof, eps):
    """μ, the whitening eigen-decomposition and the zca rows of x (N×D u8) in float64."""
    x = x.reshape(len(x), -1).astype(np.float64)
    mu = x.mean(axis=0) / 255.0
    cov = np.cov(x / 255.0, rowvar=False, ddof=ddof)
    lam, u = np.linalg.eigh(cov)
    w = u @ np.diag(1.0 / np.sqrt(lam + eps)) @ u.T
    return mu, lam, u, (x / 255.0 - mu) @ w.T


def _folder(x, path):
    """x (N,H,W,3 RGB) as PNG files, in name order."""
    os.makedirs(path)
    for i, im in enumerate(x):
        cv2.imwrite(os.path.join(path, "%03d.png" % i), im[:, :, ::-1])
    return path


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    # 4×4 RGB, D = 48 < 80 images: a regular covariance; their own size (resize none).
    x = _pixels(80, 4)
    folder = _folder(x, str(tmp_path_factory.mktemp("full") / "train"))
    return x, imgnorm.stats(folder, resize="none", pixel_covariance=True)


def test_normalizer_zca_matches_numpy_and_normalize(train):
    x, s = train
    norm = imgnorm.Normalizer(s, mode="zca")
    y = norm(x)
    assert y.shape == x.shape and y.dtype == np.float32
    _, _, _, ref = _reference(x, 0, 1e-5)
    got = y.reshape(len(y), -1).astype(np.float64)
    assert np.abs(got - ref).max() <= 1e-6 * np.abs(ref).max()
    # The rows of imgnorm.normalize, byte for byte; one image (H,W,C) as the batch's row.
    want, _ = imgnorm.normalize(x, stats=s, mode="zca")
    assert np.array_equal(y, want)
    assert np.array_equal(norm(x[3]), want[3])
    # Other images of the same size (test data), NCHW: the same rows, moved.
    t = _pixels(5, 4, seed=1)
    nchw = imgnorm.Normalizer(s, mode="zca", layout="nchw")(t)
    want_t, _ = imgnorm.normalize(t, stats=s, mode="zca", layout="nchw")
    assert nchw.shape == (5, 3, 4, 4) and np.array_equal(nchw, want_t)
    assert norm.mode == "zca"
    # Pickled (DataLoader workers): the statistics travel with their pixel covariance.
    assert np.array_equal(pickle.loads(pickle.dumps(norm))(x), y)
    assert np.array_equal(pickle.loads(pickle.dumps(s)).pixel_covariance, s.pixel_covariance)


def test_normalizer_pca_components_matches_numpy_and_normalize(train):
    x, s = train
    k = 6
    norm = imgnorm.Normalizer(s, mode="pca", components=k)
    y = norm(x)
    assert y.shape == (len(x), k) and y.dtype == np.float32
    mu, lam, u, _ = _reference(x, 0, 1e-5)
    order = np.argsort(lam)[::-1][:k]
    comps = u[:, order].T  # K×D, each with its largest component positive (the CLI's sign)
    comps *= np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])[:, None]
    ref = (x.reshape(len(x), -1) / 255.0 - mu) @ comps.T / np.sqrt(lam[order] + 1e-5)
    assert np.abs(y.astype(np.float64) - ref).max() <= 1e-5 * np.abs(ref).max()
    want, _ = imgnorm.normalize(x, stats=s, mode="pca", components=k)
    assert np.array_equal(y, want)
    assert norm(x[0]).shape == (k,) and np.array_equal(norm(x[0]), want[0])
    raw = imgnorm.Normalizer(s, mode="pca", components=k, whiten=False)(x)
    want_raw, _ = imgnorm.normalize(x, stats=s, mode="pca", components=k, whiten=False)
    assert np.array_equal(raw, want_raw)


def test_normalizer_refuses_another_size_naming_both(train):
    _, s = train
    norm = imgnorm.Normalizer(s, mode="zca")
    with pytest.raises(imgnorm.ArgumentError,
                       match=r"the pixel covariance is of 4x4x3 images \(D = 48\), not 5x5x3 "
                             r"\(D = 75\): zca whitens images of the statistics' size only"):
        norm(_pixels(2, 5))


def test_normalizer_needs_the_pixel_covariance(tmp_path):
    s = imgnorm.stats(_folder(_pixels(10, 4), str(tmp_path / "plain")), resize="none")
    with pytest.raises(imgnorm.ArgumentError, match="has no pixel covariance, which --mode pca needs"):
        imgnorm.Normalizer(s, mode="pca")
