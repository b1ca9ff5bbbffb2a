"""imgnorm: exact per-channel statistics of image datasets and normalized tensors.

The same library calls as the ``imgnorm`` command line, with the same arguments and defaults::

    import imgnorm
    s = imgnorm.stats("flower_photos", size=224)   # exact mean/std, 0-255 units
    s.mean, s.std                                   # numpy float64 arrays (C,)
    s.save("stats.json")                            # the CLI's stats.json
    x, y = imgnorm.normalize("test", stats=s, mode="standardize")   # (N,H,W,C) float32, int64
    norm = imgnorm.Normalizer(s, mode="standardize", layout="nchw")
    z = norm(batch_u8)                              # the CLI's exact values

Keyword names are the CLI's long flags with ``_`` for ``-``. Errors raise :class:`imgnorm.Error`:
:class:`ArgumentError` (also a ``ValueError``) for bad arguments and empty inputs,
:class:`FileError` (also an ``OSError``) for files that cannot be read, written or parsed, and
the base class itself for limits of the run (``e.code`` "too_large": over ``max_memory``,
``max_pixels`` or a counter's range; "out_of_memory": an allocation failed); the message is the
CLI's, and ``e.code`` is its kind ("invalid_argument", "io", "format", "too_large", ...).
Ctrl-C stops a running job promptly and raises ``KeyboardInterrupt``; no partial output is left.
The GIL is released while imgnorm decodes, resizes, accumulates and normalizes.

Paths may be str, bytes or os.PathLike. File and class names come back as Python gives file names
(``os.fsdecode``: bytes that are not UTF-8 as lone surrogates), which is also what ``json.load``
gives for the stats.json and manifest.json files; ``os.fsencode(name)`` is the original bytes.
"""

import builtins
import os
import sys

from . import _core
from ._core import ArgumentError, Error, FileError, Stats

__version__ = _core.__version__
__all__ = [
    "Error",
    "ArgumentError",
    "FileError",
    "Stats",
    "Normalizer",
    "stats",
    "merge",
    "normalize",
    "load",
    "Loader",
]


# ---- progress ------------------------------------------------------------------------------------


class _Bar:
    """A progress callback: tqdm when it is installed, else one line rewritten on stderr."""

    def __init__(self, label):
        self.label = label
        self.bar = None
        self.plain_done = -1
        try:
            import tqdm  # noqa: F401

            self.tqdm = tqdm.tqdm
        except ImportError:
            self.tqdm = None

    def __call__(self, done, total):
        if total == 0:
            return
        if self.tqdm is not None:
            if self.bar is None:
                self.bar = self.tqdm(total=total, desc=self.label, unit="img", file=sys.stderr)
            self.bar.update(done - self.bar.n)
        elif done != self.plain_done:
            self.plain_done = done
            sys.stderr.write(f"\r{self.label} {done}/{total}")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _progress(progress, label):
    """The callback for ``progress=``: None (default) shows a bar only when stderr is a terminal;
    True/False force it; a callable receives (done, total)."""
    if callable(progress):
        return progress
    if progress is None:
        progress = sys.stderr.isatty()
    return _Bar(label) if progress else None


def _run(fn, label, progress, *args):
    cb = _progress(progress, label)
    try:
        return fn(*args, cb)
    finally:
        if isinstance(cb, _Bar):
            cb.close()


def _path(p):
    return None if p is None else os.fspath(p)


# ---- statistics ----------------------------------------------------------------------------------


