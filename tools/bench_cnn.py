#!/usr/bin/env python3
"""Convolutional benchmarks: Lamina beside PyTorch eager and ONNX Runtime, measured in the same run.

Workloads (../shared/benchmarks/README.md and issue 14):
  w3        LeNet-5 (examples/bench/lenet5.lam) training at batch 64 on [64, 1, 28, 28]: forward, softmax
            cross-entropy on integer labels, backward, SGD with momentum 0.9 and lr 0.01: steps/s.
            Lamina: `lamina bench --train` (one C call per step); PyTorch eager.
  w4_b1     the same model's forward at batch 1: latency. Lamina: `lamina bench`; PyTorch eager under
            inference_mode; ONNX Runtime on the PyTorch model exported to ONNX (static shapes).
  w4_b64    the same at batch 64: samples/s.
  conv_fwd  a 3x3 convolution, 64 -> 64 channels, 56x56, batch 8, padding 1, no bias
            (tools/models/conv3x3.lam): forward, GFLOP/s and the fraction of the machine's FP32 FMA
            peak (measured in the same run by tools/fma_peak/fma_peak.c, gemm_bench's measure alone).
  conv_train the same model's training step: forward, d x and d weight (the model scales x by a
            parameter first, so the data gradient is needed), SGD update: 3x the forward's FLOPs.
            PyTorch runs the same model (oneDNN convolutions).

Everything runs on 2 threads (`torch.set_num_threads(2)`, OMP_NUM_THREADS=2, ONNX Runtime
intra_op_num_threads=2, Lamina's pool of 2). Each framework's calls are timed one by one after a
warm-up; --rounds repeats the whole set, frameworks interleaved within each round, and the table shows
the median of the rounds' medians, the smallest min and the largest max; ratios are the peer's median
time over Lamina's (above 1: Lamina is faster). The load average is printed before and after: on a
loaded machine (above 2 on 2 cores) the figures are not reliable, ratios less so than absolutes. Each
workload's rounds are also labelled by the core-to-core probe (tools/core_latency, before and after each
framework's timing): "one die", "two dies" or "mixed". This VM's two vCPUs switch between sharing a die
and sitting on two every few seconds, and every framework's 2-thread time moves with it (LeNet-5 at batch
64: 0.32 against 0.42 ms), so compare figures within one state.

Usage:
  swift build -c release
  /work/venv/bin/python tools/bench_cnn.py [--lamina .build/release/lamina] [--rounds 3] [--runs 100]
                                           [--only w3,w4_b1,w4_b64,conv_fwd,conv_train] [--no-peak]
                                           [--threads=1] [--json FILE] [--no-lamina]
"""

import argparse
import io
import json
import os
import subprocess
import shutil
import sys
import tempfile

from bench_common import core_latency_probe, lamina_timing, load_average, probed, state_of, summarize, time_calls

THREADS = 2
for argument in sys.argv:  # before PyTorch reads OMP_NUM_THREADS
    if argument.startswith("--threads="):
        THREADS = int(argument.split("=", 1)[1])
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENET = "examples/bench/lenet5.lam"
CONV = "tools/models/conv3x3.lam"
CONV_FLOPS = 2 * 8 * 64 * 64 * 3 * 3 * 56 * 56  # forward: 2 N Cout Cin kh kw Hout Wout

WORKLOADS = {
    "w3": {"model": LENET, "batch": 64, "train": True, "title": "W3 LeNet-5 train step, batch 64"},
    "w4_b1": {"model": LENET, "batch": 1, "train": False, "title": "W4 LeNet-5 forward, batch 1"},
    "w4_b64": {"model": LENET, "batch": 64, "train": False, "title": "W4 LeNet-5 forward, batch 64"},
    "conv_fwd": {"model": CONV, "batch": 8, "train": False, "flops": CONV_FLOPS,
                 "title": "3x3 conv 64->64, 56x56, batch 8, forward"},
    "conv_train": {"model": CONV, "batch": 8, "train": True, "flops": 3 * CONV_FLOPS,
                   "title": "3x3 conv 64->64, 56x56, batch 8, forward + backward (dx, dW) + update"},
}


# --------------------------------------------------------------------------------------------------
# Lamina
# --------------------------------------------------------------------------------------------------

