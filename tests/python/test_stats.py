"""imgnorm.stats / merge / Stats against the CLI's stats.json: the same bytes and the same numbers,
bit for bit, for several recipes, samples and shards; save/load/pickle round trips; the
torchvision and Keras adapters."""
import json
import os
import pickle
import warnings

import numpy as np
import pytest

import imgnorm
from util import MIXED_BAD, cli, image_files_of

PERCENTILES = ("1", "5", "95", "99")


def f64(v):
    return np.array(v, dtype=np.float64)


def same_bits(a, b):
    """Equal dtype float64, shape and bytes (NaN-safe, -0.0-strict)."""
    a, b = np.asarray(a), f64(b)
    return a.dtype == np.float64 and a.shape == b.shape and a.tobytes() == b.tobytes()


def check_against_json(s, path):
    """Every property of Stats `s` equals what the stats.json at `path` says, bit for bit."""
    with open(path) as f:
        text = f.read()
    assert s.to_json() == text
    j = json.loads(text)
    for name in ("mean", "std", "mean_unit", "std_unit", "median", "mean_image_std", "covariance"):
        assert same_bits(getattr(s, name), j[name]), name
    assert same_bits(s.min, j["min"]) and same_bits(s.max, j["max"])
    assert same_bits(s.percentiles, np.array([j["percentiles"][k] for k in PERCENTILES]).T)
    hist = s.histogram
    assert hist.dtype == np.uint64 and hist.tolist() == j["histograms"]
    # The exact sums are those of the histogram.
    values = np.arange(256, dtype=object)
    assert [int((values * h.astype(object)).sum()) for h in hist] == j["sums"]["sum"]
    assert s.images == j["counts"]["images"] == j["sums"]["images"]
    assert s.pixels == j["sums"]["pixels"] == j["counts"]["pixels_per_channel"]
    assert s.channels == len(j["mean"]) == len(j["recipe"]["channel_order"])
    assert s.channel_order == j["recipe"]["channels"]
    assert s.ddof == j["ddof"]
    assert s.classes == j["classes"]
    assert s.class_images == [j["counts"]["per_class"][c] for c in j["classes"]]
    assert s.files_found == j["counts"]["files_found"]
    assert s.source == j["source"]
    assert s.tool_version == j["tool"]["version"] == imgnorm.__version__
    r, jr = s.recipe, j["recipe"]
    assert (list(r["size"]), r["resize"], r["interp"], r["channels"], r["pad_value"],
            r["exact_decode"], r["max_pixels"]) == (
        jr["size"], jr["resize"], jr["interpolation"], jr["channels"], jr["pad_value"],
        jr["exact_decode"], jr["max_pixels"])
    shard = j.get("shard", {"index": 0, "count": 1})
    assert s.shard == (shard["index"], shard["count"])
    if "sample" in j:
        js = j["sample"]
        assert s.sample == {k: js[k] for k in ("population", "sampled", "seed", "spec")}
        assert same_bits(s.mean_ci, js["mean_ci95"]) and same_bits(s.std_ci, js["std_ci95"])
    else:
        assert s.sample is None and s.mean_ci is None and s.std_ci is None
    assert s.skipped == [(e["path"], e["reason"]) for e in j["skipped"]]
    assert s.ignored == [(e["path"], e["reason"]) for e in j["ignored"]]
    # variance is the square of std (ddof included), in 0-255² units
    np.testing.assert_allclose(s.variance, s.std ** 2, rtol=1e-12)


# (dataset fixture, Python keywords, CLI flags)
RECIPES = [
    ("photos", dict(size=64), ["--size", "64"]),
    ("photos", dict(size=(32, 48)), ["--size", "32x48"]),
    ("photos", dict(size="48x32", resize="crop"), ["--size", "48x32", "--resize", "crop"]),
    ("photos", dict(size=(48, 32), resize="pad", pad_value=114),
     ["--size", "48x32", "--resize", "pad", "--pad-value", "114"]),
    ("photos", dict(size=32, channels="gray"), ["--size", "32", "--channels", "gray"]),
    ("photos", dict(size=32, channels="bgr", interp="area"),
     ["--size", "32", "--channels", "bgr", "--interp", "area"]),
    ("photos", dict(size=32, exact_decode=True), ["--size", "32", "--exact-decode"]),
    ("photos", dict(size=32, ddof=1), ["--size", "32", "--ddof", "1"]),
    ("photos", dict(size=32, sample="25%", seed=3), ["--size", "32", "--sample", "25%", "--seed", "3"]),
    ("photos", dict(size=32, sample=11), ["--size", "32", "--sample", "11"]),
    ("flowers", dict(size=64), ["--size", "64"]),
    ("flowers", dict(size=32, resize="crop", interp="cubic"),
     ["--size", "32", "--resize", "crop", "--interp", "cubic"]),
    ("mixed", dict(size=32), ["--size", "32"]),
    ("mixed", dict(size=32, allow_truncated=True, channels="gray"),
     ["--size", "32", "--allow-truncated", "--channels", "gray"]),
]


