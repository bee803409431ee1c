#!/usr/bin/env python3
"""Checks samples of examples/gan_digits.lam with the DigitsCNN classifier (issue 16).

Trains nothing itself: give it the class probabilities `lamina run examples/digits_cnn.lam` computed
for the generated images. The bar: the 1,000 samples fall in at least 8 different classes, none
holding more than 30% of them (a generator that collapsed onto a few digits fails).

    lamina train examples/digits_cnn.lam --data examples/data/digits/train --epochs 20 --batch 32 --seed 1 -o cnn.safetensors
    lamina run examples/gan_digits.lam --weights gan.safetensors --dim batch=1000 --seed 1 --output fake=samples.npy
    lamina run examples/digits_cnn.lam --weights cnn.safetensors --input x=samples.npy --output probs=probs.npy
    python3 tools/gan_digits_eval.py probs.npy [--json]
"""
import argparse
import json
import sys

import numpy as np


def measure(probabilities):
    probabilities = np.asarray(probabilities).reshape(-1, 10)
    counts = np.bincount(probabilities.argmax(axis=1), minlength=10)
    share = counts / counts.sum()
    return {
        "samples": int(counts.sum()),
        "counts": [int(c) for c in counts],
        "classes": int(np.sum(counts > 0)),
        "largest_share": float(share.max()),
        "mean_confidence": float(probabilities.max(axis=1).mean()),
        "passes": bool(np.sum(counts > 0) >= 8 and share.max() <= 0.30),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probs", help=".npy of class probabilities [N, 10] (DigitsCNN's probs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(np.load(args.probs))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['classes']} classes among {result['samples']} samples, the largest "
              f"{100 * result['largest_share']:.1f}% ({'passes' if result['passes'] else 'fails'} "
              f"the bar of 8 classes, none above 30%); per digit: {result['counts']}; mean "
              f"classifier confidence {result['mean_confidence']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
