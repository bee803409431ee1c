#!/usr/bin/env python3
"""Training benchmark W5: Lamina's compiled LSTM train step beside PyTorch's nn.LSTM, in the same run,
and the compile time of the train step against the same model at sequence length 4.

W5 (../shared/benchmarks/README.md): LSTM, 1 layer, input 64, hidden 128, sequence 32, batch 32; the
last hidden state to a linear 10; softmax cross-entropy on integer labels; Adam lr 1e-3; fp32,
synthetic data from a fixed seed, 2 threads. One step is forward + backward + update, timed per call
after a warm-up.

Each of --rounds rounds measures both frameworks (alternating which goes first): Lamina through
`lamina bench tools/models/w5_lstm.lam --train --batch 32` (one C call per step; the round's
figure is its median step), PyTorch as the median of --runs timed steps. The table gives, over the
rounds' medians, the median, min and max per step, steps/s, and the ratio of PyTorch's median to
Lamina's (above 1: Lamina is faster; issue 15 asks for at least 1.5).

Compile time: `lamina compile --train --no-cache` of W5 and of the same model with sequence length 4
(the time goes through the loop, so it should not grow with the length; issue 15 asks for at most
1.2x), --compile-rounds times each, alternating; wall time of the whole command, median, min, max.

Usage:
  swift build -c release --product lamina
  /work/venv/bin/python tools/bench_rnn.py [--lamina .build/release/lamina] [--rounds 5] [--runs 100]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "tools/models/w5_lstm.lam")
THREADS = 2
BATCH, SEQUENCE, INPUT, HIDDEN, CLASSES = 32, 32, 64, 128, 10


def lamina_round(binary, runs, cache):
    command = [binary, "bench", MODEL, "--train", "--batch", str(BATCH), "--runs", str(runs),
               "--threads", str(THREADS), "--no-interpreter", "--json", "--cache-dir", cache]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])["train step"]["median_seconds"]


def pytorch_step():
    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)

    class W5(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(INPUT, HIDDEN, batch_first=True)
            self.linear = torch.nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            _, (h_n, _) = self.lstm(x)
            return self.linear(h_n[-1])

    model = W5()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(BATCH, SEQUENCE, INPUT)
    labels = torch.randint(0, CLASSES, (BATCH,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
    return step


def pytorch_round(step, runs):
    for _ in range(5):
        step()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def compile_seconds(binary, model, directory):
    start = time.perf_counter()
    result = subprocess.run([binary, "compile", model, "--train", "--no-cache", "-o",
                             os.path.join(directory, "lib.so")], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"lamina compile {model} failed:\n{result.stderr}")
    return elapsed


def summary(values):
    return statistics.median(values), min(values), max(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamina", default=os.environ.get("LAMINA", os.path.join(ROOT, ".build/release/lamina")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100, help="timed steps per round and framework")
    parser.add_argument("--compile-rounds", type=int, default=3)
    parser.add_argument("--skip-compile", action="store_true")
    arguments = parser.parse_args()
    if not os.path.exists(arguments.lamina):
        print(f"no lamina binary at {arguments.lamina}: run `swift build -c release` first", file=sys.stderr)
        return 2
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    step = pytorch_step()
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as directory:
        cache = os.path.join(directory, "cache")
        lamina_round(arguments.lamina, 5, cache)   # compiles once; the rounds reuse the library
        for round_index in range(arguments.rounds):
            if round_index % 2 == 0:
                ours.append(lamina_round(arguments.lamina, arguments.runs, cache))
                theirs.append(pytorch_round(step, arguments.runs))
            else:
                theirs.append(pytorch_round(step, arguments.runs))
                ours.append(lamina_round(arguments.lamina, arguments.runs, cache))

        print(f"W5 train step (LSTM 64->128, sequence {SEQUENCE}, batch {BATCH}, Adam), "
              f"{arguments.rounds} rounds of {arguments.runs} steps")
        print(f"{'':<10} {'median':>10} {'min':>10} {'max':>10} {'steps/s':>9}  ratio")
        for name, values in (("lamina", ours), ("pytorch", theirs)):
            median, low, high = summary(values)
            ratio = "" if name == "lamina" else f"{median / statistics.median(ours):.2f}x"
            print(f"{name:<10} {median * 1e3:8.3f}ms {low * 1e3:8.3f}ms {high * 1e3:8.3f}ms {1 / median:9.1f}  {ratio}")
        print("ratio: PyTorch's median step time over Lamina's (above 1: Lamina is faster)")

        if arguments.skip_compile:
            return 0
        short = os.path.join(directory, "w5_lstm_length4.lam")
        with open(MODEL) as handle:
            text = handle.read()
        with open(short, "w") as handle:
            handle.write(text.replace(f"f32[batch, {SEQUENCE}, {INPUT}]", f"f32[batch, 4, {INPUT}]"))
        long_times, short_times = [], []
        for round_index in range(arguments.compile_rounds):
            pair = [(long_times, MODEL), (short_times, short)]
            for times, model in (pair if round_index % 2 == 0 else pair[::-1]):
                times.append(compile_seconds(arguments.lamina, model, directory))
        print(f"\ncompile time of the train step (lamina compile --train --no-cache), {arguments.compile_rounds} rounds")
        for name, times in ((f"sequence {SEQUENCE}", long_times), ("sequence 4", short_times)):
            median, low, high = summary(times)
            print(f"{name:<12} median {median:.3f}s  min {low:.3f}s  max {high:.3f}s")
        print(f"ratio {statistics.median(long_times) / statistics.median(short_times):.2f}x "
              "(sequence 32 over sequence 4; issue 15 asks for at most 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