def lamina(binary, workload, runs):
    command = [binary, "bench", os.path.join(ROOT, workload["model"]), "--batch", str(workload["batch"]),
               "--runs", str(runs), "--threads", str(THREADS), "--no-interpreter", "--json"]
    if workload["train"]:
        command.append("--train")
    return lamina_timing(command, "train step" if workload["train"] else "compiled")


# --------------------------------------------------------------------------------------------------
# PyTorch and ONNX Runtime
# --------------------------------------------------------------------------------------------------

def lenet5(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


class Conv3x3:
    """tools/models/conv3x3.lam in PyTorch: y = conv2d(x * scale), loss = mean(y)."""

    def __init__(self, torch):
        self.torch = torch
        self.scale = torch.ones(64, 1, 1, requires_grad=True)
        self.conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)

    def parameters(self):
        return [self.scale, *self.conv.parameters()]

    def __call__(self, x):
        return self.conv(x * self.scale)


def pytorch_runner(name, workload):
    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    batch = workload["batch"]
    if workload["model"] == LENET:
        model = lenet5(torch)
        x = torch.randn(batch, 1, 28, 28)
        labels = torch.randint(0, 10, (batch,))
        loss_of = lambda: torch.nn.functional.cross_entropy(model(x), labels)  # noqa: E731
        parameters = list(model.parameters())
    else:
        model = Conv3x3(torch)
        x = torch.randn(batch, 64, 56, 56)
        loss_of = lambda: model(x).mean()  # noqa: E731
        parameters = model.parameters()
    if workload["train"]:
        optimizer = torch.optim.SGD(parameters, lr=0.01, momentum=0.9 if workload["model"] == LENET else 0)

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss_of().backward()
            optimizer.step()
        return step
    if hasattr(model, "eval"):
        model.eval()

    def forward():
        with torch.inference_mode():
            model(x)
    return forward


