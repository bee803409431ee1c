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


def train(lamina, arguments, losses=False):
    """The validation accuracy (%) after each epoch of one `lamina train` run (with `losses`, pairs of
    validation accuracy and loss)."""
    result = subprocess.run([lamina, "train", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"lamina train {' '.join(arguments)} failed:\n{result.stderr}")
    epochs = re.findall(r"^epoch\s+\d+/\d+ .*val loss ([0-9.]+)\s+val acc ([0-9.]+)%", result.stdout, re.MULTILINE)
    if not epochs:
        sys.exit(f"no validation accuracy in the output of lamina train {' '.join(arguments)}")
    if losses:
        return [(float(accuracy), float(loss)) for loss, accuracy in epochs]
    return [float(accuracy) for _, accuracy in epochs]


def with_learning_rate(model, learning_rate, folder):
    """A copy of `model` in `folder` whose `adam(lr: ...)` has another learning rate."""
    text, count = re.subn(r"adam\(lr: [0-9.e-]+", f"adam(lr: {learning_rate:g}", open(model).read())
    if count != 1:
        sys.exit(f"{model}: expected one adam(lr: ...) to set the learning rate of")
    path = os.path.join(folder, f"lr{learning_rate:g}_{os.path.basename(model)}")
    with open(path, "w") as file:
        file.write(text)
    return path


def cross_validation_folds(data, folder, count):
    """Stratified folds of the training rows of `data`, each as DIR/foldK/{train,val} (fixed draw)."""
    import numpy as np
    x, label = np.load(os.path.join(data, "x.npy")), np.load(os.path.join(data, "label.npy"))
    fold_of = np.empty(len(label), dtype=int)
    rng = np.random.default_rng(0)
    for value in np.unique(label):
        members = rng.permutation(np.flatnonzero(label == value))
        fold_of[members] = (np.arange(len(members)) + value) % count
    folds = []
    for fold in range(count):
        paths = {}
        for split, rows in (("train", fold_of != fold), ("val", fold_of == fold)):
            paths[split] = os.path.join(folder, f"fold{fold}", split)
            os.makedirs(paths[split])
            np.save(os.path.join(paths[split], "x.npy"), x[rows])
            np.save(os.path.join(paths[split], "label.npy"), label[rows])
        folds.append(paths)
    return folds


def draw_tenth(source, folder, seed):
    """Another stratified 10% of the digits 5-9 training rows, as make_digits_splits.py draws them."""
    import numpy as np
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_digits_splits import stratified_fraction
    x, label = np.load(os.path.join(source, "train", "x.npy")), np.load(os.path.join(source, "train", "label.npy"))
    high = label >= 5
    rows = stratified_fraction(label[high] - 5, 0.1, np.random.default_rng(seed))
    os.makedirs(folder)
    np.save(os.path.join(folder, "x.npy"), x[high][rows])
    np.save(os.path.join(folder, "label.npy"), (label[high][rows] - 5).astype(np.int32))
    return folder


def select(lamina, model, folds, learning_rates, max_epochs, batch, seed, extra, folder):
    """The learning rate and epoch count with the best mean validation accuracy over the folds (ties:
    the lower mean validation loss), and that accuracy: chosen on the training rows alone."""
    best = None
    for learning_rate in learning_rates:
        variant = with_learning_rate(model, learning_rate, folder)
        runs = [train(lamina, [variant, "--data", fold["train"], "--val", fold["val"], "--epochs", str(max_epochs),
                               "--batch", str(batch), "--seed", str(seed), *extra], losses=True)
                for fold in folds]
        for epoch in range(max_epochs):
            accuracy = statistics.mean(run[epoch][0] for run in runs)
            loss = statistics.mean(run[epoch][1] for run in runs)
            if best is None or (accuracy, -loss) > (best[2], -best[3]):
                best = (learning_rate, epoch + 1, accuracy, loss)
    print(f"  {os.path.basename(model)}: lr {best[0]:g}, {best[1]} epochs "
          f"(cross-validation accuracy {best[2]:.2f}%, loss {best[3]:.4f})", flush=True)
    return variant_for(model, best[0], folder), best[1]


def variant_for(model, learning_rate, folder):
    return os.path.join(folder, f"lr{learning_rate:g}_{os.path.basename(model)}")


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
    parser.add_argument("--select", action="store_true",
                        help="choose each model's learning rate and epochs by 5-fold cross-validation on "
                             "the training rows (first seed's pretraining) instead of --epochs and the files' lr")
    parser.add_argument("--learning-rates", default="3e-4,1e-3,3e-3,1e-2")
    parser.add_argument("--max-epochs", type=int, default=60, help="with --select: the longest run tried")
    parser.add_argument("--draw-per-seed", action="store_true",
                        help="draw the 10%% of the digits 5-9 training rows anew for each seed (numpy seed = "
                             "the seed) instead of using examples/data/digits_5to9/train")
    parser.add_argument("--models", default="examples/transfer",
                        help="folder with pretrain.lam, finetune.lam, scratch.lam (and finetune_unfrozen.lam)")
    args = parser.parse_args()
    data = "examples/data"
    seeds = [int(seed) for seed in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        def pretrain(seed):
            weights = os.path.join(folder, f"pretrained{seed}.safetensors")
            accuracy = train(args.lamina, [
                f"{args.models}/pretrain.lam", "--data", f"{data}/{args.pretrain_data}/train",
                "--val", f"{data}/digits_0to4/test", "--epochs", str(args.pretrain_epochs),
                "--batch", str(args.pretrain_batch), "--seed", str(seed), "-o", weights])[-1]
            return weights, accuracy

        finetune_model, finetune_epochs = f"{args.models}/finetune.lam", args.epochs
        scratch_model, scratch_epochs = f"{args.models}/scratch.lam", args.epochs
        if args.select:
            # The test split chooses nothing: folds of the 70 training rows do.
            print(f"choosing learning rates ({args.learning_rates}) and epochs (1 to {args.max_epochs}) by "
                  f"5-fold cross-validation on the training rows, seed {seeds[0]}:", flush=True)
            folds = cross_validation_folds(f"{data}/digits_5to9/train", os.path.join(folder, "folds"), 5)
            learning_rates = [float(value) for value in args.learning_rates.split(",")]
            weights, _ = pretrain(seeds[0])
            finetune_model, finetune_epochs = select(
                args.lamina, finetune_model, folds, learning_rates, args.max_epochs, args.batch, seeds[0],
                ["--init-from", weights], folder)
            scratch_model, scratch_epochs = select(
                args.lamina, scratch_model, folds, learning_rates, args.max_epochs, args.batch, seeds[0], [], folder)
        for seed in seeds:
            weights, pretrained = pretrain(seed)
            rows_folder = f"{data}/digits_5to9/train"
            if args.draw_per_seed:
                rows_folder = draw_tenth(f"{data}/digits", os.path.join(folder, f"draw{seed}"), seed)
            common = ["--data", rows_folder, "--val", f"{data}/digits_5to9/test",
                      "--batch", str(args.batch), "--seed", str(seed)]
            finetuned = os.path.join(folder, f"finetuned{seed}.safetensors")
            finetune = train(args.lamina, [finetune_model, *common, "--epochs", str(finetune_epochs),
                                           "--init-from", weights, "-o", finetuned])[-1]
            # One scratch run serves both rows: epoch E of a longer run is the E-epoch run (the
            # shuffle depends only on the seed and the epoch; the learning rate is constant).
            scratch = train(args.lamina, [scratch_model, *common,
                                          "--epochs", str(max(scratch_epochs, args.epochs + args.unfrozen_epochs))])
            row = {"seed": seed, "pretrain": pretrained, "finetune": finetune, "scratch": scratch[scratch_epochs - 1]}
            line = (f"seed {seed}: pretrain (0-4) {pretrained:.2f}%, fine-tuned (5-9) {finetune:.2f}%, "
                    f"scratch (5-9) {row['scratch']:.2f}%")
            if args.unfrozen_epochs:
                # A different seed from the first stage's, so the shuffles do not repeat its order.
                row["unfrozen"] = train(args.lamina, [
                    f"{args.models}/finetune_unfrozen.lam", *common[:-1], str(seed + 1000),
                    "--epochs", str(args.unfrozen_epochs), "--init-from", finetuned])[-1]
                row["scratch_long"] = scratch[args.epochs + args.unfrozen_epochs - 1]
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
