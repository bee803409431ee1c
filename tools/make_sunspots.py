#!/usr/bin/env python3
"""Writes the sunspot forecasting task of examples/sunspots_gru.lam from ../shared/data/sunspots.

As that data set's README defines it: `x` is 48 consecutive monthly mean sunspot numbers divided by
100 (f32[N, 48, 1]); `y` is the value 6 months after the last input month, divided by 100
(f32[N, 1]); windows whose target month is before 1950-01 form the training split (2,359 windows),
the rest the test split (714). One `.npy` per model input, as `lamina train --data` reads.

Also prints the README's two baselines on the test split (persistence and least-squares linear) as
a check that the windows are the README's.

Usage:
  python3 tools/make_sunspots.py [--csv ../shared/data/sunspots/monthly.csv] [--out examples/data/sunspots]
"""

import argparse
import csv
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WINDOW = 48
AHEAD = 6
SPLIT_YEAR = 1950


def windows(csv_path):
    with open(csv_path, newline="") as handle:
        rows = [(int(r["year"]), int(r["month"]), float(r["sunspots"])) for r in csv.DictReader(handle)]
    values = np.array([r[2] for r in rows], dtype=np.float64) / 100.0
    xs, ys, target_years = [], [], []
    # Window start s: inputs s..s+47, target s+47+6.
    for start in range(len(values) - WINDOW - AHEAD + 1):
        target = start + WINDOW - 1 + AHEAD
        xs.append(values[start:start + WINDOW])
        ys.append(values[target])
        target_years.append(rows[target][0])
    x = np.array(xs, dtype=np.float32)[:, :, None]
    y = np.array(ys, dtype=np.float32)[:, None]
    train = np.array(target_years) < SPLIT_YEAR
    return (x[train], y[train]), (x[~train], y[~train])


def baselines(train, test):
    (train_x, train_y), (test_x, test_y) = train, test
    persistence = float(np.mean((test_x[:, -1, :] - test_y) ** 2))
    design = lambda x: np.concatenate([x[:, :, 0].astype(np.float64), np.ones((len(x), 1))], axis=1)
    coefficients, *_ = np.linalg.lstsq(design(train_x), train_y.astype(np.float64), rcond=None)
    linear = float(np.mean((design(test_x) @ coefficients - test_y) ** 2))
    return persistence, linear


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", default=os.path.join(ROOT, "../shared/data/sunspots/monthly.csv"))
    parser.add_argument("--out", default=os.path.join(ROOT, "examples/data/sunspots"))
    arguments = parser.parse_args()
    train, test = windows(arguments.csv)
    for split, (x, y) in {"train": train, "test": test}.items():
        directory = os.path.join(arguments.out, split)
        os.makedirs(directory, exist_ok=True)
        np.save(os.path.join(directory, "x.npy"), x)
        np.save(os.path.join(directory, "y.npy"), y)
        print(f"{directory}: x {x.dtype}{list(x.shape)}, y {y.dtype}{list(y.shape)}")
    persistence, linear = baselines(train, test)
    print(f"test MSE: persistence {persistence:.4f}, linear least squares {linear:.4f}")


if __name__ == "__main__":
    main()
