#!/usr/bin/env python3
"""Lamina's convolution, pooling, normalization and dropout layers beside PyTorch, on the same weights.

Three kinds of check, each case a small generated `.lam` model (the table names the case and the layer):

  forward and gradients   `param x: f32[...]` (so d loss / d x is a parameter gradient) goes through one
                          layer; `loss = sum(y * target)` with a random `target` input. Weights: the names
                          `lamina init` gives the layer (`conv2d_0.weight`, `batch_norm_0.running_var`,
                          ... as PyTorch names them), filled with random values and written to a
                          .safetensors file both sides read. Lamina: `lamina run` compiled and
                          `--interpret` (the output y), `lamina gradients` (the loss and every gradient,
                          reference interpreter), with `--mode training|inference` where the layer
                          depends on the mode. PyTorch: the same layer in float64 and autograd.
  training steps          a small network (conv, batch norm, pooling, ...) trained for a few SGD steps
                          with momentum by `lamina train` (compiled train step) on one batch holding all
                          rows (so the trainer's shuffling does not change a step), and by torch.optim.SGD
                          from the same initial weights (`lamina init --seed`): every weight and the
                          batch norms' running statistics afterwards.
  dropout                 y / x in training mode is 0 or 1 / (1 - rate) everywhere (PyTorch's scaling,
                          which is what `torch.nn.functional.dropout` applies), the kept fraction is
                          within 5 standard deviations of 1 - rate, d loss / d x is 0 or target / (1 -
                          rate) likewise, and inference mode is the identity. The random stream itself is
                          Lamina's (Philox) and is not compared.
  PyTorch's weights       examples/bench/lenet5.lam and examples/digits_cnn.lam as PyTorch modules
                          whose state_dict keys are Lamina's names (`conv2d_0.weight`,
                          `batch_norm_1.running_var`, ...; dense weights transposed, as Keras lays them
                          out): the state_dict, running statistics from a few PyTorch training passes
                          included, saved as .safetensors and run by `lamina run` in inference mode.

Lamina computes in f32 (the interpreter in f64 from f32 values); PyTorch in float64 from the same f32
values. A value passes when |lamina - torch| <= 1e-4 |torch| + 1e-5 max(max|torch|, 1e-3) everywhere
(the floor: a gradient that is 0 in exact arithmetic, as a bias before batch norm, is f32 noise).

PyTorch's own layers are used wherever they express the configuration; four-sided ("ONNX order")
padding, "same" padding and the corner cases of pooling with such padding are expressed through
`F.pad` or, for pooling, a plain windowed PyTorch formulation of PyTorch's rules (which `--self-test`
checks against PyTorch's layers on every configuration both express, and against plain numpy loops).

Usage:
  swift build                      # or -c release and --lamina .build/release/lamina
  /work/venv/bin/python tools/compare_cnn_torch.py [--lamina PATH] [--only conv2d,pool] [--seed 0]
  /work/venv/bin/python tools/compare_cnn_torch.py --self-test      # PyTorch side alone, no Lamina
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("PyTorch is not installed: pip install torch numpy (see BENCHMARKS.md)", file=sys.stderr)
    sys.exit(2)

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_LAMINA = REPOSITORY / ".build" / "debug" / "lamina"
RELATIVE_TOLERANCE = 1e-4
SCALE_TOLERANCE = 1e-5


# --------------------------------------------------------------------------------------------------
# Layer specifications: one dict per layer call, rendered as Lamina source and evaluated with PyTorch
# --------------------------------------------------------------------------------------------------

def lamina_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(lamina_value(v) for v in value) + "]"
    return repr(value)


def lamina_call(spec):
    arguments = [f"{key}: {lamina_value(value)}" for key, value in spec.items() if key != "op"]
    return f"{spec['op']}({', '.join(arguments)})" if arguments else spec["op"]


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def resolved_padding(padding, kernel, stride, dilation, height, width):
    """(top, left, bottom, right), as the layer resolves it: "same" as ONNX SAME_UPPER (extra at the end)."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        sides = []
        for size, k, s, d in zip((height, width), kernel, stride, dilation):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            sides.append((total // 2, total - total // 2))
        return (sides[0][0], sides[1][0], sides[0][1], sides[1][1])
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[1], padding[0], padding[1])
    return tuple(padding)


def activation(name, y):
    if name is None:
        return y
    return {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "gelu": F.gelu}[name](y)


def conv2d(spec, x, p, scope):
    kernel = pair(spec["kernel"])
    stride, dilation = pair(spec.get("stride", 1)), pair(spec.get("dilation", 1))
    top, left, bottom, right = resolved_padding(spec.get("padding", 0), kernel, stride, dilation, *x.shape[2:])
    bias = p.get(f"{scope}.bias") if spec.get("bias", True) else None
    if (top, left) == (bottom, right):
        y = F.conv2d(x, p[f"{scope}.weight"], bias, stride, (top, left), dilation, spec.get("groups", 1))
    else:
        y = F.conv2d(F.pad(x, (left, right, top, bottom)), p[f"{scope}.weight"], bias, stride, 0, dilation,
                     spec.get("groups", 1))
    return activation(spec.get("activation"), y)


def conv_transpose2d(spec, x, p, scope, through_torch_padding=True):
    kernel = pair(spec["kernel"])
    stride, dilation = pair(spec.get("stride", 1)), pair(spec.get("dilation", 1))
    output_padding = pair(spec.get("output_padding", 0))
    groups = spec.get("groups", 1)
    top, left, bottom, right = resolved_padding(spec.get("padding", 0), kernel, stride, dilation, 0, 0)
    weight = p[f"{scope}.weight"]
    bias = p.get(f"{scope}.bias") if spec.get("bias", True) else None
    if through_torch_padding and (top, left) == (bottom, right):
        y = F.conv_transpose2d(x, weight, bias, stride, (top, left), output_padding, groups, dilation)
    else:
        # The full transposed convolution, cropped by the padding; output_padding adds rows/columns at
        # the bottom/right (zeros beyond the full output, then the bias).
        full = F.conv_transpose2d(x, weight, None, stride, 0, 0, groups, dilation)
        height = full.shape[2] - top - bottom + output_padding[0]
        width = full.shape[3] - left - right + output_padding[1]
        full = F.pad(full, (0, max(0, output_padding[1] - right), 0, max(0, output_padding[0] - bottom)))
        y = full[:, :, top:top + height, left:left + width]
        if bias is not None:
            y = y + bias.reshape(1, -1, 1, 1)
    return activation(spec.get("activation"), y)


def pool_geometry(spec, height, width):
    kernel = pair(spec["kernel"])
    stride = pair(spec.get("stride", spec["kernel"]))
    padding = resolved_padding(spec.get("padding", 0), kernel, stride, (1, 1), height, width)
    ceil_mode = spec.get("ceil_mode", False)
    dilation = pair(spec.get("dilation", 1))
    sizes = []
    for size, k, s, d, before, after in ((height, kernel[0], stride[0], dilation[0], padding[0], padding[2]),
                                         (width, kernel[1], stride[1], dilation[1], padding[1], padding[3])):
        span = size + before + after - (d * (k - 1) + 1)
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= size + before:
            out -= 1  # PyTorch: the last window must start inside the input or its leading padding
        sizes.append(out)
    return kernel, stride, padding, sizes


def windowed_pool(spec, x, kind):
    """Pooling written out window by window with PyTorch's rules, for padding PyTorch's layers lack."""
    height, width = x.shape[2:]
    kernel, stride, (top, left, bottom, right), (out_h, out_w) = pool_geometry(spec, height, width)
    if pair(spec.get("dilation", 1)) != (1, 1):
        raise ValueError("the windowed form has no dilation: use padding PyTorch's layer takes")
    include_pad = spec.get("count_include_pad", True)
    rows = []
    for i in range(out_h):
        row = []
        for j in range(out_w):
            h0, w0 = i * stride[0] - top, j * stride[1] - left
            h1, w1 = min(h0 + kernel[0], height + bottom), min(w0 + kernel[1], width + right)
            padded_count = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, height), min(w1, width)
            window = x[:, :, h0:h1, w0:w1]
            if kind == "max":
                row.append(window.amax(dim=(2, 3)))
            else:
                count = padded_count if include_pad else (h1 - h0) * (w1 - w0)
                row.append(window.sum(dim=(2, 3)) / count)
        rows.append(torch.stack(row, dim=-1))
    return torch.stack(rows, dim=-2)


