#!/usr/bin/env python3
"""Inference benchmarks: Lamina beside PyTorch, ONNX Runtime and numpy, measured in the same run.

Workloads (from ../shared/benchmarks: W2 and GEMM):
  - mlp_b1:     the MLP 784-512-512-10 (ReLU) forward at batch 1: latency
  - mlp_b256:   the same model at batch 256: samples per second
  - matmul_512, matmul_1024: square f32 matrix products: GFLOP/s
  - w6:         layer_norm(gelu_tanh(x * a + b)) over x [4096, 1024] (W6): ms per forward; PyTorch
                eager and, with --compile, torch.compile

Every framework runs on 2 threads with the same shapes, after a warm-up, timing each call; the table
shows median, min and max per call and the ratio baseline/Lamina of the medians (above 1: Lamina is
faster). Baselines that are not installed are skipped with a note. Machines are noisy: compare ratios
from one run, not absolute numbers across runs.

Usage:
  swift build -c release
  python3 tools/bench_inference.py [--lamina .build/release/lamina] [--runs 200] [--only mlp_b1,...]
"""

import argparse
import os
import sys

from bench_common import lamina_timing, time_calls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS = 2

WORKLOADS = {
    "mlp_b1": {"model": "examples/bench/mlp_784.lam", "batch": 1, "kind": "mlp"},
    "mlp_b256": {"model": "examples/bench/mlp_784.lam", "batch": 256, "kind": "mlp"},
    "matmul_512": {"model": "examples/bench/matmul.lam", "batch": 512, "kind": "matmul"},
    "matmul_1024": {"model": "examples/bench/matmul.lam", "batch": 1024, "kind": "matmul"},
    "w6": {"model": "examples/bench/w6_layer_norm_gelu.lam", "batch": 4096, "kind": "layer_norm_gelu"},
}
COMPILE = False  # --compile: also time torch.compile on W6


def lamina(binary, workload, runs):
    """Runs `lamina bench --json` and returns its compiled timing."""
    command = [binary, "bench", os.path.join(ROOT, workload["model"]), "--batch", str(workload["batch"]),
               "--runs", str(runs), "--threads", str(THREADS), "--no-interpreter", "--json"]
    return lamina_timing(command)


def mlp_weights(numpy):
    generator = numpy.random.default_rng(0)
    sizes = [784, 512, 512, 10]
    return [(generator.standard_normal((i, o), dtype=numpy.float32) * (2 / i) ** 0.5,
             numpy.zeros(o, dtype=numpy.float32)) for i, o in zip(sizes, sizes[1:])]


def torch_runner(workload):
    import numpy
    import torch
    torch.set_num_threads(THREADS)
    batch = workload["batch"]
    if workload["kind"] == "mlp":
        layers = []
        for index, (weight, bias) in enumerate(mlp_weights(numpy)):
            linear = torch.nn.Linear(weight.shape[0], weight.shape[1])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(weight.T.copy()))
                linear.bias.copy_(torch.from_numpy(bias))
            layers += [linear] + ([torch.nn.ReLU()] if index < 2 else [])
        model = torch.nn.Sequential(*layers).eval()
        x = torch.randn(batch, 784)

        def call():
            with torch.inference_mode():
                model(x)
        return call
    if workload["kind"] == "layer_norm_gelu":
        x = torch.randn(batch, 1024)
        a, b = torch.ones(1024) + 0.001 * torch.arange(1024), 0.01 * torch.arange(1024)

        def forward(x):
            h = torch.nn.functional.gelu(x * a + b, approximate="tanh")
            return torch.nn.functional.layer_norm(h, (1024,), eps=1e-5)
        function = torch.compile(forward) if COMPILE else forward

        def call():
            with torch.inference_mode():
                function(x)
        return call
    a, b = torch.randn(batch, batch), torch.randn(batch, batch)
    return lambda: torch.mm(a, b)


def onnxruntime_runner(workload):
    import numpy
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
    batch = workload["batch"]
    if workload["kind"] == "layer_norm_gelu":
        return None
    if workload["kind"] == "mlp":
        nodes, initializers, previous = [], [], "x"
        for index, (weight, bias) in enumerate(mlp_weights(numpy)):
            initializers += [numpy_helper.from_array(weight, f"w{index}"), numpy_helper.from_array(bias, f"b{index}")]
            nodes.append(helper.make_node("Gemm", [previous, f"w{index}", f"b{index}"], [f"h{index}"]))
            previous = f"h{index}"
            if index < 2:
                nodes.append(helper.make_node("Relu", [previous], [f"r{index}"]))
                previous = f"r{index}"
        graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 784])],
                                  [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [batch, 10])], initializers)
        feeds = {"x": numpy.random.default_rng(1).standard_normal((batch, 784), dtype=numpy.float32)}
    else:
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, batch]) for n in "ab"],
                                  [helper.make_tensor_value_info("c", TensorProto.FLOAT, [batch, batch])])
        generator = numpy.random.default_rng(1)
        feeds = {n: generator.standard_normal((batch, batch), dtype=numpy.float32) for n in "ab"}
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


def numpy_runner(workload):
    import numpy
    if workload["kind"] != "matmul":
        return None
    generator = numpy.random.default_rng(1)
    a = generator.standard_normal((workload["batch"],) * 2, dtype=numpy.float32)
    b = generator.standard_normal((workload["batch"],) * 2, dtype=numpy.float32)
    return lambda: a @ b


BASELINES = {"pytorch": torch_runner, "onnxruntime": onnxruntime_runner, "numpy": numpy_runner}


def describe(workload, timing):
    if workload["kind"] == "matmul":
        return f"{2 * workload['batch'] ** 3 / timing['median'] / 1e9:7.1f} GFLOP/s"
    if workload["kind"] == "layer_norm_gelu":
        return f"{timing['median'] * 1e3:7.2f} ms/forward"
    return f"{workload['batch'] / timing['median']:9.0f} samples/s"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamina", default=os.environ.get("LAMINA", os.path.join(ROOT, ".build/release/lamina")))
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--only", default=",".join(WORKLOADS))
    parser.add_argument("--compile", action="store_true", help="time torch.compile on W6 (slow to compile)")
    arguments = parser.parse_args()
    global COMPILE
    COMPILE = arguments.compile
    if not os.path.exists(arguments.lamina):
        print(f"no lamina binary at {arguments.lamina}: run `swift build -c release` first", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    print(f"{'workload':<12} {'framework':<12} {'median':>10} {'min':>10} {'max':>10} {'runs':>6}  {'rate':>18}  ratio")
    for name in arguments.only.split(","):
        workload = WORKLOADS[name]
        ours = lamina(arguments.lamina, workload, arguments.runs)
        rows = [("lamina", ours)]
        for framework, make in BASELINES.items():
            try:
                call = make(workload)
            except ImportError as error:
                print(f"{name:<12} {framework:<12} not installed ({error.name})")
                continue
            if call is not None:
                compiled = COMPILE and framework == "pytorch" and workload["kind"] == "layer_norm_gelu"
                rows.append(("torch.compile" if compiled else framework, time_calls(call, arguments.runs, max_calls=100 * arguments.runs)))
        for framework, timing in rows:
            ratio = "" if framework == "lamina" else f"{timing['median'] / ours['median']:.2f}x"
            print(f"{name:<12} {framework:<12} {timing['median'] * 1e6:8.1f}µs {timing['min'] * 1e6:8.1f}µs "
                  f"{timing['max'] * 1e6:8.1f}µs {timing['runs']:>6}  {describe(workload, timing):>18}  {ratio}")
    print("\nratio: the baseline's median time over Lamina's (above 1: Lamina is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
