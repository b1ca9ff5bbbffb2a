"""imgnorm in other processes: torch DataLoader workers (fork and spawn) after the parent used
imgnorm (oneTBB threads exist before the fork), and Ctrl-C (SIGINT) during a job: a prompt
KeyboardInterrupt and no partial output. Each runs in a child process with a timeout, so a hang
fails the test instead of the suite."""
import glob
import os
import signal
import subprocess
import time

import pytest

import imgnorm
from util import HERE, PYTHON, big, child_env, image_files_of


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers(flowers, context):
    pytest.importorskip("torch")
    try:
        p = subprocess.run([PYTHON, os.path.join(HERE, "loader_child.py"), context, flowers],
                           capture_output=True, text=True, timeout=120, env=child_env())
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"DataLoader(num_workers=2, multiprocessing_context={context!r}) hung for 120 s; "
                    f"stdout: {e.stdout!r} stderr: {e.stderr!r}")
    assert p.returncode == 0 and p.stdout.startswith("OK "), (p.returncode, p.stdout, p.stderr[-3000:])
    _, rows, threads = p.stdout.split()
    assert int(rows) == len(image_files_of(flowers))
    if (os.cpu_count() or 1) > 1:
        # the risky case was tested: the parent had imgnorm's worker threads when it forked
        assert int(threads) > 1, p.stdout


# ---- Ctrl-C -------------------------------------------------------------------------------------

INTERRUPT_CHILD = r"""
import os, sys, time
import imgnorm
what, dataset, stats, out = sys.argv[1:5]
print("start", flush=True)
t = time.monotonic()
if what == "normalize-out":
    imgnorm.normalize(dataset, stats=stats, out=out, threads=1, progress=False)
elif what == "normalize":
    imgnorm.normalize(dataset, stats=stats, threads=1, progress=False)
elif what == "stats":
    imgnorm.stats(dataset, size=64, exact_decode=True, threads=1, progress=False)
print(f"finished {time.monotonic() - t:.2f}", flush=True)
"""


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory, flowers):
    """300 full-size 3000x2000 JPEG decodes (hard links), and the flowers' statistics with
    exact_decode at size 64 (classes daisy and roses are the training classes)."""
    root = big(50)
    stats = str(tmp_path_factory.mktemp("big") / "stats.json")
    imgnorm.stats(flowers, size=64, exact_decode=True).save(stats)
    return root, stats


@pytest.mark.parametrize("what", ["normalize-out", "normalize", "stats"])
def test_ctrl_c(tmp_path, big_dataset, what):
    root, stats = big_dataset
    out = str(tmp_path / "out")
    p = subprocess.Popen([PYTHON, "-c", INTERRUPT_CHILD, what, root, stats, out], env=child_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "start"
        time.sleep(0.3)
        assert p.poll() is None, "the job ended before the signal"
        p.send_signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            stdout, stderr = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{what}: the process still runs 10 s after SIGINT")
        latency = time.monotonic() - sent
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "finished" not in stdout, f"the job finished before the signal was handled: {stdout}"
    # CPython exits from an uncaught KeyboardInterrupt by re-raising SIGINT: status -SIGINT
    assert p.returncode == -signal.SIGINT, (p.returncode, stderr[-2000:])
    assert stderr.rstrip().endswith("KeyboardInterrupt"), stderr[-2000:]
    assert latency < 10
    if what == "normalize-out":
        left = sorted(os.listdir(out)) if os.path.isdir(out) else []
        assert "images.npy" not in left, left
        assert not [f for f in left if ".tmp-" in f or f.endswith(".tmp")], left
        assert not glob.glob(os.path.join(str(tmp_path), "**", "*.tmp-*"), recursive=True)
