"""A minimal PyTorch training loop fed by imgnorm.Loader: exact dataset statistics, then normalized
NCHW float32 batches straight from the files (no DataLoader, no per-sample tensors), a tiny conv net
trained with SGD.

    PYTHONPATH=build/python python3 examples/python/train_loop.py [DIR] [--epochs N] [--size S]

DIR is a class-folder tree (default: the bundled examples/flowers).
"""
import argparse
import os

import torch

import imgnorm

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("dir", nargs="?", default=os.path.join(os.path.dirname(__file__), "..", "flowers"))
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--size", type=int, default=64)
p.add_argument("--batch-size", type=int, default=16)
args = p.parse_args()
torch.manual_seed(0)

# Exact per-channel mean/std of the training set (and its recipe: size, resize, channels).
stats = imgnorm.stats(args.dir, size=args.size, progress=False)
loader = imgnorm.Loader(args.dir, stats=stats, mode="standardize", layout="nchw", shuffle=True,
                        seed=0, batch_size=args.batch_size)
model = torch.nn.Sequential(
    torch.nn.Conv2d(stats.channels, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(),
    torch.nn.Linear(8 * 4 * 4, len(stats.classes)))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

for epoch in range(args.epochs):
    loader.set_epoch(epoch)  # a new permutation each epoch
    total, seen = 0.0, 0
    for images, labels in loader:  # numpy arrays, handed to torch without a copy
        x, y = torch.from_numpy(images), torch.from_numpy(labels)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total, seen = total + loss.item() * len(y), seen + len(y)
    print(f"epoch {epoch}: {seen} images, loss {total / seen:.4f}", flush=True)