@pytest.mark.parametrize("dataset,kw,args", RECIPES,
                         ids=[f"{d}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for d, kw, _ in RECIPES])
def test_stats_equals_cli(request, tmp_path, dataset, kw, args):
    root = request.getfixturevalue(dataset)
    path = str(tmp_path / "cli.json")
    cli("stats", root, *args, "-o", path, "-q")
    s = imgnorm.stats(root, threads=2, progress=False, **kw)
    check_against_json(s, path)
    if dataset == "mixed":
        skipped = {os.path.basename(p) for p, _ in s.skipped}
        assert skipped == (MIXED_BAD - {"jpeg_truncated.jpg"} if kw.get("allow_truncated") else MIXED_BAD)
        assert [os.path.basename(p) for p, _ in s.ignored] == ["README.txt"]


def test_stats_threads_do_not_matter(photos):
    a = imgnorm.stats(photos, size=32, threads=1)
    b = imgnorm.stats(photos, size=32, threads=3)
    assert a.to_json() == b.to_json()


def test_stats_histogram_equals_numpy_of_cv2_pixels(photos):
    """Independent reference: with exact_decode the pixels are cv2.resize(cv2.imread(f)); the
    histogram, min/max and mean/std/covariance are numpy's over those pixels."""
    cv2 = pytest.importorskip("cv2")
    files = image_files_of(photos)
    x = np.stack([cv2.resize(cv2.imread(f, cv2.IMREAD_COLOR), (32, 32))[:, :, ::-1] for f in files])
    s = imgnorm.stats(photos, size=32, exact_decode=True)
    flat = x.reshape(-1, 3)
    assert s.images == len(files)
    assert s.histogram.tolist() == [np.bincount(flat[:, c], minlength=256).tolist() for c in range(3)]
    assert s.min.tolist() == flat.min(axis=0).tolist() and s.max.tolist() == flat.max(axis=0).tolist()
    np.testing.assert_allclose(s.mean, flat.mean(axis=0, dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(s.std, flat.astype(np.float64).std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(s.covariance, np.cov(flat.T.astype(np.float64), ddof=0), rtol=1e-10)
    np.testing.assert_allclose(s.median, np.median(flat, axis=0), rtol=0)


def test_mean_image_equals_cli(tmp_path, photos):
    path, mean = str(tmp_path / "s.json"), str(tmp_path / "m.npy")
    cli("stats", photos, "--size", "24x16", "--mean-image", mean, "-o", path, "-q")
    s = imgnorm.stats(photos, size=(24, 16), mean_image=True)
    ref = np.load(mean)
    m = s.mean_image
    assert m.dtype == np.float64 and m.shape == ref.shape == (16, 24, 3)
    assert m.tobytes() == ref.tobytes()
    assert imgnorm.stats(photos, size=(24, 16)).mean_image is None


# ---- shards and merge ---------------------------------------------------------------------------


def test_merge_of_shards_equals_one_run(tmp_path, photos):
    one = imgnorm.stats(photos, size=32)
    parts = [imgnorm.stats(photos, size=32, shard=f"{i}/3") for i in range(3)]
    assert [p.shard for p in parts] == [(0, 3), (1, 3), (2, 3)]
    assert sum(p.images for p in parts) == one.images
    merged = imgnorm.merge(parts)
    assert merged.to_json() == one.to_json()
    assert imgnorm.merge(reversed(parts)).to_json() == one.to_json()
    # tuple form of shard=
    assert imgnorm.stats(photos, size=32, shard=(1, 3)).to_json() == parts[1].to_json()
    # The CLI's shards are the same files; the CLI's merge of them is the same bytes.
    cli_parts = []
    for i in range(3):
        p = str(tmp_path / f"cli{i}.json")
        cli("stats", photos, "--size", 32, "--shard", f"{i}/3", "-o", p, "-q")
        assert parts[i].to_json() == open(p).read()
        cli_parts.append(p)
    out = str(tmp_path / "cli-merged.json")
    cli("merge", *cli_parts, "-o", out)
    assert merged.to_json() == open(out).read()


def test_merge_sampled_shards(tmp_path, photos):
    kw = dict(size=32, sample="50%", seed=5)
    one = imgnorm.stats(photos, **kw)
    merged = imgnorm.merge([imgnorm.stats(photos, shard=(i, 2), **kw) for i in range(2)])
    assert merged.to_json() == one.to_json()
    path = str(tmp_path / "cli.json")
    cli("stats", photos, "--size", 32, "--sample", "50%", "--seed", 5, "-o", path, "-q")
    check_against_json(merged, path)


def test_merge_rules_as_cli(tmp_path, photos):
    parts = [imgnorm.stats(photos, size=32, shard=(i, 3)) for i in range(3)]
    paths = []
    for i, p in enumerate(parts):
        paths.append(str(tmp_path / f"p{i}.json"))
        p.save(paths[-1])
    # the same shard twice is refused, by both
    with pytest.raises(imgnorm.ArgumentError, match="merging would count them twice") as e:
        imgnorm.merge([parts[0], parts[0], parts[1], parts[2]])
    assert e.value.code == "invalid_argument"
    # an ArgumentError is a usage error for the CLI: exit status 2
    p = cli("merge", paths[0], paths[0], paths[1], paths[2], expect=2)
    assert "merging would count them twice" in p.stderr and paths[0] in p.stderr
    # a missing shard is a warning, by both
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = imgnorm.merge(parts[:2])
    got = [str(x.message) for x in w if issubclass(x.category, UserWarning)]
    p = cli("merge", paths[0], paths[1], "-o", str(tmp_path / "two.json"))
    assert [f"imgnorm: warning: {m}" for m in got] == p.stderr.splitlines(), (got, p.stderr)
    check_against_json(m, str(tmp_path / "two.json"))
    # different recipes cannot be merged
    with pytest.raises(imgnorm.Error):
        imgnorm.merge([parts[0], imgnorm.stats(photos, size=16, shard=(1, 3))])
    with pytest.raises(imgnorm.Error):
        imgnorm.merge([])


# ---- save / load / pickle -----------------------------------------------------------------------


def test_save_is_read_by_cli(tmp_path, photos):
    s = imgnorm.stats(photos, size=32, ddof=1)
    path = str(tmp_path / "py.json")
    s.save(path)
    assert open(path).read() == s.to_json()
    ref = str(tmp_path / "cli.json")
    cli("stats", photos, "--size", 32, "--ddof", 1, "-o", ref, "-q")
    ins = cli("inspect", path)
    assert ins.stdout == cli("inspect", ref).stdout
    assert f"{s.mean[0]:.4f}" in ins.stdout
    out = str(tmp_path / "merged.json")
    cli("merge", path, "-o", out)
    assert open(out).read() == s.to_json()
    # an existing file is kept unless force
    with pytest.raises(imgnorm.FileError):
        s.save(path)
    imgnorm.stats(photos, size=16).save(path, force=True)
    assert imgnorm.Stats.load(path).recipe["size"] == (16, 16)


def test_load_of_cli_file(tmp_path, photos, photo_stats):
    path, _ = photo_stats
    s = imgnorm.Stats.load(path)
    check_against_json(s, path)
    assert imgnorm.Stats.from_json(open(path).read()).to_json() == open(path).read()
    assert imgnorm.Stats.load(os.fspath(path)).to_json() == s.to_json()


def test_pickle_round_trip(photos):
    for s in (imgnorm.stats(photos, size=32, sample="25%", seed=1),
              imgnorm.stats(photos, size=(20, 12), channels="gray", shard="1/2", ddof=1)):
        t = pickle.loads(pickle.dumps(s))
        assert type(t) is imgnorm.Stats
        assert t.to_json() == s.to_json()
        assert t.mean.tobytes() == s.mean.tobytes()


def test_load_errors_as_cli(tmp_path, photos, photo_stats):
    bad = tmp_path / "bad.json"
    text = open(photo_stats[0]).read()
    j = json.loads(text)
    j["mean"][0] += 1.0
    bad.write_text(json.dumps(j))
    with pytest.raises(imgnorm.FileError) as e:
        imgnorm.Stats.load(str(bad))
    assert isinstance(e.value, OSError) and e.value.code == "format"
    p = cli("inspect", str(bad), expect=None)
    assert p.returncode == 1 and f"imgnorm: {e.value}" in p.stderr, (str(e.value), p.stderr)
    with pytest.raises(imgnorm.FileError):
        imgnorm.Stats.from_json("{")


# ---- adapters -----------------------------------------------------------------------------------


def test_torchvision_and_keras(flowers, photo_stats):
    torch = pytest.importorskip("torch")
    transforms = pytest.importorskip("torchvision.transforms")
    s = imgnorm.stats(flowers, size=32)
    t = s.torchvision()
    assert isinstance(t, transforms.Normalize)
    assert list(t.mean) == s.mean_unit.tolist() and list(t.std) == s.std_unit.tolist()
    j = json.loads(s.to_json())
    assert list(t.mean) == j["mean_unit"] and list(t.std) == j["std_unit"]
    # The CLI's --format torchvision prints the same constants.
    p = cli("stats", flowers, "--size", 32, "--format", "torchvision", "-q")
    assert "Normalize" in p.stdout
    # applied to a ToTensor image it is (x/255 - mean_unit)/std_unit
    x = torch.rand(3, 8, 8, dtype=torch.float64)
    ref = (x - torch.tensor(s.mean_unit)[:, None, None]) / torch.tensor(s.std_unit)[:, None, None]
    assert torch.allclose(t(x), ref)
    k = s.keras()
    assert k == {"mean": j["mean"], "variance": s.variance.tolist()}
    np.testing.assert_allclose(k["variance"], np.diag(np.array(j["covariance"])), rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(k["variance"]), j["std"], rtol=1e-12)
    assert f"{len(image_files_of(flowers))} images" in repr(s)
