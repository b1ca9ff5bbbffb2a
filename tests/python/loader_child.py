"""Child process of test_dataloader.py: a torch DataLoader with 2 workers over a Dataset whose
__getitem__ calls imgnorm.load and a Normalizer made in the parent, with the multiprocessing
context given on the command line ("fork" or "spawn"). Prints "OK <rows> <threads>" when the
batches equal the in-process results (<threads>: the parent's threads when the loader started).

    loader_child.py CONTEXT FLOWERS_DIR
"""
import functools
import os
import sys

import numpy as np


class FlowerSet:
    """A map-style dataset: (normalized CHW float32 tensor, label) per file."""

    def __init__(self, files, labels, norm, size):
        self.files, self.labels, self.norm, self.size = files, labels, norm, size

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import imgnorm
        import torch

        px = imgnorm.load(self.files[i], size=self.size)
        return torch.from_numpy(self.norm(px)), self.labels[i]


def worker_init(flowers, size, stats_json, batch_ref, worker_id):
    """In every worker: a stats run and a Normalizer batch on all cores (oneTBB in the child),
    equal to the parent's."""
    import imgnorm

    s = imgnorm.stats(flowers, size=size, threads=0, progress=False)
    assert s.to_json() == stats_json, "stats in a worker differ from the parent's"
    norm = imgnorm.Normalizer(s, layout="nchw", threads=0)
    got = norm(np.random.default_rng(0).integers(0, 256, (64, 64, 64, 3), dtype=np.uint8))
    assert got.tobytes() == batch_ref, "a Normalizer batch in a worker differs from the parent's"


def main():
    context, flowers = sys.argv[1], sys.argv[2]
    import imgnorm
    import torch
    from torch.utils.data import DataLoader

    size = 32
    # The parent uses imgnorm first (its oneTBB worker threads exist before the fork): a stats
    # run and a Normalizer batch on all cores.
    s = imgnorm.stats(flowers, size=size, threads=0, progress=False)
    norm = imgnorm.Normalizer(s, layout="nchw", threads=0)
    warm = norm(np.random.default_rng(0).integers(0, 256, (64, 64, 64, 3), dtype=np.uint8))
    assert warm.shape == (64, 3, 64, 64)
    # threads of this process now (oneTBB workers), which the fork copies the state of
    threads_before_fork = len(os.listdir("/proc/self/task"))

    classes = s.classes
    files, labels = [], []
    for ci, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(flowers, c))):
            files.append(os.path.join(flowers, c, f))
            labels.append(ci)
    ds = FlowerSet(files, labels, norm, size)
    ref_x = torch.stack([ds[i][0] for i in range(len(ds))])
    ref_y = torch.tensor(labels)
    # the pipeline's own result is the same
    x, y = imgnorm.normalize(flowers, stats=s, layout="nchw", progress=False)
    assert np.array_equal(x, ref_x.numpy()) and np.array_equal(y, ref_y.numpy())

    init = functools.partial(worker_init, flowers, size, s.to_json(), warm.tobytes())
    loader = DataLoader(ds, batch_size=4, shuffle=False, num_workers=2, worker_init_fn=init,
                        multiprocessing_context=context, timeout=60)
    xs, ys = [], []
    for bx, by in loader:
        xs.append(bx)
        ys.append(by)
    got_x, got_y = torch.cat(xs), torch.cat(ys)
    assert torch.equal(got_x, ref_x), "worker results differ from the in-process ones"
    assert torch.equal(got_y, ref_y)
    # and the parent still works after the workers are gone
    assert imgnorm.stats(flowers, size=size, progress=False).to_json() == s.to_json()
    print("OK", len(got_x), threads_before_fork, flush=True)


if __name__ == "__main__":
    main()
