"""imgnorm.Normalizer (and normalize on arrays) against the CLI's .npy-input path
(`imgnorm normalize X.npy --stats S -o DIR`), bit for bit; input layouts and strides; errors and
their mapping to imgnorm.ArgumentError / FileError with the CLI's messages; arrays that own their
memory (zero copy)."""
import gc
import os
import pickle

import numpy as np
import pytest

import imgnorm
from util import cli, load_json

RNG_SEED = 20240611


def make_input(kind, shape=(5, 32, 32, 3)):
    rng = np.random.default_rng(RNG_SEED)
    if kind == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    x = rng.random(shape) * 255.0
    x[0, 0, 0] = 0.0  # the ends of the range are present
    x[-1, -1, -1] = 255.0
    return x.astype(kind)


def cli_npy(tmp_path, x, *args, name="cli"):
    """The CLI's output for the array x given as a .npy file."""
    src = str(tmp_path / f"{name}-in.npy")
    np.save(src, x)
    out = str(tmp_path / name)
    cli("normalize", src, "-o", out, "--force", "-q", *args)
    assert not os.path.exists(os.path.join(out, "labels.npy"))
    return np.load(os.path.join(out, "images.npy")), load_json(os.path.join(out, "manifest.json"))


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# (id, CLI flags, Normalizer keywords); MEAN: the 32x32 mean image of photo_stats
CASES = [
    ("standardize", [], {}),
    ("standardize-nchw-f16", ["--layout", "nchw", "--dtype", "float16"], dict(layout="nchw", dtype="float16")),
    ("scale", ["--mode", "scale"], dict(mode="scale")),
    ("center-bgr", ["--mode", "center", "--channels", "bgr"], dict(mode="center", channels="bgr")),
    ("mean-image", ["--mode", "mean-image", "--mean-image", "MEAN"], dict(mode="mean-image", mean_image="MEAN")),
    ("minmax", ["--mode", "minmax", "--range=-1,1"], dict(mode="minmax", range=(-1, 1))),
    ("minmax-dataset", ["--mode", "minmax-dataset"], dict(mode="minmax-dataset")),
    ("per-image", ["--mode", "per-image", "--layout", "nchw"], dict(mode="per-image", layout="nchw")),
    ("per-image-channel", ["--mode", "per-image-channel"], dict(mode="per-image-channel")),
    ("caffe", ["--mode", "preset:caffe"], dict(mode="preset:caffe")),
    ("imagenet-unit1", ["--mode", "preset:imagenet", "--unit", "1"], dict(mode="imagenet", unit=1)),
    ("inception-f16", ["--mode", "preset:inception", "--dtype", "float16"], dict(mode="inception", dtype="float16")),
    ("custom", ["--mode", "custom", "--mean", "100,110,120", "--std", "50,60,70"],
     dict(mode="custom", mean=[100, 110, 120], std=[50, 60, 70])),
]


def subst(v, mean):
    if isinstance(v, list):
        return [mean if a == "MEAN" else a for a in v]
    return {k: (mean if a == "MEAN" else a) for k, a in v.items()}


@pytest.mark.parametrize("kind", ["uint8", "float32", "float64"])
@pytest.mark.parametrize("name,args,kw", CASES, ids=[c[0] for c in CASES])
def test_normalizer_equals_cli_npy(tmp_path, photo_stats, name, args, kw, kind):
    stats_path, mean = photo_stats
    x = make_input(kind)
    ref, manifest = cli_npy(tmp_path, x, "--stats", stats_path, *subst(args, mean))
    kw = subst(kw, mean)
    norm = imgnorm.Normalizer(stats_path, threads=2, **kw)
    got = norm(x)
    assert same(got, ref), f"max |diff| {np.abs(got.astype(np.float64) - ref).max()}"
    # the description is the manifest's
    assert (norm.formula, norm.mode, norm.layout, norm.dtype, norm.channels) == (
        manifest["formula"], manifest["mode"], manifest["layout"], manifest["dtype"], manifest["channels"])
    # with a Stats object, one thread, after pickling: the same
    assert same(imgnorm.Normalizer(imgnorm.Stats.load(stats_path), threads=1, **kw)(x), ref)
    assert same(pickle.loads(pickle.dumps(norm))(x), ref)
    # normalize() on the array and on the .npy file: the same, no labels
    a, y = imgnorm.normalize(x, stats=stats_path, **kw)
    assert y is None and same(a, ref)
    b, y = imgnorm.normalize(str(tmp_path / "cli-in.npy"), stats=stats_path, **kw)
    assert y is None and same(b, ref)
    # one image (H,W,C) is the batch's row
    one = norm(x[2])
    assert same(one, ref[2])


