"""imgnorm.Loader and imgnorm.torch.ImageFolder: every image exactly once per epoch, in an order
that is a function of (seed, epoch) only (the manifest order without shuffle), rank slices as
torch's DistributedSampler, each batch row equal to the row `imgnorm normalize` writes for that
file (the CLI's images.npy / labels.npy), skipped files, fresh buffers, zero-copy hand-over to
torch, the producer thread stopped by `break` and Ctrl-C; and examples/python/train_loop.py."""
import collections
import gc
import hashlib
import math
import os
import re
import signal
import subprocess
import time
import warnings

import numpy as np
import pytest

import imgnorm
from util import MIXED_BAD, PYTHON, SOURCE, big, child_env, cli, load_json, read_npy


def epoch_of(loader, with_indices=True):
    """One epoch: (images, labels, indices) of every batch."""
    return list(loader.batches(with_indices=with_indices))


def indices_of(batches):
    return [int(i) for _, _, idx in batches for i in idx]


def cli_normalize(out, dataset, *args):
    """The CLI's images.npy, labels.npy and manifest (files in row order, skipped files)."""
    cli("normalize", dataset, "-o", out, "--force", "-q", *args)
    x, _ = read_npy(os.path.join(out, "images.npy"))
    y = np.load(os.path.join(out, "labels.npy"))
    return x, y, load_json(os.path.join(out, "manifest.json"))


def sampler_slice(order, rank, replicas, drop_last):
    """torch.utils.data.DistributedSampler.__iter__ from its definition, on the epoch's order."""
    n = len(order)
    if drop_last and n % replicas != 0:
        num_samples = math.ceil((n - replicas) / replicas)
    else:
        num_samples = math.ceil(n / replicas)
    total_size = num_samples * replicas
    indices = list(order)
    if not drop_last:
        padding_size = total_size - n
        if padding_size <= n:
            indices += indices[:padding_size]
        else:
            indices += (indices * math.ceil(padding_size / n))[:padding_size]
    else:
        indices = indices[:total_size]
    return indices[rank:total_size:replicas]


@pytest.fixture(scope="module")
def photo_loader_kw(photos, photo_stats):
    return dict(stats=photo_stats[0], threads=2)


# ---- order ---------------------------------------------------------------------------------------


def test_every_image_exactly_once_per_epoch(photos, photo_loader_kw):
    loader = imgnorm.Loader(photos, batch_size=7, shuffle=True, seed=5, **photo_loader_kw)
    n = len(loader.files)
    assert n == 60
    assert len(loader) == math.ceil(n / 7)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        batches = epoch_of(loader)
        assert len(batches) == len(loader)
        assert [len(b[2]) for b in batches] == [7] * 8 + [4]
        got = indices_of(batches)
        assert sorted(got) == list(range(n)), "every image exactly once"
        assert got == list(loader.indices()), "in the announced order"
        for images, labels, idx in batches:
            assert images.shape == (len(idx), 32, 32, 3) and images.dtype == np.float32
            assert labels.dtype == np.int64 and labels.shape == (len(idx),)
    assert loader.skipped == []


def test_order_is_a_function_of_seed_and_epoch_not_threads(photos, photo_loader_kw):
    kw = dict(photo_loader_kw)
    del kw["threads"]
    runs = {}
    for threads in (1, 2, 4):
        loader = imgnorm.Loader(photos, batch_size=16, shuffle=True, seed=11, threads=threads, **kw)
        loader.set_epoch(3)
        batches = epoch_of(loader)
        runs[threads] = (indices_of(batches), b"".join(b[0].tobytes() for b in batches),
                         b"".join(b[1].tobytes() for b in batches))
    assert runs[1] == runs[2] == runs[4]