def torch_pool_arguments(spec, height, width):
    """PyTorch's max_pool2d/avg_pool2d arguments when they express the spec, else None."""
    kernel, stride, (top, left, bottom, right), _ = pool_geometry(spec, height, width)
    if (top, left) != (bottom, right) or top > kernel[0] // 2 or left > kernel[1] // 2:
        return None
    return {"kernel_size": kernel, "stride": stride, "padding": (top, left),
            "ceil_mode": spec.get("ceil_mode", False)}


def max_pool2d(spec, x, p, scope, use_torch=True):
    arguments = torch_pool_arguments(spec, *x.shape[2:]) if use_torch else None
    if arguments:
        return F.max_pool2d(x, dilation=pair(spec.get("dilation", 1)), **arguments)
    return windowed_pool(spec, x, "max")


def avg_pool2d(spec, x, p, scope, use_torch=True):
    arguments = torch_pool_arguments(spec, *x.shape[2:]) if use_torch else None
    if arguments:
        return F.avg_pool2d(x, count_include_pad=spec.get("count_include_pad", True), **arguments)
    return windowed_pool(spec, x, "avg")


def global_avg_pool2d(spec, x, p, scope):
    return x.mean(dim=(2, 3))


def batch_norm(spec, x, p, scope, training):
    """Updates p's running statistics in place in training mode, as PyTorch's module does."""
    affine = spec.get("affine", True)
    return F.batch_norm(x, p[f"{scope}.running_mean"], p[f"{scope}.running_var"],
                        p[f"{scope}.weight"] if affine else None, p[f"{scope}.bias"] if affine else None,
                        training=training, momentum=spec.get("momentum", 0.1), eps=spec.get("eps", 1e-5))


def layer_norm(spec, x, p, scope):
    axes = sorted(a % x.dim() for a in spec.get("axes", [-1]))
    if axes != list(range(axes[0], x.dim())):
        raise ValueError("layer_norm over axes that are not the last ones")
    affine = spec.get("affine", True)
    return F.layer_norm(x, tuple(x.shape[axes[0]:]), p[f"{scope}.weight"] if affine else None,
                        p[f"{scope}.bias"] if affine else None, spec.get("eps", 1e-5))


def dense(spec, x, p, scope):
    y = x @ p[f"{scope}.weight"]  # Lamina's (and Keras') [in, out] layout
    if spec.get("bias", True):
        y = y + p[f"{scope}.bias"]
    return activation(spec.get("activation"), y)


LAYERS = {
    "conv2d": conv2d, "conv_transpose2d": conv_transpose2d, "max_pool2d": max_pool2d,
    "avg_pool2d": avg_pool2d, "global_avg_pool2d": global_avg_pool2d, "layer_norm": layer_norm,
    "dense": dense,
    "relu": lambda spec, x, p, scope: torch.relu(x),
    "flatten": lambda spec, x, p, scope: torch.flatten(x, 1),
}
MODE_DEPENDENT = {"batch_norm", "dropout"}


def scopes(specs):
    """The scope name Lamina gives each layer call: KIND_N, counted per kind."""
    counts, names = {}, []
    for spec in specs:
        names.append(f"{spec['op']}_{counts.get(spec['op'], 0)}")
        counts[spec["op"]] = counts.get(spec["op"], 0) + 1
    return names


def torch_forward(specs, x, p, training):
    for spec, scope in zip(specs, scopes(specs)):
        if spec["op"] == "batch_norm":
            x = batch_norm(spec, x, p, scope, training)
        else:
            x = LAYERS[spec["op"]](spec, x, p, scope)
    return x


