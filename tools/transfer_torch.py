#!/usr/bin/env python3
"""PyTorch reproduction of examples/transfer, a sanity check of the Lamina figures.

The same networks (two 3x3 convolutions with batch norm and ReLU, a 2x2 max pool, a dense head;
Glorot-uniform weights, zero biases), the same data, losses and schedule as
tools/transfer_experiment.py: pretrain on the digits 0-4 (dropout 0.5 on the features), fine-tune a
new head on the frozen features (batch norms in inference mode) on 10% of the digits 5-9 training
rows, and train the same model from scratch on those rows; Adam, accuracy after the last epoch on
the 5-9 test split. Only the random streams (initialization, shuffles, dropout masks) differ from
Lamina's, so the figures agree within the spread of the seeds, not digit for digit.

    /work/venv/bin/python tools/transfer_torch.py [--seeds 1,2,3,4,5] [--pretrain-data digits_0to4_shifted]
        [--filters 16,32] [--hidden 64] [--head-dropout 0] [--epochs 30] [--unfrozen-epochs 0]
        [--all-rows]   # fine-tune and scratch on all the digits 5-9 training rows: the ceiling
"""
import argparse
import os
import statistics

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "data")


def load(split):
    folder = os.path.join(DATA, split)
    return (torch.tensor(np.load(os.path.join(folder, "x.npy"))),
            torch.tensor(np.load(os.path.join(folder, "label.npy"))).long())


class Model(nn.Module):
    def __init__(self, filters, hidden, head_dropout):
        super().__init__()
        layers, channels = [], 1
        for count in filters:
            layers += [nn.Conv2d(channels, count, 3, padding=1), nn.BatchNorm2d(count), nn.ReLU()]
            channels = count
        self.features = nn.Sequential(*layers, nn.MaxPool2d(2))
        width = channels * 16
        self.hidden = nn.Linear(width, hidden) if hidden else None
        self.head_dropout = head_dropout
        self.head = nn.Linear(hidden or width, 5)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x, feature_dropout=0.0):
        h = self.features(x.view(-1, 1, 8, 8)).flatten(1)
        h = F.dropout(h, feature_dropout, self.training)
        if self.hidden is not None:
            h = F.dropout(F.relu(self.hidden(h)), self.head_dropout, self.training)
        return self.head(h)


def fit(model, x, label, epochs, batch, lr, frozen_features=False, feature_dropout=0.0):
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(epochs):
        model.train()
        if frozen_features:
            model.features.eval()  # frozen batch norms normalize with the running statistics
        order = torch.randperm(len(label))
        for start in range(0, len(label), batch):
            rows = order[start:start + batch]
            loss = F.cross_entropy(model(x[rows], feature_dropout), label[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def accuracy(model, x, label):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == label).float().mean().item() * 100


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--pretrain-data", default="digits_0to4_shifted")
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--pretrain-batch", type=int, default=64)
    parser.add_argument("--filters", default="16,32")
    parser.add_argument("--hidden", type=int, default=64, help="units of the head's hidden layer (0: none)")
    parser.add_argument("--head-dropout", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--unfrozen-epochs", type=int, default=0,
                        help="then train everything but the batch norms at lr 1e-4 this many epochs")
    parser.add_argument("--all-rows", action="store_true", help="use all the digits 5-9 training rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    filters = [int(count) for count in args.filters.split(",")]
    pretrain_x, pretrain_label = load(f"{args.pretrain_data}/train")
    pretest_x, pretest_label = load("digits_0to4/test")
    x, label = load("digits_5to9/train")
    if args.all_rows:
        all_x, all_label = load("digits/train")
        x, label = all_x[all_label >= 5], all_label[all_label >= 5] - 5
    test_x, test_label = load("digits_5to9/test")
    results = []
    for seed in [int(seed) for seed in args.seeds.split(",")]:
        torch.manual_seed(seed)
        pretrained = Model(filters, 64, 0.0)
        fit(pretrained, pretrain_x, pretrain_label, args.pretrain_epochs, args.pretrain_batch, 1e-3,
            feature_dropout=0.5)
        result = {"pretrain": accuracy(pretrained, pretest_x, pretest_label)}
        torch.manual_seed(seed + 100)
        finetuned = Model(filters, args.hidden, args.head_dropout)
        finetuned.features.load_state_dict(pretrained.features.state_dict())
        finetuned.features.requires_grad_(False)
        fit(finetuned, x, label, args.epochs, args.batch, 1e-3, frozen_features=True)
        result["finetune"] = accuracy(finetuned, test_x, test_label)
        if args.unfrozen_epochs:
            for module in finetuned.features:
                if not isinstance(module, nn.BatchNorm2d):
                    module.requires_grad_(True)
            fit(finetuned, x, label, args.unfrozen_epochs, args.batch, 1e-4, frozen_features=True)
            result["unfrozen"] = accuracy(finetuned, test_x, test_label)
        torch.manual_seed(seed + 100)
        scratch = Model(filters, args.hidden, args.head_dropout)
        fit(scratch, x, label, args.epochs, args.batch, 1e-3)
        result["scratch"] = accuracy(scratch, test_x, test_label)
        if args.unfrozen_epochs:
            fit(scratch, x, label, args.unfrozen_epochs, args.batch, 1e-3)
            result["scratch_long"] = accuracy(scratch, test_x, test_label)
        results.append(result)
        print(f"seed {seed}: " + ", ".join(f"{name} {value:.2f}%" for name, value in result.items()), flush=True)
    for name in results[0]:
        values = [result[name] for result in results]
        print(f"{name}: mean {statistics.mean(values):.2f}% (sd {statistics.pstdev(values):.2f})")
    finetune = statistics.mean(result["finetune"] for result in results)
    scratch = statistics.mean(result["scratch"] for result in results)
    print(f"fine-tuned minus scratch: {finetune - scratch:+.2f} points")


if __name__ == "__main__":
    main()