def test_set_epoch_gives_a_new_permutation(photos, photo_loader_kw):
    loader = imgnorm.Loader(photos, batch_size=32, shuffle=True, seed=0, **photo_loader_kw)
    orders = []
    for epoch in (0, 1, 2):
        loader.set_epoch(epoch)
        orders.append(indices_of(epoch_of(loader)))
    assert len({tuple(o) for o in orders}) == 3
    for o in orders:
        assert sorted(o) == list(range(60)) and o != list(range(60))
    loader.set_epoch(1)
    assert indices_of(epoch_of(loader)) == orders[1], "the same epoch again: the same order"
    # another seed, another order; a new Loader with the same seed, the same order
    other = imgnorm.Loader(photos, batch_size=32, shuffle=True, seed=1, **photo_loader_kw)
    assert indices_of(epoch_of(other)) != orders[0]
    same = imgnorm.Loader(photos, batch_size=32, shuffle=True, seed=0, **photo_loader_kw)
    assert indices_of(epoch_of(same)) == orders[0]


def test_without_shuffle_the_manifest_order(tmp_path, photos, photo_stats):
    _, y_ref, manifest = cli_normalize(str(tmp_path / "cli"), photos, "--stats", photo_stats[0])
    loader = imgnorm.Loader(photos, stats=photo_stats[0], batch_size=13, threads=2)
    assert loader.files == [f["path"] for f in manifest["files"]]
    for epoch in (0, 4):  # the epoch does not matter without shuffle
        loader.set_epoch(epoch)
        batches = epoch_of(loader)
        assert indices_of(batches) == list(range(60))
        assert np.array_equal(np.concatenate([b[1] for b in batches]), y_ref)


