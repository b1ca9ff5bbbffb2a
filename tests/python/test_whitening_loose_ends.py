"""Loose ends of the full-image whitening (issue 13; docs/design.md, "Whitening loose ends"):
the pixel-covariance sidecar read only by the modes that use it, the image size (not only D)
checked against the statistics', --components checked before the fit's memory, Loader's
components=/whiten=, and limits (too_large) raised as imgnorm.Error, not FileError."""
import os
import shutil

import numpy as np
import pytest

import imgnorm
import util


def _stats(tmp_path, folder, size, name="stats.json", *extra):
    """stats --pixel-covariance at `size` in a folder of its own: (stats.json, its sidecar)."""
    d = tmp_path / name.replace(".json", "")
    d.mkdir()
    path = str(d / name)
    util.cli("stats", folder, "--size", size, "--pixel-covariance", "-o", path, "-q", *extra)
    side = path[: -len(".json")] + ".pixel-covariance.npy"
    assert os.path.exists(side)
    return path, side


def _images(out):
    return np.load(os.path.join(out, "images.npy"))


# ---- the sidecar: read by zca/pca (and merge, Stats.load) only ---------------------------------


def test_modes_without_the_pixel_covariance_do_not_need_its_sidecar(photos, tmp_path):
    stats, side = _stats(tmp_path, photos, 8)
    before = str(tmp_path / "before")
    util.cli("normalize", photos, "--stats", stats, "--mode", "standardize", "--no-labels", "-o",
             before, "-q")
    os.remove(side)
    for mode in ("standardize", "zca-channels"):
        out = str(tmp_path / ("after-" + mode))
        util.cli("normalize", photos, "--stats", stats, "--mode", mode, "--no-labels", "-o", out,
                 "-q")
        if mode == "standardize":
            assert np.array_equal(_images(before), _images(out))
        x, _ = imgnorm.normalize(photos, stats=stats, mode=mode, labels=False)
        assert np.array_equal(np.asarray(x), _images(out))
    x = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    y, _ = imgnorm.normalize(x, stats=stats, mode="standardize")
    assert np.asarray(y).shape == (2, 8, 8, 3)
    # The modes that whiten with it refuse, naming the file.
    for mode in ("zca", "pca"):
        p = util.cli("normalize", photos, "--stats", stats, "--mode", mode, "-o",
                     str(tmp_path / mode), expect=None)
        assert p.returncode != 0 and side in p.stderr and "missing or unreadable" in p.stderr, \
            p.stderr
        assert not os.path.exists(str(tmp_path / mode))
        with pytest.raises(imgnorm.FileError, match="missing or unreadable") as e:
            imgnorm.normalize(photos, stats=stats, mode=mode, labels=False)
        assert side in str(e.value)
    # Stats.load keeps the moments it describes: the sidecar is read (and refused when missing).
    with pytest.raises(imgnorm.FileError, match="missing or unreadable") as e:
        imgnorm.Stats.load(stats)
    assert side in str(e.value)


def test_merge_reads_the_sidecars(photos, tmp_path):
    a, side_a = _stats(tmp_path, photos, 8, "a.json", "--shard", "0/2")
    b, _ = _stats(tmp_path, photos, 8, "b.json", "--shard", "1/2")
    util.cli("merge", a, b, "-o", str(tmp_path / "ab.json"))
    os.remove(side_a)
    out = str(tmp_path / "merged.json")
    p = util.cli("merge", a, b, "-o", out, expect=None)
    assert p.returncode != 0 and side_a in p.stderr and "missing or unreadable" in p.stderr, \
        p.stderr
    assert not os.path.exists(out)


# ---- the size of the images, not only D -----------------------------------------------------------


