"""imgnorm.Loader takes normalize's save_stats=, force= and max_memory= (they were refused as
unknown keywords): the fitted statistics are the bytes `imgnorm stats` writes, an existing file
needs force, and a memory limit throttles the epoch without changing a byte, or is refused up
front when one image cannot fit."""
import numpy as np
import pytest

import imgnorm
from util import FLOWERS, cli


def _epoch(loader):
    xs, ys = zip(*loader)
    return np.concatenate(xs), np.concatenate(ys)


def test_loader_save_stats_writes_the_fitted_statistics(tmp_path):
    ref = tmp_path / "ref.json"
    cli("stats", FLOWERS, "--size", 16, "-o", ref, "-q")
    saved = tmp_path / "fit.json"
    loader = imgnorm.Loader(FLOWERS, fit=True, save_stats=saved, size=16, batch_size=7)
    assert saved.read_bytes() == ref.read_bytes()
    x, y = _epoch(loader)
    x2, y2 = imgnorm.normalize(FLOWERS, stats=saved)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    # An existing file needs force, checked before the fit pass; save_stats needs fit.
    with pytest.raises(imgnorm.FileError, match="exists"):
        imgnorm.Loader(FLOWERS, fit=True, save_stats=saved, size=16)
    saved.write_text("old")
    imgnorm.Loader(FLOWERS, fit=True, save_stats=saved, size=16, force=True)
    assert saved.read_bytes() == ref.read_bytes()
    with pytest.raises(imgnorm.ArgumentError, match="needs --fit"):
        imgnorm.Loader(FLOWERS, stats=ref, save_stats=tmp_path / "x.json")


def test_loader_max_memory_changes_nothing_and_refuses_what_cannot_fit():
    stats = imgnorm.stats(FLOWERS, size=32)
    x, y = _epoch(imgnorm.Loader(FLOWERS, stats=stats, batch_size=5, threads=2))
    x2, y2 = _epoch(imgnorm.Loader(FLOWERS, stats=stats, batch_size=5, threads=64,
                                   max_memory="1M"))
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    # The fit pass honours it too (same statistics as without a limit).
    fit = imgnorm.Loader(FLOWERS, fit=True, size=32, batch_size=5, max_memory="1M")
    assert np.array_equal(_epoch(fit)[0], x)
    with pytest.raises(imgnorm.ArgumentError, match=r"more than the memory limit of 16 MiB"):
        next(iter(imgnorm.Loader(FLOWERS, mode="scale", size=4000, max_memory="16M")))
    with pytest.raises(imgnorm.ArgumentError, match=r"max_memory: '12X' is not a memory size"):
        imgnorm.Loader(FLOWERS, stats=stats, max_memory="12X")
