#!/usr/bin/env python3
"""PyTorch's run of examples/sequence_memory.lam, for the figures beside Lamina's in the README.

The same model (embedding 8 -> 16, LSTM 64, the last step's hidden state to a linear 8, softmax
cross-entropy), the same data (examples/data/sequence_memory, made by tools/make_sequence_memory.py)
and the same schedule as `lamina train examples/sequence_memory.lam --data DIR/train --val DIR/test
--epochs 30 --batch 64`: Adam lr 3e-3, batch 64, rows shuffled every epoch. PyTorch's default
initialization (Lamina's dense layer starts Glorot uniform, PyTorch's Linear Kaiming uniform; the
embedding and LSTM initializations are the same). Prints the test loss and accuracy after every
epoch, for each seed.

Usage:
  /work/venv/bin/python tools/sequence_memory_torch.py [--data examples/data/sequence_memory] [--seeds 0,1,2]
"""

import argparse
import os

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SequenceMemory(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(8, 16)
        self.lstm = torch.nn.LSTM(16, 64, batch_first=True)
        self.dense = torch.nn.Linear(64, 8)

    def forward(self, tokens):
        h, _ = self.lstm(self.embedding(tokens))
        return self.dense(h[:, -1, :])


def load(directory):
    return (torch.tensor(np.load(os.path.join(directory, "tokens.npy")), dtype=torch.long),
            torch.tensor(np.load(os.path.join(directory, "label.npy")), dtype=torch.long))


def run(seed, train, test, epochs, batch):
    torch.manual_seed(seed)
    model = SequenceMemory()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    (x, y), (test_x, test_y) = train, test
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(test_x)
            loss = torch.nn.functional.cross_entropy(logits, test_y).item()
            accuracy = (logits.argmax(1) == test_y).float().mean().item()
        history.append((loss, accuracy))
        print(f"seed {seed} epoch {epoch + 1:2d}: test loss {loss:.4f}, accuracy {accuracy:.1%}")
    return history


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(ROOT, "examples/data/sequence_memory"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    train, test = load(os.path.join(arguments.data, "train")), load(os.path.join(arguments.data, "test"))
    finals = []
    for seed in [int(s) for s in arguments.seeds.split(",")]:
        history = run(seed, train, test, arguments.epochs, arguments.batch)
        first_perfect = next((i + 1 for i, (_, a) in enumerate(history) if a == 1.0), None)
        finals.append((seed, history[-1][1], first_perfect))
    for seed, accuracy, first_perfect in finals:
        print(f"seed {seed}: final test accuracy {accuracy:.1%}, first at 100%: epoch {first_perfect}")


if __name__ == "__main__":
    main()