def test_other_sizes_and_gray(tmp_path, photos, photo_stats):
    # an image size other than the statistics' recipe (not mean-image)
    x = make_input("uint8", (3, 24, 20, 3))
    ref, _ = cli_npy(tmp_path, x, "--stats", photo_stats[0], "--layout", "nchw")
    norm = imgnorm.Normalizer(photo_stats[0], layout="nchw")
    assert same(norm(x), ref)
    assert same(norm(x[1]), ref[1]) and norm(x[1]).shape == (3, 24, 20)
    # the same normalizer on another size afterwards, and back
    x2 = make_input("uint8", (2, 32, 32, 3))
    ref2, _ = cli_npy(tmp_path, x2, "--stats", photo_stats[0], "--layout", "nchw", name="cli2")
    assert same(norm(x2), ref2) and same(norm(x), ref)
    # gray statistics: (N,H,W,1) batches and (H,W) single images
    gray = str(tmp_path / "gray.json")
    cli("stats", photos, "--size", 16, "--channels", "gray", "-o", gray, "-q")
    g = make_input("uint8", (4, 16, 16, 1))
    ref, _ = cli_npy(tmp_path, g, "--stats", gray, name="cli3")
    gnorm = imgnorm.Normalizer(gray)
    assert gnorm.channels == "gray"
    assert same(gnorm(g), ref)
    assert same(gnorm(g[1, :, :, 0]), ref[1])


@pytest.mark.parametrize("kind", ["uint8", "float32"])
def test_strided_input_equals_contiguous(photo_stats, kind):
    x = make_input(kind, (6, 32, 32, 3))
    for layout in ("nhwc", "nchw"):
        norm = imgnorm.Normalizer(photo_stats[0], layout=layout)
        for v in (x[:, ::2], x[::2], x[:, :, ::-1], x[..., ::-1], np.asfortranarray(x),
                  np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 3, 1)), 1, 3), x[1:4, 3:29, 5:30]):
            assert not v.flags.c_contiguous or v.base is None
            assert same(norm(v), norm(np.ascontiguousarray(v)))
        # one strided image
        assert same(norm(x[2, ::2, 1::3]), norm(np.ascontiguousarray(x[2, ::2, 1::3])))
    a, _ = imgnorm.normalize(x[:, ::2], stats=photo_stats[0])
    assert same(a, imgnorm.Normalizer(photo_stats[0])(np.ascontiguousarray(x[:, ::2])))


# ---- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint16, np.float16, np.bool_, np.complex64])
def test_wrong_dtype_is_argument_error(photo_stats, dtype):
    norm = imgnorm.Normalizer(photo_stats[0])
    x = np.zeros((2, 8, 8, 3), dtype)
    with pytest.raises(imgnorm.ArgumentError) as e:
        norm(x)
    assert isinstance(e.value, ValueError) and isinstance(e.value, imgnorm.Error)
    assert e.value.code == "invalid_argument" and np.dtype(dtype).name in str(e.value)
    with pytest.raises(imgnorm.ArgumentError):
        imgnorm.normalize(x, stats=photo_stats[0])


def test_bad_shapes_are_argument_errors(photo_stats):
    norm = imgnorm.Normalizer(photo_stats[0])
    for shape in [(8,), (2, 8, 8), (8, 8), (2, 8, 8, 1), (8, 8, 4), (1, 2, 8, 8, 3)]:
        with pytest.raises(imgnorm.ArgumentError):
            norm(np.zeros(shape, np.uint8))
    with pytest.raises(imgnorm.ArgumentError) as e:  # no rows: nothing to do
        norm(np.zeros((0, 8, 8, 3), np.uint8))
    assert e.value.code == "empty"
    with pytest.raises(TypeError):
        norm([[1, 2, 3]])


@pytest.mark.parametrize("shape", [(2, 8, 8, 4), (2, 0, 8, 3)], ids=["4-channels", "zero-height"])
def test_bad_array_contents_are_argument_errors(photo_stats, shape):
    norm = imgnorm.Normalizer(photo_stats[0])
    with pytest.raises(imgnorm.ArgumentError):
        norm(np.zeros(shape, np.uint8))


