"""normalize --mode zca (issue 13, part 2): full-image ZCA from the exact pixel covariance of
`stats --pixel-covariance`, checked against a numpy float64 reference written here:
y = W·(x/255 − μ), W = U·diag(1/√(λ+ε))·Uᵀ of the per-pixel covariance in 0–1 units."""
import json
import os

import numpy as np

import imgnorm
import pytest
import util
from util import FLOWERS


def _pixels(folder, size, tmp_path):
    """The pipeline's u8 pixels (rows in the manifest's order) as float64, N×D: from --mode scale,
    whose float32 x/255 rounds back to x exactly."""
    out = str(tmp_path / "scaled")
    util.cli("normalize", folder, "--size", size, "--mode", "scale", "--no-labels", "-o", out,
             "-q")
    y = np.load(os.path.join(out, "images.npy"))
    x = np.rint(y.astype(np.float64) * 255.0).reshape(len(y), -1)
    assert np.array_equal(x, np.clip(x, 0, 255))
    return x


def _reference(x, ddof, eps):
    mu = x.mean(axis=0) / 255.0
    cov = np.cov(x / 255.0, rowvar=False, ddof=ddof)
    lam, u = np.linalg.eigh(cov)
    w = u @ np.diag(1.0 / np.sqrt(lam + eps)) @ u.T
    return mu, w, (x / 255.0 - mu) @ w.T


def _stats(tmp_path, folder, size, *extra):
    path = str(tmp_path / "stats.json")
    util.cli("stats", folder, "--size", size, "--pixel-covariance", "-o", path, "-q", *extra)
    return path


def test_zca_matches_numpy_at_8x8(photos, tmp_path):
    size = 8  # D = 192 > 60 images: singular, ε decides the small directions
    x = _pixels(photos, size, tmp_path)
    stats = _stats(tmp_path, photos, size)
    out = str(tmp_path / "out")
    util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--no-labels", "-o", out,
             "-q")
    y = np.load(os.path.join(out, "images.npy"))
    assert y.shape == (len(x), size, size, 3) and y.dtype == np.float32
    mu, w, ref = _reference(x, 0, 1e-5)
    got = y.reshape(len(y), -1).astype(np.float64)
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 1e-6 * scale, np.abs(got - ref).max() / scale
    # whitening.npy: (D+1)×D float64, row 0 μ, rows 1.. W, 0–1 units; recorded in the manifest.
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["mode"] == "zca" and m["whitening"] == "whitening.npy" and m["eps"] == 1e-5
    wf = np.load(os.path.join(out, "whitening.npy"))
    assert wf.shape == (193, 192) and wf.dtype == np.float64
    assert np.allclose(wf[0], mu, rtol=0, atol=1e-12)
    assert np.abs(wf[1:] - w).max() <= 1e-6 * np.abs(w).max()


def test_zca_whitened_training_data_has_identity_covariance(photos, tmp_path):
    size = 4  # D = 48 < 60 images: a regular covariance
    x = _pixels(photos, size, tmp_path)
    stats = _stats(tmp_path, photos, size, "--ddof", "1")
    out = str(tmp_path / "out")
    # NCHW and BGR output: the same values, moved.
    util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--eps", "0", "--no-labels",
             "--layout", "nchw", "--channels", "bgr", "-o", out, "-q")
    y = np.load(os.path.join(out, "images.npy")).astype(np.float64)
    y = y[:, ::-1].transpose(0, 2, 3, 1).reshape(len(y), -1)  # back to HWC, RGB
    assert np.allclose(y.mean(axis=0), 0, atol=1e-5)
    c = np.cov(y, rowvar=False, ddof=1)
    assert np.abs(c - np.eye(c.shape[0])).max() < 1e-4
    _, _, ref = _reference(x, 1, 0.0)
    assert np.abs(y - ref).max() <= 1e-6 * np.abs(ref).max()
    # With ε the variance of a direction of eigenvalue λ is λ/(λ+ε) < 1.
    out2 = str(tmp_path / "out2")
    util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--eps", "0.01",
             "--no-labels", "-o", out2, "-q")
    y2 = np.load(os.path.join(out2, "images.npy")).astype(np.float64).reshape(len(y), -1)
    lam = np.linalg.eigvalsh(np.cov(x / 255.0, rowvar=False, ddof=1))
    assert np.allclose(np.sort(np.linalg.eigvalsh(np.cov(y2, rowvar=False, ddof=1))),
                       np.sort(lam / (lam + 0.01)), atol=1e-5)


