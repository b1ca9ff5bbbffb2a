"""imgnorm.normalize against `imgnorm normalize`: in memory, the returned arrays equal the CLI's
images.npy and labels.npy byte for byte for every mode, both layouts and float16; with out=DIR
the folder equals the CLI's."""
import os
import warnings

import numpy as np
import pytest

import imgnorm
from util import MIXED_BAD, cli, load_json, read_npy

# (id, CLI flags, Python keywords); "MEAN" stands for the mean image of photo_stats.
MODES = [
    ("standardize", [], {}),
    ("standardize-unit1", ["--mode", "standardize", "--unit", "1"], dict(mode="standardize", unit=1)),
    ("standardize-bgr", ["--channels", "bgr"], dict(channels="bgr")),
    ("scale", ["--mode", "scale"], dict(mode="scale")),
    ("scale-range", ["--mode", "scale", "--range=-1,1"], dict(mode="scale", range=(-1, 1))),
    ("center", ["--mode", "center"], dict(mode="center")),
    ("mean-image", ["--mode", "mean-image", "--mean-image", "MEAN"],
     dict(mode="mean-image", mean_image="MEAN")),
    ("mean-image-divide-std", ["--mode", "mean-image", "--mean-image", "MEAN", "--divide-std"],
     dict(mode="mean-image", mean_image="MEAN", divide_std=True)),
    ("minmax", ["--mode", "minmax"], dict(mode="minmax")),
    ("minmax-range", ["--mode", "minmax", "--range=-1,2"], dict(mode="minmax", range=(-1, 2))),
    ("minmax-dataset", ["--mode", "minmax-dataset"], dict(mode="minmax-dataset")),
    ("per-image", ["--mode", "per-image"], dict(mode="per-image")),
    ("per-image-channel", ["--mode", "per-image-channel"], dict(mode="per-image-channel")),
    ("imagenet", ["--mode", "preset:imagenet"], dict(mode="preset:imagenet")),
    ("caffe", ["--mode", "preset:caffe"], dict(mode="preset:caffe")),
    ("inception", ["--mode", "preset:inception"], dict(mode="preset:inception")),
    ("clip", ["--mode", "preset:clip"], dict(mode="preset:clip")),
    ("custom", ["--mode", "custom", "--mean", "120,110.5,100", "--std", "60,50,40.25"],
     dict(mode="custom", mean=[120, 110.5, 100], std=[60, 50, 40.25])),
    ("custom-mean-only", ["--mode", "custom", "--mean", "127,127,127"],
     dict(mode="custom", mean=(127, 127, 127))),
    ("custom-unit1", ["--mode", "custom", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225",
                      "--unit", "1"],
     dict(mode="custom", mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], unit=1)),
]
FORMATS = [("nhwc", "float32"), ("nchw", "float32"), ("nhwc", "float16"), ("nchw", "float16")]


def subst(v, mean):
    if isinstance(v, list):
        return [mean if a == "MEAN" else a for a in v]
    return {k: (mean if a == "MEAN" else a) for k, a in v.items()}


def cli_normalize(out, dataset, *args):
    cli("normalize", dataset, "-o", out, "--force", "-q", *args)
    x, _ = read_npy(os.path.join(out, "images.npy"))
    lp = os.path.join(out, "labels.npy")
    y = np.load(lp) if os.path.exists(lp) else None
    return x, y


def assert_same_array(got, ref):
    assert got.dtype == ref.dtype and got.shape == ref.shape, (got.dtype, got.shape, ref.dtype, ref.shape)
    assert got.tobytes() == ref.tobytes(), f"max |diff| {np.nanmax(np.abs(got.astype(np.float64) - ref))}"


@pytest.mark.parametrize("layout,dtype", FORMATS, ids=[f"{l}-{d}" for l, d in FORMATS])
@pytest.mark.parametrize("name,args,kw", MODES, ids=[m[0] for m in MODES])
def test_normalize_in_memory_equals_cli(tmp_path, photos, photo_stats, name, args, kw, layout, dtype):
    stats_path, mean = photo_stats
    x_ref, y_ref = cli_normalize(str(tmp_path / "cli"), photos, "--stats", stats_path,
                                 "--layout", layout, "--dtype", dtype, *subst(args, mean))
    assert y_ref is not None and y_ref.dtype == np.int64
    kw = subst(kw, mean)
    # stats as a path and as a Stats object
    for stats in (stats_path, imgnorm.Stats.load(stats_path)):
        x, y = imgnorm.normalize(photos, stats=stats, layout=layout, dtype=dtype, threads=2, **kw)
        assert_same_array(x, x_ref)
        assert_same_array(y, y_ref)
    assert x.dtype == np.dtype(dtype)
    n = len(y)
    assert x.shape == ((n, 32, 32, 3) if layout == "nhwc" else (n, 3, 32, 32))