def test_non_finite_input_as_cli(tmp_path, photo_stats):
    x = np.full((2, 4, 4, 3), 100.0, np.float32)
    x[1, 2, 3, 1] = np.nan
    src = str(tmp_path / "nan.npy")
    np.save(src, x)
    p = cli("normalize", src, "--stats", photo_stats[0], "-o", str(tmp_path / "o"), "-q", expect=2)
    with pytest.raises(imgnorm.ArgumentError) as e:
        imgnorm.Normalizer(photo_stats[0])(x)
    # the same message, naming the array instead of the file
    assert str(e.value).replace("array: ", f"{src}: ", 1) in p.stderr, (str(e.value), p.stderr)


def test_missing_files_are_file_errors_with_cli_messages(tmp_path, photos, photo_stats):
    missing = str(tmp_path / "no-such" / "stats.json")
    out = str(tmp_path / "out")

    def expect_file_error(call, *cli_args, rc=1):
        with pytest.raises(imgnorm.FileError) as e:
            call()
        assert isinstance(e.value, OSError) and isinstance(e.value, imgnorm.Error)
        assert e.value.code == "io", e.value.code
        if cli_args:
            p = cli(*cli_args, expect=rc)
            assert p.stderr.splitlines()[-1] == f"imgnorm: {e.value}", (str(e.value), p.stderr)
        return str(e.value)

    msg = expect_file_error(lambda: imgnorm.Normalizer(missing),
                            "normalize", photos, "--stats", missing, "-o", out)
    assert missing in msg
    expect_file_error(lambda: imgnorm.normalize(photos, stats=missing),
                      "normalize", photos, "--stats", missing, "-o", out)
    expect_file_error(lambda: imgnorm.Stats.load(missing), "inspect", missing)
    d = str(tmp_path / "no-such-dir")
    assert d in expect_file_error(lambda: imgnorm.stats(d), "stats", d)
    npy = str(tmp_path / "no-such.npy")
    assert npy in expect_file_error(lambda: imgnorm.normalize(npy, stats=photo_stats[0]),
                                    "normalize", npy, "--stats", photo_stats[0], "-o", out)
    assert missing in expect_file_error(
        lambda: imgnorm.Normalizer(photo_stats[0], mode="mean-image", mean_image=missing),
        "normalize", photos, "--stats", photo_stats[0], "--mode", "mean-image", "--mean-image",
        missing, "-o", out)
    jpg = str(tmp_path / "no-such.jpg")
    assert jpg in expect_file_error(lambda: imgnorm.load(jpg))
    assert not os.path.exists(out)


def test_bad_arguments_are_argument_errors(photos, photo_stats):
    for kw in (dict(mode="no-such-mode"), dict(layout="nwhc"), dict(dtype="float64"),
               dict(mode="custom"), dict(mode="scale", range=(1, 1))):
        with pytest.raises(imgnorm.ArgumentError) as e:
            imgnorm.Normalizer(photo_stats[0], **kw)
        assert e.value.code == "invalid_argument", (kw, e.value.code)
    for kw in (dict(size=0), dict(resize="squash"), dict(channels="cmyk"), dict(ddof=2),
               dict(sample="150%"), dict(shard="3/2"), dict(shard="x")):
        with pytest.raises(imgnorm.ArgumentError):
            imgnorm.stats(photos, **kw)


# ---- zero copy ----------------------------------------------------------------------------------


def owns_via_capsule(a):
    """The array owns its memory and nothing else holds it: numpy's own allocation (Normalizer
    results are allocated by numpy and filled in place), or imgnorm's buffer held by a capsule;
    a single image is a reshaped view of such an array."""
    b = a
    while isinstance(b, np.ndarray) and not b.flags.owndata:
        b = b.base
    return (isinstance(b, np.ndarray) and b.flags.owndata) or type(b).__name__ == "PyCapsule"


