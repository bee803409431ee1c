#!/usr/bin/env python3
"""Makes the digits subsets of the transfer-learning and overfitting examples.

From examples/data/digits (the 8x8 UCI digits, see ../shared/data/README.md) it writes, each folder
with one x.npy (float32 [N, 64]) and label.npy (int32 [N]):

  examples/data/digits_0to4/{train,test}     digits 0-4, labels 0-4 (pretraining)
  examples/data/digits_0to4_shifted/train    digits_0to4/train and its 8 copies shifted by one pixel
                                             (every dx, dy in -1, 0, 1; zeros shifted in): 9x the rows
  examples/data/digits_5to9/{train,test}     digits 5-9, labels 0-4 (digit - 5); train holds 10% of
                                             their training rows, stratified by digit
  examples/data/digits_10pct/{train,test}    10% of all training rows, stratified; the whole test split

The 10% draws are fixed (numpy seed 0), so every run makes the same files.

    /work/venv/bin/python tools/make_digits_splits.py [--source examples/data/digits] [--out examples/data]
"""
import argparse
import os

import numpy as np


def load(folder):
    return np.load(os.path.join(folder, "x.npy")), np.load(os.path.join(folder, "label.npy"))


def save(folder, x, label):
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, "x.npy"), x.astype(np.float32))
    np.save(os.path.join(folder, "label.npy"), label.astype(np.int32))
    print(f"{folder}: {len(label)} rows, labels {np.bincount(label).tolist()}")


def shifted_copies(x, label):
    """Every image moved by each (dy, dx) in {-1, 0, 1}², the vacated row and column zero; the
    unshifted copy first. Pretraining on them gives features that do not depend on the exact
    position of a stroke."""
    images = x.reshape(-1, 8, 8)
    copies = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.zeros_like(images)
            shifted[:, max(dy, 0):8 + min(dy, 0), max(dx, 0):8 + min(dx, 0)] = \
                images[:, max(-dy, 0):8 + min(-dy, 0), max(-dx, 0):8 + min(-dx, 0)]
            copies.append((dy, dx, shifted.reshape(-1, 64)))
    copies.sort(key=lambda copy: (copy[0], copy[1]) != (0, 0))
    return np.concatenate([copy[2] for copy in copies]), np.tile(label, len(copies))


def stratified_fraction(label, fraction, rng):
    """Row indices: `fraction` of each class's rows (at least one), in their original order."""
    rows = []
    for value in np.unique(label):
        members = np.flatnonzero(label == value)
        count = max(1, int(round(len(members) * fraction)))
        rows.extend(rng.choice(members, size=count, replace=False))
    return np.sort(np.array(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="examples/data/digits")
    parser.add_argument("--out", default="examples/data")
    parser.add_argument("--fraction", type=float, default=0.1)
    args = parser.parse_args()
    train_x, train_label = load(os.path.join(args.source, "train"))
    test_x, test_label = load(os.path.join(args.source, "test"))
    rng = np.random.default_rng(0)

    low_train, low_test = train_label < 5, test_label < 5
    save(os.path.join(args.out, "digits_0to4", "train"), train_x[low_train], train_label[low_train])
    save(os.path.join(args.out, "digits_0to4", "test"), test_x[low_test], test_label[low_test])
    save(os.path.join(args.out, "digits_0to4_shifted", "train"),
         *shifted_copies(train_x[low_train], train_label[low_train]))

    high_x, high_label = train_x[~low_train], train_label[~low_train] - 5
    rows = stratified_fraction(high_label, args.fraction, rng)
    save(os.path.join(args.out, "digits_5to9", "train"), high_x[rows], high_label[rows])
    save(os.path.join(args.out, "digits_5to9", "test"), test_x[~low_test], test_label[~low_test] - 5)

    rows = stratified_fraction(train_label, args.fraction, rng)
    save(os.path.join(args.out, "digits_10pct", "train"), train_x[rows], train_label[rows])
    save(os.path.join(args.out, "digits_10pct", "test"), test_x, test_label)


if __name__ == "__main__":
    main()