def test_zca_threads_give_the_same_bits(photos, tmp_path):
    stats = _stats(tmp_path, photos, 8)
    outs = []
    for t in (1, 2):
        out = str(tmp_path / ("t%d" % t))
        util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--threads", t,
                 "--no-labels", "-o", out, "-q")
        outs.append(open(os.path.join(out, "images.npy"), "rb").read())
    assert outs[0] == outs[1]


def test_zca_refusals(photos, tmp_path):
    plain = str(tmp_path / "plain.json")
    util.cli("stats", photos, "--size", 8, "-o", plain, "-q")
    p = util.cli("normalize", photos, "--stats", plain, "--mode", "zca", "-o",
                 str(tmp_path / "a"), expect=2)
    assert ("plain.json: has no pixel covariance, which --mode zca needs; compute it with "
            "imgnorm stats --pixel-covariance") in p.stderr
    assert not os.path.exists(tmp_path / "a")
    stats = _stats(tmp_path, photos, 8)
    p = util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--size", 6, "-o",
                 str(tmp_path / "b"), expect=2)
    assert ("stats.json: the pixel covariance is for D = 192 values per image, the images are "
            "6x6x3 = 108") in p.stderr
    assert not os.path.exists(tmp_path / "b")
    p = util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--eps", "-1", "-o",
                 str(tmp_path / "c"), expect=2)
    assert "eps must be a number >= 0" in p.stderr
    assert not os.path.exists(tmp_path / "c")
    # denormalize reads whitening.npy: one that does not fit is refused, naming it.
    out = str(tmp_path / "d")
    util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--no-labels", "-o", out,
             "-q")
    np.save(os.path.join(out, "whitening.npy"), np.zeros((10, 192)))
    p = util.cli("denormalize", os.path.join(out, "images.npy"), "-o", str(tmp_path / "x.npy"),
                 expect=None)
    assert p.returncode != 0
    assert "whitening.npy: not the (D+1)xD float64 whitening array of" in p.stderr


def test_zca_denormalize_gives_back_the_pixels(photos, tmp_path):
    x = _pixels(photos, 8, tmp_path)
    stats = _stats(tmp_path, photos, 8)
    for extra in ([], ["--layout", "nchw", "--channels", "bgr"]):
        out = str(tmp_path / ("out%d" % len(extra)))
        util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--no-labels", "-o",
                 out, "-q", *extra)
        back = str(tmp_path / ("back%d.npy" % len(extra)))
        util.cli("denormalize", os.path.join(out, "images.npy"), "-o", back, "-q")
        b = np.load(back)
        assert b.dtype == np.uint8 and b.shape == (len(x), 8, 8, 3)
        if extra:
            b = b[..., ::-1]  # denormalize writes the output's channel order
        assert np.array_equal(b.reshape(len(x), -1).astype(np.float64), x)


def test_denormalize_in_batches_gives_back_every_row(photos, tmp_path):
    """zca and pca, 300 rows (two full batches of the kernel and a ragged tail of 44): every row exactly back,
    so no row depends on the batch it was inverted in."""
    x = _pixels(photos, 8, tmp_path)
    stats = _stats(tmp_path, photos, 8)
    rng = np.random.default_rng(5)
    rows = x[rng.integers(0, len(x), 300)].astype(np.uint8).reshape(300, 8, 8, 3)
    arr = str(tmp_path / "rows.npy")
    np.save(arr, rows)
    for mode in ("zca", "pca"):  # pca with all D components is invertible too
        out = str(tmp_path / mode)
        util.cli("normalize", arr, "--stats", stats, "--mode", mode, "-o", out, "-q")
        back = str(tmp_path / (mode + ".npy"))
        util.cli("denormalize", os.path.join(out, "images.npy"), "-o", back, "-q")
        assert np.array_equal(np.load(back), rows), mode


