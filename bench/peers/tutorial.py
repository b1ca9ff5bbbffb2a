#!/usr/bin/env python3
"""Peer (a): the tutorial's pipeline. cv2.imread + cv2.resize of every image into one float64 array,
numpy mean/std over axis (0, 1, 2), then per-channel subtract and divide (the normalized array).

    /usr/bin/python3 bench/peers/tutorial.py DATASET SIZE [--no-normalize]
"""
import os
import sys

import cv2
import numpy as np


def main():
    root, size = sys.argv[1], int(sys.argv[2])
    normalize = "--no-normalize" not in sys.argv
    images = []
    for cls in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))):
        folder = os.path.join(root, cls)
        for name in sorted(os.listdir(folder)):
            img = cv2.imread(os.path.join(folder, name))
            if img is None:
                continue
            images.append(cv2.resize(img, (size, size)))
    dataset = np.array(images, dtype=np.float64)
    mean = dataset.mean(axis=(0, 1, 2))
    std = dataset.std(axis=(0, 1, 2))
    if normalize:
        dataset = (dataset - mean) / std
    print(f"{len(images)} images mean={mean[::-1]} std={std[::-1]}")


if __name__ == "__main__":
    main()
