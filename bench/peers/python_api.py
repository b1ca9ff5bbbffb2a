#!/usr/bin/env python3
"""imgnorm's Python API (python/imgnorm, the pybind11 module) against the CLI and its in-process
peers. Run by bench/run.py with PYTHONPATH=<build>/python.

    /usr/bin/python3 bench/peers/python_api.py stats DATASET SIZE OUT.json
    /usr/bin/python3 bench/peers/python_api.py normalize STATS.json BATCH.npy [--repeat 5]
    /usr/bin/python3 bench/peers/python_api.py gil STATS.json BATCH.npy [--repeat 5]

stats: one whole process, `imgnorm.stats(DATASET, size=SIZE)` then `Stats.save(OUT)`: what
`imgnorm stats DATASET --size SIZE -q -o OUT` does, timed by run.py as a whole process (wall
time and peak RSS), in the same alternating rounds as the CLI. run.py also times
`python3 -c "import imgnorm"` alone: the fixed cost of the interpreter and the module.

normalize: prints one JSON object. On the uint8 (N, H, W, 3) batch of BATCH.npy, each callable is
called once to warm up, then --repeat times; time.perf_counter() around the call only; the median
(and min, max) in seconds per batch:
  imgnorm_nhwc  imgnorm.Normalizer(stats, mode="standardize")(x), threads=0 (all cores)  (N,H,W,3)
  imgnorm_nchw  the same with layout="nchw"                                            (N,3,H,W)
  numpy         ((x - mean) / std).astype(np.float32), mean/std in 0-255 units         (N,H,W,3)
  torch         transforms.Normalize(mean_unit, std_unit)(
                    torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255))          (N,3,H,W)
                torch.set_num_threads(2). Its result is NCHW in shape with channels-last strides
                (the permuted view is not copied to contiguous memory); imgnorm's is contiguous.
The callables run round after round (A B C D A B C D ...), like run.py's commands. Before timing,
the results are checked against each other (max |difference| is reported).

gil: prints one JSON object. Two batches of 64 images (BATCH[0:64], BATCH[64:128]), one
imgnorm.Normalizer(stats, threads=1) each: "serial" calls both in this thread, one after the
other; "threads" calls each in its own Python thread (released together by a barrier; timed from
the first thread's start to the later one's end: thread creation and joins are excluded). The
ratio threads / serial is about 0.5 when the GIL is released for the work and the machine has 2
free cores, 1.0 when it is not.
"""
import json
import statistics
import sys
import threading
import time


def summary(times):
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def cmd_stats(dataset, size, out):
    import imgnorm

    s = imgnorm.stats(dataset, size=int(size), progress=False)
    s.save(out, force=True)
    print(f"{s.images} images")  # not s.mean: that would import numpy (about 50 ms, 12 MB), which
    # imgnorm.stats and Stats.save do not need


def cmd_normalize(stats_path, batch_path, repeat):
    import numpy as np
    import torch
    from torchvision import transforms

    import imgnorm

    torch.set_num_threads(2)
    s = imgnorm.Stats.load(stats_path)
    x = np.ascontiguousarray(np.load(batch_path))
    assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[3] == 3, x.shape
    mean, std = s.mean, s.std  # float64, 0-255 units
    tv = transforms.Normalize(mean=s.mean_unit.tolist(), std=s.std_unit.tolist())
    nhwc = imgnorm.Normalizer(s, mode="standardize", threads=0)
    nchw = imgnorm.Normalizer(s, mode="standardize", layout="nchw", threads=0)

    fns = {
        "imgnorm_nhwc": lambda: nhwc(x),
        "imgnorm_nchw": lambda: nchw(x),
        "numpy": lambda: ((x - mean) / std).astype(np.float32),
        "torch": lambda: tv(torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255)),
    }

    # The same work: shapes, dtypes and values (also the warm-up call of each).
    res = {k: f() for k, f in fns.items()}
    ref = res["numpy"]
    assert res["imgnorm_nhwc"].shape == ref.shape and res["imgnorm_nhwc"].dtype == np.float32
    assert res["imgnorm_nchw"].shape == (x.shape[0], 3, x.shape[1], x.shape[2])
    t = res["torch"]
    assert tuple(t.shape) == res["imgnorm_nchw"].shape and t.dtype == torch.float32
    ref_nchw = ref.transpose(0, 3, 1, 2)
    diff = {
        "imgnorm_nhwc_vs_numpy": float(np.abs(res["imgnorm_nhwc"] - ref).max()),
        "imgnorm_nchw_vs_numpy": float(np.abs(res["imgnorm_nchw"] - ref_nchw).max()),
        "torch_vs_numpy": float(np.abs(t.numpy() - ref_nchw).max()),
    }
    torch_contiguous = bool(t.is_contiguous())
    del res, ref, ref_nchw, t
    for k, v in diff.items():
        assert v < 1e-3, (k, v)

    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            r = f()
            t1 = time.perf_counter()
            del r
            times[k].append(t1 - t0)
    out = {"batch": list(x.shape), "out_bytes": int(x.size * 4), "torch_threads": torch.get_num_threads(),
           "torch_result_contiguous": torch_contiguous, "max_abs_diff": diff}
    out.update({k: summary(v) for k, v in times.items()})
    print(json.dumps(out))


def cmd_gil(stats_path, batch_path, repeat):
    import numpy as np

    import imgnorm

    s = imgnorm.Stats.load(stats_path)
    x = np.load(batch_path, mmap_mode="r")
    assert x.shape[0] >= 128, f"{batch_path}: need 128 images, got {x.shape[0]}"
    batches = [np.ascontiguousarray(x[0:64]), np.ascontiguousarray(x[64:128])]
    norms = [imgnorm.Normalizer(s, mode="standardize", threads=1) for _ in batches]
    for n, b in zip(norms, batches):
        n(b)  # warm-up

    def serial():
        t0 = time.perf_counter()
        for n, b in zip(norms, batches):
            r = n(b)
            del r
        return time.perf_counter() - t0

    def threaded():
        barrier = threading.Barrier(2)
        starts, ends = [0.0, 0.0], [0.0, 0.0]

        def work(i):
            barrier.wait()
            starts[i] = time.perf_counter()
            r = norms[i](batches[i])
            ends[i] = time.perf_counter()
            del r

        ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return max(ends) - min(starts)

    times = {"serial": [], "threads": []}
    for _ in range(repeat):  # alternating
        times["serial"].append(serial())
        times["threads"].append(threaded())
    out = {"batch": [64, *x.shape[1:]], "batches": 2}
    out.update({k: summary(v) for k, v in times.items()})
    print(json.dumps(out))


def main():
    a = sys.argv[1:]
    repeat = 5
    if "--repeat" in a:
        i = a.index("--repeat")
        repeat = int(a[i + 1])
        del a[i:i + 2]
    if len(a) == 4 and a[0] == "stats":
        cmd_stats(a[1], a[2], a[3])
    elif len(a) == 3 and a[0] == "normalize":
        cmd_normalize(a[1], a[2], repeat)
    elif len(a) == 3 and a[0] == "gil":
        cmd_gil(a[1], a[2], repeat)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
