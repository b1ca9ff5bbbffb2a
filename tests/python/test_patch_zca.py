"""Patch ZCA (stats --patch K, normalize --mode zca-patch --patch K) against numpy float64
references written here: the patch moments by brute force (every KxK patch extracted one by
one), W_patch = U diag(1/sqrt(lambda + eps)) U^T from numpy's eigh, and the convolution evaluated
offset by offset with the outside of the image contributing 0."""
import json
import os

import numpy as np
import pytest

import imgnorm
from util import cli, load_json


def brute_moments(images, k):
    """count, sum (D,), cross (D, D) of every KxK patch lying inside its image, as Python ints."""
    patches = []
    for img in images:
        h, w, _ = img.shape
        for y in range(h - k + 1):
            for x in range(w - k + 1):
                patches.append(img[y:y + k, x:x + k, :].reshape(-1))
    v = np.array(patches, dtype=np.int64)
    return len(v), v.sum(axis=0), v.T @ v


def reference(images, k, eps=1e-5, ddof=0):
    """The whitened images (float64) and W_patch's centre rows, from the brute-force moments."""
    c = images[0].shape[2]
    n, s, q = brute_moments(images, k)
    mu = s / n
    cov = (n * q.astype(np.float64) - np.outer(s, s).astype(np.float64)) / (n * (n - ddof))
    lam, u = np.linalg.eigh(cov)
    W = u @ np.diag(1 / np.sqrt(lam + eps * 255 ** 2)) @ u.T
    r = k // 2
    centre = (r * k + r) * c
    F = W[centre:centre + c].reshape(c, k, k, c)  # [out c, dy, dx, in c']
    M = mu.reshape(k, k, c)
    out = []
    for img in images:
        h, w, _ = img.shape
        x = np.pad(img.astype(np.float64), ((r, r), (r, r), (0, 0)))
        inside = np.pad(np.ones((h, w)), r)
        y = np.zeros((h, w, c))
        for dy in range(k):
            for dx in range(k):
                z = (x[dy:dy + h, dx:dx + w] - M[dy, dx]) * inside[dy:dy + h, dx:dx + w, None]
                y += z @ F[:, dy, dx, :].T
        out.append(y)
    return np.stack(out), W[centre:centre + c], (n, s, q)


def assert_close(got, ref):
    """1e-6 relative to the size of the whitened values (float32 output)."""
    scale = np.abs(ref).max()
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * scale)


def patch_sums(stats_json):
    p = load_json(stats_json)["sums"]["patch"]
    return p["size"], p["count"], np.array(p["sum"], dtype=np.int64), np.array(p["cross"], dtype=np.int64)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("channels", [3, 1])
def test_small_images_equal_numpy_brute_force(tmp_path, k, channels):
    rng = np.random.default_rng(k * 10 + channels)
    # Smooth-ish random images: a random walk along x, so the patch covariance is well conditioned
    # and far from diagonal.
    imgs = np.clip(np.cumsum(rng.integers(-40, 41, (5, 9, 12, channels)), axis=2) + 128, 0, 255)
    imgs = imgs.astype(np.uint8)
    arr = str(tmp_path / "x.npy")
    np.save(arr, imgs if channels == 3 else imgs[..., 0])
    st = str(tmp_path / "s.json")
    out = str(tmp_path / "out")
    cli("normalize", arr, "--fit", "--save-stats", st, "--mode", "zca-patch", "--patch", k,
        "-o", out, "-q")
    ref, filt, (n, s, q) = reference(list(imgs), k)
    size, count, ps, pq = patch_sums(st)
    assert (size, count) == (k, n)
    assert np.array_equal(ps, s) and np.array_equal(pq, q)  # exact integers
    got = np.load(os.path.join(out, "images.npy")).astype(np.float64).reshape(ref.shape)
    assert_close(got, ref)
    man = load_json(os.path.join(out, "manifest.json"))
    assert man["mode"] == "zca-patch" and man["patch"] == k and man["eps"] == 1e-5
    np.testing.assert_allclose(np.array(man["patch_filter"]), filt, rtol=1e-7,
                               atol=1e-9 * np.abs(filt).max())
    # the same statistics through --stats give the same bytes
    out2 = str(tmp_path / "out2")
    cli("normalize", arr, "--stats", st, "--mode", "zca-patch", "--patch", k, "-o", out2, "-q")
    assert (np.load(os.path.join(out2, "images.npy")).tobytes()
            == np.load(os.path.join(out, "images.npy")).tobytes())


@pytest.fixture(scope="module")
def photo_setup(tmp_path_factory, photos):
    work = tmp_path_factory.mktemp("patch")
    _, _, files, _ = imgnorm._core.normalize(photos, dict(mode="scale", size=24), None)
    images = [imgnorm.load(f, size=24) for f in files]
    return work, photos, images


@pytest.mark.parametrize("k", [3, 5])
def test_photos_equal_numpy(photo_setup, k):
    work, root, images = photo_setup
    st = str(work / f"stats{k}.json")
    cli("stats", root, "--size", "24", "--patch", k, "-o", st, "-q")
    ref, _, (n, s, q) = reference(images, k, eps=1e-3)
    size, count, ps, pq = patch_sums(st)
    assert (size, count) == (k, n) and np.array_equal(ps, s) and np.array_equal(pq, q)
    out = str(work / f"out{k}")
    cli("normalize", root, "--stats", st, "--mode", "zca-patch", "--patch", k, "--eps", "1e-3",
        "-o", out, "-q")
    got = np.load(os.path.join(out, "images.npy")).astype(np.float64)
    assert_close(got, ref)
    # Python: the same keywords, the same bytes
    xs, _ = imgnorm.normalize(root, stats=st, mode="zca-patch", patch=k, eps=1e-3, progress=False)
    assert xs.tobytes() == np.load(os.path.join(out, "images.npy")).tobytes()
    norm = imgnorm.Normalizer(st, mode="zca-patch", patch=k, eps=1e-3)
    assert norm(np.stack(images)).tobytes() == xs.tobytes()


