#!/usr/bin/env python3
"""One training epoch of normalized batches: imgnorm.Loader against the torchvision recipe. Run by
bench/run.py (imgnorm with PYTHONPATH=<build>/python), timed there as a whole process (wall time,
CPU time, peak RSS), in the same alternating rounds as its other commands.

    /usr/bin/python3 bench/peers/loader.py imgnorm DATASET STATS.json [--list FILE]
    /usr/bin/python3 bench/peers/loader.py torch DATASET STATS.json

imgnorm: imgnorm.Loader(DATASET, stats=STATS, mode="standardize", batch_size=64, shuffle=True,
         layout="nchw") (threads=0: all cores), or Loader(list=FILE, ...) with --list (DATASET is
         then only a label), one epoch.
torch:   torchvision ImageFolder(DATASET, Compose([Resize((224, 224)), ToTensor(),
         Normalize(mean_unit, std_unit)])) and DataLoader(num_workers=2, batch_size=64,
         shuffle=True), one epoch; mean_unit and std_unit read from STATS.json (json only: this
         process does not import imgnorm). torch.set_num_threads(1) in the main process, as
         bench/peers/torch_recipe.py (the workers use one thread each anyway).

Both consume every batch: one element of each is added to a sum, so that nothing can skip the
work, and the batch is dropped before the next one arrives. The size of the images comes from
the recipe of STATS.json (224 in make bench). Prints one JSON line: images, batches, the shape of
the first batch, the sum, and the epoch time measured in-process (from before the loader is made
to after the last batch; run.py reports the whole process's wall time).
"""
import argparse
import json
import time


def run_imgnorm(args):
    t0 = time.perf_counter()
    import imgnorm

    common = dict(stats=args.stats, mode="standardize", batch_size=64, shuffle=True, layout="nchw")
    loader = (imgnorm.Loader(list=args.list, **common) if args.list else
              imgnorm.Loader(args.dataset, **common))
    images = batches = 0
    total = 0.0
    first = None
    for x, y in loader:
        if first is None:
            first = [list(x.shape), str(x.dtype), list(y.shape), str(y.dtype)]
        total += float(x[0, 0, 0, 0]) + int(y[-1])
        images += x.shape[0]
        batches += 1
        del x, y
    return t0, images, batches, total, first


def run_torch(args):
    t0 = time.perf_counter()
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    with open(args.stats) as f:
        s = json.load(f)
    w, h = s["recipe"]["size"]
    torch.set_num_threads(1)
    tf = transforms.Compose([transforms.Resize((h, w)), transforms.ToTensor(),
                             transforms.Normalize(mean=s["mean_unit"], std=s["std_unit"])])
    ds = datasets.ImageFolder(args.dataset, transform=tf)
    loader = DataLoader(ds, batch_size=64, num_workers=2, shuffle=True)
    images = batches = 0
    total = 0.0
    first = None
    for x, y in loader:
        if first is None:
            first = [list(x.shape), str(x.dtype), list(y.shape), str(y.dtype)]
        total += float(x[0, 0, 0, 0]) + int(y[-1])
        images += x.shape[0]
        batches += 1
        del x, y
    return t0, images, batches, total, first


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("imgnorm", "torch"))
    ap.add_argument("dataset")
    ap.add_argument("stats")
    ap.add_argument("--list", help="imgnorm only: Loader(list=FILE) instead of the folder")
    args = ap.parse_args()
    if args.list and args.what != "imgnorm":
        ap.error("--list is for imgnorm only")
    t0, images, batches, total, first = (run_imgnorm if args.what == "imgnorm" else run_torch)(args)
    t1 = time.perf_counter()
    print(json.dumps({"what": args.what, "images": images, "batches": batches, "first_batch": first,
                      "sum": total, "epoch_s": t1 - t0}))


if __name__ == "__main__":
    main()