def stats(dataset=None, *, list=None, follow_links=False, size=None, resize="stretch",
          interp="linear", channels="rgb", pad_value=0, exact_decode=False, max_pixels=None,
          alpha="drop", sample=None, seed=0, shard=None, ddof=0, mean_image=False, patch=None,
          pixel_covariance=False, threads=0, max_memory=None, allow_truncated=False, progress=None):
    """Exact per-channel statistics of a dataset, as ``imgnorm stats`` computes them.

    dataset: a class-folder tree (``DIR/<class>/**/*.jpg``) or a flat folder; or ``list=FILE``
    (one path per line). follow_links: also follow symlinks that lead out of the dataset folder
    (each real folder is scanned once either way). size: N or (width, height) or "WxH", pixels
    (default 224; with resize="none" the images' own, which must all agree). resize: stretch | crop
    | pad | none. interp: linear | area | nearest | cubic | lanczos (cv2.INTER_*). channels: rgb | bgr
    | gray. exact_decode: decode JPEGs at full size (pixels identical to cv2.imread + cv2.resize).
    max_pixels: refuse larger images (default 178956970). alpha: transparency of PNG/WebP files:
    "drop" it as cv2.imread does, or composite onto "white", "black", "R,G,B" or (R, G, B) 0-255
    (recorded in the recipe). sample: K images or "P%" (uniform,
    without replacement, seeded by ``seed``); shard: "I/N" or (I, N). ddof: 0 (numpy) or 1.
    mean_image: also keep the per-pixel mean image (``Stats.mean_image``). patch: K (odd, 1-9) to
    also record the exact moments of every KxK patch (stats.json ``sums.patch``), which
    ``mode="zca-patch", patch=K`` needs (``Stats.patch_mean``, ``Stats.patch_covariance``).
    pixel_covariance: also keep the exact moments of whole
    images (``Stats.pixel_covariance``, (D+1)x(D+1), D = H*W*C; ``Stats.save`` writes them beside
    stats.json; refused when they do not fit ``max_memory``). threads: 0 = all cores.
    max_memory: memory for the images in flight, bytes or a size such as "2G" or "512M" (default:
    half of the physical memory or of the container's limit); more images wait, none fails.
    Returns a :class:`Stats`; skipped files are in ``Stats.skipped``. Warns when the sample is
    the whole dataset and for each class without a usable image.
    """
    shard_index, shard_count = _shard(shard)
    kw = dict(list=_path(list), follow_links=follow_links, size=size, resize=resize, interp=interp,
              channels=channels, pad_value=pad_value, exact_decode=exact_decode,
              max_pixels=max_pixels, alpha=alpha,
              sample=None if sample is None else str(sample), seed=seed, shard_index=shard_index,
              shard_count=shard_count, ddof=ddof, mean_image=mean_image, patch=patch,
              pixel_covariance=pixel_covariance, threads=threads,
              max_memory=max_memory, allow_truncated=allow_truncated)
    return _run(_core.stats, "stats", progress, _path(dataset), kw)


def _shard(shard):
    if shard is None:
        return 0, 1
    if isinstance(shard, str):
        i, sep, n = shard.partition("/")
        if not sep or not i.isdigit() or not n.isdigit():
            raise ArgumentError(f"invalid shard '{shard}': expected I/N")
        return int(i), int(n)
    i, n = shard
    return int(i), int(n)


def merge(parts):
    """Adds the exact sums of several :class:`Stats` (disjoint shards of one selection, or
    different datasets) with the rules of ``imgnorm merge``: two parts that cover a file of the
    same selection (the same shard twice, a whole run and one of its shards, shards 0/2 and 1/3)
    raise :class:`ArgumentError` naming both; missing shards, and parts that do not record what
    they cover, give a warning. The result equals one run over all of them."""
    return _core.merge(builtins.list(parts))


def _torchvision(self):
    """A ``torchvision.transforms.Normalize`` with these constants (mean/std in 0-1 units, the
    statistics' channel order), for tensors from ``ToTensor``."""
    from torchvision import transforms

    return transforms.Normalize(mean=self.mean_unit.tolist(), std=self.std_unit.tolist())


def _keras(self):
    """``dict(mean=..., variance=...)`` in 0-255 units for
    ``keras.layers.Normalization(axis=-1, **s.keras())`` on 0-255 inputs."""
    return dict(mean=self.mean.tolist(), variance=self.variance.tolist())


def _stats_repr(self):
    return (f"<imgnorm.Stats {self.images} images, {self.channel_order}, "
            f"mean={[round(v, 4) for v in self.mean.tolist()]}, "
            f"std={[round(v, 4) for v in self.std.tolist()]}>")