def test_patch_moments_are_exact_across_threads_shards_and_python(photo_setup):
    work, root, _ = photo_setup
    one = str(work / "t1.json")
    cli("stats", root, "--size", "24", "--patch", "3", "-o", one, "-q", "--threads", "1")
    two = str(work / "t2.json")
    cli("stats", root, "--size", "24", "--patch", "3", "-o", two, "-q", "--threads", "2")
    with open(one) as a, open(two) as b:
        assert a.read() == b.read()
    parts = []
    for i in range(3):
        parts.append(str(work / f"shard{i}.json"))
        cli("stats", root, "--size", "24", "--patch", "3", "--shard", f"{i}/3", "-o", parts[-1],
            "-q")
    merged = str(work / "merged.json")
    cli("merge", *parts, "-o", merged)
    assert load_json(merged)["sums"] == load_json(one)["sums"]
    assert patch_sums(parts[0])[1] < patch_sums(one)[1]
    s = imgnorm.stats(root, size=24, patch=3, progress=False)
    s.save(str(work / "py.json"))
    assert load_json(str(work / "py.json"))["sums"]["patch"] == load_json(one)["sums"]["patch"]
    # shards with another K (or none) do not merge
    other = str(work / "k5.json")
    cli("stats", root, "--size", "24", "--patch", "5", "--shard", "1/3", "-o", other, "-q")
    p = cli("merge", parts[0], other, "-o", str(work / "bad.json"), expect=2)
    assert "different patch moments (--patch 3 vs --patch 5)" in p.stderr


def test_refusals(photo_setup):
    work, root, _ = photo_setup
    plain = str(work / "plain.json")
    cli("stats", root, "--size", "24", "-o", plain, "-q")
    k3 = str(work / "refuse3.json")
    cli("stats", root, "--size", "24", "--patch", "3", "-o", k3, "-q")
    out = str(work / "never")

    def refused(*args, expect=2):
        p = cli(*args, expect=expect)
        assert not os.path.exists(out)
        return p.stderr

    err = refused("normalize", root, "--stats", plain, "--mode", "zca-patch", "-o", out, "-q")
    assert f"{plain}: has no patch moments, which --mode zca-patch needs; compute them with " \
           "imgnorm stats --patch 3" in err
    err = refused("normalize", root, "--stats", k3, "--mode", "zca-patch", "--patch", "5",
                  "-o", out, "-q")
    assert f"{k3}: has the 3x3 patch moments, not the 5x5 ones --patch 5 needs" in err
    err = refused("normalize", root, "--stats", k3, "--mode", "zca-patch", "--eps", "-1",
                  "-o", out, "-q")
    assert "eps must be a number >= 0" in err
    for k in ("4", "-1", "11"):
        err = refused("normalize", root, "--fit", "--mode", "zca-patch", "--patch", k, "-o", out,
                      "-q")
        assert f"--patch {k}: the patch side must be odd, 1 to 9" in err
        err = refused("stats", root, "--patch", k, "-o", str(work / "never.json"), "-q")
        assert f"--patch {k}: the patch side must be odd, 1 to 9" in err
    err = refused("normalize", root, "--fit", "--size", "4", "--mode", "zca-patch", "--patch", "5",
                  "-o", out, "-q")
    assert "--patch 5: the patch is larger than the 4x4 images" in err
    err = refused("stats", root, "--size", "4", "--patch", "5", "-o", str(work / "never.json"),
                  "-q")
    assert "--patch 5: the patch is larger than the 4x4 images" in err
    err = refused("normalize", root, "--stats", k3, "--mode", "standardize", "--patch", "3",
                  "-o", out, "-q")
    assert "--patch applies to --mode zca-patch, not standardize" in err
    # statistics of gray images against colour data: the patch dimensions differ (K*K*1 vs K*K*3)
    gray = str(work / "gray.json")
    cli("stats", root, "--size", "24", "--channels", "gray", "--patch", "3", "-o", gray, "-q")
    arr = str(work / "rgb.npy")
    np.save(arr, np.zeros((2, 24, 24, 3), np.uint8))
    err = refused("normalize", arr, "--stats", gray, "--mode", "zca-patch", "-o", out, "-q")
    assert f"3 channels, but the statistics in {gray} are gray" in err
    # an edited stats.json whose patch sums have the wrong size
    st = load_json(k3)
    st["sums"]["patch"]["sum"] = st["sums"]["patch"]["sum"][:-1]
    bad = str(work / "bad_patch.json")
    with open(bad, "w") as f:
        json.dump(st, f)
    err = refused("normalize", root, "--stats", bad, "--mode", "zca-patch", "-o", out, "-q",
                  expect=1)  # a malformed file, as every stats.json format error
    assert bad in err and "'sums.patch.sum' must have 27 entries, not 26" in err
    # denormalize: a convolution is not inverted
    done = str(work / "done")
    cli("normalize", root, "--stats", k3, "--mode", "zca-patch", "-o", done, "-q")
    p = cli("denormalize", os.path.join(done, "images.npy"), "-o", str(work / "px.npy"), expect=2)
    assert "--mode zca-patch cannot be inverted" in p.stderr
    assert not os.path.exists(str(work / "px.npy"))
    # Python refuses the same way
    with pytest.raises(ValueError, match="has no patch moments"):
        imgnorm.Normalizer(plain, mode="zca-patch")