def test_results_own_their_memory(photos, photo_stats, flowers):
    x = make_input("uint8")
    norm = imgnorm.Normalizer(photo_stats[0])
    a, b = norm(x), norm(x)
    for r in (a, b):
        assert owns_via_capsule(r)
        assert r.flags.writeable and r.flags.c_contiguous and r.flags.aligned
        assert not np.shares_memory(r, x)
    assert not np.shares_memory(a, b)
    a[...] = 7  # writing one result changes neither the input nor the other result
    assert same(b, norm(x)) and same(x, make_input("uint8"))
    # a single image is a view of nothing else either
    one = norm(x[0])
    assert owns_via_capsule(one) and not np.shares_memory(one, x)
    # a float32 input is not returned as is (no aliasing even when the dtype matches)
    xf = make_input("float32")
    nf = imgnorm.Normalizer(photo_stats[0], mode="custom", mean=[0, 0, 0])
    r = nf(xf)
    assert not np.shares_memory(r, xf) and same(r, xf)
    # normalize(): x and y
    xs, ys = imgnorm.normalize(photos, stats=photo_stats[0])
    xs2, ys2 = imgnorm.normalize(photos, stats=photo_stats[0])
    assert owns_via_capsule(xs) and owns_via_capsule(ys)
    assert ys.dtype == np.int64 and ys.flags.writeable and xs.flags.writeable
    assert not np.shares_memory(xs, xs2) and not np.shares_memory(ys, ys2)
    ax, _ = imgnorm.normalize(x, stats=photo_stats[0])
    assert owns_via_capsule(ax) and not np.shares_memory(ax, x)
    # load() and Stats.mean_image
    f = os.path.join(flowers, "daisy", "daisy_00.jpg")
    i1, i2 = imgnorm.load(f, size=16), imgnorm.load(f, size=16)
    assert i1.dtype == np.uint8 and i1.shape == (16, 16, 3) and owns_via_capsule(i1)
    assert i1.flags.writeable and not np.shares_memory(i1, i2)
    m = imgnorm.stats(flowers, size=8, mean_image=True).mean_image
    assert owns_via_capsule(m) and m.flags.writeable


def test_results_outlive_their_makers(photo_stats):
    x = make_input("uint8")
    norm = imgnorm.Normalizer(photo_stats[0])
    ref = norm(x).copy()
    r = norm(x)
    del norm
    gc.collect()
    assert same(r, ref)
    assert r.flags.owndata  # numpy's allocation, freed with r


def test_load_equals_pipeline_pixels(tmp_path, flowers):
    """load() gives the pixels the pipeline sees: normalize with scale over a one-image list is
    load()/255 (and with exact_decode, cv2.resize(cv2.imread) as the CLI's reference tests)."""
    cv2 = pytest.importorskip("cv2")
    f = os.path.join(flowers, "roses", sorted(os.listdir(os.path.join(flowers, "roses")))[0])
    px = imgnorm.load(f, size=(24, 16), exact_decode=True)
    ref = cv2.resize(cv2.imread(f, cv2.IMREAD_COLOR), (24, 16))[:, :, ::-1]
    assert same(px, np.ascontiguousarray(ref))
    gray = imgnorm.load(f, size=12, channels="gray")
    assert gray.shape == (12, 12) and gray.dtype == np.uint8
    lst = tmp_path / "one.txt"
    lst.write_text(os.path.relpath(f, tmp_path) + "\n")
    s = str(tmp_path / "s.json")
    cli("stats", "--list", str(lst), "--size", "24x16", "-o", s, "-q")
    out = str(tmp_path / "o")
    cli("normalize", "--list", str(lst), "--stats", s, "--mode", "scale", "--dtype", "float32", "-o", out, "-q")
    scaled = np.load(os.path.join(out, "images.npy"))[0]
    p = imgnorm.load(f, size=(24, 16))
    assert same(imgnorm.Normalizer(s, mode="scale")(p), scaled)


def test_array_to_out_dir_equals_cli_npy(tmp_path, photo_stats):
    """normalize(array, out=DIR) writes the CLI's folder for the same array as a .npy file; the
    manifest differs only in "source" (the .npy path for the CLI, "array" in memory)."""
    x = make_input("float32", (4, 32, 32, 3))
    ref, ref_manifest = cli_npy(tmp_path, x, "--stats", photo_stats[0], "--mode", "per-image-channel")
    out = str(tmp_path / "py")
    rows, skipped = imgnorm.normalize(x, stats=photo_stats[0], mode="per-image-channel", out=out)
    assert (rows, skipped) == (4, [])
    assert sorted(os.listdir(out)) == ["images.npy", "manifest.json"]
    assert open(os.path.join(out, "images.npy"), "rb").read() == \
        open(os.path.join(tmp_path, "cli", "images.npy"), "rb").read()
    m = load_json(os.path.join(out, "manifest.json"))
    diff = sorted(k for k in set(m) | set(ref_manifest) if m.get(k) != ref_manifest.get(k))
    assert diff == ["source"], diff
    assert m["source"] == "array" and ref_manifest["source"].endswith("cli-in.npy")