def test_preset_names_without_prefix(photos, photo_stats):
    for p in ("imagenet", "caffe", "inception", "clip"):
        a, _ = imgnorm.normalize(photos, stats=photo_stats[0], mode="preset:" + p)
        b, _ = imgnorm.normalize(photos, stats=photo_stats[0], mode=p)
        assert a.tobytes() == b.tobytes()


def test_labels_are_training_class_ids(tmp_path, photos, photo_stats):
    """A test set with 2 of the 5 classes gets the training ids, as the CLI's labels.npy."""
    test = tmp_path / "test"
    for c in ("roses", "tulips"):
        (test / c).mkdir(parents=True)
        for f in sorted(os.listdir(os.path.join(photos, c)))[:3]:
            os.link(os.path.join(photos, c, f), test / c / f)
    x_ref, y_ref = cli_normalize(str(tmp_path / "out"), str(test), "--stats", photo_stats[0])
    x, y = imgnorm.normalize(test, stats=photo_stats[0])  # a pathlib.Path works too
    assert_same_array(x, x_ref)
    assert_same_array(y, y_ref)
    classes = imgnorm.Stats.load(photo_stats[0]).classes
    assert y.tolist() == [classes.index("roses")] * 3 + [classes.index("tulips")] * 3


def test_fit_equals_cli(tmp_path, flowers):
    x_ref, y_ref = cli_normalize(str(tmp_path / "cli"), flowers, "--fit", "--size", "24")
    x, y = imgnorm.normalize(flowers, fit=True, size=24)
    assert_same_array(x, x_ref)
    assert_same_array(y, y_ref)
    # and fit= is stats() then normalize(stats=)
    x2, _ = imgnorm.normalize(flowers, stats=imgnorm.stats(flowers, size=24))
    assert x2.tobytes() == x.tobytes()


def test_recipe_override_warns_as_cli(tmp_path, photos, photo_stats):
    out = str(tmp_path / "cli")
    p = cli("normalize", photos, "--stats", photo_stats[0], "--size", 16, "-o", out, "-q")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        x, _ = imgnorm.normalize(photos, stats=photo_stats[0], size=16)
    assert_same_array(x, np.load(os.path.join(out, "images.npy")))
    got = [f"imgnorm: warning: {m.message}" for m in w if issubclass(m.category, UserWarning)]
    assert got == [l for l in p.stderr.splitlines() if "warning" in l], (got, p.stderr)


def test_labels_false_and_gray(tmp_path, photos):
    gray = str(tmp_path / "gray.json")
    cli("stats", photos, "--size", 20, "--channels", "gray", "-o", gray, "-q")
    x_ref, y_ref = cli_normalize(str(tmp_path / "cli"), photos, "--stats", gray, "--no-labels",
                                 "--layout", "nchw")
    assert y_ref is None
    x, y = imgnorm.normalize(photos, stats=gray, labels=False, layout="nchw")
    assert y is None
    assert x.shape[1:] == (1, 20, 20)
    assert_same_array(x, x_ref)


# ---- out=DIR ------------------------------------------------------------------------------------

OUT_CASES = [
    ("standardize", [], {}),
    ("mean-image", ["--mode", "mean-image", "--mean-image", "MEAN", "--divide-std"],
     dict(mode="mean-image", mean_image="MEAN", divide_std=True)),
    ("per-image-nchw-f16", ["--mode", "per-image", "--layout", "nchw", "--dtype", "float16"],
     dict(mode="per-image", layout="nchw", dtype="float16")),
    ("caffe", ["--mode", "preset:caffe"], dict(mode="caffe")),
]


def manifest_diff(a, b):
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


