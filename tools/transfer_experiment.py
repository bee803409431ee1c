#!/usr/bin/env python3
"""Measures examples/transfer: fine-tuning against training from scratch, over several seeds.

For each seed: pretrain examples/transfer/pretrain.lam on the digits 0-4 (by default their
one-pixel-shifted copies, digits_0to4_shifted), fine-tune examples/transfer/finetune.lam (its frozen
`features.*` loaded with --init-from) on 10% of the digits 5-9 training rows, and train
examples/transfer/scratch.lam (the same model, nothing loaded or frozen) on the same rows, with the
same schedule. Reports each run's validation accuracy after the last epoch (no early stopping, so the
test split chooses nothing), the means and the spread (population standard deviation).

With --unfrozen-epochs N it also continues each fine-tuned model for N epochs with everything but the
batch norms trainable at a small learning rate (finetune_unfrozen.lam, the Keras recipe), and trains
scratch for the same total number of epochs, so that row compares like with like.

    /work/venv/bin/python tools/make_digits_splits.py   # once, if examples/data/digits_* are missing
    /work/venv/bin/python tools/transfer_experiment.py [--lamina .build/release/lamina] [--seeds 1,2,3,4,5]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile


def train(lamina, arguments):
    """The validation accuracy (%) after each epoch of one `lamina train` run."""
    result = subprocess.run([lamina, "train", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"lamina train {' '.join(arguments)} failed:\n{result.stderr}")
    epochs = re.findall(r"^epoch\s+\d+/\d+ .*val acc ([0-9.]+)%", result.stdout, re.MULTILINE)
    if not epochs:
        sys.exit(f"no validation accuracy in the output of lamina train {' '.join(arguments)}")
    return [float(accuracy) for accuracy in epochs]


def summary(values):
    return f"{statistics.mean(values):.2f}% (sd {statistics.pstdev(values):.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamina", default=".build/debug/lamina")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--pretrain-data", default="digits_0to4_shifted",
                        help="folder under examples/data with the pretraining rows (train/)")
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--pretrain-batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--unfrozen-epochs", type=int, default=0,
                        help="then train finetune_unfrozen.lam this many epochs (0: not at all)")
    parser.add_argument("--models", default="examples/transfer",
                        help="folder with pretrain.lam, finetune.lam, scratch.lam (and finetune_unfrozen.lam)")
    args = parser.parse_args()
    data = "examples/data"
    seeds = [int(seed) for seed in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            weights = os.path.join(folder, f"pretrained{seed}.safetensors")
            pretrain = train(args.lamina, [
                f"{args.models}/pretrain.lam", "--data", f"{data}/{args.pretrain_data}/train",
                "--val", f"{data}/digits_0to4/test", "--epochs", str(args.pretrain_epochs),
                "--batch", str(args.pretrain_batch), "--seed", str(seed), "-o", weights])[-1]
            common = ["--data", f"{data}/digits_5to9/train", "--val", f"{data}/digits_5to9/test",
                      "--batch", str(args.batch), "--seed", str(seed)]
            finetuned = os.path.join(folder, f"finetuned{seed}.safetensors")
            finetune = train(args.lamina, [f"{args.models}/finetune.lam", *common, "--epochs", str(args.epochs),
                                           "--init-from", weights, "-o", finetuned])[-1]
            # One scratch run serves both rows: epoch E of a longer run is the E-epoch run (the
            # shuffle depends only on the seed and the epoch; the learning rate is constant).
            scratch = train(args.lamina, [f"{args.models}/scratch.lam", *common,
                                          "--epochs", str(args.epochs + args.unfrozen_epochs)])
            row = {"seed": seed, "pretrain": pretrain, "finetune": finetune, "scratch": scratch[args.epochs - 1]}
            line = (f"seed {seed}: pretrain (0-4) {pretrain:.2f}%, fine-tuned (5-9) {finetune:.2f}%, "
                    f"scratch (5-9) {row['scratch']:.2f}%")
            if args.unfrozen_epochs:
                # A different seed from the first stage's, so the shuffles do not repeat its order.
                row["unfrozen"] = train(args.lamina, [
                    f"{args.models}/finetune_unfrozen.lam", *common[:-1], str(seed + 1000),
                    "--epochs", str(args.unfrozen_epochs), "--init-from", finetuned])[-1]
                row["scratch_long"] = scratch[-1]
                line += (f"; then unfrozen {row['unfrozen']:.2f}%, scratch at "
                         f"{args.epochs + args.unfrozen_epochs} epochs {row['scratch_long']:.2f}%")
            rows.append(row)
            print(line, flush=True)
    column = lambda name: [row[name] for row in rows]
    finetune, scratch = statistics.mean(column("finetune")), statistics.mean(column("scratch"))
    print(f"over {len(rows)} seeds: fine-tuned {summary(column('finetune'))}, scratch {summary(column('scratch'))}, "
          f"difference {finetune - scratch:+.2f} points")
    if args.unfrozen_epochs:
        unfrozen, scratch_long = statistics.mean(column("unfrozen")), statistics.mean(column("scratch_long"))
        print(f"then unfrozen: {summary(column('unfrozen'))}, scratch at {args.epochs + args.unfrozen_epochs} "
              f"epochs {summary(column('scratch_long'))}, difference {unfrozen - scratch_long:+.2f} points")


if __name__ == "__main__":
    main()