_STATS_DOCS = {
    "mean": "Per-channel mean, 0-255 units, float64 (C,), in `channel_order`.",
    "std": "Per-channel std, 0-255 units: population (ddof 0, as numpy) unless ddof=1.",
    "variance": "Per-channel variance, 0-255 units (std squared).",
    "mean_unit": "mean / 255: the 0-1 constants of torchvision's Normalize.",
    "std_unit": "std / 255.",
    "min": "Per-channel minimum, 0-255.",
    "max": "Per-channel maximum, 0-255.",
    "median": "Per-channel median, as numpy.median over all values.",
    "percentiles": "(C, 4): the 1st, 5th, 95th and 99th percentiles (numpy's 'linear').",
    "mean_image_std": "Per-channel mean over images of each image's own std (0-255).",
    "covariance": "(C, C) channel covariance, 0-255 units, the same ddof as std.",
    "eigenvalues": "(C,) eigenvalues of the covariance, descending, 0-255 units (channel PCA).",
    "eigenvectors": "(C, C) its eigenvectors as columns (largest component positive).",
    "histogram": "(C, 256) uint64 exact value counts.",
    "mean_image": "(H, W, C) float64 per-pixel mean image when stats(mean_image=True), else None.",
    "pixel_covariance": "(D+1, D+1) float64 exact moments of whole images, sum of [1, x][1, x]^T (D = H*W*C), "
                        "when stats(pixel_covariance=True), else None.",
    "patch": "K of stats(patch=K) (`imgnorm stats --patch K`), else None.",
    "patch_count": "Number of KxK patches counted (positions where the patch lies wholly inside its "
                   "image) when stats(patch=K), else None.",
    "patch_mean": "(K, K, C) float64 mean of the KxK patches, 0-255 units, indexed [dy, dx, c] as "
                  "img[y:y+K, x:x+K, :] (its reshape(-1) is the order of patch_covariance) when "
                  "stats(patch=K) counted at least one patch, else None.",
    "patch_covariance": "(D, D) float64 covariance of the KxK patches, D = K*K*C in patch_mean's "
                        "flattened order, 0-255 units, the same ddof as std (what "
                        "mode='zca-patch' whitens with), when stats(patch=K) counted more patches "
                        "than ddof, else None.",
    "mean_ci": "(C, 2) 95% confidence interval of each mean for a sample, else None.",
    "std_ci": "(C, 2) 95% confidence interval of each std for a sample, else None.",
    "images": "Images used.",
    "pixels": "Pixels per channel over all images.",
    "channels": "Number of channels (3, or 1 for gray).",
    "channel_order": "rgb, bgr or gray: the order of every per-channel array.",
    "classes": "Class names (sorted; the label of a class is its index).",
    "class_images": "Images used per class.",
    "skipped": "[(path, reason)] of files that could not be used.",
    "ignored": "[(path, reason)] of files the scan did not take (hidden, other extensions...).",
    "recipe": "The preprocessing recipe: size (w, h), resize, interp, channels, ...",
    "sample": "dict(population, sampled, seed, spec) of a sampled run, else None.",
    "shard": "(index, count) when these statistics are one shard of one selection; else (0, 1).",
    "covers": "[dict(selection, files, shards)]: the files covered, as stats.json's 'covers' (shards: "
              "[(index, count)], empty when all files); [] when unknown (an older file, an array).",
}
for _name, _doc in _STATS_DOCS.items():
    try:
        getattr(Stats, _name).__doc__ = _doc
    except (AttributeError, TypeError):
        pass

Stats.torchvision = _torchvision
Stats.keras = _keras
Stats.__repr__ = _stats_repr


# ---- normalization -------------------------------------------------------------------------------


def _job_kwargs(stats, mode, range, unit, mean, std, mean_image, divide_std, eps, layout, dtype,
                channels, matrix=None, patch=None):
    return dict(stats=stats if isinstance(stats, Stats) or stats is None else _path(stats),
                mode=mode, range=None if range is None else tuple(range), unit=unit,
                mean=None if mean is None else builtins.list(mean),
                std=None if std is None else builtins.list(std), mean_image=_path(mean_image),
                divide_std=divide_std, eps=eps, layout=layout, dtype=dtype, channels=channels,
                matrix=None if matrix is None else [float(v) for row in matrix for v in row],
                patch=patch)