@pytest.mark.parametrize("drop_last", [False, True], ids=["pad", "drop_last"])
def test_rank_slices(photos, photo_loader_kw, drop_last):
    n = 60
    order = imgnorm.Loader(photos, batch_size=8, shuffle=True, seed=2,
                           **photo_loader_kw).indices(epoch=1)
    for world_size in (1, 2, 3, 4, 7):
        slices = []
        for rank in range(world_size):
            loader = imgnorm.Loader(photos, batch_size=8, shuffle=True, seed=2, rank=rank,
                                    world_size=world_size, drop_last=drop_last, **photo_loader_kw)
            loader.set_epoch(1)
            want = sampler_slice(order, rank, world_size, drop_last)
            assert list(loader.indices()) == want, (world_size, rank)
            got = indices_of(epoch_of(loader))
            if drop_last:
                want = want[:len(want) // 8 * 8]
            assert got == want, (world_size, rank)
            planned = len(sampler_slice(order, rank, world_size, drop_last))
            assert len(loader) == (planned // 8 if drop_last else math.ceil(planned / 8))
            slices.append(list(loader.indices()))
        sizes = {len(s) for s in slices}
        assert len(sizes) == 1, f"unequal slices {sizes}"
        everything = [i for s in slices for i in s]
        if drop_last:
            assert len(set(everything)) == len(everything), "ranks overlap"
            assert len(everything) == n // world_size * world_size
        else:
            assert set(everything) == set(range(n)), "ranks do not cover the epoch"
            # the only repeats are the padding: the first indices of the permutation
            padding = len(everything) - n
            assert padding < world_size
            assert sorted(everything) == sorted(order + order[:padding])


def test_rank_and_world_size_go_together(photos, photo_loader_kw):
    with pytest.raises(imgnorm.ArgumentError):
        imgnorm.Loader(photos, rank=0, **photo_loader_kw)
    with pytest.raises(imgnorm.ArgumentError):
        imgnorm.Loader(photos, rank=2, world_size=2, **photo_loader_kw)


# ---- values: the CLI's rows ---------------------------------------------------------------------

# (id, CLI flags, Loader keywords)
MODES = [
    ("standardize", [], {}),
    ("per-image", ["--mode", "per-image"], dict(mode="per-image")),
    ("minmax", ["--mode", "minmax"], dict(mode="minmax")),
    ("imagenet", ["--mode", "preset:imagenet"], dict(mode="preset:imagenet")),
    ("scale-float16", ["--mode", "scale", "--dtype", "float16"], dict(mode="scale", dtype="float16")),
    ("standardize-nchw", ["--layout", "nchw"], dict(layout="nchw")),
    ("per-image-channel-nchw-float16", ["--mode", "per-image-channel", "--layout", "nchw",
                                        "--dtype", "float16"],
     dict(mode="per-image-channel", layout="nchw", dtype="float16")),
]


@pytest.mark.parametrize("name,args,kw", MODES, ids=[m[0] for m in MODES])
def test_batches_equal_the_cli_rows(tmp_path, photos, photo_stats, name, args, kw):
    x_ref, y_ref, manifest = cli_normalize(str(tmp_path / "cli"), photos, "--stats",
                                           photo_stats[0], *args)
    row_of = {f["path"]: r for r, f in enumerate(manifest["files"])}
    loader = imgnorm.Loader(photos, stats=photo_stats[0], batch_size=16, shuffle=True, seed=9,
                            threads=2, **kw)
    loader.set_epoch(1)
    seen = 0
    for images, labels, idx in loader.batches(with_indices=True):
        assert images.dtype == x_ref.dtype and images.shape[1:] == x_ref.shape[1:]
        rows = [row_of[loader.files[i]] for i in idx]
        assert images.tobytes() == x_ref[rows].tobytes(), f"{name}: rows differ from the CLI's"
        assert np.array_equal(labels, y_ref[rows])
        seen += len(idx)
    assert seen == len(x_ref)


# ---- skipped files -------------------------------------------------------------------------------


def test_skipped_files(tmp_path, mixed):
    _, _, manifest = cli_normalize(str(tmp_path / "cli"), mixed, "--mode", "per-image", "--size", 16)
    loader = imgnorm.Loader(mixed, mode="per-image", size=16, batch_size=4, shuffle=True, seed=1,
                            threads=2)
    good = len(loader.files) - len(MIXED_BAD)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batches = epoch_of(loader)
        msgs = [str(w.message) for w in caught if "imgnorm.Loader skipped" in str(w.message)]
        if epoch == 0:
            assert len(msgs) == len(MIXED_BAD), msgs  # one warning per file
            assert {os.path.basename(m.split(": ")[0].split(" skipped ")[1]) for m in msgs} == MIXED_BAD
            assert all(w.filename == __file__ for w in caught), [w.filename for w in caught]
        else:
            assert msgs == [], "warned again in the next epoch"
        sizes = [len(b[2]) for b in batches]
        assert sizes == [4] * (good // 4) + ([good % 4] if good % 4 else []), sizes
        got = indices_of(batches)
        assert len(set(got)) == good
        assert not {os.path.basename(loader.files[i]) for i in got} & MIXED_BAD
    # listed once, with the CLI's reasons
    assert sorted(loader.skipped) == sorted((s["path"], s["reason"]) for s in manifest["skipped"])
    assert {os.path.basename(p) for p, _ in loader.skipped} == MIXED_BAD
    # warn=False: listed, not warned
    quiet = imgnorm.Loader(mixed, mode="per-image", size=16, batch_size=4, threads=2, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in quiet:
            pass
    assert len(quiet.skipped) == len(MIXED_BAD)


# ---- buffers -------------------------------------------------------------------------------------


def test_batches_are_fresh_buffers(photos, photo_loader_kw):
    ref = [b[0].copy() for b in imgnorm.Loader(photos, batch_size=8, **photo_loader_kw)]
    loader = imgnorm.Loader(photos, batch_size=8, prefetch=1, **photo_loader_kw)
    previous = None
    kept = []
    for k, (images, labels) in enumerate(loader):
        assert images.flags.c_contiguous and images.flags.writeable and images.flags.owndata is False
        assert np.array_equal(images, ref[k]), f"batch {k} changed by a mutation of an earlier one"
        if previous is not None:
            assert not np.shares_memory(previous, images)
        # scribble on this batch: the next ones (already prefetched or not) must not see it
        images[...] = np.nan
        labels[...] = -1
        previous = images
        kept.append(images)
    assert len(kept) == len(ref)
    for k in range(1, len(kept)):
        assert not np.shares_memory(kept[k - 1], kept[k])
    # the kept batches stay valid (and scribbled on) after the loader is gone
    del loader
    gc.collect()
    assert all(np.isnan(b).all() for b in kept)


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
def test_torch_shares_the_batch_memory(photos, photo_loader_kw, dtype):
    torch = pytest.importorskip("torch")
    loader = imgnorm.Loader(photos, batch_size=8, dtype=dtype, layout="nchw", **photo_loader_kw)
    images, labels = next(iter(loader))
    assert images.dtype == np.dtype(dtype)
    a = torch.from_numpy(images)
    b = torch.from_dlpack(images)
    ptr = images.__array_interface__["data"][0]
    assert a.data_ptr() == ptr and b.data_ptr() == ptr
    assert tuple(b.shape) == images.shape and b.dtype == a.dtype
    assert torch.equal(a, b)
    b[0, 0, 0, 0] = 7
    assert images[0, 0, 0, 0] == 7
    assert torch.from_numpy(labels).data_ptr() == labels.__array_interface__["data"][0]


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_uint8_rows_are_the_load_pixels(photos, photo_stats, layout):
    s = imgnorm.Stats.load(photo_stats[0])
    loader = imgnorm.Loader(photos, stats=s, batch_size=16, shuffle=True, dtype="uint8",
                            layout=layout, threads=2)
    r = s.recipe
    n = 0
    for images, labels, idx in loader.batches(with_indices=True):
        assert images.dtype == np.uint8
        for k, i in enumerate(idx):
            px = imgnorm.load(loader.files[i], **r)
            want = px if layout == "nhwc" else px.transpose(2, 0, 1)
            assert np.array_equal(images[k], want), loader.files[i]
            n += 1
    assert n == 60


# ---- stopping ------------------------------------------------------------------------------------


def os_thread_ids():
    return set(os.listdir("/proc/self/task"))


def threads_left(before, timeout=5.0):
    """The OS threads of this process that were not there `before`, once they had up to `timeout`
    seconds to end (oneTBB's workers may end a little after the epoch when no arena keeps them)."""
    deadline = time.monotonic() + timeout
    while os_thread_ids() - before and time.monotonic() < deadline:
        time.sleep(0.02)
    return os_thread_ids() - before


def test_break_stops_the_producer_thread(photos, photo_loader_kw):
    # The producer is a C++ thread (threading.active_count() does not see it): count the OS
    # threads. oneTBB's pool threads that persist exist after a first full epoch; the threads of a
    # broken epoch must all be gone after the break (and gc.collect()).
    loader = imgnorm.Loader(photos, batch_size=2, prefetch=2, **photo_loader_kw)
    for _ in loader:
        pass
    gc.collect()
    before = os_thread_ids()
    for attempt in range(3):
        it = iter(loader)
        next(it)
        time.sleep(0.05)
        assert os_thread_ids() - before, "no producer thread while the epoch runs?"
        for _ in it:
            break
        del it
        gc.collect()
        assert not threads_left(before), f"threads left after break (attempt {attempt})"
        for k, _ in enumerate(loader):  # the usual way: break out of a for loop
            if k == 1:
                break
        gc.collect()
        assert not threads_left(before), f"threads left after break (attempt {attempt})"
    # an exception out of the loop body
    with pytest.raises(ZeroDivisionError):
        for _ in loader:
            1 / 0
    gc.collect()
    assert not threads_left(before), "threads left after an exception in the loop"
    # the loader deleted in the middle of an epoch, its generator dropped
    it = iter(imgnorm.Loader(photos, batch_size=2, **photo_loader_kw))
    next(it)
    del it
    gc.collect()
    assert not threads_left(before), "threads left after deleting the loader mid-epoch"
    assert len(os_thread_ids()) <= len(before)


INTERRUPT_CHILD = r"""
import sys, time
import imgnorm
loader = imgnorm.Loader(sys.argv[1], mode="per-image", size=64, exact_decode=True, batch_size=2,
                        threads=1, prefetch=1)
n = 0
for images, labels in loader:
    if n == 0:
        print("start", flush=True)
    n += len(labels)
print(f"finished {n}", flush=True)
"""


def test_ctrl_c_during_iteration():
    root = big(50)  # 300 full-size 3000x2000 JPEG decodes: many seconds on one thread
    p = subprocess.Popen([PYTHON, "-c", INTERRUPT_CHILD, root], env=child_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "start"
        time.sleep(0.3)
        assert p.poll() is None, "the epoch ended before the signal"
        p.send_signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            stdout, stderr = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("the process still runs 10 s after SIGINT")
        latency = time.monotonic() - sent
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "finished" not in stdout, stdout
    assert p.returncode == -signal.SIGINT, (p.returncode, stderr[-2000:])
    assert stderr.rstrip().endswith("KeyboardInterrupt"), stderr[-2000:]
    assert latency < 5, latency


# ---- imgnorm.torch.ImageFolder -------------------------------------------------------------------

IMAGEFOLDER_KW = dict(mode="per-image", size=16, shuffle=True, seed=4, layout="nchw", threads=1)


def loader_samples(root, **kw):
    """(label, sha1 of the image bytes) of every row of one Loader epoch."""
    out = collections.Counter()
    for images, labels in imgnorm.Loader(root, batch_size=8, warn=False, **{**IMAGEFOLDER_KW, **kw}):
        for i in range(len(labels)):
            out[(int(labels[i]), hashlib.sha1(images[i].tobytes()).hexdigest())] += 1
    return out


def dataloader_samples(ds, workers=2):
    import torch

    out = collections.Counter()
    batches = []
    dl = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=workers,
                                     multiprocessing_context="fork" if workers else None,
                                     timeout=60 if workers else 0)
    for x, y in dl:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 16, 16) and y.dtype == torch.int64
        batches.append(len(y))
        for i in range(len(y)):
            out[(int(y[i]), hashlib.sha1(x[i].numpy().tobytes()).hexdigest())] += 1
    return out, batches


def test_imagefolder_in_a_dataloader(flowers):
    pytest.importorskip("torch")
    import imgnorm.torch

    ds = imgnorm.torch.ImageFolder(flowers, warn=False, **IMAGEFOLDER_KW)
    assert len(ds) == 40
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        got, batches = dataloader_samples(ds)
        want = loader_samples(flowers)
        assert sum(got.values()) == 40
        assert got == want, "not each image exactly once"
        assert all(b <= 8 for b in batches)


def test_imagefolder_odd_count_each_image_once(tmp_path, flowers):
    pytest.importorskip("torch")
    import shutil

    import imgnorm.torch

    root = str(tmp_path / "flowers39")
    shutil.copytree(flowers, root)
    os.remove(os.path.join(root, "daisy", sorted(os.listdir(os.path.join(root, "daisy")))[0]))
    ds = imgnorm.torch.ImageFolder(root, warn=False, **IMAGEFOLDER_KW)
    assert len(ds) == 39
    got, _ = dataloader_samples(ds)
    assert got == loader_samples(root), f"{sum(got.values())} samples for 39 images"


def test_imagefolder_drop_last_keeps_the_images(flowers):
    pytest.importorskip("torch")
    import imgnorm.torch

    ds = imgnorm.torch.ImageFolder(flowers, warn=False, drop_last=True, **IMAGEFOLDER_KW)
    got, _ = dataloader_samples(ds)
    assert sum(got.values()) == len(ds) == 40


# ---- examples/python/train_loop.py ---------------------------------------------------------------


def test_train_loop_example(flowers):
    pytest.importorskip("torch")
    script = os.path.join(SOURCE, "examples", "python", "train_loop.py")
    t = time.monotonic()
    p = subprocess.run([PYTHON, script, flowers, "--epochs", "1"], capture_output=True, text=True,
                       timeout=120, env=child_env(), cwd=SOURCE)
    took = time.monotonic() - t
    assert p.returncode == 0, (p.stdout, p.stderr[-3000:])
    losses = [float(v) for v in re.findall(r"loss ([-+0-9.eEnaif]+)", p.stdout)]
    assert losses, p.stdout
    assert all(math.isfinite(v) for v in losses), p.stdout
    assert took < 60, took


def test_pooled_buffers_are_reused_only_after_release(flowers):
    """Released batches' memory is recycled, held ones never: batches kept across two epochs stay
    intact and distinct while later batches are produced."""
    import numpy as np

    s = imgnorm.stats(flowers, size=32, progress=False)
    loader = imgnorm.Loader(flowers, stats=s, size=32, batch_size=8, shuffle=True)
    want, _ = imgnorm.normalize(flowers, stats=s, size=32, progress=False)
    kept = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        for images, labels, idx in loader.batches(with_indices=True):
            kept.append((images, idx))
        for images, labels in loader:  # a third pass whose batches are dropped at once
            pass
    for i, (a, ia) in enumerate(kept):
        assert np.array_equal(a, want[ia])
        for b, _ in kept[i + 1:]:
            assert not np.shares_memory(a, b)
