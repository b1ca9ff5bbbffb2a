"""PyTorch adapters: ``imgnorm.torch.ImageFolder``, an IterableDataset over imgnorm.Loader for code
that insists on a ``torch.utils.data.DataLoader``.

    ds = imgnorm.torch.ImageFolder("train", stats=s, shuffle=True, layout="nchw")
    dl = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2)
    for epoch in range(10):
        ds.set_epoch(epoch)
        for images, labels in dl: ...

Each DataLoader worker reads a disjoint part of the epoch (every num_workers-th image of this
rank's slice), so every image appears exactly once per epoch across the workers. Samples are
``(torch.Tensor image, int label)``; the DataLoader batches them. For the fastest path use
imgnorm.Loader directly: it hands over whole batches without per-sample tensors.
"""

import torch
from torch.utils.data import IterableDataset, get_worker_info

from . import Loader, _distributed


class ImageFolder(IterableDataset):
    """Takes the arguments of :class:`imgnorm.Loader` (but batch_size, which the DataLoader sets;
    ``chunk`` is how many images a worker normalizes at once)."""

    def __init__(self, dataset=None, *, chunk=32, rank=None, world_size=None, **kwargs):
        super().__init__()
        self.dataset = dataset
        self.kwargs = kwargs
        self.chunk = chunk
        self.rank, self.world_size = _distributed(rank, world_size)
        self.epoch = 0
        self._len = None

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        if self._len is None:
            self._len = len(self._loader(self.rank, self.world_size, 1).indices())
        return self._len

    def _loader(self, rank, world_size, batch_size):
        return Loader(self.dataset, batch_size=batch_size, rank=rank, world_size=world_size,
                      **self.kwargs)

    def __iter__(self):
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        # Worker w of W reads every W-th image of this rank's slice: rank r of R, worker w is
        # slot r + R*w of R*W equal, disjoint slices of the (padded) permutation.
        loader = self._loader(self.rank + self.world_size * worker, self.world_size * workers,
                              self.chunk)
        loader.set_epoch(self.epoch)
        for images, labels in loader:
            batch = torch.from_numpy(images)
            for i in range(batch.shape[0]):
                yield batch[i], (int(labels[i]) if labels is not None else -1)
