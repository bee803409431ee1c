#!/usr/bin/env python3
"""Lamina's gradients beside PyTorch's autograd, for the same model, weights and inputs.

For each model: `lamina dump` gives the forward IR, which this script evaluates with PyTorch ops (in
float64, from the op semantics in ir-specs/ops.md) and differentiates with torch.autograd; `lamina init`
gives the weights; `lamina gradients` gives Lamina's loss and parameter gradients (f32 models computed in
f32). Every parameter's gradient is compared with relative tolerance 1e-4 plus 1e-6 x its largest
magnitude (f32 rounding and summation order differ between the two), and the loss likewise.

PyTorch is optional for the project; this script needs it: `pip install torch numpy`.

Usage:
  swift build
  python3 tools/compare_gradients.py examples/digits_mlp.lam examples/regressor.lam [--batch 8] [--seed 3]
"""

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_check import (  # noqa: E402  (the IR reader and input maker are shared)
    DEFAULT_LAMINA, CheckError, IRReader, Slice, make_inputs, read_safetensors, run_lamina)

try:
    import torch
except ImportError:
    print("PyTorch is not installed: pip install torch", file=sys.stderr)
    sys.exit(2)


def gelu(call, x):
    if call.attr("approximate", "none") == "tanh":
        return torch.nn.functional.gelu(x, approximate="tanh")
    return torch.nn.functional.gelu(x)


def transpose(call, x):
    return x.permute(*call.attr("perm")) if call.attr("perm") is not None else x.transpose(-1, -2)


def flatten(call, x):
    return torch.flatten(x, call.attr("start_axis", 1) % x.dim(), call.attr("end_axis", -1) % x.dim())


def index(call, x):
    key = tuple(slice(e.start, e.stop, e.step) if isinstance(e, Slice) else e for e in call.attr("index"))
    if any(isinstance(e, slice) and e.step is not None and e.step < 0 for e in key):
        raise CheckError("negative slice steps are not in PyTorch")
    return x[key]


def reduce(name):
    def apply(call, x):
        axes = call.axes()
        keep = call.attr("keepdims", False)
        dims = tuple(range(x.dim())) if axes is None else axes
        if name == "max":
            return torch.amax(x, dim=dims, keepdim=keep)
        return getattr(torch, name)(x, dim=dims, keepdim=keep)
    return apply


def torch_pool2d(c, x, maximum):
    """max_pool2d / avg_pool2d with PyTorch's own padding when it is symmetric; asymmetric padding
    pads explicitly (-inf for max; for avg the divisor is pooled from a mask of what counts). With
    asymmetric padding and ceil mode PyTorch's last-window rule sees the padded size, so an output
    size may differ; the comparison then reports a shape mismatch rather than a wrong value."""
    F = torch.nn.functional
    kernel = c.attr("kernel")
    stride = c.attr("stride", kernel)
    top, left, bottom, right = c.attr("padding", [0, 0, 0, 0])
    ceil_mode = c.attr("ceil_mode", False)
    if maximum:
        dilation = c.attr("dilation", [1, 1])
        if top == bottom and left == right:
            return F.max_pool2d(x, kernel, stride, (top, left), dilation, ceil_mode=ceil_mode)
        padded = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(padded, kernel, stride, 0, dilation, ceil_mode=ceil_mode)
    include = c.attr("count_include_pad", True)
    if top == bottom and left == right:
        return F.avg_pool2d(x, kernel, stride, (top, left), ceil_mode, include)
    sums = F.avg_pool2d(F.pad(x, (left, right, top, bottom)), kernel, stride, 0, ceil_mode, True, 1)
    mask = torch.ones_like(x[:1, :1])
    mask = F.pad(mask, (left, right, top, bottom), value=1.0 if include else 0.0)
    counts = F.avg_pool2d(mask, kernel, stride, 0, ceil_mode, True, 1)
    return sums / counts


TORCH_OPS = {
    "add": lambda c, a, b: a + b,
    "sub": lambda c, a, b: a - b,
    "mul": lambda c, a, b: a * b,
    "div": lambda c, a, b: a / b,
    "pow": lambda c, a, b: torch.pow(a, b),
    "maximum": lambda c, a, b: torch.maximum(a, b),
    "minimum": lambda c, a, b: torch.minimum(a, b),
    "neg": lambda c, x: -x,
    "abs": lambda c, x: torch.abs(x),
    "exp": lambda c, x: torch.exp(x),
    "log": lambda c, x: torch.log(x),
    "sqrt": lambda c, x: torch.sqrt(x),
    "relu": lambda c, x: torch.relu(x),
    "leaky_relu": lambda c, x: torch.nn.functional.leaky_relu(x, c.attr("alpha", 0.01)),
    "sigmoid": lambda c, x: torch.sigmoid(x),
    "tanh": lambda c, x: torch.tanh(x),
    "gelu": gelu,
    "softplus": lambda c, x: torch.nn.functional.softplus(x),
    "matmul": lambda c, a, b: torch.matmul(a, b),
    "transpose": transpose,
    "permute": lambda c, x: x.permute(*c.attr("perm")),
    "sum": reduce("sum"),
    "mean": reduce("mean"),
    "max": reduce("max"),
    "softmax": lambda c, x: torch.softmax(x, c.attr("axis", -1)),
    "log_softmax": lambda c, x: torch.log_softmax(x, c.attr("axis", -1)),
    "reshape": lambda c, x: torch.reshape(x, c.shape()),
    "flatten": flatten,
    "broadcast_to": lambda c, x: torch.broadcast_to(x, c.shape()),
    "concat": lambda c, *xs: torch.cat(xs, dim=c.attr("axis", 0)),
    "slice": index,
    "squeeze": lambda c, x: torch.squeeze(x, dim=c.axes()),
    "unsqueeze": lambda c, x: x.reshape(unsqueezed_shape(x.shape, c.axes())),
    "mse": lambda c, p, t: torch.nn.functional.mse_loss(p, t),
    "cross_entropy": lambda c, logits, labels: torch.nn.functional.cross_entropy(logits, labels.long()),
    "binary_cross_entropy_with_logits": lambda c, x, t: torch.nn.functional.binary_cross_entropy_with_logits(x, t),
    "l2": lambda c, *xs: sum((x * x).sum() for x in xs),
    "constant": lambda c: torch.tensor(float(c.attr("value")), dtype=torch.float64),
    "cast": lambda c, x: x if c.result_dtype.startswith("f") else x.trunc(),
    "stop_gradient": lambda c, x: x.detach(),
    "max_pool2d": lambda c, x: torch_pool2d(c, x, maximum=True),
    "avg_pool2d": lambda c, x: torch_pool2d(c, x, maximum=False),
    "global_avg_pool2d": lambda c, x: x.mean(dim=(2, 3)),
}