def test_zca_pca_refuse_images_of_another_size_with_the_same_d(photos, tmp_path):
    stats, _ = _stats(tmp_path, photos, "8x6")  # 8 wide, 6 high: D = 144
    x = np.random.default_rng(0).integers(0, 256, (3, 6, 8, 3), dtype=np.uint8)
    for mode in ("zca", "pca"):
        y, _ = imgnorm.normalize(x, stats=stats, mode=mode)
        assert np.asarray(y).shape[0] == 3
        with pytest.raises(imgnorm.ArgumentError, match=r"pixel covariance is for 8x6 images, the "
                                                        r"images are 6x8.*--size 8x6"):
            imgnorm.normalize(np.ascontiguousarray(x.transpose(0, 2, 1, 3)), stats=stats,
                              mode=mode)
        norm = imgnorm.Normalizer(stats, mode=mode)
        assert np.array_equal(norm(x), np.asarray(y))
        with pytest.raises(imgnorm.ArgumentError,
                           match=r"is of 8x6x3 images \(D = 144\), not 6x8x3"):
            norm(np.ascontiguousarray(x.transpose(0, 2, 1, 3)))
        out = str(tmp_path / ("swapped-" + mode))
        p = util.cli("normalize", photos, "--stats", stats, "--mode", mode, "--size", "6x8", "-o",
                     out, expect=None)
        assert p.returncode != 0 and \
            f"{stats}: the pixel covariance is for 8x6 images, the images are 6x8" in p.stderr, \
            p.stderr
        assert not os.path.exists(out)


# ---- argument errors before the memory check ------------------------------------------------------


def test_pca_components_beyond_d_refused_before_the_memory_check(photos, tmp_path):
    stats, _ = _stats(tmp_path, photos, 16)  # D = 768
    with pytest.raises(imgnorm.ArgumentError, match=r"--components 1000: between 1 and D = 768"):
        imgnorm.normalize(photos, stats=stats, mode="pca", components=1000, max_memory="100K",
                          labels=False)
    out = str(tmp_path / "typo")
    p = util.cli("normalize", photos, "--stats", stats, "--mode", "pca", "--components", 1000,
                 "--max-memory", "100K", "-o", out, expect=None)
    assert p.returncode != 0 and "--components 1000: between 1 and D = 768" in p.stderr, p.stderr
    assert "memory" not in p.stderr, p.stderr
    # With --fit too: the statistics of the fit are not computed for a typo.
    p = util.cli("normalize", photos, "--fit", "--size", 16, "--mode", "pca", "--components",
                 1000, "--max-memory", "100K", "-o", out, expect=None)
    assert p.returncode != 0 and "--components 1000: between 1 and D = 768" in p.stderr, p.stderr


# ---- limits raise imgnorm.Error --------------------------------------------------------------------


def test_too_large_is_the_base_error_not_a_file_error(photos, tmp_path):
    stats, _ = _stats(tmp_path, photos, 16)
    with pytest.raises(imgnorm.Error, match="more than the memory limit of 100 KiB") as e:
        imgnorm.normalize(photos, stats=stats, mode="zca", max_memory="100K", labels=False)
    assert e.value.code == "too_large"
    assert type(e.value) is imgnorm.Error
    assert not isinstance(e.value, (OSError, ValueError, MemoryError))


# ---- Loader ----------------------------------------------------------------------------------------


def test_loader_components_and_whiten_as_normalize(photos, tmp_path):
    stats, _ = _stats(tmp_path, photos, 8)  # D = 192
    for kw in (dict(components=5), dict(components=7, whiten=False), dict()):
        ref, _ = imgnorm.normalize(photos, stats=stats, mode="pca", labels=False, **kw)
        ref = np.asarray(ref)
        got = np.concatenate([b for b, _ in imgnorm.Loader(photos, stats=stats, mode="pca",
                                                           batch_size=16, **kw)])
        assert got.shape == ref.shape == (len(ref), kw.get("components", 192))
        assert np.array_equal(got, ref), kw
    ref, _ = imgnorm.normalize(photos, stats=stats, mode="zca", labels=False, layout="nchw")
    got = np.concatenate([b for b, _ in imgnorm.Loader(photos, stats=stats, mode="zca",
                                                       layout="nchw", batch_size=16)])
    assert got.shape == (len(got), 3, 8, 8) and np.array_equal(got, np.asarray(ref))
    with pytest.raises(imgnorm.ArgumentError, match="--components 500: between 1 and D = 192"):
        imgnorm.Loader(photos, stats=stats, mode="pca", components=500)
    with pytest.raises(imgnorm.ArgumentError, match="--components applies to --mode pca, not zca"):
        imgnorm.Loader(photos, stats=stats, mode="zca", components=5)