@pytest.mark.parametrize("name,args,kw", OUT_CASES, ids=[c[0] for c in OUT_CASES])
def test_normalize_out_dir_equals_cli(tmp_path, photos, photo_stats, name, args, kw):
    stats_path, mean = photo_stats
    ref = str(tmp_path / "cli")
    cli("normalize", photos, "--stats", stats_path, "-o", ref, "-q", *subst(args, mean))
    ref_manifest = load_json(os.path.join(ref, "manifest.json"))
    kw = subst(kw, mean)
    for kind, stats in (("path", stats_path), ("object", imgnorm.Stats.load(stats_path))):
        out = str(tmp_path / kind)
        rows, skipped = imgnorm.normalize(photos, stats=stats, out=out, **kw)
        assert sorted(os.listdir(out)) == sorted(os.listdir(ref)) == ["images.npy", "labels.npy",
                                                                      "manifest.json"]
        for f in ("images.npy", "labels.npy"):
            assert open(os.path.join(out, f), "rb").read() == open(os.path.join(ref, f), "rb").read(), f
        m = load_json(os.path.join(out, "manifest.json"))
        assert rows == m["rows"] == ref_manifest["rows"] and skipped == []
        if kind == "path":
            # the same arguments: the same bytes
            assert open(os.path.join(out, "manifest.json")).read() == \
                open(os.path.join(ref, "manifest.json")).read()
        else:
            # a Stats object has no file to name: "stats" is null; everything else is the same.
            assert manifest_diff(m, ref_manifest) == ["stats"]
            assert m["stats"] is None and ref_manifest["stats"] == stats_path
        # the in-memory result is the same array
        x, y = imgnorm.normalize(photos, stats=stats, **kw)
        assert x.tobytes() == np.load(os.path.join(out, "images.npy")).tobytes()


def test_out_dir_with_skipped_files(tmp_path, mixed):
    stats = str(tmp_path / "s.json")
    cli("stats", mixed, "--size", 16, "-o", stats, "-q")
    ref = str(tmp_path / "cli")
    cli("normalize", mixed, "--stats", stats, "-o", ref, "-q")
    out = str(tmp_path / "py")
    rows, skipped = imgnorm.normalize(mixed, stats=stats, out=out, progress=False)
    m = load_json(os.path.join(ref, "manifest.json"))
    assert open(os.path.join(out, "manifest.json")).read() == open(os.path.join(ref, "manifest.json")).read()
    assert rows == m["rows"]
    assert skipped == [(e["path"], e["reason"]) for e in m["skipped"]]
    assert {os.path.basename(p) for p, _ in skipped} == MIXED_BAD
    # in memory, skipped files are a warning
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        x, y = imgnorm.normalize(mixed, stats=stats)
    assert any("4 files skipped" in str(m.message) for m in w), [str(m.message) for m in w]
    assert x.tobytes() == np.load(os.path.join(out, "images.npy")).tobytes()
    assert y.tobytes() == np.load(os.path.join(out, "labels.npy")).tobytes()


def test_out_dir_errors_as_cli(tmp_path, photos, photo_stats):
    out = str(tmp_path / "out")
    imgnorm.normalize(photos, stats=photo_stats[0], out=out)
    before = open(os.path.join(out, "images.npy"), "rb").read()
    # an existing output is kept unless force
    with pytest.raises(imgnorm.FileError) as e:
        imgnorm.normalize(photos, stats=photo_stats[0], out=out, mode="scale")
    p = cli("normalize", photos, "--stats", photo_stats[0], "-o", out, "--mode", "scale", "-q", expect=1)
    assert f"imgnorm: {e.value}" in p.stderr, (str(e.value), p.stderr)
    assert open(os.path.join(out, "images.npy"), "rb").read() == before
    imgnorm.normalize(photos, stats=photo_stats[0], out=out, mode="scale", force=True)
    assert open(os.path.join(out, "images.npy"), "rb").read() != before
    # an output folder inside the dataset is refused (bad usage)
    inside = os.path.join(photos, "daisy", "out")
    with pytest.raises(imgnorm.ArgumentError) as e:
        imgnorm.normalize(photos, stats=photo_stats[0], out=inside)
    assert isinstance(e.value, ValueError) and e.value.code == "invalid_argument"
    p = cli("normalize", photos, "--stats", photo_stats[0], "-o", inside, "-q", expect=2)
    assert f"imgnorm: {e.value}" in p.stderr, (str(e.value), p.stderr)
    assert not os.path.exists(inside)
    # a mode that needs statistics, without them
    with pytest.raises(imgnorm.ArgumentError):
        imgnorm.normalize(photos, mode="standardize")
    assert cli("normalize", photos, "-o", str(tmp_path / "nostats"), "-q", expect=None).returncode != 0


def test_warnings_point_at_the_caller(photos, photo_stats):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        imgnorm.normalize(photos, stats=photo_stats[0], size=16)
        imgnorm.merge([imgnorm.stats(photos, size=16, shard=(0, 2))])
    assert len(w) == 2
    assert [os.path.basename(m.filename) for m in w] == [os.path.basename(__file__)] * 2, \
        [f"{m.filename}:{m.lineno}" for m in w]
