"""imgnorm.stats(pixel_covariance=True) (issue 13, part 2): Stats.pixel_covariance is numpy's exact
X_augᵀ·X_aug of the pipeline's pixels, whatever `threads`; Stats.save writes its sidecar beside
stats.json, which Stats.load reads back and checks."""
import os

import numpy as np

import imgnorm


def test_pixel_covariance_keyword_save_and_load(photos, tmp_path):
    st = imgnorm.stats(photos, size=5, pixel_covariance=True, threads=1)
    _, _, files, _ = imgnorm._core.normalize(photos, dict(mode="scale", size=5), None)
    x = np.stack([imgnorm.load(f, size=5) for f in files]).reshape(len(files), -1).astype(np.int64)
    xa = np.hstack([np.ones((len(x), 1), np.int64), x])
    m = st.pixel_covariance
    assert m.shape == (76, 76) and m.dtype == np.float64
    assert np.array_equal(m, (xa.T @ xa).astype(np.float64))
    assert np.array_equal(imgnorm.stats(photos, size=5, pixel_covariance=True, threads=2).pixel_covariance, m)
    assert imgnorm.stats(photos, size=5).pixel_covariance is None
    st.save(tmp_path / "stats.json")
    assert os.path.exists(tmp_path / "stats.pixel-covariance.npy")
    assert np.array_equal(imgnorm.Stats.load(tmp_path / "stats.json").pixel_covariance, m)
