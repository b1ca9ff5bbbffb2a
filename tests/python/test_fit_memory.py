"""imgnorm.normalize(mode="zca"/"pca") checks the memory of the whitening fit against max_memory
before the fit (issue 13), as the CLI's --max-memory: the figure in bytes in the message, one byte
under it refused, the figure itself accepted; stats= a path (the sidecar not yet read) and fit=True
(at D = 768, where the fit needs more than --fit's accumulators, which are checked first)."""
import os
import re

import numpy as np
import pytest

import imgnorm
import util


def _figure(excinfo, mode, d):
    m = re.search(rf"--mode {mode}: fitting the whitening of images of D = {d} values needs \S+ \w+ "
                  r"\((\d+) bytes: ", str(excinfo.value))
    assert m, str(excinfo.value)
    return int(m.group(1))


def test_normalize_checks_the_fit_against_max_memory(photos, tmp_path):
    stats = str(tmp_path / "stats.json")
    util.cli("stats", photos, "--size", 16, "--pixel-covariance", "-o", stats, "-q")
    for mode, kw in (("zca", {}), ("pca", {"components": 5})):
        with pytest.raises(imgnorm.Error, match="more than the memory limit of 100 KiB") as e:
            imgnorm.normalize(photos, stats=stats, mode=mode, labels=False, max_memory="100K", **kw)
        need = _figure(e, mode, 768)
        out = str(tmp_path / mode)
        with pytest.raises(imgnorm.Error, match=rf"\({need} bytes: "):
            imgnorm.normalize(photos, stats=stats, mode=mode, max_memory=need - 1, out=out, **kw)
        assert not os.path.exists(out)
        x, _ = imgnorm.normalize(photos, stats=stats, mode=mode, labels=False, max_memory=need, **kw)
        y = util.cli("normalize", photos, "--stats", stats, "--mode", mode, "--no-labels", "-o",
                     str(tmp_path / (mode + "-cli")), "-q",
                     *(["--components", 5] if kw else []))
        assert np.array_equal(np.asarray(x), np.load(str(tmp_path / (mode + "-cli") / "images.npy")))
        if mode == "zca":  # pca's 5 components need less than --fit's accumulators
            with pytest.raises(imgnorm.Error, match=rf"\({need} bytes: "):
                imgnorm.normalize(photos, fit=True, size=16, mode=mode, threads=1,
                                  max_memory=need - 1)


def test_pca_top_k_from_dsyevr_matches_numpy_and_dsyevd(photos, tmp_path):
    """--components 20 of D = 192 (K <= D/8: LAPACK dsyevr, the top K only) against numpy's eigh
    to 1e-6 of the largest value, and against the first 20 of all 192 components (dsyevd)."""
    from test_zca_full import _pixels, _signs, _stats

    x = _pixels(photos, 8, tmp_path)
    stats = _stats(tmp_path, photos, 8)
    lam, u = np.linalg.eigh(np.cov(x / 255.0, rowvar=False, ddof=0))
    lam, u = lam[::-1], u[:, ::-1]
    ref = ((x / 255.0 - x.mean(axis=0) / 255.0) @ u / np.sqrt(lam + 1e-5))[:, :20]
    ys = {}
    for k in (20, 192):
        out = str(tmp_path / ("k%d" % k))
        util.cli("normalize", photos, "--stats", stats, "--mode", "pca", "--components", k,
                 "--no-labels", "-o", out, "-q")
        ys[k] = np.load(os.path.join(out, "images.npy")).astype(np.float64)
    assert ys[20].shape == (len(x), 20)
    assert np.abs(_signs(ys[20], ref) - ref).max() <= 1e-6 * np.abs(ref).max()
    # The same sign convention from both routines: no sign flip between them.
    assert np.abs(ys[20] - ys[192][:, :20]).max() <= 1e-6 * np.abs(ref).max()
