"""Stats.patch, patch_count, patch_mean and patch_covariance: the K×K patch moments of
stats(patch=K) (stats.json sums.patch) in Python, against a numpy brute force over every patch of a
few small images written here."""
import os
import pickle

import cv2
import numpy as np
import pytest

import imgnorm
import util


def brute(images, k, ddof):
    """(count, mean (K, K, C), covariance (D, D)) of every K×K patch inside its image: sums in
    Python ints, one division, as the docs define them."""
    patches = [img[y:y + k, x:x + k, :].reshape(-1)
               for img in images
               for y in range(img.shape[0] - k + 1)
               for x in range(img.shape[1] - k + 1)]
    v = np.array(patches, dtype=object)  # exact integer sums
    n = len(patches)
    s = v.sum(axis=0)
    q = v.T.dot(v)
    cov = np.array((n * q - np.outer(s, s)) / (n * (n - ddof)), dtype=np.float64)
    mean = np.array(s / n, dtype=np.float64).reshape(k, k, images[0].shape[2])
    return n, mean, cov


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """4 RGB PNGs of 9×11 (random walks along x: correlated neighbours) in class folder a/; the
    pixels as imgnorm reads them (RGB)."""
    root = tmp_path_factory.mktemp("patch-stats")
    os.makedirs(root / "a")
    rng = np.random.default_rng(7)
    steps = rng.integers(-40, 41, (4, 9, 11, 3))
    imgs = np.clip(np.cumsum(steps, axis=2) + 128, 0, 255).astype(np.uint8)
    for i, img in enumerate(imgs):
        assert cv2.imwrite(str(root / "a" / f"{i}.png"), img[..., ::-1])  # cv2 writes BGR
    return str(root), list(imgs)


@pytest.mark.parametrize("k,ddof", [(3, 0), (5, 1)])
def test_patch_moments_equal_numpy_brute_force(folder, tmp_path, k, ddof):
    root, imgs = folder
    s = imgnorm.stats(root, resize="none", patch=k, ddof=ddof, threads=2)
    n, mean, cov = brute(imgs, k, ddof)
    d = k * k * 3
    assert s.patch == k and s.patch_count == n == 4 * (9 - k + 1) * (11 - k + 1)
    assert s.patch_mean.shape == (k, k, 3) and s.patch_mean.dtype == np.float64
    np.testing.assert_allclose(s.patch_mean, mean, rtol=1e-15, atol=0)
    assert s.patch_covariance.shape == (d, d) and s.patch_covariance.dtype == np.float64
    np.testing.assert_allclose(s.patch_covariance, cov, rtol=1e-13, atol=1e-12)
    # The centre pixel's own channel covariance is the 3×3 block at the centre offset.
    c = (k // 2 * k + k // 2) * 3
    centre = np.cov(np.concatenate([im[k // 2:im.shape[0] - k // 2, k // 2:im.shape[1] - k // 2]
                                    .reshape(-1, 3) for im in imgs]).T.astype(np.float64),
                    ddof=ddof)
    np.testing.assert_allclose(s.patch_covariance[c:c + 3, c:c + 3], centre, rtol=1e-12)
    # The same numbers through stats.json (sums.patch), pickling and the CLI.
    path = str(tmp_path / "s.json")
    s.save(path)
    cli_path = str(tmp_path / "cli.json")
    util.cli("stats", root, "--resize", "none", "--patch", k, "--ddof", ddof, "-o", cli_path, "-q")
    for t in (imgnorm.Stats.load(path), pickle.loads(pickle.dumps(s)),
              imgnorm.Stats.load(cli_path)):
        assert t.patch == k and t.patch_count == n
        assert np.array_equal(t.patch_mean, s.patch_mean)
        assert np.array_equal(t.patch_covariance, s.patch_covariance)
    assert util.load_json(path)["sums"]["patch"]["count"] == n


def test_patch_covariance_is_what_zca_patch_whitens(folder, tmp_path):
    """normalize(mode="zca-patch") uses these moments: its filter is the centre rows of
    U·diag(1/√(λ + ε·255²))·Uᵀ of Stats.patch_covariance, around Stats.patch_mean."""
    root, _ = folder
    s = imgnorm.stats(root, resize="none", patch=3)
    out = str(tmp_path / "out")
    util.cli("normalize", root, "--resize", "none", "--fit", "--mode", "zca-patch", "--patch", 3,
             "--no-labels", "-o", out, "-q")
    m = util.load_json(os.path.join(out, "manifest.json"))
    np.testing.assert_allclose(m["patch_mean"], s.patch_mean.reshape(-1), rtol=1e-15)
    lam, u = np.linalg.eigh(s.patch_covariance)
    w = u @ np.diag(1 / np.sqrt(lam + m["eps"] * 255 ** 2)) @ u.T
    np.testing.assert_allclose(m["patch_filter"], w[12:15], rtol=1e-9, atol=1e-12)


def test_without_patch_moments_they_are_none(flowers):
    s = imgnorm.stats(flowers, size=8)
    assert (s.patch, s.patch_count, s.patch_mean, s.patch_covariance) == (None, None, None, None)


def test_one_patch_has_no_sample_covariance(tmp_path):
    """One 3×3 image and K = 3: a single patch, so its mean exists but a ddof-1 covariance does
    not: None, not an exception (ddof 0: the zero matrix)."""
    one = tmp_path / "one"
    os.makedirs(one / "a")
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)
    assert cv2.imwrite(str(one / "a" / "0.png"), img)
    s = imgnorm.stats(str(one), resize="none", patch=3, ddof=1)
    assert s.patch_count == 1 and s.patch_covariance is None
    np.testing.assert_array_equal(s.patch_mean, img[..., ::-1].astype(np.float64))
    s = imgnorm.stats(str(one), resize="none", patch=3, ddof=0)
    assert s.patch_covariance.shape == (27, 27) and not s.patch_covariance.any()
