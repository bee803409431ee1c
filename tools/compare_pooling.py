#!/usr/bin/env python3
"""Lamina's pooling layers beside PyTorch's, forward and gradient, in float64.

For each configuration (kernel, stride, padding, dilation, ceil mode, count_include_pad) a small model
`y = (x + p) |> POOL`, `loss = sum(y * r)` is run by `lamina run` (compiled, and interpreted with
--interpret) and differentiated by `lamina gradients` (the interpreter); PyTorch computes the same with
torch.nn.functional and autograd. ∂loss/∂p is ∂loss/∂x summed over the batch. Each configuration runs on
random inputs and on inputs rounded to halves (ties: both take the first maximum). Every difference must
be below 1e-12.

PyTorch is optional for the project; this script needs it: `pip install torch numpy`.

Usage:
  swift build
  python3 tools/compare_pooling.py [--lamina PATH]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_check import DEFAULT_LAMINA, read_safetensors, run_lamina  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("compare_pooling.py needs PyTorch: pip install torch numpy")

# The layer call, and the same pooling in PyTorch. Asymmetric padding has no PyTorch form; the
# Swift tests check it against the interpreter.
CONFIGURATIONS = [
    ("max_pool2d(kernel: 2)", lambda t: F.max_pool2d(t, 2)),
    (
        "max_pool2d(kernel: 3, stride: 2, padding: 1, ceil_mode: true)",
        lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True),
    ),
    ("max_pool2d(kernel: 2, ceil_mode: true)", lambda t: F.max_pool2d(t, 2, ceil_mode=True)),
    (
        "max_pool2d(kernel: 3, stride: [1, 2], dilation: 2)",
        lambda t: F.max_pool2d(t, 3, (1, 2), dilation=2),
    ),
    (
        "max_pool2d(kernel: [3, 2], stride: [2, 1], padding: [1, 1], dilation: [2, 1], ceil_mode: true)",
        lambda t: F.max_pool2d(t, (3, 2), (2, 1), (1, 1), dilation=(2, 1), ceil_mode=True),
    ),
    ("max_pool2d(kernel: 3, stride: 1, padding: 1)", lambda t: F.max_pool2d(t, 3, 1, 1)),
    ("avg_pool2d(kernel: 2)", lambda t: F.avg_pool2d(t, 2)),
    (
        "avg_pool2d(kernel: 3, stride: 2, padding: 1, ceil_mode: true)",
        lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True),
    ),
    (
        "avg_pool2d(kernel: 3, stride: 2, padding: 1, ceil_mode: true, count_include_pad: false)",
        lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    ),
    (
        "avg_pool2d(kernel: [2, 3], stride: [2, 1], padding: [1, 1], ceil_mode: true)",
        lambda t: F.avg_pool2d(t, (2, 3), (2, 1), (1, 1), ceil_mode=True),
    ),
    (
        "avg_pool2d(kernel: 2, stride: 2, padding: 1, ceil_mode: true)",
        lambda t: F.avg_pool2d(t, 2, 2, 1, ceil_mode=True),
    ),
    (
        "avg_pool2d(kernel: 2, stride: 2, padding: 1, ceil_mode: true, count_include_pad: false)",
        lambda t: F.avg_pool2d(t, 2, 2, 1, ceil_mode=True, count_include_pad=False),
    ),
    ("global_avg_pool2d", lambda t: F.adaptive_avg_pool2d(t, 1).flatten(1)),
]

TOLERANCE = 1e-12


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lamina", default=str(DEFAULT_LAMINA))
    arguments = parser.parse_args()
    generator = np.random.default_rng(0)
    x = generator.standard_normal((5, 3, 7, 9))
    failures = 0
    worst = 0.0
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        model_path, x_path, r_path = folder / "pool.lam", folder / "x.npy", folder / "r.npy"
        y_path, gradients_path = folder / "y.npy", folder / "gradients.safetensors"
        for data_name, data in [("random", x), ("ties", np.round(x * 2) / 2)]:
            np.save(x_path, data)
            for call, reference in CONFIGURATIONS:
                t = torch.tensor(data, requires_grad=True)
                y = reference(t)
                r = torch.tensor(generator.standard_normal(tuple(y.shape)))
                (y * r).sum().backward()
                np.save(r_path, r.numpy())
                result_shape = ", ".join(str(d) for d in y.shape[1:])
                model_path.write_text(
                    "model Pool {\n"
                    "  input x: f64[batch, 3, 7, 9]\n"
                    f"  input r: f64[batch, {result_shape}]\n"
                    "  param p: f64[3, 7, 9] = zeros()\n"
                    f"  output y = (x + p) |> {call}\n"
                    "  loss = sum(y * r)\n"
                    "  train with sgd(lr: 0.1)\n"
                    "}\n")
                inputs = ["--input", f"x={x_path}", "--input", f"r={r_path}"]
                differences = {}
                for mode in ["compiled", "interpreted"]:
                    extra = ["--interpret"] if mode == "interpreted" else []
                    run_lamina(
                        arguments.lamina, "run", str(model_path), *inputs, "--output",
                        f"y={y_path}", *extra)
                    ours = np.load(y_path)
                    expected = y.detach().numpy()
                    differences[f"forward ({mode})"] = (
                        float(np.abs(ours - expected).max())
                        if ours.shape == expected.shape else float("inf"))
                run_lamina(
                    arguments.lamina, "gradients", str(model_path), *inputs, "-o",
                    str(gradients_path))
                gradient = read_safetensors(gradients_path)["p"]
                differences["gradient"] = float(
                    np.abs(gradient - t.grad.numpy().sum(0)).max())
                for what, difference in differences.items():
                    worst = max(worst, difference)
                    if not difference <= TOLERANCE:
                        failures += 1
                        print(f"MISMATCH {data_name} {call}: {what} differs by {difference:.3g}")
    count = 2 * len(CONFIGURATIONS)
    print(f"{count} cases, {count * 3} comparisons, worst difference {worst:.3g}, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
