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

    def __init__(self, dataset=None, *, chunk=32, rank=None, world_size=None, drop_last=False,
                 **kwargs):
        super().__init__()
        self.dataset = dataset
        self.kwargs = kwargs
        # drop_last decides the rank slices only (cut instead of padded, as DistributedSampler's);
        # the DataLoader's own drop_last drops its last batch.
        self.drop_tail = drop_last
        self.chunk = chunk
        self.rank, self.world_size = _distributed(rank, world_size)
        self.epoch = 0
        self._len = None

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        if self._len is None:
            self._len = len(self._loader((0, 1), 1).indices())
        return self._len

    def _loader(self, worker, batch_size):
        return Loader(self.dataset, batch_size=batch_size, rank=self.rank,
                      world_size=self.world_size, _worker=worker, _drop_tail=self.drop_tail,
                      **self.kwargs)

    def __iter__(self):
        info = get_worker_info()
        worker = (0, 1) if info is None else (info.id, info.num_workers)
        # This rank's slice of the epoch (padded or cut as DistributedSampler), then worker w of W
        # reads every W-th image of it: no image twice, none lost.
        loader = self._loader(worker, self.chunk)
        loader.set_epoch(self.epoch)
        for images, labels in loader:
            batch = torch.from_numpy(images)
            for i in range(batch.shape[0]):
                yield batch[i], (int(labels[i]) if labels is not None else -1)
