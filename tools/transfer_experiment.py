#!/usr/bin/env python3
"""Measures examples/transfer: fine-tuning against training from scratch, over several seeds.

For each seed: pretrain examples/transfer/pretrain.lam on the digits 0-4, fine-tune
examples/transfer/finetune.lam (its frozen `features.*` loaded with --init-from) on 10% of the
digits 5-9 training rows, and train examples/transfer/scratch.lam (the same model, nothing loaded or
frozen) on the same rows, with the same schedule. Reports each run's validation accuracy after the
last epoch (no early stopping, so the test split chooses nothing) and the means.

    /work/venv/bin/python tools/make_digits_splits.py   # once, if examples/data/digits_* are missing
    /work/venv/bin/python tools/transfer_experiment.py [--lamina .build/release/lamina] [--seeds 1,2,3,4,5]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile


def train(lamina, arguments):
    result = subprocess.run([lamina, "train", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"lamina train {' '.join(arguments)} failed:\n{result.stderr}")
    epochs = re.findall(r"^epoch\s+\d+/\d+ .*val acc ([0-9.]+)%", result.stdout, re.MULTILINE)
    if not epochs:
        sys.exit(f"no validation accuracy in the output of lamina train {' '.join(arguments)}")
    return float(epochs[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamina", default=".build/debug/lamina")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--models", default="examples/transfer",
                        help="folder with pretrain.lam, finetune.lam and scratch.lam")
    args = parser.parse_args()
    data = "examples/data"
    seeds = [int(seed) for seed in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            weights = os.path.join(folder, f"pretrained{seed}.safetensors")
            pretrain = train(args.lamina, [
                f"{args.models}/pretrain.lam", "--data", f"{data}/digits_0to4/train",
                "--val", f"{data}/digits_0to4/test", "--epochs", str(args.pretrain_epochs),
                "--batch", "32", "--seed", str(seed), "-o", weights])
            common = ["--data", f"{data}/digits_5to9/train", "--val", f"{data}/digits_5to9/test",
                      "--epochs", str(args.epochs), "--batch", str(args.batch), "--seed", str(seed)]
            finetune = train(args.lamina, [f"{args.models}/finetune.lam", *common, "--init-from", weights])
            scratch = train(args.lamina, [f"{args.models}/scratch.lam", *common])
            rows.append((seed, pretrain, finetune, scratch))
            print(f"seed {seed}: pretrain (0-4) {pretrain:.2f}%, fine-tuned (5-9) {finetune:.2f}%, "
                  f"scratch (5-9) {scratch:.2f}%", flush=True)
    mean = lambda values: sum(values) / len(values)
    finetune, scratch = mean([row[2] for row in rows]), mean([row[3] for row in rows])
    print(f"mean over {len(rows)} seeds: fine-tuned {finetune:.2f}%, scratch {scratch:.2f}%, "
          f"difference {finetune - scratch:+.2f} points")


if __name__ == "__main__":
    main()
