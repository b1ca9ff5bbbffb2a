"""Channel PCA/ZCA (normalize --mode zca-channels / pca-channels, stats.json eigen-decomposition,
--format lighting) against numpy float64 references computed here from the pipeline's pixels."""
import json
import os

import numpy as np
import pytest

import imgnorm
from util import cli, load_json


def pipeline_pixels(root, files, size):
    """The u8 pixels the pipeline sees (imgnorm.load, itself tested against cv2), (N*H*W, 3)."""
    return np.stack([imgnorm.load(f, size=size) for f in files]).reshape(-1, 3).astype(np.float64)


def signed(vectors):
    """imgnorm's sign convention: each column's largest-magnitude component positive."""
    v = vectors.copy()
    for k in range(v.shape[1]):
        if v[np.argmax(np.abs(v[:, k])), k] < 0:
            v[:, k] = -v[:, k]
    return v


@pytest.fixture(scope="module")
def setup(tmp_path_factory, photos):
    work = tmp_path_factory.mktemp("whitening")
    stats_path = str(work / "stats.json")
    cli("stats", photos, "--size", "24", "-o", stats_path, "-q")
    st = load_json(stats_path)
    _, _, files, _ = imgnorm._core.normalize(photos, dict(mode="scale", size=24), None)
    x = pipeline_pixels(photos, files, 24)
    return work, stats_path, st, files, x, photos


def test_stats_json_eigen_decomposition_equals_numpy(setup):
    _, _, st, _, x, _ = setup
    cov = np.cov(x.T, bias=True)
    w, v = np.linalg.eigh(cov)
    w, v = w[::-1], signed(v[:, ::-1])
    np.testing.assert_allclose(st["eigenvalues"], w, rtol=1e-9)
    np.testing.assert_allclose(st["eigenvalues_unit"], w / 255 ** 2, rtol=1e-9)
    np.testing.assert_allclose(np.array(st["eigenvectors"]), v, atol=1e-9)


@pytest.mark.parametrize("mode", ["zca-channels", "pca-channels"])
@pytest.mark.parametrize("eps", [None, "0", "0.01"])
def test_whitening_equals_numpy(setup, mode, eps):
    work, stats_path, _, files, x, root = setup
    out = str(work / f"{mode}-{eps}")
    args = ["normalize", root, "--stats", stats_path, "--mode", mode, "-o", out, "-q", "--force"]
    if eps is not None:
        args += ["--eps", eps]
    cli(*args)
    got = np.load(os.path.join(out, "images.npy")).reshape(-1, 3).astype(np.float64)
    mu = x.mean(axis=0)
    e = (1e-5 if eps is None else float(eps)) * 255 ** 2
    w, v = np.linalg.eigh(np.cov(x.T, bias=True))
    w, v = w[::-1], signed(v[:, ::-1])
    if mode == "zca-channels":
        W = v @ np.diag(1 / np.sqrt(w + e)) @ v.T
    else:
        W = np.diag(1 / np.sqrt(w + e)) @ v.T
    ref = (x - mu) @ W.T
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    if eps == "0":  # whitened training data: identity covariance (float32 rounding aside)
        np.testing.assert_allclose(np.cov(got.T, bias=True), np.eye(3), atol=1e-5)
    man = load_json(os.path.join(out, "manifest.json"))
    assert man["mode"] == mode and man["eps"] == (1e-5 if eps is None else float(eps))
    np.testing.assert_allclose(np.array(man["matrix"]), W, rtol=1e-9, atol=1e-12)
    # denormalize inverts it exactly (back to the pipeline's pixels)
    cli("denormalize", os.path.join(out, "images.npy"), "-o", os.path.join(out, "px.npy"))
    back = np.load(os.path.join(out, "px.npy")).reshape(-1, 3).astype(np.float64)
    assert np.array_equal(back, x)


def test_python_normalizer_equals_cli(setup):
    work, stats_path, _, files, x, root = setup
    for mode in ("zca-channels", "pca-channels"):
        out = str(work / f"py-{mode}")
        cli("normalize", root, "--stats", stats_path, "--mode", mode, "-o", out, "-q")
        xs, _ = imgnorm.normalize(root, stats=stats_path, mode=mode, progress=False)
        assert xs.tobytes() == np.load(os.path.join(out, "images.npy")).tobytes()


def test_pca_refuses_channels_and_lighting_prints_the_decomposition(setup):
    work, stats_path, st, files, _, root = setup
    p = cli("normalize", root, "--stats", stats_path, "--mode", "pca-channels", "--channels", "bgr",
            "-o", str(work / "bad"), "-q", expect=2)
    assert "principal components" in p.stderr
    assert not os.path.exists(str(work / "bad"))
    text = cli("merge", stats_path, "--format", "lighting").stdout
    ns = {}
    exec(text, ns)  # the printed lines are Python assignments
    np.testing.assert_allclose(ns["eigval"], st["eigenvalues_unit"], rtol=1e-5)
    np.testing.assert_allclose(ns["eigval_sqrt"], np.sqrt(st["eigenvalues_unit"]), rtol=1e-5)
    np.testing.assert_allclose(np.array(ns["eigvec"]), np.array(st["eigenvectors"]), atol=1e-6)


def test_stats_object_has_the_decomposition(setup):
    _, stats_path, st, _, _, root = setup
    s = imgnorm.stats(root, size=24, progress=False)
    assert s.eigenvalues.tolist() == st["eigenvalues"]
    assert s.eigenvectors.tolist() == st["eigenvectors"]