def test_zca_fit_equals_stats_and_warns_when_singular(photos, tmp_path):
    stats = _stats(tmp_path, photos, 8)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    pa = util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--no-labels", "-o", a)
    pb = util.cli("normalize", photos, "--size", 8, "--fit", "--mode", "zca", "--no-labels", "-o",
                  b)
    assert (open(os.path.join(a, "images.npy"), "rb").read() ==
            open(os.path.join(b, "images.npy"), "rb").read())
    assert (open(os.path.join(a, "whitening.npy"), "rb").read() ==
            open(os.path.join(b, "whitening.npy"), "rb").read())
    for p in (pa, pb):
        assert ("--mode zca: 60 images for D = 192 values per image: the pixel covariance is "
                "singular (rank at most 59), so --eps (1e-05) decides") in p.stderr
    c = str(tmp_path / "c")
    pc = util.cli("normalize", photos, "--size", 4, "--fit", "--mode", "zca", "--no-labels",
                  "-o", c)
    assert "singular" not in pc.stderr


def test_zca_fit_refuses_a_size_beyond_max_memory(photos, tmp_path):
    out = str(tmp_path / "out")
    p = util.cli("normalize", photos, "--size", 64, "--fit", "--mode", "zca", "--threads", 1,
                 "--max-memory", "100M", "--no-labels", "-o", out, expect=None)
    assert p.returncode != 0
    assert "the pixel covariance of images of D = 12288 values needs" in p.stderr, p.stderr
    assert "more than the memory limit of 100 MiB (--max-memory)" in p.stderr
    assert "--mode zca-patch" in p.stderr
    assert not os.path.exists(out)


def _signs(got, ref):
    """got with each column's sign flipped to ref's (PCA components are defined up to a sign)."""
    s = np.sign((got * ref).sum(axis=0))
    s[s == 0] = 1
    return got * s


def test_pca_matches_sklearn_with_ddof_1_and_eps_0(photos, tmp_path):
    from sklearn.decomposition import PCA

    x = _pixels(photos, 4, tmp_path)  # D = 48 < 60 images
    stats = _stats(tmp_path, photos, 4, "--ddof", "1")
    out = str(tmp_path / "out")
    util.cli("normalize", photos, "--stats", stats, "--mode", "pca", "--components", 10, "--eps",
             0, "--no-labels", "-o", out, "-q")
    y = np.load(os.path.join(out, "images.npy")).astype(np.float64)
    assert y.shape == (len(x), 10)
    ref = PCA(n_components=10, whiten=True, svd_solver="full").fit_transform(x / 255.0)
    assert np.abs(_signs(y, ref) - ref).max() <= 1e-6 * np.abs(ref).max()
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["mode"] == "pca" and m["components"] == 10 and m["whiten"] is True
    assert m["shape"] == [len(x), 10]
    assert np.load(os.path.join(out, "whitening.npy")).shape == (11, 48)


def test_pca_numpy_reference_all_components_and_no_whiten(photos, tmp_path):
    x = _pixels(photos, 8, tmp_path)  # D = 192
    stats = _stats(tmp_path, photos, 8)
    mu = x.mean(axis=0) / 255.0
    lam, u = np.linalg.eigh(np.cov(x / 255.0, rowvar=False, ddof=0))
    lam, u = lam[::-1], u[:, ::-1]
    proj = (x / 255.0 - mu) @ u
    for extra, ref, k in (([], proj / np.sqrt(lam + 1e-5), 192),
                          (["--no-whiten", "--components", 5], proj[:, :5], 5)):
        out = str(tmp_path / ("out%d" % k))
        util.cli("normalize", photos, "--stats", stats, "--mode", "pca", "--no-labels", "-o", out,
                 "-q", *extra)
        y = np.load(os.path.join(out, "images.npy")).astype(np.float64)
        assert y.shape == (len(x), k)
        # The components of the 59 non-zero eigenvalues (the rest span a null space, any basis).
        n = min(k, 50)
        assert np.abs(_signs(y[:, :n], ref[:, :n]) - ref[:, :n]).max() <= \
            1e-6 * np.abs(ref[:, :n]).max()
    # The whitened variances: λ/(λ+ε) per component, in order.
    y = np.load(os.path.join(str(tmp_path / "out192"), "images.npy")).astype(np.float64)
    assert np.allclose(y.var(axis=0), lam / (lam + 1e-5), atol=1e-5)


