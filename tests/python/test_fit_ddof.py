"""normalize --fit --ddof N (issue 13), and ddof= of imgnorm.normalize(fit=True) and imgnorm.Loader:
the saved stats.json is the bytes of `imgnorm stats --ddof N`, standardize divides by numpy's
std(ddof=1), `--mode pca --fit --ddof 1 --eps 0` is sklearn's PCA(whiten=True) in one step, the
manifest records the ddof; out-of-range values, --ddof with --stats or without --fit, and inputs
with no more values than ddof are refused with their reason."""
import json
import os

import numpy as np
import pytest

import imgnorm
import util
from util import FLOWERS, cli


def _pixels(folder, size, tmp_path):
    """The pipeline's u8 pixels as float64 N×H×W×C (rows in the manifest's order), from --mode
    scale, whose float32 x/255 rounds back to x exactly."""
    out = str(tmp_path / "scaled")
    cli("normalize", folder, "--size", size, "--mode", "scale", "--no-labels", "-o", out, "-q")
    return np.rint(np.load(os.path.join(out, "images.npy")).astype(np.float64) * 255.0)


def _manifest(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("ddof", [0, 1])
def test_save_stats_is_the_bytes_of_stats_with_that_ddof(tmp_path, ddof):
    ref, saved = tmp_path / "ref.json", tmp_path / "fit.json"
    cli("stats", FLOWERS, "--size", 16, "--ddof", ddof, "-o", ref, "-q")
    out = str(tmp_path / "out")
    cli("normalize", FLOWERS, "--size", 16, "--fit", "--ddof", ddof, "--save-stats", saved,
        "--mode", "zca-channels", "-o", out, "-q")
    assert saved.read_bytes() == ref.read_bytes()
    m = _manifest(out)
    assert m["fit"] is True and m["ddof"] == ddof and m["stats"] == str(saved)
    # Python: normalize(fit=True, ddof=) in memory and the Loader write the same file.
    py = tmp_path / "py.json"
    imgnorm.normalize(FLOWERS, fit=True, ddof=ddof, save_stats=py, size=16)
    assert py.read_bytes() == ref.read_bytes()
    loader = tmp_path / "loader.json"
    imgnorm.Loader(FLOWERS, fit=True, ddof=ddof, save_stats=loader, size=16)
    assert loader.read_bytes() == ref.read_bytes()


def test_standardize_divides_by_numpy_sample_std(tmp_path):
    x = _pixels(FLOWERS, 16, tmp_path)
    out = str(tmp_path / "fit1")
    cli("normalize", FLOWERS, "--size", 16, "--fit", "--ddof", 1, "--no-labels", "-o", out, "-q")
    y = np.load(os.path.join(out, "images.npy")).astype(np.float64)
    mean = x.mean(axis=(0, 1, 2))
    std = x.std(axis=(0, 1, 2), ddof=1)
    ref = (x - mean) / std
    assert np.abs(y - ref).max() <= 1e-6 * np.abs(ref).max()
    m = _manifest(out)
    assert m["ddof"] == 1 and np.allclose(m["dataset_std"], std, rtol=1e-12, atol=0)
    # ddof 0 is numpy's default, and a different tensor.
    out0 = str(tmp_path / "fit0")
    cli("normalize", FLOWERS, "--size", 16, "--fit", "--no-labels", "-o", out0, "-q")
    y0 = np.load(os.path.join(out0, "images.npy")).astype(np.float64)
    ref0 = (x - mean) / x.std(axis=(0, 1, 2))
    assert np.abs(y0 - ref0).max() <= 1e-6 * np.abs(ref0).max()
    assert np.abs(y0 - y).max() > 1e-4 and _manifest(out0)["ddof"] == 0
    # Python, in memory and through the Loader: the CLI's rows.
    xp, _ = imgnorm.normalize(FLOWERS, fit=True, ddof=1, size=16, labels=False)
    assert np.array_equal(xp, np.load(os.path.join(out, "images.npy")))
    xl = np.concatenate([b for b, _ in imgnorm.Loader(FLOWERS, fit=True, ddof=1, size=16)])
    assert np.array_equal(xl, xp)


def _signs(got, ref):
    """got with each column's sign flipped to ref's (PCA components are defined up to a sign)."""
    s = np.sign((got * ref).sum(axis=0))
    s[s == 0] = 1
    return got * s


def test_pca_fit_ddof_1_matches_sklearn_in_one_step(photos, tmp_path):
    from sklearn.decomposition import PCA

    x = _pixels(photos, 4, tmp_path).reshape(-1, 48)  # D = 48 < 60 images
    out = str(tmp_path / "out")
    cli("normalize", photos, "--size", 4, "--fit", "--ddof", 1, "--mode", "pca", "--components",
        10, "--eps", 0, "--no-labels", "-o", out, "-q")
    y = np.load(os.path.join(out, "images.npy")).astype(np.float64)
    ref = PCA(n_components=10, whiten=True, svd_solver="full").fit_transform(x / 255.0)
    assert np.abs(_signs(y, ref) - ref).max() <= 1e-6 * np.abs(ref).max()
    assert _manifest(out)["ddof"] == 1
    # Without --ddof the eigenvalues are (n−1)/n of sklearn's: the components √(n/(n−1)) larger.
    out0 = str(tmp_path / "out0")
    cli("normalize", photos, "--size", 4, "--fit", "--mode", "pca", "--components", 10, "--eps",
        0, "--no-labels", "-o", out0, "-q")
    y0 = np.load(os.path.join(out0, "images.npy")).astype(np.float64)
    n = len(x)
    assert np.abs(_signs(y0, ref) - ref * np.sqrt(n / (n - 1))).max() <= 1e-6 * np.abs(ref).max()


def test_refusals(tmp_path):
    ref = str(tmp_path / "ref.json")
    cli("stats", FLOWERS, "--size", 8, "--ddof", 1, "-o", ref, "-q")
    out = str(tmp_path / "out")
    for bad in (-1, 2):
        p = cli("normalize", FLOWERS, "--size", 8, "--fit", "--ddof", bad, "-o", out, expect=2)
        assert f"--ddof {bad}: must be 0 (population, numpy's default) or 1 (sample)" in p.stderr
    p = cli("normalize", FLOWERS, "--stats", ref, "--ddof", 1, "-o", out, expect=2)
    assert (f"{ref}: the statistics' own ddof (1) applies; --ddof is for --fit only (for another "
            "ddof, recompute them with imgnorm stats --ddof N)") in p.stderr
    p = cli("normalize", FLOWERS, "--mode", "scale", "--ddof", 1, "-o", out, expect=2)
    assert "--ddof needs --fit (it sets the ddof of the statistics --fit computes)" in p.stderr
    # One image: no sample covariance of whole images.
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.png").write_bytes(open(os.path.join(util.TEST_DATA, "png_rgb.png"), "rb").read())
    p = cli("normalize", one, "--size", 4, "--fit", "--ddof", 1, "--mode", "zca", "-o", out,
            expect=2)
    assert (f"{one}: --fit --ddof 1: the pixel covariance of --mode zca needs at least 2 images, "
            "the input has 1") in p.stderr
    assert not os.path.exists(out)
    # Python: the same messages, as ArgumentError.
    with pytest.raises(imgnorm.ArgumentError, match=r"own ddof \(1\) applies; --ddof is for"):
        imgnorm.normalize(FLOWERS, stats=ref, ddof=0)
    with pytest.raises(imgnorm.ArgumentError, match=r"--ddof -1: must be 0"):
        imgnorm.Loader(FLOWERS, fit=True, ddof=-1, size=8)
    with pytest.raises(imgnorm.ArgumentError, match="the pixel covariance of --mode pca needs"):
        imgnorm.normalize(str(one), fit=True, ddof=1, mode="pca", size=4)


def test_mpirun_fit_uses_the_ddof(photos, tmp_path):
    """Under mpirun the fit pass runs over all ranks with the flag's ddof: the saved statistics
    and the rows are the single run's."""
    import shutil
    import subprocess

    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun not found")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_plm="isolated", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMPI_MCA_btl="self,vader", OMPI_MCA_btl_vader_single_copy_mechanism="none",
               OMPI_MCA_orte_tmpdir_base=str(tmp_path))
    env.pop("SLURM_NTASKS", None)
    if "ASAN_OPTIONS" in env:  # as tests/ref/test_mpi.py: Open MPI's plug-ins leak to exit
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    probe = subprocess.run([mpirun, "-q", "-np", "1", util.CLI, "--version"], env=env,
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"this imgnorm does not run under mpirun: {probe.stderr.strip()}")
    ref = tmp_path / "ref.json"
    cli("stats", photos, "--size", 8, "--ddof", 1, "-o", ref, "-q")
    single = str(tmp_path / "single")
    cli("normalize", photos, "--size", 8, "--fit", "--ddof", 1, "--mode", "zca-channels", "-o",
        single, "-q")
    saved, multi = tmp_path / "fit.json", str(tmp_path / "multi")
    p = subprocess.run([mpirun, "-q", "-np", "2", util.CLI, "normalize", photos, "--size", "8",
                        "--fit", "--ddof", "1", "--mode", "zca-channels", "--save-stats",
                        str(saved), "-o", multi, "-q"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert saved.read_bytes() == ref.read_bytes()
    for f in ("images.npy", "labels.npy"):
        assert open(os.path.join(multi, f), "rb").read() == \
            open(os.path.join(single, f), "rb").read(), f
    assert _manifest(multi)["ddof"] == 1
