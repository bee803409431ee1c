#!/usr/bin/env python3
"""Writes the sequence-memory task of examples/sequence_memory.lam: recall the first token after 19
distractors.

Each row is `time` = 20 tokens drawn uniformly from 0..7; its label is the first token. The splits
are one `.npy` per model input (`tokens` i32[N, 20], `label` i32[N]), the format
`lamina train --data DIR/train --val DIR/test` reads. Deterministic from the seed.

Usage:
  python3 tools/make_sequence_memory.py [--out examples/data/sequence_memory] [--seed 15]
"""

import argparse
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 8
TIME = 20
SPLITS = {"train": 4000, "test": 1000}


def make(rows, generator):
    tokens = generator.integers(0, VOCAB, size=(rows, TIME), dtype=np.int32)
    return tokens, tokens[:, 0].copy()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "examples/data/sequence_memory"))
    parser.add_argument("--seed", type=int, default=15)
    arguments = parser.parse_args()
    generator = np.random.default_rng(arguments.seed)
    for split, rows in SPLITS.items():
        tokens, label = make(rows, generator)
        directory = os.path.join(arguments.out, split)
        os.makedirs(directory, exist_ok=True)
        np.save(os.path.join(directory, "tokens.npy"), tokens)
        np.save(os.path.join(directory, "label.npy"), label)
        print(f"{directory}: tokens {tokens.dtype}{list(tokens.shape)}, label {label.dtype}{list(label.shape)}")


if __name__ == "__main__":
    main()