def test_pca_refusals(photos, tmp_path):
    stats = _stats(tmp_path, photos, 8)
    p = util.cli("normalize", photos, "--stats", stats, "--mode", "pca", "--components", 500,
                 "-o", str(tmp_path / "a"), expect=2)
    assert "--components 500: between 1 and D = 192 (the values per image)" in p.stderr
    assert not os.path.exists(tmp_path / "a")
    p = util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--components", 5,
                 "-o", str(tmp_path / "b"), expect=2)
    assert "--components applies to --mode pca, not zca" in p.stderr
    p = util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--no-whiten",
                 "-o", str(tmp_path / "b"), expect=2)
    assert "--no-whiten applies to --mode pca, not zca" in p.stderr
    p = util.cli("normalize", photos, "--stats", stats, "--mode", "pca", "--channels", "bgr",
                 "-o", str(tmp_path / "b"), expect=2)
    assert "--channels does not apply to --mode pca" in p.stderr
    plain = str(tmp_path / "plain.json")
    util.cli("stats", photos, "--size", 8, "-o", plain, "-q")
    p = util.cli("normalize", photos, "--stats", plain, "--mode", "pca", "-o",
                 str(tmp_path / "b"), expect=2)
    assert "plain.json: has no pixel covariance, which --mode pca needs" in p.stderr
    assert not os.path.exists(tmp_path / "b")


def test_pca_denormalize_all_components_and_refuses_fewer(photos, tmp_path):
    x = _pixels(photos, 4, tmp_path)
    stats = _stats(tmp_path, photos, 4)
    for extra in ([], ["--no-whiten"]):
        out = str(tmp_path / ("all%d" % len(extra)))
        util.cli("normalize", photos, "--stats", stats, "--mode", "pca", "--no-labels", "-o",
                 out, "-q", *extra)
        back = str(tmp_path / ("back%d.npy" % len(extra)))
        util.cli("denormalize", os.path.join(out, "images.npy"), "-o", back, "-q")
        b = np.load(back)
        assert b.shape == (len(x), 4, 4, 3)
        assert np.array_equal(b.reshape(len(x), -1).astype(np.float64), x)
    out = str(tmp_path / "some")
    util.cli("normalize", photos, "--stats", stats, "--mode", "pca", "--components", 7,
             "--no-labels", "-o", out, "-q")
    p = util.cli("denormalize", os.path.join(out, "images.npy"), "-o", str(tmp_path / "x.npy"),
                 expect=2)
    assert ("--mode pca kept 7 of the D = 48 components of each image; the other 41 are lost, so "
            "the images cannot be rebuilt") in p.stderr
    assert not os.path.exists(tmp_path / "x.npy")


def test_python_keywords_give_the_cli_bytes(photos, tmp_path):
    import imgnorm

    stats = _stats(tmp_path, photos, 4)
    for kw, flags in ((dict(mode="zca"), ["--mode", "zca"]),
                      (dict(mode="pca", components=6, whiten=False),
                       ["--mode", "pca", "--components", 6, "--no-whiten"])):
        out = str(tmp_path / kw["mode"])
        util.cli("normalize", photos, "--stats", stats, "--no-labels", "-o", out, "-q", *flags)
        y = imgnorm.normalize(photos, stats=stats, labels=False, **kw)[0]
        assert np.array_equal(np.asarray(y), np.load(os.path.join(out, "images.npy")))