def normalize(dataset=None, *, list=None, follow_links=False, stats=None, fit=False,
              save_stats=None, ddof=None, mode="standardize", range=None, unit=None, mean=None, std=None,
              mean_image=None, divide_std=False, eps=None, patch=None, components=None,
              whiten=True, layout="nhwc", dtype="float32", channels=None, labels=True, size=None,
              resize=None, interp=None,
              pad_value=None, exact_decode=None, max_pixels=None, alpha=None, out=None,
              force=False, output_shards=False, threads=0, max_memory=None,
              allow_truncated=False, progress=None):
    """Normalizes a dataset as ``imgnorm normalize`` does.

    dataset: a folder (or ``list=FILE``), a .npy path, or a numpy array (N,H,W,C) / (N,H,W) of
    uint8, or float32/float64 values in 0-255. stats: a :class:`Stats` or a stats.json path (the
    training statistics; their recipe is used unless size=, resize=, alpha=, ... override it, with
    a warning); or fit=True to compute them from this input first, and save_stats=PATH to write
    those fitted statistics as a stats.json (the CLI's --save-stats; load it with
    :meth:`Stats.load` or pass it as ``stats=`` for test data); ddof: with fit=True, 0 (population,
    numpy's default, when None) or 1 (sample: sklearn's PCA, torch.std) for the fitted std and
    covariances, as ``stats(ddof=...)`` (refused with ``stats=``, which carry their own). mode: standardize | scale | center
    | mean-image | minmax | minmax-dataset | per-image | per-image-channel | imagenet | caffe |
    inception | clip | custom | zca-channels | pca-channels | zca-patch | zca (the older spelling
    "preset:imagenet" also works). range=(lo, hi) for scale/minmax;
    unit: 255 (default) or 1; mean/std: custom constants (output channel order; when every one
    is at most 1 and some is a fraction, without an explicit unit a warning suggests unit=1);
    eps: floor of a zero std; for zca-channels, pca-channels, zca-patch and zca the regularizer added
    to the eigenvalues (0-1 units, default 1e-5); patch: K of zca-patch (odd, default 3; the
    statistics need stats(patch=K)); components: K of pca (default all D = H·W·C; the rows are
    N×K), whiten=False: pca without dividing by √(λ+ε) (the CLI's --no-whiten); zca and pca need
    stats(pixel_covariance=True) (or fit=True);
    layout: nhwc | nchw; dtype: float32 | float16; channels: output order rgb | bgr | gray.
    threads: 0 = all cores; max_memory: memory for the images in flight (as for :func:`stats`),
    and the limit of the zca/pca fit (its D×D matrices), refused beyond it naming the bytes needed.
    follow_links: as for :func:`stats`. resize="none" keeps the images' size (that of the first
    image; every image must have it).

    Without ``out``: returns ``(x, y)``, x the normalized array (owning its memory), y the int64
    labels (training class ids), or None for array input or labels=False. With ``out=DIR``: writes
    images.npy, labels.npy and manifest.json there (the folder is claimed for the run, the three
    files committed together; ``force`` replaces an old set whole) and returns
    ``(rows, skipped)``. ``output_shards=True`` (the CLI's --output-shards) writes the set as
    shards instead, images-00000.npy and labels-00000.npy listed in manifest.json's "shards", as
    ``mpirun imgnorm normalize --output-shards`` writes one per rank. In memory, files that cannot be read are skipped with one
    warning listing them (their rows are absent, as in the CLI's output).
    """
    kw = _job_kwargs(stats, mode, range, unit, mean, std, mean_image, divide_std, eps, layout,
                     dtype, channels, patch=patch)
    kw.update(components=components, whiten=whiten)
    kw.update(list=_path(list), follow_links=follow_links, fit=fit, save_stats=_path(save_stats),
              ddof=ddof, labels=labels, size=size, resize=resize, interp=interp, pad_value=pad_value,
              exact_decode=exact_decode, max_pixels=max_pixels, alpha=alpha, out=_path(out),
              force=force, output_shards=output_shards, threads=threads, max_memory=max_memory,
              allow_truncated=allow_truncated)
    if not _is_array(dataset):
        dataset = _path(dataset)
    result = _run(_core.normalize, "normalize", progress, dataset, kw)
    if out is not None:
        return result
    x, y, _files, skipped = result
    if skipped:
        import warnings

        warnings.warn(_core.printable(f"{len(skipped)} files skipped: " +
                                      "; ".join(f"{p}: {r}" for p, r in skipped[:5])), stacklevel=2)
    return x, y


def _is_array(x):
    return type(x).__module__ == "numpy" and type(x).__name__ == "ndarray"