def onnxruntime_runner(name, workload):
    if workload["train"] or workload["model"] != LENET:
        return None
    import numpy
    import onnxruntime
    import torch
    torch.manual_seed(0)
    model = lenet5(torch).eval()
    batch = workload["batch"]
    example = torch.randn(batch, 1, 28, 28)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "lenet5.onnx")
        export_onnx(torch, model, example, path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    feeds = {input_name: numpy.random.default_rng(1).standard_normal((batch, 1, 28, 28), dtype=numpy.float32)}
    return lambda: session.run(None, feeds)


def export_onnx(torch, model, example, path):
    """Static shapes (one export per batch size), opset 17; the TorchScript exporter where it exists."""
    import contextlib
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            torch.onnx.export(model, (example,), path, input_names=["x"], output_names=["logits"],
                              opset_version=17, dynamo=False)
        except TypeError:  # an exporter without the `dynamo` switch
            torch.onnx.export(model, (example,), path, input_names=["x"], output_names=["logits"],
                              opset_version=17)


PEERS = {"pytorch": pytorch_runner, "onnxruntime": onnxruntime_runner}


# --------------------------------------------------------------------------------------------------
# FMA peak, measured as tools/gemm/gemm_bench.c does
# --------------------------------------------------------------------------------------------------

def fma_peak():
    """GFLOP/s of FP32 FMAs on 1 and 2 threads, the best of 31 repeats (tools/fma_peak/fma_peak.c)."""
    out = os.path.join(tempfile.gettempdir(), "lamina-bench-cnn")
    os.makedirs(out, exist_ok=True)
    binary = os.path.join(out, "fma_peak")
    subprocess.run(["cc", "-std=c11", "-O2", "-march=native", "-o", binary,
                    os.path.join(ROOT, "tools/fma_peak/fma_peak.c"), "-lpthread"], check=True)
    peaks, lines = {}, []
    for threads in sorted({1, THREADS}):
        line = subprocess.run([binary, str(threads), "31"], capture_output=True, text=True).stdout.strip()
        peaks[threads] = float(line.split("max ")[1].split(";")[0])
        lines.append(line)
    return peaks, "\n".join(lines)


# --------------------------------------------------------------------------------------------------

def rate(workload, seconds):
    if "flops" in workload:
        return f"{workload['flops'] / seconds / 1e9:7.1f} GFLOP/s"
    if workload["train"]:
        return f"{1 / seconds:7.1f} steps/s"
    return f"{workload['batch'] / seconds:9.0f} samples/s"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamina", default=os.environ.get("LAMINA", os.path.join(ROOT, ".build/release/lamina")))
    parser.add_argument("--runs", type=int, default=100, help="timed calls per framework and round (at least 1 s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(WORKLOADS))
    parser.add_argument("--no-peak", action="store_true", help="skip measuring the FMA peak")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--no-lamina", action="store_true", help="time the peers alone (no ratios)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for every framework (pass as --threads=N; default 2, the workloads' definition)")
    arguments = parser.parse_args()
    if not arguments.no_lamina and not os.path.exists(arguments.lamina):
        print(f"no lamina binary at {arguments.lamina}: run `swift build -c release` first", file=sys.stderr)
        return 2
    names = arguments.only.split(",")
    if arguments.threads != THREADS:
        print("pass the thread count as --threads=N (PyTorch reads it before the arguments are parsed)", file=sys.stderr)
        return 2
    print(f"threads: {THREADS}; load average before: {load_average()}")
    peaks = {}
    if not arguments.no_peak and any("flops" in WORKLOADS[n] for n in names):
        peaks, text = fma_peak()
        print(text)

    report = {"load_before": os.getloadavg(), "peaks": peaks, "workloads": {}}
    probe_folder = tempfile.mkdtemp(prefix="lamina-bench-cnn-probe-")
    probe = core_latency_probe(probe_folder)
    print(f"\n{'workload':<11} {'framework':<12} {'median':>11} {'min':>11} {'max':>11} {'runs':>6}  "
          f"{'rate':>18}  {'ratio':>6}  {'of peak':>7}  round medians")
    for name in names:
        workload = WORKLOADS[name]
        runners = {}
        for framework, make in PEERS.items():
            try:
                call = make(name, workload)
            except ImportError as error:
                print(f"{name:<11} {framework:<12} not installed ({error.name})")
                continue
            if call is not None:
                runners[framework] = call
        rounds = {**({} if arguments.no_lamina else {"lamina": []}), **{framework: [] for framework in runners}}
        states = []  # per round, from the core-to-core probes around every framework's timing
        for _ in range(arguments.rounds):
            probes = []
            if not arguments.no_lamina:
                timing, around = probed(probe, lambda: lamina(arguments.lamina, workload, arguments.runs))
                rounds["lamina"].append(timing)
                probes += around
            for framework, call in runners.items():
                timing, around = probed(
                    probe, lambda: time_calls(call, arguments.runs, max_calls=100 * arguments.runs))
                rounds[framework].append(timing)
                probes += around
            states.append(state_of(probes))
        results = {framework: summarize(r) for framework, r in rounds.items()}
        ours = results["lamina"]["median"] if "lamina" in results else None
        for framework, timing in results.items():
            ratio = "" if framework == "lamina" or ours is None else f"{timing['median'] / ours:5.2f}x"
            of_peak = ""
            if "flops" in workload and THREADS in peaks:
                of_peak = f"{workload['flops'] / timing['median'] / 1e9 / peaks[THREADS] * 100:6.1f}%"
            medians = ", ".join(f"{m * 1e3:.3f}" for m in timing["round medians"])
            print(f"{name:<11} {framework:<12} {timing['median'] * 1e3:9.3f}ms {timing['min'] * 1e3:9.3f}ms "
                  f"{timing['max'] * 1e3:9.3f}ms {timing['runs']:>6}  {rate(workload, timing['median']):>18}  "
                  f"{ratio:>6}  {of_peak:>7}  [{medians}] ms")
        if probe:
            print(f"{'':<11} {'rounds':<12} " + ", ".join(states) + " (core-to-core probes: tools/core_latency)")
        report["workloads"][name] = {**results, "states": states}
    report["load_after"] = os.getloadavg()
    print(f"\nload average after: {load_average()}")
    if peaks:
        print(f"FP32 FMA peak used: {peaks.get(THREADS, float('nan')):.1f} GFLOP/s on {THREADS} threads")
    print("ratio: the peer's median time over Lamina's (above 1: Lamina is faster); "
          "targets: W3 >= 1.5x PyTorch; W4 batch 1 >= 2x ONNX Runtime (latency at most 0.5x); "
          "W4 batch 64 >= 1.5x ONNX Runtime")
    if arguments.json:
        with open(arguments.json, "w") as file:
            json.dump(report, file, indent=1)
    shutil.rmtree(probe_folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
