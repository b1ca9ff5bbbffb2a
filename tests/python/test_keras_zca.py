"""Keras's ZCA (ImageDataGenerator(zca_whitening=True)) reproduced in numpy float64 from its source,
both versions, against imgnorm's --mode zca (issue 13: "the Keras formulas (both) reproduced in
numpy and the documented difference shown"; docs/whitening.md, "Keras's zca_whitening").

What ImageDataGenerator.fit does with zca_whitening=True (it forces featurewise_center on and
featurewise_std_normalization off), on x of shape (N, H, W, C):
    m = x.mean(axis=(0, 1, 2))       per CHANNEL, broadcast to every pixel; xc = x - m
    before 2021:  sigma = xcᵀxc / N (flat N×D); U, S = svd(sigma); W = U·diag(1/√(S + ε))·Uᵀ
    since 2021:   U, s = svd(xcᵀ, full_matrices=False);           W = U·diag(√N/(s + ε))·Uᵀ
with ε = zca_epsilon = 1e-6, and standardize applies y = (x − m).reshape(N, D) @ W. Keras works
in float32; this reference works in float64 to compare the formulas, not the rounding.

The data: 60 photos at 4×4 (D = 48 < 60 images, so the covariance is regular), in 0–1 units."""
import os

import numpy as np
import pytest

import util

EPS_KERAS = 1e-6  # ImageDataGenerator's zca_epsilon default


@pytest.fixture(scope="module")
def data(photos, tmp_path_factory):
    """(x: N×4×4×3 float64 in 0–1 as imgnorm reads the photos, stats.json with the pixel
    covariance at ddof 0, work folder)."""
    d = tmp_path_factory.mktemp("keras-zca")
    scaled = str(d / "scaled")
    # --mode scale writes float32 x/255, which rounds back to the u8 x exactly.
    util.cli("normalize", photos, "--size", 4, "--mode", "scale", "--no-labels", "-o", scaled,
             "-q")
    x = np.rint(np.load(os.path.join(scaled, "images.npy")).astype(np.float64) * 255.0) / 255.0
    stats = str(d / "stats.json")
    util.cli("stats", photos, "--size", 4, "--ddof", 0, "--pixel-covariance", "-o", stats, "-q")
    return x, stats, d


def imgnorm_zca(photos, data, eps):
    """imgnorm normalize --mode zca --eps eps: (μ, W from whitening.npy, the output as N×D)."""
    x, stats, d = data
    out = str(d / ("zca-%g" % eps))
    if not os.path.exists(out):
        util.cli("normalize", photos, "--stats", stats, "--mode", "zca", "--eps", repr(eps),
                 "--no-labels", "-o", out, "-q")
    w = np.load(os.path.join(out, "whitening.npy"))
    y = np.load(os.path.join(out, "images.npy")).astype(np.float64).reshape(len(x), -1)
    return w[0], w[1:], y


def centre(x, per_pixel):
    """Keras's featurewise mean (per channel), or imgnorm's (per pixel: the mean image)."""
    return x.mean(axis=0) if per_pixel else x.mean(axis=(0, 1, 2)).reshape(1, 1, -1)


def keras_before_2021(x, eps=EPS_KERAS, per_pixel=False):
    m = centre(x, per_pixel)
    flat = (x - m).reshape(len(x), -1)
    sigma = flat.T @ flat / len(x)
    u, s, _ = np.linalg.svd(sigma)
    return m, (u * (1.0 / np.sqrt(s + eps))) @ u.T


def keras_since_2021(x, eps=EPS_KERAS, per_pixel=False):
    m = centre(x, per_pixel)
    flat = (x - m).reshape(len(x), -1)
    u, s, _ = np.linalg.svd(flat.T, full_matrices=False)
    return m, (u * (np.sqrt(len(x)) / (s + eps))) @ u.T


def keras_apply(x, m, w):
    return (x - m).reshape(len(x), -1) @ w


def rel(a, b):
    """Largest difference relative to the largest entry of b."""
    return np.abs(a - b).max() / np.abs(b).max()


def test_both_keras_formulas_with_per_pixel_centring_are_imgnorms_matrix(photos, data):
    x = data[0]
    mu, w0, _ = imgnorm_zca(photos, data, 0.0)
    assert np.allclose(mu, x.mean(axis=0).reshape(-1), rtol=0, atol=1e-12)
    # ε → 0: the two formulas are the same matrix, Σ^(-1/2) of the per-pixel covariance (ddof 0),
    # since the singular values s of xcᵀ are √(N·λ). Measured: 7e-12.
    for formula in (keras_before_2021, keras_since_2021):
        _, w = formula(x, eps=0.0, per_pixel=True)
        assert rel(w, w0) < 1e-6, (formula.__name__, rel(w, w0))
    # Before 2021, ε is added to the eigenvalues of xcᵀxc/N, as imgnorm's --eps is, in the units
    # of the data: Keras fitted on x/255 with its default 1e-6 is imgnorm --eps 1e-6 exactly.
    _, w6, _ = imgnorm_zca(photos, data, EPS_KERAS)
    _, w = keras_before_2021(x, per_pixel=True)
    assert rel(w, w6) < 1e-6
    # ... which is not small here: the smallest eigenvalue of these photos is 1.6e-6 (0–1 units),
    # so ε = 1e-6 changes the matrix by 17% (measured 0.166).
    assert 0.1 < rel(w6, w0) < 0.3, rel(w6, w0)
    # Since 2021 the same default ε sits on the singular values (√(N·λ) ≥ 9.7e-3 here) and
    # changes the matrix by 8e-5 only.
    _, w = keras_since_2021(x, per_pixel=True)
    assert 1e-5 < rel(w, w0) < 1e-3, rel(w, w0)


