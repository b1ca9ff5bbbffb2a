"""The GIL is released while imgnorm works (no timing: a second Python thread makes progress during
the call); progress callbacks and bars."""
import os
import sys
import threading
import time

import numpy as np
import pytest

import imgnorm
from util import image_files_of


class Counter:
    """A Python thread that counts while it holds the GIL. It gives the GIL up at every step
    (time.sleep(0) releases it), and the switch interval is set to 2 s: the main thread is never
    forced off the GIL during the test, so the count can only advance during a call that releases
    the GIL itself."""

    def __init__(self):
        self.count = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop:
            self.count += 1
            time.sleep(0)

    def __enter__(self):
        self.interval = sys.getswitchinterval()
        sys.setswitchinterval(2.0)
        self.thread.start()
        while self.count < 10:  # it runs
            time.sleep(0.001)
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        sys.setswitchinterval(self.interval)

    def during(self, fn, tries=10):
        """(result of fn(), increments of the counter while fn ran). fn is called up to `tries`
        times, until the counter advanced (a loaded machine may not schedule the counting thread
        during one short call); the main thread keeps the GIL between the calls."""
        before = self.count
        for _ in range(tries):
            r = fn()
            if self.count != before:
                break
        return r, self.count - before


def test_counter_does_not_advance_while_the_gil_is_held():
    """The method's control: a long C call that keeps the GIL (sorting a list of Python ints)."""
    data = list(range(400_000, 0, -1)) * 2
    with Counter() as c:
        _, n = c.during(lambda: sorted(data), tries=3)
    assert n == 0


def test_normalizer_releases_the_gil(photo_stats):
    x = np.random.default_rng(1).integers(0, 256, (64, 224, 224, 3), dtype=np.uint8)
    norm = imgnorm.Normalizer(photo_stats[0], threads=1)
    with Counter() as c:
        y, n = c.during(lambda: norm(x))
    assert y.shape == x.shape
    assert n > 0, "no other Python thread ran during Normalizer(threads=1)(x): the GIL was held"


def test_stats_releases_the_gil(flowers):
    with Counter() as c:
        s, n = c.during(lambda: imgnorm.stats(flowers, size=224, exact_decode=True, threads=1,
                                              progress=False))
    assert s.images == 40
    assert n > 0, "no other Python thread ran during imgnorm.stats: the GIL was held"


@pytest.mark.filterwarnings("ignore:the recipe differs")
def test_normalize_and_load_release_the_gil(flowers, photos, photo_stats):
    with Counter() as c:
        (x, _), n = c.during(lambda: imgnorm.normalize(photos, stats=photo_stats[0], threads=1,
                                                       size=160, progress=False))
    assert n > 0

    f = os.path.join(flowers, "tulips", sorted(os.listdir(os.path.join(flowers, "tulips")))[0])
    with Counter() as c:
        _, n = c.during(lambda: imgnorm.load(f, size=512, interp="lanczos", exact_decode=True))
    assert n > 0


def test_concurrent_calls_from_python_threads(photos, photo_stats):
    """Several Python threads using one Normalizer and imgnorm.stats at once get the serial results."""
    x = np.random.default_rng(2).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    norm = imgnorm.Normalizer(photo_stats[0])
    ref = norm(x).tobytes()
    ref_stats = imgnorm.stats(photos, size=32).to_json()
    results, errors = [], []

    def work(i):
        try:
            if i % 2:
                results.append(norm(x).tobytes() == ref)
            else:
                results.append(imgnorm.stats(photos, size=32, threads=1).to_json() == ref_stats)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and results == [True] * 6


# ---- progress -----------------------------------------------------------------------------------


def test_progress_callable(photos, photo_stats, tmp_path):
    n = len(image_files_of(photos))
    for run in (lambda cb: imgnorm.stats(photos, size=32, progress=cb),
                lambda cb: imgnorm.normalize(photos, stats=photo_stats[0], progress=cb),
                lambda cb: imgnorm.normalize(photos, stats=photo_stats[0], out=str(tmp_path / "o"),
                                             progress=cb)):
        calls = []
        run(lambda done, total: calls.append((done, total)))
        assert calls, "the callback was never called"
        assert calls[-1] == (n, n), calls[-5:]
        dones = [d for d, _ in calls]
        assert dones == sorted(dones) and all(0 <= d <= t for d, t in calls)
        assert all(t == n for d, t in calls if t), calls


def test_progress_callback_exception_propagates(photos):
    def boom(done, total):
        raise ZeroDivisionError("from the callback")

    with pytest.raises(ZeroDivisionError, match="from the callback"):
        imgnorm.stats(photos, size=32, progress=boom)
    # the module is still usable
    assert imgnorm.stats(photos, size=32, progress=False).images == len(image_files_of(photos))


def test_progress_true_writes_a_bar_to_stderr(photos, photo_stats, capsys):
    pytest.importorskip("tqdm")
    n = len(image_files_of(photos))
    imgnorm.stats(photos, size=32, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "stats" in err and f"{n}/{n}" in err, err
    imgnorm.normalize(photos, stats=photo_stats[0], progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "normalize" in err and f"{n}/{n}" in err, err
    # False and the default (stderr is not a terminal under pytest) write nothing
    imgnorm.stats(photos, size=32, progress=False)
    imgnorm.stats(photos, size=32)
    assert capsys.readouterr() == ("", "")


def test_progress_true_without_tqdm_plain_line(photos, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
    imgnorm.stats(photos, size=32, progress=True)
    out, err = capfd.readouterr()
    n = len(image_files_of(photos))
    assert out == "" and f"stats {n}/{n}" in err and err.endswith("\n"), repr(err)
