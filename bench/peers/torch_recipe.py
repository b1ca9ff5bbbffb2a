#!/usr/bin/env python3
"""Peer (b): the common PyTorch recipe. torchvision ImageFolder + Resize + ToTensor, a DataLoader
with 2 workers, per-channel sums and sums of squares accumulated batch by batch.

    /usr/bin/python3 bench/peers/torch_recipe.py DATASET SIZE
"""
import sys

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def main():
    root, size = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    ds = datasets.ImageFolder(root, transform=tf)
    loader = DataLoader(ds, batch_size=64, num_workers=2, shuffle=False)
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    n = 0
    for x, _ in loader:
        x = x.double()
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        n += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / n
    std = (total_sq / n - mean * mean).sqrt()
    print(f"{len(ds)} images mean={mean.tolist()} std={std.tolist()}")


if __name__ == "__main__":
    main()