def test_keras_per_channel_centring_leaves_the_mean_image_and_does_not_whiten(photos, data):
    x = data[0]
    _, _, y = imgnorm_zca(photos, data, 0.0)
    # imgnorm (per-pixel centring, ε 0): zero mean, identity covariance on the training data.
    img_mean = np.abs(y.mean(axis=0)).max()
    img_err = np.linalg.norm(np.cov(y, rowvar=False, ddof=0) - np.eye(y.shape[1]), 2)
    assert img_mean < 1e-5 and img_err < 1e-4, (img_mean, img_err)
    # Keras's mean is per channel, so the data keep δ = mean image − channel mean, and W whitens
    # the second moment about the channel mean, Σ + δδᵀ, not Σ: the output's second moment is I,
    # its mean is Wδ, its covariance I − (Wδ)(Wδ)ᵀ, short of I by |Wδ|² = d/(1+d) along Wδ,
    # d = δᵀΣ⁻¹δ. Shown with ε = 0 (the centring alone) and with Keras's default ε.
    flat = x.reshape(len(x), -1)
    sigma = np.cov(flat, rowvar=False, ddof=0)
    for formula in (keras_before_2021, keras_since_2021):
        m, w = formula(x, eps=0.0)
        yk = keras_apply(x, m, w)
        delta = x.mean(axis=0).reshape(-1) - np.broadcast_to(m, x.shape[1:]).reshape(-1)
        d = delta @ np.linalg.solve(sigma, delta)
        assert np.allclose(yk.T @ yk / len(x), np.eye(flat.shape[1]), rtol=0, atol=1e-8)
        assert np.allclose(yk.mean(axis=0), w @ delta, rtol=0, atol=1e-10)
        cov = np.cov(yk, rowvar=False, ddof=0)
        err = np.linalg.norm(cov - np.eye(flat.shape[1]), 2)
        assert abs(err - d / (1 + d)) < 1e-8
        assert abs(np.linalg.eigvalsh(cov).min() - 1 / (1 + d)) < 1e-8
        # Measured on these photos: d = 24.2, so the covariance is 0.96 short of I along one
        # direction (its smallest eigenvalue 0.040), and the output mean reaches 0.35.
        assert err > 0.9 and err > 1e4 * img_err, (err, img_err)
        assert np.abs(yk.mean(axis=0)).max() > 0.3
        # With Keras's default ε the output is no closer to white.
        m, w = formula(x)
        cov = np.cov(keras_apply(x, m, w), rowvar=False, ddof=0)
        assert np.linalg.norm(cov - np.eye(flat.shape[1]), 2) > 0.9


def test_keras_2021_eps_on_singular_values_is_no_single_imgnorm_eps(photos, data):
    x = data[0]
    n = len(x)
    lam, u = np.linalg.eigh(np.cov(x.reshape(n, -1), rowvar=False, ddof=0))

    def imgnorm_formula(eps):  # docs/whitening.md: W = U·diag(1/√(λ+ε))·Uᵀ
        return (u * (1.0 / np.sqrt(lam + eps))) @ u.T

    eps_k = 0.01  # on the singular values s = √(N·λ) of xcᵀ, 0–1 units
    _, wk = keras_since_2021(x, eps=eps_k, per_pixel=True)
    # √N/(s + ε_k) = 1/(√λ + ε_k/√N) = 1/√(λ + ε_i(λ)) with ε_i(λ) = 2·ε_k·√(λ/N) + ε_k²/N: an
    # imgnorm ε per direction, growing with √λ (here 4.9e-6 to 3.1e-3), not one number.
    eps_i = 2 * eps_k * np.sqrt(lam / n) + eps_k ** 2 / n
    assert rel(imgnorm_formula(eps_i), wk) < 1e-9
    assert eps_i.max() / eps_i.min() > 100
    # The closest single --eps (searched here) still leaves 4.9% of the largest entry; reusing
    # the number (--eps 0.01) leaves 95%.
    grid = np.geomspace(1e-9, 1e-1, 801)
    errors = [rel(imgnorm_formula(e), wk) for e in grid]
    best = float("%.3g" % grid[int(np.argmin(errors))])
    _, w_best, _ = imgnorm_zca(photos, data, best)
    assert rel(w_best, imgnorm_formula(best)) < 1e-6  # the CLI is that formula
    assert 0.02 < rel(w_best, wk) < 0.1, (best, rel(w_best, wk))
    assert rel(imgnorm_formula(eps_k), wk) > 0.5
    # At Keras's default ε_k = 1e-6 the ε_i are 3e-10 to 3e-7: practically no regularization.
    eps_i = 2 * EPS_KERAS * np.sqrt(lam / n) + EPS_KERAS ** 2 / n
    assert eps_i.max() < 1e-6 * lam.max()