class Normalizer:
    """A prepared normalization for numpy images, with the CLI's exact values.

    ``Normalizer(stats, mode="standardize", layout="nhwc", dtype="float32", ...)`` takes the
    arguments of :func:`normalize` (no dataset). Calling it on uint8 (or float 0-255) images
    ``(N,H,W,C)``, one image ``(H,W,C)`` or one gray image ``(H,W)``, in the statistics' channel
    order, returns a new float32/float16 array (``(N,H,W,C)`` or ``(N,C,H,W)``). Batches are
    normalized on ``threads`` threads (0 = all cores) with the GIL released. Picklable.

    mode="zca" and "pca" (with ``components=K`` and ``whiten=``, as for :func:`normalize`) need
    statistics with the pixel covariance (``stats(pixel_covariance=True)``) and take images of
    their size only (D = H·W·C values; another size is refused, naming both). pca returns
    ``(N,K)`` (``(K,)`` for one image). The whitening matrix is computed once, at construction.
    """

    def __init__(self, stats=None, mode="standardize", *, range=None, unit=None, mean=None,
                 std=None, mean_image=None, divide_std=False, eps=None, patch=None,
                 components=None, whiten=True, layout="nhwc", dtype="float32", channels=None,
                 matrix=None, threads=0):
        self._args = dict(stats=stats, mode=mode, range=range, unit=unit, mean=mean, std=std,
                          mean_image=mean_image, divide_std=divide_std, eps=eps, patch=patch,
                          components=components, whiten=whiten, layout=layout, dtype=dtype,
                          channels=channels, matrix=matrix, threads=threads)
        kw = _job_kwargs(stats, mode, range, unit, mean, std, mean_image, divide_std, eps, layout,
                         dtype, channels, matrix, patch=patch)
        kw.update(components=components, whiten=whiten)
        kw["threads"] = threads
        self._core = _core.Normalizer(kw)

    def __call__(self, images):
        return self._core(images)

    def __getstate__(self):
        return self._args

    def __setstate__(self, args):
        self.__init__(**args)

    formula = property(lambda self: self._core.formula, doc="The formula, as the manifest says.")
    mode = property(lambda self: self._core.mode)
    layout = property(lambda self: self._core.layout)
    dtype = property(lambda self: self._core.dtype)
    channels = property(lambda self: self._core.channels, doc="Output channel order.")

    def __repr__(self):
        return f"<imgnorm.Normalizer {self.mode}: {self.formula} ({self.layout}, {self.dtype})>"