def unsqueezed_shape(shape, axes):
    rank = len(shape) + len(axes)
    axes = sorted(a % rank for a in axes)
    out = list(shape)
    for axis in axes:
        out.insert(axis, 1)
    return out


class Call:
    def __init__(self, node, bindings):
        self.attributes = node.attributes
        self.bindings = bindings
        self.result_dtype = node.types[0].dtype

    def attr(self, name, default=None):
        return self.attributes.get(name, default)

    def axes(self):
        value = self.attributes.get("axes")
        if value is None:
            return None
        return tuple(value) if isinstance(value, list) else (value,)

    def shape(self):
        from reference_check import Dims, evaluate_dim
        value = self.attributes["shape"]
        dims = value.dims if isinstance(value, Dims) else [(n, []) for n in value]
        return tuple(evaluate_dim(dim, self.bindings) for dim in dims)


def torch_gradients(graph, inputs, weights, bindings):
    """The loss named `loss` and d loss / d parameter for every parameter, in float64."""
    environment = {}
    for name, value in inputs.items():
        dtype = torch.float64 if value.dtype.kind == "f" else torch.int64
        environment[name] = torch.tensor(value, dtype=dtype)
    parameters = {}
    for name in graph.params:
        parameters[name] = torch.tensor(weights[name].astype(np.float64), requires_grad=True)
        environment[name] = parameters[name]
    for node in graph.nodes:
        operands = [environment[name] for name in node.operands]
        if node.op not in TORCH_OPS:
            raise CheckError(f"no PyTorch version of op {node.op}")
        environment[node.results[0]] = TORCH_OPS[node.op](Call(node, bindings), *operands)
    loss = environment[graph.losses["loss"]]
    used = [name for name in parameters if parameters[name].requires_grad]
    gradients = torch.autograd.grad(loss, [parameters[n] for n in used], allow_unused=True)
    result = {"loss": loss.detach().numpy()}
    for name, gradient in zip(used, gradients):
        result[name] = np.zeros(parameters[name].shape) if gradient is None else gradient.numpy()
    return result


def compare_model(lamina, path, batch, seed):
    graph = IRReader(run_lamina(lamina, "dump", str(path))).graph()
    if "loss" not in graph.losses:
        return [(str(path), "-", "no loss named `loss`", None, None, True)]
    symbols = {s for t in graph.inputs.values() for d in t.shape for s in d[1]}
    bindings = {symbol: batch for symbol in symbols}
    rng = np.random.default_rng(seed)
    inputs = make_inputs(graph, bindings, rng)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        weights_path = os.path.join(directory, "w.safetensors")
        run_lamina(lamina, "init", str(path), "-o", weights_path, "--seed", str(seed))
        arguments = []
        for name, value in inputs.items():
            file = os.path.join(directory, f"{name}.npy")
            np.save(file, value)
            arguments += ["--input", f"{name}={file}"]
        grads_path = os.path.join(directory, "grads.safetensors")
        run_lamina(lamina, "gradients", str(path), "--weights", weights_path, *arguments, "-o", grads_path)
        ours = read_safetensors(Path(grads_path))
        theirs = torch_gradients(graph, inputs, read_safetensors(Path(weights_path)), bindings)
    for name in sorted(ours):
        if name not in theirs:
            rows.append((path.name, name, "missing in PyTorch", None, None, False))
            continue
        a = ours[name].astype(np.float64)
        b = np.asarray(theirs[name], dtype=np.float64)
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        difference = np.abs(a - b)
        allowed = 1e-4 * np.abs(b) + 1e-6 * max(scale, 1e-3)
        worst_rel = float(np.max(difference / np.maximum(np.abs(b), 1e-12))) if b.size else 0.0
        rows.append((path.name, name, str(list(b.shape)), float(np.max(difference)) if b.size else 0.0,
                     worst_rel, bool(np.all(difference <= allowed))))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--lamina", default=os.environ.get("LAMINA", str(DEFAULT_LAMINA)))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    torch.set_num_threads(2)
    failed = False
    print(f"{'model':<22} {'gradient of':<32} {'shape':<12} {'max abs diff':>12} {'max rel diff':>12}")
    for path in arguments.models:
        try:
            rows = compare_model(arguments.lamina, path, arguments.batch, arguments.seed)
        except CheckError as error:
            print(f"{path.name:<22} FAIL: {error}")
            failed = True
            continue
        for model, name, shape, max_abs, max_rel, ok in rows:
            failed = failed or not ok
            numbers = "" if max_abs is None else f"{max_abs:12.3e} {max_rel:12.3e}"
            print(f"{model:<22} {name:<32} {shape:<12} {numbers}  {'PASS' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
