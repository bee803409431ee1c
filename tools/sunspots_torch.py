#!/usr/bin/env python3
"""PyTorch's run of examples/sunspots_gru.lam, for the figures beside Lamina's in the README.

The same model (GRU 32 over [batch, 48, 1], the last step's hidden state to a linear 1, mean squared
error), the same data (examples/data/sunspots, made by tools/make_sunspots.py from
../shared/data/sunspots) and the same schedule as `lamina train examples/sunspots_gru.lam --data
DIR/train --val DIR/test --epochs 60 --batch 64`: Adam lr 3e-3, batch 64, rows shuffled every epoch.
PyTorch's default initialization. Prints the test MSE every 10 epochs and at the end, per seed; the
data set's README gives 0.048-0.050 over three seeds.

Usage:
  /work/venv/bin/python tools/sunspots_torch.py [--data examples/data/sunspots] [--seeds 0,1,2]
"""

import argparse
import os

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Sunspots(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(1, 32, batch_first=True)
        self.dense = torch.nn.Linear(32, 1)

    def forward(self, x):
        h, _ = self.gru(x)
        return self.dense(h[:, -1, :])


def load(directory):
    return (torch.tensor(np.load(os.path.join(directory, "x.npy"))),
            torch.tensor(np.load(os.path.join(directory, "y.npy"))))


def run(seed, train, test, epochs, batch):
    torch.manual_seed(seed)
    model = Sunspots()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    (x, y), (test_x, test_y) = train, test
    mse = None
    for epoch in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x[rows]), y[rows]).backward()
            optimizer.step()
        with torch.no_grad():
            mse = torch.nn.functional.mse_loss(model(test_x), test_y).item()
        if (epoch + 1) % 10 == 0:
            print(f"seed {seed} epoch {epoch + 1:2d}: test MSE {mse:.4f}")
    return mse


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(ROOT, "examples/data/sunspots"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    train, test = load(os.path.join(arguments.data, "train")), load(os.path.join(arguments.data, "test"))
    finals = [(seed, run(seed, train, test, arguments.epochs, arguments.batch))
              for seed in [int(s) for s in arguments.seeds.split(",")]]
    for seed, mse in finals:
        print(f"seed {seed}: final test MSE {mse:.4f}")


if __name__ == "__main__":
    main()