def _distributed(rank, world_size):
    """rank/world_size as given, else torch.distributed's when it is initialized, else 0/1."""
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    if rank is not None or world_size is not None:
        raise ArgumentError("give both rank= and world_size=, or neither")
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Loader:
    """Normalized training batches straight from the files, without a DataLoader.

    ``Loader(dataset, stats=s, mode="standardize", batch_size=64, shuffle=True, seed=0,
    layout="nhwc", dtype="float32", drop_last=False, threads=0, prefetch=2)`` takes the arguments
    of :func:`normalize` (the dataset is a folder or ``list=FILE``; ``fit=True`` computes the
    statistics from it first, with ``ddof=`` as for :func:`normalize`, ``save_stats=PATH`` writes
    them as a stats.json, an existing file only with ``force=True``; ``max_memory`` bounds the
    images in flight, in the fit pass and in every epoch, as for :func:`normalize`; the batches
    come on top; ``components`` and ``whiten`` of ``mode="pca"`` as for :func:`normalize`) plus:

    batch_size; shuffle (a new permutation each epoch, a function of (seed, epoch) only; without
    it the manifest order); set_epoch(e) before each epoch; drop_last (drop the last, smaller
    batch); prefetch (batches decoded ahead: memory is about (prefetch + 1) batches plus the
    images in flight, never the dataset); dtype "float32", "float16" or "uint8" (the recipe's
    pixels, not normalized); rank/world_size (default: torch.distributed's when initialized): each
    rank reads every world_size-th image of the epoch's permutation; without drop_last the
    permutation is padded by repeating its first images up to a multiple of world_size, as
    torch's DistributedSampler does, so every rank has the same number of images.

    Iterating yields ``(images, labels)``: numpy arrays, each batch a fresh buffer that the loader
    never touches again (``torch.from_numpy(images)`` or ``torch.from_dlpack(images)`` share it
    without a copy). Each row equals the row of ``imgnorm normalize`` for that file, bit for bit.
    Files that cannot be read are skipped (``loader.skipped``, one warning each unless
    ``warn=False``) and the batch is filled from the next files. Decoding runs on background
    threads with the GIL released; breaking out of the loop or deleting the loader stops them.
    """

    def __init__(self, dataset=None, *, list=None, follow_links=False, stats=None, fit=False,
                 save_stats=None, ddof=None, force=False, mode="standardize", range=None, unit=None,
                 mean=None, std=None, mean_image=None, divide_std=False, eps=None, patch=None,
                 components=None, whiten=True, layout="nhwc", dtype="float32", channels=None,
                 labels=True,
                 size=None, resize=None, interp=None, pad_value=None, exact_decode=None,
                 max_pixels=None, alpha=None, batch_size=64, shuffle=False, seed=0, drop_last=False,
                 threads=0, max_memory=None, prefetch=2, rank=None, world_size=None,
                 allow_truncated=False, warn=True, _worker=(0, 1), _drop_tail=None):
        raw = dtype == "uint8"
        if raw:  # the recipe's pixels, not normalized: no mode needs statistics
            mode = "scale"
        kw = _job_kwargs(stats, mode, range, unit, mean, std, mean_image, divide_std, eps, layout,
                         "float32" if raw else dtype, channels, patch=patch)
        if not raw:
            kw.update(components=components, whiten=whiten)
        kw.update(list=_path(list), follow_links=follow_links, fit=fit,
                  save_stats=_path(save_stats), ddof=ddof, force=force, max_memory=max_memory, labels=labels,
                  size=size, resize=resize,
                  interp=interp, pad_value=pad_value, exact_decode=exact_decode,
                  max_pixels=max_pixels, alpha=alpha, threads=threads,
                  allow_truncated=allow_truncated)
        self._job = _core.LoaderJob(_path(dataset), kw)
        rank, world_size = _distributed(rank, world_size)
        self._options = dict(batch_size=batch_size, shuffle=shuffle, seed=seed,
                             drop_last=drop_last, rank=rank, world_size=world_size,
                             drop_tail=drop_last if _drop_tail is None else _drop_tail,
                             worker=_worker[0], workers=_worker[1],
                             prefetch=prefetch, raw_u8=raw, threads=threads,
                             max_memory=max_memory, allow_truncated=allow_truncated)
        self._batches = self._job.batches(self._options)  # checks the options now
        self.epoch = 0
        self.warn = warn
        self.skipped = []
        self._warned = set()

    def set_epoch(self, epoch):
        """Selects the permutation of the next iteration (shuffle=True)."""
        self.epoch = int(epoch)

    def __len__(self):
        """Batches per epoch for this rank (fewer when files are skipped)."""
        return self._batches

    @property
    def files(self):
        """The dataset's files in manifest order (``indices`` of a batch point into it)."""
        return self._job.files

    def indices(self, epoch=None):
        """The image indices (into ``files``) this rank reads in an epoch, in order."""
        return self._job.indices(self._options, self.epoch if epoch is None else int(epoch))

    def batches(self, with_indices=False):
        """Iterates like the loader itself; with_indices=True yields (images, labels, indices)."""
        epoch = _core.LoaderEpoch(self._job, self._options, self.epoch)
        try:
            while True:
                b = epoch.next()
                if b is None:
                    break
                yield b if with_indices else b[:2]
        finally:
            epoch.close()
            self._note_skipped(epoch.skipped())

    def __iter__(self):
        return self.batches()

    def _note_skipped(self, skipped):
        for path, reason in skipped:
            if path in self._warned:
                continue
            self._warned.add(path)
            self.skipped.append((path, reason))
            if self.warn:
                import warnings

                warnings.warn(_core.printable(f"imgnorm.Loader skipped {path}: {reason}"), stacklevel=3)


def load(path, *, size=224, resize="stretch", interp="linear", channels="rgb", pad_value=0,
         exact_decode=False, max_pixels=None, alpha="drop", allow_truncated=False):
    """One image through the recipe, exactly as the pipeline sees it: uint8 (H,W,C), or (H,W) for
    channels="gray". The arguments are those of :func:`stats`."""
    kw = dict(size=size, resize=resize, interp=interp, channels=channels, pad_value=pad_value,
              exact_decode=exact_decode, max_pixels=max_pixels, alpha=alpha,
              allow_truncated=allow_truncated)
    return _core.load(_path(path), kw)
