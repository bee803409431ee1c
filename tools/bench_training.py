#!/usr/bin/env python3
"""Training benchmark W1: Lamina's compiled train step beside PyTorch, measured in the same run.

W1 (../shared/benchmarks): MLP 784-512-512-10 with ReLU, softmax cross-entropy on integer labels, SGD
with momentum 0.9 and lr 0.01, batch 128, fp32, 2 threads. One step is forward + backward + update,
timed per call after a warm-up; the table shows median, min and max per step and the ratio of PyTorch's
median to Lamina's (above 1: Lamina is faster). Lamina is measured through `lamina bench --train`
(the Swift API's `CompiledModel.trainStep`, one C call per step).

Usage:
  swift build -c release
  python3 tools/bench_training.py [--lamina .build/release/lamina] [--runs 200]
"""

import argparse
import os
import sys

from bench_common import lamina_timing, time_calls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS = 2
BATCH = 128


def lamina(binary, runs):
    command = [binary, "bench", os.path.join(ROOT, "examples/bench/mlp_784.lam"), "--train", "--batch", str(BATCH),
               "--runs", str(runs), "--threads", str(THREADS), "--no-interpreter", "--json"]
    return lamina_timing(command, "train step")


def pytorch(runs):
    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(BATCH, 784)
    labels = torch.randint(0, 10, (BATCH,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()

    return time_calls(step, runs, warmup=20)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamina", default=os.environ.get("LAMINA", os.path.join(ROOT, ".build/release/lamina")))
    parser.add_argument("--runs", type=int, default=200)
    arguments = parser.parse_args()
    if not os.path.exists(arguments.lamina):
        print(f"no lamina binary at {arguments.lamina}: run `swift build -c release` first", file=sys.stderr)
        return 2
    rows = [("lamina", lamina(arguments.lamina, arguments.runs))]
    try:
        rows.append(("pytorch", pytorch(arguments.runs)))
    except ImportError:
        print("PyTorch is not installed; only Lamina was measured")
    print(f"{'W1 train step':<14} {'median':>10} {'min':>10} {'max':>10} {'runs':>6} {'steps/s':>9}  ratio")
    ours = rows[0][1]["median"]
    for name, timing in rows:
        ratio = "" if name == "lamina" else f"{timing['median'] / ours:.2f}x"
        print(f"{name:<14} {timing['median'] * 1e3:8.2f}ms {timing['min'] * 1e3:8.2f}ms {timing['max'] * 1e3:8.2f}ms "
              f"{timing['runs']:>6} {1 / timing['median']:9.0f}  {ratio}")
    print("\nratio: PyTorch's median step time over Lamina's (above 1: Lamina is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
