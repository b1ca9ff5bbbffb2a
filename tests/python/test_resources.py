"""max_memory= (the CLI's --max-memory) in imgnorm.stats and imgnorm.normalize: a size or int,
the same results whatever the limit, sizes that cannot fit refused up front as ArgumentError."""
import numpy as np
import pytest

import imgnorm
from util import FLOWERS


def test_max_memory_throttles_and_changes_nothing():
    ref = imgnorm.stats(FLOWERS, size=32, threads=2)
    for limit in ("64K", 1 << 30, "2G"):
        s = imgnorm.stats(FLOWERS, size=32, threads=2, max_memory=limit)
        assert s.to_json() == ref.to_json(), limit
    x, y = imgnorm.normalize(FLOWERS, stats=ref, size=32, threads=4)
    x2, y2 = imgnorm.normalize(FLOWERS, stats=ref, size=32, threads=1024, max_memory="1M")
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_max_memory_errors_name_the_keyword_and_the_bytes():
    with pytest.raises(imgnorm.ArgumentError, match=r"max_memory: '12X' is not a memory size"):
        imgnorm.stats(FLOWERS, size=32, max_memory="12X")
    with pytest.raises(imgnorm.ArgumentError, match=r"max_memory: give bytes"):
        imgnorm.stats(FLOWERS, size=32, max_memory=1.5)
    with pytest.raises(imgnorm.ArgumentError, match=r"--size 4000x4000: one image in flight needs 46 MiB "
                                                    r"\(46 MiB for the resized 4000x4000 image\), more than "
                                                    r"the memory limit of 16 MiB"):
        imgnorm.stats(FLOWERS, size=4000, max_memory="16M")
    stats = imgnorm.stats(FLOWERS, size=16)
    with pytest.raises(imgnorm.ArgumentError, match=r"\+ 183 MiB for its output row\), more than the memory "
                                                    r"limit of 100 MiB"):
        imgnorm.normalize(FLOWERS, stats=stats, size=4000, max_memory="100M")
