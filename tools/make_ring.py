#!/usr/bin/env python3
"""The ring-of-Gaussians data of examples/gan_ring.lam (issue 16).

8 Gaussians with centres evenly spaced on a circle of radius 2 (the first at (2, 0)), each with
standard deviation 0.05 in both coordinates; 8,000 points (1,000 from each mode, shuffled), seeded,
written as OUT/real.npy (float32, [8000, 2]) — the model's one input.

    python3 tools/make_ring.py examples/data/ring [--seed 0] [--count 8000]
"""
import argparse
import os

import numpy as np

RADIUS = 2.0
STD = 0.05
MODES = 8


def centres():
    angles = 2 * np.pi * np.arange(MODES) / MODES
    return np.stack([RADIUS * np.cos(angles), RADIUS * np.sin(angles)], axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=8000)
    args = parser.parse_args()
    if args.count % MODES:
        parser.error(f"--count must be a multiple of {MODES}")
    rng = np.random.default_rng(args.seed)
    modes = np.repeat(np.arange(MODES), args.count // MODES)
    points = centres()[modes] + rng.normal(0.0, STD, size=(args.count, 2))
    points = points[rng.permutation(args.count)].astype(np.float32)
    os.makedirs(args.out, exist_ok=True)
    np.save(os.path.join(args.out, "real.npy"), points)
    print(f"wrote {args.count} points from {MODES} Gaussians (radius {RADIUS}, std {STD}) to "
          f"{os.path.join(args.out, 'real.npy')}")


if __name__ == "__main__":
    main()
