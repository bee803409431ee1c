#!/usr/bin/env python3
"""examples/digits_cnn.lam trained by PyTorch with the same schedule, for the accuracy beside Lamina's.

The model of examples/digits_cnn.lam (two 3x3 convolutions with batch norm and ReLU, a 2x2 max pool,
dropout 0.25, dense 64 with ReLU, dense 10), Adam lr 1e-3, cross-entropy, batch 32 (the last, partial
batch of an epoch included, as `lamina train` does), a fresh shuffle every epoch, 20 epochs, evaluated
on examples/data/digits/test in inference mode after every epoch. Prints, per seed, the final epoch's
held-out accuracy and the best epoch's (which `lamina train` reports as "best val loss ... (val
accuracy ...)": the epoch with the lowest validation loss), then the mean over seeds.

--init lamina uses Lamina's initializers (glorot_uniform weights, zero biases; batch norm weight 1,
bias 0); --init pytorch (default) PyTorch's own.

Usage:
  /work/venv/bin/python tools/digits_cnn_torch.py [--seeds 1,2,3,4,5] [--epochs 20] [--init pytorch|lamina]
"""

import argparse
import os
import statistics
import sys

import numpy as np

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("PyTorch is not installed: pip install torch numpy (see BENCHMARKS.md)", file=sys.stderr)
    sys.exit(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2d_0 = nn.Conv2d(1, 16, 3, padding=1)
        self.batch_norm_0 = nn.BatchNorm2d(16)
        self.conv2d_1 = nn.Conv2d(16, 32, 3, padding=1)
        self.batch_norm_1 = nn.BatchNorm2d(32)
        self.dense_0 = nn.Linear(32 * 4 * 4, 64)
        self.dense_1 = nn.Linear(64, 10)

    def forward(self, x):
        h = x.reshape(-1, 1, 8, 8)
        h = torch.relu(self.batch_norm_0(self.conv2d_0(h)))
        h = F.max_pool2d(torch.relu(self.batch_norm_1(self.conv2d_1(h))), 2)
        h = F.dropout(torch.flatten(h, 1), 0.25, self.training)
        return self.dense_1(torch.relu(self.dense_0(h)))


def lamina_init(model):
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)  # Keras' glorot_uniform: fans of the layer
            nn.init.zeros_(module.bias)


def train(seed, epochs, batch, init):
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    x = torch.tensor(np.load(os.path.join(ROOT, "examples/data/digits/train/x.npy")))
    labels = torch.tensor(np.load(os.path.join(ROOT, "examples/data/digits/train/label.npy"))).long()
    test_x = torch.tensor(np.load(os.path.join(ROOT, "examples/data/digits/test/x.npy")))
    test_labels = torch.tensor(np.load(os.path.join(ROOT, "examples/data/digits/test/label.npy"))).long()
    model = DigitsCNN()
    if init == "lamina":
        lamina_init(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(epochs):
        model.train()
        order = torch.tensor(generator.permutation(len(x)))
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            optimizer.zero_grad()
            F.cross_entropy(model(x[rows]), labels[rows]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(test_x)
            loss = F.cross_entropy(logits, test_labels).item()
            accuracy = (logits.argmax(1) == test_labels).float().mean().item()
        history.append((loss, accuracy))
    best = min(history, key=lambda entry: entry[0])
    return history[-1][1], best[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--init", choices=["pytorch", "lamina"], default="pytorch")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    finals, bests = [], []
    for seed in (int(s) for s in arguments.seeds.split(",")):
        final, best = train(seed, arguments.epochs, arguments.batch, arguments.init)
        finals.append(final)
        bests.append(best)
        print(f"seed {seed}: final epoch {final * 100:.2f}%, lowest-validation-loss epoch {best * 100:.2f}%")
    print(f"mean over {len(finals)} seeds ({arguments.init} init): final {statistics.mean(finals) * 100:.2f}% "
          f"[{min(finals) * 100:.2f}-{max(finals) * 100:.2f}], best-epoch {statistics.mean(bests) * 100:.2f}% "
          f"[{min(bests) * 100:.2f}-{max(bests) * 100:.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
