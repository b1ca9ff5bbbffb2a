"""Issue 10, items 5, 15 and 17 from Python: a transform that would write inf or NaN is refused by
Normalizer and normalize; custom constants that look like 0-1 units warn unless unit= is given;
normalize(fit=True, save_stats=PATH) writes the fitted statistics, the bytes `imgnorm stats` writes."""
import os
import warnings

import numpy as np
import pytest

import imgnorm
from util import cli, load_json

IMAGENET = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def test_non_finite_transform_is_refused(flowers):
    with pytest.raises(imgnorm.ArgumentError, match=r"--mode custom would write non-finite values.*"
                       r"float16's largest finite value 65504.*--dtype float32"):
        imgnorm.Normalizer(mode="custom", mean=[0, 0, 0], std=[0.001] * 3, dtype="float16")
    with pytest.raises(imgnorm.ArgumentError, match=r"--mode scale would write non-finite values.*nan"):
        imgnorm.normalize(np.zeros((1, 4, 4, 3), np.uint8), mode="scale", range=(-1e308, 1e308))
    # The reference: the same formula in float64, rounded to float16, over 0-255.
    with np.errstate(over="ignore"):
        assert not np.all(np.isfinite((np.arange(256.0) / 0.001).astype(np.float16)))
    # float32 holds it: accepted, and equal to the formula.
    n = imgnorm.Normalizer(mode="custom", mean=[0, 0, 0], std=[0.001] * 3, unit=255)
    x = np.arange(256, dtype=np.uint8).repeat(3).reshape(1, 16, 16, 3)
    assert np.array_equal(n(x), (x / 0.001).astype(np.float32))


def test_custom_constants_in_0_1_units_warn(flowers, tmp_path):
    with pytest.warns(UserWarning, match=r"every --mean and --std is at most 1.*values up to 1136.*"
                      r"--unit 1"):
        imgnorm.Normalizer(mode="custom", **IMAGENET)
    with pytest.warns(UserWarning, match="--unit 1"):
        imgnorm.normalize(np.zeros((1, 2, 2, 3), np.uint8), mode="custom", **IMAGENET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imgnorm.Normalizer(mode="custom", unit=1, **IMAGENET)
        imgnorm.Normalizer(mode="custom", unit=255, **IMAGENET)  # chosen explicitly
        imgnorm.Normalizer(mode="custom", mean=[0, 0, 0])  # y = x: no fraction, no warning
        imgnorm.Normalizer(mode="custom", mean=[120, 110, 100], std=[60, 50, 40])
    # The CLI warns the same way, and not with --unit given.
    p = cli("normalize", flowers, "--size", 8, "--mode", "custom", "--mean", "0.485,0.456,0.406",
            "--std", "0.229,0.224,0.225", "-o", tmp_path / "a", "-q")
    assert "warning: --mode custom: every --mean and --std is at most 1" in p.stderr
    assert np.load(tmp_path / "a" / "images.npy").max() > 1000  # what it warns about
    p = cli("normalize", flowers, "--size", 8, "--mode", "custom", "--mean", "0.485,0.456,0.406",
            "--std", "0.229,0.224,0.225", "--unit", 1, "-o", tmp_path / "b", "-q")
    assert "warning" not in p.stderr


def test_save_stats_writes_the_fitted_statistics(flowers, tmp_path):
    ref = tmp_path / "ref.json"
    cli("stats", flowers, "--size", 16, "-o", ref, "-q")
    saved = tmp_path / "fit.json"
    x, y = imgnorm.normalize(flowers, fit=True, save_stats=saved, size=16)
    assert saved.read_bytes() == ref.read_bytes()
    # The saved statistics normalize other data with the same constants as the fit did.
    x2, _ = imgnorm.normalize(flowers, stats=saved)
    assert np.array_equal(x, x2)
    assert imgnorm.Stats.load(str(saved)).mean.tolist() == load_json(ref)["mean"]
    # out=: the same file, and the manifest names it.
    saved2 = tmp_path / "fit2.json"
    imgnorm.normalize(flowers, fit=True, save_stats=saved2, size=16, out=tmp_path / "out")
    assert saved2.read_bytes() == ref.read_bytes()
    assert load_json(tmp_path / "out" / "manifest.json")["stats"] == str(saved2)
    # An existing file needs force (checked before any work); save_stats needs fit.
    with pytest.raises(imgnorm.FileError, match="exists"):
        imgnorm.normalize(flowers, fit=True, save_stats=saved, size=16)
    imgnorm.normalize(flowers, fit=True, save_stats=saved, size=16, force=True)
    with pytest.raises(imgnorm.ArgumentError, match="--save-stats needs --fit"):
        imgnorm.normalize(flowers, stats=ref, save_stats=tmp_path / "x.json")