def expected_parameters(specs, input_shape):
    """Parameter name -> shape as PyTorch's modules hold them, from a shape-only forward pass."""
    shapes = {}
    x = torch.zeros(input_shape, dtype=torch.float64)
    p = ParameterProbe(shapes)
    for spec, scope in zip(specs, scopes(specs)):
        channels = x.shape[1] if x.dim() > 1 else None
        op = spec["op"]
        if op == "conv2d":
            kh, kw = pair(spec["kernel"])
            p.add(f"{scope}.weight", (spec["filters"], channels // spec.get("groups", 1), kh, kw))
            if spec.get("bias", True):
                p.add(f"{scope}.bias", (spec["filters"],))
        elif op == "conv_transpose2d":
            kh, kw = pair(spec["kernel"])
            p.add(f"{scope}.weight", (channels, spec["filters"] // spec.get("groups", 1), kh, kw))
            if spec.get("bias", True):
                p.add(f"{scope}.bias", (spec["filters"],))
        elif op == "batch_norm":
            if spec.get("affine", True):
                p.add(f"{scope}.weight", (channels,))
                p.add(f"{scope}.bias", (channels,))
            p.add(f"{scope}.running_mean", (channels,))
            p.add(f"{scope}.running_var", (channels,))
        elif op == "layer_norm":
            axes = sorted(a % x.dim() for a in spec.get("axes", [-1]))
            if spec.get("affine", True):
                p.add(f"{scope}.weight", tuple(x.shape[axes[0]:]))
                p.add(f"{scope}.bias", tuple(x.shape[axes[0]:]))
        elif op == "dense":
            p.add(f"{scope}.weight", (x.shape[1], spec["units"]))
            if spec.get("bias", True):
                p.add(f"{scope}.bias", (spec["units"],))
        if op == "batch_norm":
            x = batch_norm(spec, x, p.values, scope, False)
        elif op != "dropout":
            x = LAYERS[op](spec, x, p.values, scope)
    return shapes, tuple(x.shape)


class ParameterProbe:
    def __init__(self, shapes):
        self.shapes, self.values = shapes, {}

    def add(self, name, shape):
        self.shapes[name] = tuple(shape)
        self.values[name] = torch.ones(shape, dtype=torch.float64)


def random_parameters(shapes, rng):
    values = {}
    for name, shape in shapes.items():
        if name.endswith("running_var"):
            values[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif name.endswith("running_mean"):
            values[name] = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
        elif name.endswith(".weight") and len(shape) == 1:
            values[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)  # norm scales
        else:
            values[name] = (rng.standard_normal(shape) * 0.5).astype(np.float32)
    return values


# --------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    layers: list
    input_shape: tuple
    modes: tuple = (None,)  # None: the command's default mode (the layer does not depend on it)


@dataclass
class TrainingCase:
    name: str
    layers: list
    input_shape: tuple
    steps: int = 3
    lr: float = 0.05
    momentum: float = 0.9


def C(op, **attributes):
    return {"op": op, **attributes}


BOTH = ("training", "inference")
CASES = [
    # conv2d: every attribute, odd spatial sizes (7x9), batch 1 and 3
    Case("conv2d k3", [C("conv2d", filters=4, kernel=3)], (3, 3, 7, 9)),
    Case("conv2d k[3,2] stride 2 pad 1", [C("conv2d", filters=5, kernel=[3, 2], stride=2, padding=1)], (1, 2, 7, 9)),
    Case("conv2d stride [2,1] pad [1,2]", [C("conv2d", filters=4, kernel=3, stride=[2, 1], padding=[1, 2])], (2, 3, 7, 9)),
    Case("conv2d pad [0,1,2,1] (4-sided)", [C("conv2d", filters=4, kernel=3, padding=[0, 1, 2, 1])], (2, 3, 7, 9)),
    Case("conv2d same k4 (even)", [C("conv2d", filters=4, kernel=4, padding="same")], (2, 3, 7, 9)),
    Case("conv2d same k4 stride 2", [C("conv2d", filters=4, kernel=4, stride=2, padding="same")], (2, 3, 7, 9)),
    Case("conv2d valid", [C("conv2d", filters=4, kernel=[2, 3], padding="valid")], (2, 3, 7, 9)),
    Case("conv2d dilation 2", [C("conv2d", filters=4, kernel=3, dilation=2, padding=2)], (2, 3, 7, 9)),
    Case("conv2d dilation [2,1] same", [C("conv2d", filters=3, kernel=3, dilation=[2, 1], padding="same")], (2, 2, 7, 9)),
    Case("conv2d groups 2", [C("conv2d", filters=6, kernel=3, groups=2, padding=1)], (2, 4, 7, 9)),
    Case("conv2d depthwise", [C("conv2d", filters=4, kernel=3, groups=4, padding=1, stride=2)], (2, 4, 7, 9)),
    Case("conv2d no bias, relu", [C("conv2d", filters=4, kernel=3, bias=False, activation="relu")], (2, 3, 7, 9)),
    Case("conv2d 1x1", [C("conv2d", filters=8, kernel=1)], (2, 5, 7, 9)),
    # conv_transpose2d
    Case("conv_transpose2d k3", [C("conv_transpose2d", filters=4, kernel=3)], (2, 3, 5, 6)),
    Case("conv_transpose2d stride 2 pad 1 op 1",
         [C("conv_transpose2d", filters=4, kernel=3, stride=2, padding=1, output_padding=1)], (2, 3, 4, 5)),
    Case("conv_transpose2d k4 s2 p1", [C("conv_transpose2d", filters=3, kernel=4, stride=2, padding=1)], (1, 3, 4, 5)),
    Case("conv_transpose2d stride [2,3] op [1,2]",
         [C("conv_transpose2d", filters=2, kernel=3, stride=[2, 3], output_padding=[1, 2])], (2, 3, 4, 5)),
    Case("conv_transpose2d groups 2 dilation 2",
         [C("conv_transpose2d", filters=4, kernel=3, groups=2, dilation=2, padding=1)], (2, 4, 5, 6)),
    Case("conv_transpose2d no bias", [C("conv_transpose2d", filters=4, kernel=2, stride=2, bias=False)], (2, 3, 4, 5)),
    # pooling
    Case("max_pool2d k2", [C("max_pool2d", kernel=2)], (2, 3, 7, 9)),
    Case("max_pool2d k2 ceil_mode", [C("max_pool2d", kernel=2, ceil_mode=True)], (2, 3, 7, 9)),
    Case("max_pool2d k3 s2 pad 1", [C("max_pool2d", kernel=3, stride=2, padding=1)], (2, 3, 7, 9)),
    Case("max_pool2d k3 s2 pad 1 ceil", [C("max_pool2d", kernel=3, stride=2, padding=1, ceil_mode=True)], (2, 3, 8, 9)),
    Case("max_pool2d k[3,2] s[1,2]", [C("max_pool2d", kernel=[3, 2], stride=[1, 2])], (2, 3, 7, 9)),
    Case("max_pool2d k2 dilation 2 pad 1 ceil",
         [C("max_pool2d", kernel=2, dilation=2, padding=1, ceil_mode=True)], (2, 3, 7, 9)),
    Case("max_pool2d pad [0,1,1,0]", [C("max_pool2d", kernel=2, padding=[0, 1, 1, 0])], (2, 3, 7, 9)),
    Case("max_pool2d same k2", [C("max_pool2d", kernel=2, padding="same")], (2, 3, 7, 9)),
    Case("avg_pool2d k2", [C("avg_pool2d", kernel=2)], (2, 3, 7, 9)),
    Case("avg_pool2d k3 s2 pad 1", [C("avg_pool2d", kernel=3, stride=2, padding=1)], (2, 3, 7, 9)),
    Case("avg_pool2d k3 s2 pad 1 no pad count",
         [C("avg_pool2d", kernel=3, stride=2, padding=1, count_include_pad=False)], (2, 3, 7, 9)),
    Case("avg_pool2d k3 s2 pad 1 ceil", [C("avg_pool2d", kernel=3, stride=2, padding=1, ceil_mode=True)], (2, 3, 8, 9)),
    Case("avg_pool2d ceil no pad count",
         [C("avg_pool2d", kernel=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)], (2, 3, 8, 9)),
    Case("avg_pool2d pad [1,0,0,1]", [C("avg_pool2d", kernel=2, padding=[1, 0, 0, 1])], (2, 3, 7, 9)),
    Case("avg_pool2d pad [1,0,0,1] no pad count",
         [C("avg_pool2d", kernel=2, padding=[1, 0, 0, 1], count_include_pad=False)], (2, 3, 7, 9)),
    Case("global_avg_pool2d", [C("global_avg_pool2d")], (3, 4, 7, 9)),
    # batch norm, both modes, ranks 2, 3, 4
    Case("batch_norm [N,C,H,W]", [C("batch_norm")], (4, 3, 7, 9), BOTH),
    Case("batch_norm [N,C]", [C("batch_norm", eps=1e-3, momentum=0.2)], (6, 5), BOTH),
    Case("batch_norm [N,C,L] no affine", [C("batch_norm", affine=False)], (3, 4, 7), BOTH),
    # layer norm
    Case("layer_norm last axis", [C("layer_norm")], (3, 4, 9)),
    Case("layer_norm axes [-2,-1] eps 1e-3", [C("layer_norm", axes=[-2, -1], eps=1e-3)], (3, 4, 5)),
    Case("layer_norm [N,C,H,W] axes [1,2,3]", [C("layer_norm", axes=[1, 2, 3])], (2, 3, 5, 7)),
    Case("layer_norm no affine", [C("layer_norm", affine=False)], (4, 33)),
]

TRAINING_CASES = [
    TrainingCase("conv+batch_norm+max_pool, 3 steps",
                 [C("conv2d", filters=4, kernel=3, padding=1), C("batch_norm"), C("relu"),
                  C("conv2d", filters=6, kernel=3, stride=2, padding="same", groups=2), C("batch_norm", momentum=0.3),
                  C("relu"), C("max_pool2d", kernel=2, ceil_mode=True)], (8, 2, 7, 9)),
    TrainingCase("conv_transpose+avg_pool+layer_norm+dense, 3 steps",
                 [C("conv2d", filters=4, kernel=3, stride=2, padding=1), C("relu"),
                  C("conv_transpose2d", filters=3, kernel=3, stride=2, padding=1, output_padding=1),
                  C("avg_pool2d", kernel=3, stride=2, padding=1), C("flatten"), C("layer_norm"),
                  C("dense", units=5), C("batch_norm")], (6, 2, 8, 8)),
    TrainingCase("dense+batch_norm [N,C], 4 steps",
                 [C("dense", units=6), C("batch_norm", momentum=0.5), C("relu"), C("dense", units=3)], (10, 5), 4),
]

DROPOUT_RATES = [0.25, 0.5]


# --------------------------------------------------------------------------------------------------
# Lamina
# --------------------------------------------------------------------------------------------------

class LaminaError(Exception):
    pass


def run_lamina(lamina, *arguments):
    process = subprocess.run([str(lamina), *arguments], capture_output=True, text=True)
    if process.returncode != 0:
        message = (process.stderr or process.stdout).strip()
        raise LaminaError(f"`lamina {' '.join(arguments[:1])}` exited with {process.returncode}: {message}")
    return process.stdout


def read_safetensors(path):
    data = Path(path).read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    dtypes = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U64": "<u8", "U32": "<u4"}
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(data[8 + length + begin:8 + length + end],
                                      dtype=dtypes[entry["dtype"]]).reshape(entry["shape"])
    return tensors


def write_safetensors(path, tensors):
    names = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<i4"): "I32", np.dtype("<i8"): "I64",
             np.dtype("<u8"): "U64", np.dtype("<u4"): "U32"}
    header, blobs, offset = {}, [], 0
    for name, value in tensors.items():
        blob = np.ascontiguousarray(value).tobytes()
        header[name] = {"dtype": names[value.dtype.newbyteorder("<")], "shape": list(value.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def lamina_names(lamina, source, init_path, seed):
    """Parameter and model-state names with their shapes: `lamina init`'s file, plus the state that
    `lamina dump --params` lists (`init` may write the parameters alone)."""
    run_lamina(lamina, "init", str(source), "-o", str(init_path), "--seed", str(seed))
    names = {name: tuple(value.shape) for name, value in read_safetensors(init_path).items()}
    for line in run_lamina(lamina, "dump", str(source), "--params").splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[-1] == "state" and fields[0] not in names:
            dims = fields[1][fields[1].index("[") + 1:-1]
            names[fields[0]] = tuple(int(d) for d in dims.split(",") if d.strip())
    return names


def shape_text(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


def layer_model(case, output_shape):
    chain = " |> ".join(lamina_call(spec) for spec in case.layers)
    return (f"// generated by tools/compare_cnn_torch.py: {case.name}\n"
            f"model Case {{\n"
            f"  input target: f32{shape_text(output_shape)}\n"
            f"  param x: f32{shape_text(case.input_shape)} = normal(0, 1)\n"
            f"  let y = x |> {chain}\n"
            f"  output y\n"
            f"  loss = sum(y * target)\n"
            f"  train with sgd(lr: 0.01)\n"
            f"}}\n")


def training_model(case, output_shape):
    chain = " |> ".join(lamina_call(spec) for spec in case.layers)
    features = shape_text(["batch", *case.input_shape[1:]])
    targets = shape_text(["batch", *output_shape[1:]])
    return (f"// generated by tools/compare_cnn_torch.py: {case.name}\n"
            f"model Case {{\n"
            f"  input x: f32{features}\n"
            f"  input target: f32{targets}\n"
            f"  let y = x |> {chain}\n"
            f"  output y\n"
            f"  loss = mse(y, target)\n"
            f"  train with sgd(lr: {case.lr}, momentum: {case.momentum})\n"
            f"}}\n")


# --------------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------------

@dataclass
class Row:
    case: str
    check: str
    shape: str = ""
    max_abs: float | None = None
    max_rel: float | None = None
    ok: bool = False
    note: str = ""


def compare(case, check, ours, theirs):
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape:
        return Row(case, check, shape_text(b.shape), ok=False, note=f"Lamina's shape is {shape_text(a.shape)}")
    if b.size == 0:
        return Row(case, check, shape_text(b.shape), 0.0, 0.0, True)
    difference = np.abs(a - b)
    scale = float(np.max(np.abs(b)))
    allowed = RELATIVE_TOLERANCE * np.abs(b) + SCALE_TOLERANCE * max(scale, 1e-3)
    finite = bool(np.all(np.isfinite(a)))
    return Row(case, check, shape_text(b.shape), float(np.max(difference)),
               float(np.max(difference / np.maximum(np.abs(b), 1e-12))),
               finite and bool(np.all(difference <= allowed)), "" if finite else "non-finite values")


def torch_parameters(values, requires_grad=()):
    return {name: torch.tensor(np.asarray(value, dtype=np.float64), requires_grad=name in requires_grad)
            for name, value in values.items()}


def check_layer_case(lamina, case, seed, directory):
    rows = []
    rng = np.random.default_rng(seed)
    shapes, output_shape = expected_parameters(case.layers, case.input_shape)
    source = Path(directory) / "case.lam"
    source.write_text(layer_model(case, output_shape))
    initial = lamina_names(lamina, source, Path(directory) / "init.safetensors", seed)
    expected = {"x": case.input_shape, **shapes}
    for name in sorted(set(expected) | set(initial)):
        if name not in initial or name not in expected or initial[name] != tuple(expected[name]):
            got = shape_text(initial[name]) if name in initial else "missing"
            want = shape_text(expected[name]) if name in expected else "none (not in PyTorch)"
            rows.append(Row(case.name, f"parameter {name}", ok=False, note=f"Lamina: {got}, PyTorch: {want}"))
    if rows:
        return rows
    weights = random_parameters(shapes, rng)
    weights["x"] = rng.standard_normal(case.input_shape).astype(np.float32)
    weights_path = Path(directory) / "weights.safetensors"
    write_safetensors(weights_path, {name: weights[name] for name in initial})
    target = rng.standard_normal(output_shape).astype(np.float32)
    target_path = Path(directory) / "target.npy"
    np.save(target_path, target)

    for mode in case.modes:
        mode_arguments = ["--mode", mode] if mode else []
        label = f" ({mode})" if mode else ""
        training = mode == "training" if mode else False
        p = torch_parameters(weights, requires_grad=set(initial) - {n for n in initial if "running_" in n})
        y = torch_forward(case.layers, p["x"], p, training)
        for interpret in (False, True):
            output_path = Path(directory) / "y.npy"
            try:
                run_lamina(lamina, "run", str(source), "--weights", str(weights_path), "--input",
                           f"target={target_path}", "--output", f"y={output_path}", *mode_arguments,
                           *(["--interpret"] if interpret else []))
                rows.append(compare(case.name, f"y{label}{' interpreted' if interpret else ' compiled'}",
                                    np.load(output_path), y.detach().numpy()))
            except LaminaError as error:
                rows.append(Row(case.name, f"y{label}{' interpreted' if interpret else ' compiled'}", ok=False,
                                note=str(error)))
        # Gradients: the default mode of `lamina gradients` is training.
        training = mode != "inference"
        p = torch_parameters(weights, requires_grad=set(initial) - {n for n in initial if "running_" in n})
        y = torch_forward(case.layers, p["x"], p, training)
        loss = (y * torch.tensor(target, dtype=torch.float64)).sum()
        trainable = [name for name in initial if p[name].requires_grad]
        gradients = dict(zip(trainable, torch.autograd.grad(loss, [p[n] for n in trainable])))
        grads_path = Path(directory) / "grads.safetensors"
        try:
            run_lamina(lamina, "gradients", str(source), "--weights", str(weights_path), "--input",
                       f"target={target_path}", "-o", str(grads_path), *mode_arguments)
        except LaminaError as error:
            rows.append(Row(case.name, f"gradients{label}", ok=False, note=str(error)))
            continue
        ours = read_safetensors(grads_path)
        rows.append(compare(case.name, f"loss{label}", ours.get("loss", np.nan), loss.detach().numpy()))
        for name in trainable:
            if name not in ours:
                rows.append(Row(case.name, f"d loss / d {name}{label}", ok=False, note="missing in Lamina"))
            else:
                rows.append(compare(case.name, f"d loss / d {name}{label}", ours[name], gradients[name].numpy()))
        for name in sorted(set(ours) - set(trainable) - {"loss"}):
            rows.append(Row(case.name, f"d loss / d {name}{label}", ok=False,
                            note="Lamina gives a gradient for a value PyTorch does not train"))
    return rows


def check_training_case(lamina, case, seed, directory):
    rows = []
    rng = np.random.default_rng(seed)
    shapes, output_shape = expected_parameters(case.layers, case.input_shape)
    source = Path(directory) / "case.lam"
    source.write_text(training_model(case, output_shape))
    init_path = Path(directory) / "init.safetensors"
    names = lamina_names(lamina, source, init_path, seed)
    initial = dict(read_safetensors(init_path))
    for name in set(names) - set(initial):  # model state `init` did not write: the layer's initializers
        initial[name] = (np.ones if name.endswith("running_var") else np.zeros)(names[name], dtype=np.float32)
    if set(initial) != set(shapes):
        return [Row(case.name, "parameter names", ok=False,
                    note=f"Lamina: {sorted(initial)}, PyTorch: {sorted(shapes)}")]
    data = Path(directory) / "data"
    data.mkdir(exist_ok=True)
    x = rng.standard_normal(case.input_shape).astype(np.float32)
    target = rng.standard_normal(output_shape).astype(np.float32)
    np.save(data / "x.npy", x)
    np.save(data / "target.npy", target)
    trained_path = Path(directory) / "trained.safetensors"
    batch = case.input_shape[0]
    try:
        run_lamina(lamina, "train", str(source), "--data", str(data), "--epochs", str(case.steps), "--batch",
                   str(batch), "--seed", str(seed), "-o", str(trained_path), "--quiet")
    except LaminaError as error:
        return [Row(case.name, "lamina train", ok=False, note=str(error))]
    ours = read_safetensors(trained_path)

    p = torch_parameters(initial, requires_grad={n for n in initial if "running_" not in n})
    trainable = [p[n] for n in initial if p[n].requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=case.lr, momentum=case.momentum)
    xs, ts = torch.tensor(x, dtype=torch.float64), torch.tensor(target, dtype=torch.float64)
    for _ in range(case.steps):
        optimizer.zero_grad()
        F.mse_loss(torch_forward(case.layers, xs, p, True), ts).backward()
        optimizer.step()
    for name in sorted(initial):
        label = f"{name} after {case.steps} steps"
        if name not in ours:
            rows.append(Row(case.name, label, ok=False, note="not in Lamina's saved weights"))
        else:
            rows.append(compare(case.name, label, ours[name], p[name].detach().numpy()))
    return rows


def check_dropout(lamina, rate, seed, directory):
    name = f"dropout rate {rate}"
    rows = []
    rng = np.random.default_rng(seed)
    shape = (64, 256)
    source = Path(directory) / "case.lam"
    source.write_text(layer_model(Case(name, [C("dropout", rate=rate)], shape), shape))
    x = rng.uniform(0.5, 1.5, shape).astype(np.float32)  # no zeros: y / x is the scale
    target = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    weights_path, target_path = Path(directory) / "w.safetensors", Path(directory) / "t.npy"
    write_safetensors(weights_path, {"x": x})
    np.save(target_path, target)
    kept_scale = 1 / (1 - rate)
    reference = F.dropout(torch.ones(4), p=rate, training=True)  # PyTorch's kept value for 1.0
    torch_scale = float(reference.max()) if float(reference.max()) > 0 else kept_scale

    def scale_row(check, ratio):
        kept = np.abs(ratio - kept_scale) <= 1e-5 * kept_scale
        dropped = ratio == 0
        fraction = float(kept.mean())
        sigma = math.sqrt(rate * (1 - rate) / ratio.size)
        ok = bool(np.all(kept | dropped)) and abs(fraction - (1 - rate)) <= 5 * sigma
        return Row(name, check, shape_text(shape), float(np.max(np.abs(ratio[~dropped] - kept_scale), initial=0)),
                   None, ok, f"kept {fraction:.4f} (expected {1 - rate:.4f} ± {5 * sigma:.4f}), "
                             f"kept scale {kept_scale:.6g} (PyTorch {torch_scale:.6g})")

    y_path = Path(directory) / "y.npy"
    masks = {}
    for mode in BOTH:
        for interpret in (False, True):
            check = f"y ({mode}){' interpreted' if interpret else ' compiled'}"
            try:
                run_lamina(lamina, "run", str(source), "--weights", str(weights_path), "--input",
                           f"target={target_path}", "--output", f"y={y_path}", "--mode", mode,
                           *(["--interpret"] if interpret else []))
            except LaminaError as error:
                rows.append(Row(name, check, ok=False, note=str(error)))
                continue
            y = np.load(y_path).astype(np.float64)
            if mode == "inference":
                rows.append(compare(name, check, y, x))
            else:
                rows.append(scale_row(check, y / x))
                masks["compiled" if not interpret else "interpreted"] = y != 0
    if len(masks) == 2:
        same = bool(np.array_equal(masks["compiled"], masks["interpreted"]))
        rows.append(Row(name, "training mask: compiled = interpreted", shape_text(shape), ok=same,
                        note="bit-identical generator" if same else
                        f"{int(np.sum(masks['compiled'] != masks['interpreted']))} elements differ"))
    grads_path = Path(directory) / "g.safetensors"
    try:
        run_lamina(lamina, "gradients", str(source), "--weights", str(weights_path), "--input",
                   f"target={target_path}", "-o", str(grads_path))
        rows.append(scale_row("d loss / d x (training)",
                              read_safetensors(grads_path)["x"].astype(np.float64) / target))
    except (LaminaError, KeyError) as error:
        rows.append(Row(name, "d loss / d x (training)", ok=False, note=str(error)))
    return rows


def torch_example_model(name):
    """The example models as PyTorch modules whose state_dict names are Lamina's parameter names."""
    nn = torch.nn

    class Named(nn.Module):
        def __init__(self, layers, forward):
            super().__init__()
            for key, module in layers.items():
                setattr(self, key, module)
            self.run = forward

        def forward(self, x):
            return self.run(self, x)

    if name == "lenet5":
        layers = {"conv2d_0": nn.Conv2d(1, 6, 5, padding=2), "conv2d_1": nn.Conv2d(6, 16, 5),
                  "dense_0": nn.Linear(400, 120), "dense_1": nn.Linear(120, 84), "dense_2": nn.Linear(84, 10)}

        def forward(m, x):
            h = F.max_pool2d(torch.relu(m.conv2d_0(x)), 2)
            h = torch.flatten(F.max_pool2d(torch.relu(m.conv2d_1(h)), 2), 1)
            return m.dense_2(torch.relu(m.dense_1(torch.relu(m.dense_0(h)))))
        return Named(layers, forward), "examples/bench/lenet5.lam", (1, 28, 28), "logits"
    layers = {"conv2d_0": nn.Conv2d(1, 16, 3, padding=1), "batch_norm_0": nn.BatchNorm2d(16),
              "conv2d_1": nn.Conv2d(16, 32, 3, padding=1), "batch_norm_1": nn.BatchNorm2d(32),
              "dense_0": nn.Linear(512, 64), "dense_1": nn.Linear(64, 10)}

    def forward(m, x):
        h = torch.relu(m.batch_norm_0(m.conv2d_0(x.reshape(-1, 1, 8, 8))))
        h = F.max_pool2d(torch.relu(m.batch_norm_1(m.conv2d_1(h))), 2)
        h = F.dropout(torch.flatten(h, 1), 0.25, m.training)
        return torch.softmax(m.dense_1(torch.relu(m.dense_0(h))), dim=-1)
    return Named(layers, forward), "examples/digits_cnn.lam", (64,), "probs"


def check_torch_weights(lamina, name, seed, directory):
    """A PyTorch model's state_dict, not renamed, transposed only where Lamina's layout is Keras'
    (dense), run by `lamina run`: the example loads PyTorch's weights by name. Batch norms get
    running statistics from a few PyTorch training-mode passes; both run in inference mode."""
    torch.manual_seed(seed)
    model, path, sample_shape, output = torch_example_model(name)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (5, *sample_shape)).astype(np.float32)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.tensor(rng.uniform(0, 1, (16, *sample_shape)).astype(np.float32)))
    model.eval()
    with torch.no_grad():
        expected = model.double()(torch.tensor(x, dtype=torch.float64)).numpy()
    weights = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        value = value.numpy()
        if key.startswith("dense_") and key.endswith(".weight"):
            value = value.T  # Linear stores [out, in]; Lamina's dense [in, out]
        weights[key] = np.ascontiguousarray(value, dtype=np.float32)
    weights_path, x_path, y_path = (Path(directory) / n for n in ("w.safetensors", "x.npy", "y.npy"))
    write_safetensors(weights_path, weights)
    np.save(x_path, x)
    # The random generator's state (`random.seed`, `random.step`) is Lamina's own: PyTorch keeps its
    # generator outside the state_dict.
    names = {name for name in lamina_names(lamina, REPOSITORY / path, Path(directory) / "init.safetensors", 0)
             if not name.startswith("random.")}
    rows = []
    if names != set(weights):
        rows.append(Row(name, "parameter names = PyTorch's state_dict", ok=False,
                        note=f"only Lamina: {sorted(names - set(weights))}; only PyTorch: {sorted(set(weights) - names)}"))
        return rows
    rows.append(Row(name, "parameter names = PyTorch's state_dict", ok=True))
    try:
        run_lamina(lamina, "run", str(REPOSITORY / path), "--weights", str(weights_path), "--input", f"x={x_path}",
                   "--output", f"{output}={y_path}")
        rows.append(compare(f"{name} (PyTorch's weights)", f"{output}, inference, compiled", np.load(y_path), expected))
    except LaminaError as error:
        rows.append(Row(name, f"{output}, inference", ok=False, note=str(error)))
    return rows


# --------------------------------------------------------------------------------------------------
# Self-test of the PyTorch side (no Lamina): the formulations above against PyTorch's layers and plain
# numpy loops
# --------------------------------------------------------------------------------------------------

def numpy_conv2d(x, weight, bias, stride, padding, dilation, groups):
    top, left, bottom, right = padding
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, h, w = x.shape
    out_channels, per_group, kh, kw = weight.shape
    out_h = (h - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    out_w = (w - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    y = np.zeros((n, out_channels, out_h, out_w))
    per_out = out_channels // groups
    for o in range(out_channels):
        g = o // per_out
        for i in range(out_h):
            for j in range(out_w):
                for a in range(kh):
                    for b in range(kw):
                        patch = x[:, g * per_group:(g + 1) * per_group,
                                  i * stride[0] + a * dilation[0], j * stride[1] + b * dilation[1]]
                        y[:, o, i, j] += patch @ weight[o, :, a, b]
        if bias is not None:
            y[:, o] += bias[o]
    return y


def numpy_conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation, groups):
    n, c, h, w = x.shape
    _, per_group_out, kh, kw = weight.shape
    per_group_in = c // groups
    full_h, full_w = (h - 1) * stride[0] + (kh - 1) * dilation[0] + 1, (w - 1) * stride[1] + (kw - 1) * dilation[1] + 1
    full = np.zeros((n, per_group_out * groups, full_h + output_padding[0], full_w + output_padding[1]))
    for ci in range(c):
        g = ci // per_group_in
        for i in range(h):
            for j in range(w):
                for a in range(kh):
                    for b in range(kw):
                        full[:, g * per_group_out:(g + 1) * per_group_out,
                             i * stride[0] + a * dilation[0], j * stride[1] + b * dilation[1]] += \
                            x[:, ci, i, j][:, None] * weight[ci, :, a, b][None, :]
    top, left, bottom, right = padding
    y = full[:, :, top:full_h + output_padding[0] - bottom, left:full_w + output_padding[1] - right]
    return y + (bias.reshape(1, -1, 1, 1) if bias is not None else 0)


def numpy_pool(spec, x, kind):
    height, width = x.shape[2:]
    kernel, stride, (top, left, bottom, right), (out_h, out_w) = pool_geometry(spec, height, width)
    y = np.zeros(x.shape[:2] + (out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            dilation = pair(spec.get("dilation", 1))
            cells = [(i * stride[0] - top + a * dilation[0], j * stride[1] - left + b * dilation[1])
                     for a in range(kernel[0]) for b in range(kernel[1])]
            inside = [(r, c) for r, c in cells if 0 <= r < height and 0 <= c < width]
            in_padded = [(r, c) for r, c in cells if -top <= r < height + bottom and -left <= c < width + right]
            values = np.stack([x[:, :, r, c] for r, c in inside], axis=-1)
            if kind == "max":
                y[:, :, i, j] = values.max(axis=-1)
            else:
                count = len(in_padded) if spec.get("count_include_pad", True) else len(inside)
                y[:, :, i, j] = values.sum(axis=-1) / count
    return y


def self_test(seed):
    """The PyTorch formulations against numpy loops (and pooling's windowed form against PyTorch's layers)."""
    rng = np.random.default_rng(seed)
    rows = []
    for case in CASES:
        shapes, _ = expected_parameters(case.layers, case.input_shape)
        values = random_parameters(shapes, rng)
        x = rng.standard_normal(case.input_shape)
        p = torch_parameters(values)
        spec, scope = case.layers[0], scopes(case.layers)[0]
        op = spec["op"]
        ours = torch_forward(case.layers, torch.tensor(x), p, False).numpy()
        if op == "conv2d":
            kernel = pair(spec["kernel"])
            stride, dilation = pair(spec.get("stride", 1)), pair(spec.get("dilation", 1))
            padding = resolved_padding(spec.get("padding", 0), kernel, stride, dilation, *x.shape[2:])
            reference = numpy_conv2d(x, values[f"{scope}.weight"].astype(np.float64),
                                     values.get(f"{scope}.bias") if spec.get("bias", True) else None,
                                     stride, padding, dilation, spec.get("groups", 1))
            if spec.get("activation") == "relu":
                reference = np.maximum(reference, 0)
            rows.append(compare(case.name, "PyTorch form = numpy loops", ours, reference))
        elif op == "conv_transpose2d":
            kernel = pair(spec["kernel"])
            stride, dilation = pair(spec.get("stride", 1)), pair(spec.get("dilation", 1))
            padding = resolved_padding(spec.get("padding", 0), kernel, stride, dilation, 0, 0)
            reference = numpy_conv_transpose2d(
                x, values[f"{scope}.weight"].astype(np.float64),
                values.get(f"{scope}.bias") if spec.get("bias", True) else None, stride, padding,
                pair(spec.get("output_padding", 0)), dilation, spec.get("groups", 1))
            rows.append(compare(case.name, "PyTorch form = numpy loops", ours, reference))
            cropped = conv_transpose2d(spec, torch.tensor(x), p, scope, through_torch_padding=False).numpy()
            rows.append(compare(case.name, "cropped form = PyTorch layer", cropped, ours))
        elif op in ("max_pool2d", "avg_pool2d"):
            kind = "max" if op == "max_pool2d" else "avg"
            rows.append(compare(case.name, "PyTorch form = numpy loops", ours, numpy_pool(spec, x, kind)))
            if torch_pool_arguments(spec, *x.shape[2:]) and pair(spec.get("dilation", 1)) == (1, 1):
                windowed = LAYERS[op](spec, torch.tensor(x), p, scope, use_torch=False).numpy()
                rows.append(compare(case.name, "windowed form = PyTorch layer", windowed, ours))
        elif op == "batch_norm":
            axes = (0,) + tuple(range(2, x.ndim))
            shape = (1, -1) + (1,) * (x.ndim - 2)
            eps, momentum = spec.get("eps", 1e-5), spec.get("momentum", 0.1)
            weight = values.get(f"{scope}.weight", np.ones(x.shape[1])).reshape(shape)
            bias = values.get(f"{scope}.bias", np.zeros(x.shape[1])).reshape(shape)
            mean, var = values[f"{scope}.running_mean"], values[f"{scope}.running_var"]
            reference = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * weight + bias
            rows.append(compare(case.name, "inference = numpy", ours, reference))
            p = torch_parameters(values)
            trained = torch_forward(case.layers, torch.tensor(x), p, True).numpy()
            batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)
            count = x.size // x.shape[1]
            reference = ((x - batch_mean.reshape(shape)) / np.sqrt(batch_var.reshape(shape) + eps)) * weight + bias
            rows.append(compare(case.name, "training = numpy", trained, reference))
            rows.append(compare(case.name, "running_var = numpy (unbiased)", p[f"{scope}.running_var"].numpy(),
                                (1 - momentum) * var + momentum * batch_var * count / (count - 1)))
            rows.append(compare(case.name, "running_mean = numpy", p[f"{scope}.running_mean"].numpy(),
                                (1 - momentum) * mean + momentum * batch_mean))
        elif op == "layer_norm":
            axes = tuple(sorted(a % x.ndim for a in spec.get("axes", [-1])))
            mean = x.mean(axis=axes, keepdims=True)
            var = x.var(axis=axes, keepdims=True)
            reference = (x - mean) / np.sqrt(var + spec.get("eps", 1e-5))
            if spec.get("affine", True):
                reference = reference * values[f"{scope}.weight"] + values[f"{scope}.bias"]
            rows.append(compare(case.name, "PyTorch = numpy", ours, reference))
        elif op == "global_avg_pool2d":
            rows.append(compare(case.name, "PyTorch = numpy", ours, x.mean(axis=(2, 3))))
    # The generated models render (a smoke test of the text, not of Lamina).
    for case in CASES:
        _, output_shape = expected_parameters(case.layers, case.input_shape)
        layer_model(case, output_shape)
    for case in TRAINING_CASES:
        shapes, output_shape = expected_parameters(case.layers, case.input_shape)
        training_model(case, output_shape)
        p = torch_parameters(random_parameters(shapes, rng), requires_grad={n for n in shapes if "running_" not in n})
        F.mse_loss(torch_forward(case.layers, torch.tensor(rng.standard_normal(case.input_shape)), p, True),
                   torch.zeros(output_shape, dtype=torch.float64)).backward()
        rows.append(Row(case.name, "PyTorch training step runs", shape_text(output_shape), ok=True))
    return rows


# --------------------------------------------------------------------------------------------------

def print_rows(rows):
    print(f"{'case':<44} {'check':<46} {'shape':<16} {'max abs':>10} {'max rel':>10}")
    for row in rows:
        numbers = (f"{row.max_abs:10.2e} " if row.max_abs is not None else f"{'':>10} ") + \
                  (f"{row.max_rel:10.2e}" if row.max_rel is not None else f"{'':>10}")
        print(f"{row.case:<44} {row.check:<46} {row.shape:<16} {numbers}  {'PASS' if row.ok else 'FAIL'}"
              + (f"  {row.note}" if row.note else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamina", default=os.environ.get("LAMINA", str(DEFAULT_LAMINA)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--self-test", action="store_true", help="check the PyTorch side alone (no Lamina)")
    arguments = parser.parse_args()
    torch.set_num_threads(2)
    if arguments.self_test:
        rows = self_test(arguments.seed)
        print_rows(rows)
        failed = sum(not row.ok for row in rows)
        print(f"\nself-test: {len(rows) - failed} passed, {failed} failed")
        return 1 if failed else 0
    if not Path(arguments.lamina).exists():
        print(f"no lamina binary at {arguments.lamina}: run `swift build` (or pass --lamina)", file=sys.stderr)
        return 2
    wanted = [w for w in arguments.only.split(",") if w]

    def selected(name):
        return not wanted or any(w in name for w in wanted)

    rows = []
    jobs = [(case.name, lambda d, c=case: check_layer_case(arguments.lamina, c, arguments.seed, d)) for case in CASES]
    jobs += [(case.name, lambda d, c=case: check_training_case(arguments.lamina, c, arguments.seed, d))
             for case in TRAINING_CASES]
    jobs += [(f"dropout rate {rate}", lambda d, r=rate: check_dropout(arguments.lamina, r, arguments.seed, d))
             for rate in DROPOUT_RATES]
    jobs += [(name, lambda d, n=name: check_torch_weights(arguments.lamina, n, arguments.seed, d))
             for name in ("lenet5", "digits_cnn")]
    for name, job in jobs:
        if not selected(name):
            continue
        with tempfile.TemporaryDirectory() as directory:
            try:
                rows += job(directory)
            except LaminaError as error:
                rows.append(Row(name, "lamina", ok=False, note=str(error)))
    print_rows(rows)
    failed = sum(not row.ok for row in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
