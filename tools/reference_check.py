#!/usr/bin/env python3
"""Check Lamina's reference interpreter against an independent numpy evaluation.

Usage:
    python3 tools/reference_check.py [--lamina PATH] [--batch N] [--seed S] [--rtol R] MODEL...

For every model this script:

  1. runs `lamina dump` and parses the printed IR with its own small parser (below): the
     graph's inputs, parameters, nodes (op, operands, attributes, result types), outputs and
     losses;
  2. runs `lamina init --seed S` and reads the weights with its own safetensors reader;
  3. draws random inputs, with every symbolic dimension (`batch`) bound to --batch: floats are
     standard normal; integer inputs that reach cross_entropy's labels are uniform in 0..C-1
     (C = the class dimension, axis 1, of the logits), other integer inputs uniform in 0..9;
     float targets of binary_cross_entropy_with_logits are uniform in [0, 1];
  4. runs `lamina run --interpret` on those inputs, asking for every output and every loss;
  5. evaluates the same IR in numpy, in float64, rounding each node's result to its declared
     dtype as the interpreter does, and checks each node's shape against its declared type;
  6. compares every output and loss and prints a table per model.

Why it is independent: nothing here is generated from, or calls into, Lamina's op table. Each op
below is written from its mathematical definition with numpy primitives (np.matmul,
np.take_along_axis, python indexing for `slice`, ...), often by a different formula than the
interpreter's (sigmoid as (1 + tanh(x/2)) / 2, softplus and binary cross-entropy through
np.logaddexp), and the IR text and the weight file are read by code of its own. Only the IR
printer, the initializers and the file writers are shared, and a mistake in the printer or the
writers shows up as a parse error or a mismatch. So an agreement means two implementations of the
documented semantics agree, not that one implementation agrees with itself.

Tolerances: a value passes when |actual - expected| <= atol + rtol * |expected| elementwise (the
rule of numpy.isclose). rtol is --rtol (default 1e-5). atol is an absolute tolerance for values
near zero, where a relative error means nothing (a logit of 3e-9 against 2e-9 is fine): 1e-6 for
f32 and 1e-12 for f64. Integer values must be equal. NaN matches NaN only (numpy's maximum,
minimum and max propagate NaN); shapes and dtypes must match exactly. "max rel diff" is taken
over the elements whose expected value is larger than atol.

The lamina binary is --lamina, else the environment variable LAMINA, else .build/debug/lamina in
the repository holding this script. Exit status: 0 when everything passes, 1 when anything fails
(a mismatch, a lamina error, an op without a numpy reference), 2 for a usage error.

Only numpy and the Python standard library are needed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_LAMINA = REPOSITORY / ".build" / "debug" / "lamina"

NUMPY_DTYPES = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64}
ABSOLUTE_TOLERANCE = {"f32": 1e-6, "f64": 1e-12, "i32": 0.0, "i64": 0.0}


class CheckError(Exception):
    """A problem that fails the current model (and the run), with a message for the table."""


# --------------------------------------------------------------------------------------------------
# The IR, as `lamina dump` prints it
# --------------------------------------------------------------------------------------------------


@dataclass
class TensorType:
    dtype: str
    # Each dimension is a monomial: (factor, [symbol, ...]); `32*batch` is (32, ["batch"]).
    shape: list[tuple[int, list[str]]]

    def concrete(self, bindings: dict[str, int]) -> tuple[int, ...]:
        return tuple(evaluate_dim(dim, bindings) for dim in self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(format_dim(dim) for dim in self.shape)}]"


@dataclass
class Node:
    results: list[str]
    op: str
    operands: list[str]
    attributes: dict[str, object]
    types: list[TensorType]
    # A loop (`scan`): its body's arguments, nodes and yielded values.
    args: list[str] = field(default_factory=list)
    body: list["Node"] = field(default_factory=list)
    yields: list[str] = field(default_factory=list)


@dataclass
class Graph:
    name: str
    inputs: dict[str, TensorType] = field(default_factory=dict)
    params: dict[str, TensorType] = field(default_factory=dict)
    # State (a random generator's seed and step, running statistics): its type and first value.
    states: dict[str, tuple[TensorType, float]] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)  # public name -> value name
    losses: dict[str, str] = field(default_factory=dict)

    def type_of(self, value: str) -> TensorType:
        if value in self.inputs:
            return self.inputs[value]
        if value in self.params:
            return self.params[value]
        if value in self.states:
            return self.states[value][0]
        for node in self.nodes:
            if value in node.results:
                return node.types[node.results.index(value)]
        raise CheckError(f"no value %{value} in the IR")


@dataclass
class Dims:
    """A shape attribute (reshape's and broadcast_to's target), which may name symbols."""

    dims: list[tuple[int, list[str]]]


@dataclass
class Slice:
    """One `start:stop:step` entry of slice's index attribute."""

    start: int | None
    stop: int | None
    step: int


def evaluate_dim(dim: tuple[int, list[str]], bindings: dict[str, int]) -> int:
    factor, symbols = dim
    value = factor
    for symbol in symbols:
        value *= bindings[symbol]
    return value


def format_dim(dim: tuple[int, list[str]]) -> str:
    factor, symbols = dim
    if not symbols:
        return str(factor)
    return "*".join(([str(factor)] if factor != 1 else []) + symbols)


TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<value>%(?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9_.]+))
  | (?P<graph>@(?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9_.]+))
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-inf|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}()\[\],:=*])
    """,
    re.VERBOSE,
)


def unquote(text: str) -> str:
    """The text of a quoted string or name, with \\n, \\t, \\" and \\\\ decoded."""
    if not text.startswith('"'):
        return text
    escapes = {"n": "\n", "t": "\t"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), text[1:-1])


class IRReader:
    """A recursive-descent reader for the subset of the IR that `lamina dump` prints."""

    def __init__(self, text: str):
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            match = TOKEN.match(text, position)
            if not match:
                line = text.count("\n", 0, position) + 1
                raise CheckError(f"IR line {line}: cannot read {text[position:position + 20]!r}")
            position = match.end()
            if match.lastgroup != "space":
                self.tokens.append((match.lastgroup, match.group()))
        self.tokens.append(("end", ""))
        self.index = 0

    def peek(self, text: str | None = None, kind: str | None = None) -> bool:
        token_kind, token_text = self.tokens[self.index]
        return (kind is None or token_kind == kind) and (text is None or token_text == text)

    def take(self, text: str | None = None, kind: str | None = None) -> str:
        if not self.peek(text, kind):
            wanted = repr(text) if text else kind
            raise CheckError(f"IR: expected {wanted}, found {self.tokens[self.index][1]!r}")
        self.index += 1
        return self.tokens[self.index - 1][1]

    def accept(self, text: str) -> bool:
        if self.peek(text):
            self.index += 1
            return True
        return False

    def name(self) -> str:
        return unquote(self.take(kind="value")[1:])

    def graph(self) -> Graph:
        self.take("graph")
        graph = Graph(unquote(self.take(kind="graph")[1:]))
        self.take("{")
        while not self.accept("}"):
            self.statement(graph)
        self.take(kind="end")
        return graph

    def statement(self, graph: Graph) -> None:
        if self.accept("source"):
            self.take(kind="string")
        elif self.accept("input"):
            name = self.name()
            self.take(":")
            graph.inputs[name] = self.type()
        elif self.accept("param"):
            name = self.name()
            self.take(":")
            graph.params[name] = self.type()
            self.take("=")
            self.take(kind="word")  # the initializer: lamina init applies it
            self.take("(")
            while not self.accept(")"):
                self.index += 1
            self.accept("frozen")
        elif self.accept("state"):
            # `state [STEP] %name : TYPE = zeros()`; the first value, unless the weights give one.
            if self.peek(kind="word"):
                self.take()
            name = self.name()
            self.take(":")
            type_ = self.type()
            self.take("=")
            initializer = self.take(kind="word")
            first = {"zeros": 0.0, "ones": 1.0}.get(initializer, 0.0)
            self.take("(")
            while not self.accept(")"):
                if self.accept("value"):
                    self.take(":")
                    first = float(self.take(kind="number"))
                else:
                    self.index += 1
            graph.states[name] = (type_, first)
        elif self.accept("update"):
            # A training step's update (`update [STEP] %target = %value [when %trigger]`): inference
            # never applies it.
            if self.peek(kind="word"):
                self.take()
            self.name()
            self.take("=")
            self.name()
            if self.accept("when"):
                self.name()
        elif self.peek("output") or self.peek("loss"):
            table = graph.outputs if self.take() == "output" else graph.losses
            public = self.take(kind="word")
            self.take("=")
            table[public] = self.name()
        elif self.accept("train"):
            self.take(kind="word")
            self.take("=")
            self.take(kind="word")
            self.attributes()
        else:
            graph.nodes.append(self.node())
        if self.accept("loc"):
            self.take("(")
            while not self.accept(")"):
                self.index += 1

    def node(self) -> Node:
        if True:
            results = [self.name()]
            while self.accept(","):
                results.append(self.name())
            self.take("=")
            op = self.take(kind="word")
            self.take("(")
            operands = []
            if not self.accept(")"):
                operands.append(self.name())
                while self.accept(","):
                    operands.append(self.name())
                self.take(")")
            attributes = self.attributes()
            self.take(":")  # dump always prints result types
            types = [self.type()]
            while self.accept(","):
                types.append(self.type())
            node = Node(results, op, operands, attributes, types)
            if self.accept("loc"):
                self.take("(")
                while not self.accept(")"):
                    self.index += 1
            if op == "scan":
                # `{ args(%a : TYPE, ...) NODES... yield(%r, ...) }`
                self.take("{")
                self.take("args")
                self.take("(")
                while not self.accept(")"):
                    node.args.append(self.name())
                    self.take(":")
                    self.type()
                    self.accept(",")
                while not self.accept("yield"):
                    node.body.append(self.node())
                self.take("(")
                while not self.accept(")"):
                    node.yields.append(self.name())
                    self.accept(",")
                self.take("}")
            return node

    def type(self) -> TensorType:
        dtype = self.take(kind="word")
        if dtype not in NUMPY_DTYPES:
            raise CheckError(f"IR: unknown dtype {dtype!r}")
        self.take("[")
        shape = []
        if not self.accept("]"):
            shape.append(self.dim())
            while self.accept(","):
                shape.append(self.dim())
            self.take("]")
        return TensorType(dtype, shape)

    def dim(self, factor: int = 1) -> tuple[int, list[str]]:
        symbols: list[str] = []
        while True:
            if self.peek(kind="number"):
                factor *= int(self.take())
            else:
                symbols.append(self.take(kind="word"))
            if not self.accept("*"):
                return factor, sorted(symbols)

    def attributes(self) -> dict[str, object]:
        attributes: dict[str, object] = {}
        if self.accept("{") and not self.accept("}"):
            while True:
                name = self.take(kind="word")
                self.take("=")
                attributes[name] = self.attribute_value()
                if not self.accept(","):
                    break
            self.take("}")
        return attributes

    def attribute_value(self) -> object:
        kind, text = self.tokens[self.index]
        if kind == "number":
            self.index += 1
            return number(text)
        if kind == "string":
            self.index += 1
            return unquote(text)
        if kind == "word":
            self.index += 1
            return {"true": True, "false": False, "nan": math.nan, "inf": math.inf}.get(text, text)
        if text == "[":
            return self.attribute_list()
        raise CheckError(f"IR: expected an attribute value, found {text!r}")

    def attribute_list(self) -> object:
        """A list of numbers, a shape (`[batch, -1]`) or an index (`[:, -1, 0:4:2]`)."""
        self.take("[")
        items: list[object] = []
        while not self.accept("]"):
            if self.peek(kind="word"):
                items.append(Dims([self.dim()]))
            else:
                start = number(self.take()) if self.peek(kind="number") else None
                if self.accept("*"):
                    items.append(Dims([self.dim(factor=start)]))
                elif self.accept(":"):
                    stop = int(self.take()) if self.peek(kind="number") else None
                    step = 1
                    if self.accept(":") and self.peek(kind="number"):
                        step = int(self.take())
                    items.append(Slice(start, stop, step))
                else:
                    items.append(start)
            self.accept(",")
        if any(isinstance(item, Slice) for item in items):
            return [item if isinstance(item, Slice) else int(item) for item in items]
        if any(isinstance(item, Dims) for item in items):
            return Dims([item.dims[0] if isinstance(item, Dims) else (item, []) for item in items])
        return items


def number(text: str) -> int | float:
    if text == "-inf":
        return -math.inf
    return float(text) if any(c in text for c in ".eE") else int(text)


# --------------------------------------------------------------------------------------------------
# The ops, written from their definitions. Each takes the node's `Call` and its operands as float64
# arrays, and returns a float64 array; `evaluate` then rounds it to the node's declared dtype.
# --------------------------------------------------------------------------------------------------


@dataclass
class Call:
    """What an op sees besides its operands."""

    attributes: dict[str, object]
    bindings: dict[str, int]  # symbol -> size, for shape attributes naming symbols
    result_dtype: str

    def attr(self, name: str, default: object = None) -> object:
        return self.attributes.get(name, default)

    def axes(self) -> tuple[int, ...] | None:
        """The `axes` attribute as a tuple (one integer is one axis); None when absent."""
        value = self.attributes.get("axes")
        if value is None:
            return None
        return tuple(value) if isinstance(value, list) else (value,)

    def shape(self) -> tuple[int, ...]:
        """The `shape` attribute with its symbols evaluated; -1 stays -1."""
        value = self.attributes["shape"]
        dims = value.dims if isinstance(value, Dims) else [(n, []) for n in value]
        return tuple(evaluate_dim(dim, self.bindings) for dim in dims)


def div(call, a, b):
    if call.result_dtype.startswith("i"):
        if np.any(b == 0):
            raise CheckError("integer division by zero")
        return np.trunc(a / b)  # integer division truncates toward zero
    return a / b


def layer_norm(call, x, weight=None, bias=None):
    """PyTorch's LayerNorm over the last len(axes) axes: biased variance, eps inside the root."""
    axes = tuple(range(x.ndim - len(call.attr("axes", [-1])), x.ndim))
    mean = np.mean(x, axis=axes, keepdims=True)
    variance = np.var(x, axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(variance + call.attr("eps", 1e-5))
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def gelu(call, x):
    approximate = call.attr("approximate", "none")
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    if approximate == "none":
        # numpy has no erf: the standard library's, one element at a time.
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))
    raise CheckError(f"unknown approximate={approximate!r}")


def softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def transpose(call, x):
    if call.attr("perm") is not None:
        return np.transpose(x, call.attr("perm"))
    return np.swapaxes(x, -1, -2)  # without perm: swap the last two axes


def flatten(call, x):
    start = call.attr("start_axis", 1) % x.ndim
    end = call.attr("end_axis", -1) % x.ndim
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1 :])


def index(call, x):
    """Python indexing: an integer drops an axis, start:stop:step keeps it, missing ones are `:`."""
    key = tuple(
        slice(entry.start, entry.stop, entry.step) if isinstance(entry, Slice) else entry
        for entry in call.attr("index")
    )
    return x[key]


def cross_entropy(call, logits, labels):
    """The mean over positions of -log_softmax(logits, axis=1)[label].

    logits are [N, C, ...] and labels [N, ...], with values in 0..C-1.
    """
    classes = logits.shape[1]
    if np.any(labels != np.trunc(labels)) or np.any((labels < 0) | (labels >= classes)):
        raise CheckError(f"labels outside 0..{classes - 1}")
    picked = np.take_along_axis(
        log_softmax(logits, axis=1), np.expand_dims(labels.astype(np.int64), 1), axis=1
    )
    return -np.mean(picked)


def binary_cross_entropy_with_logits(call, x, t):
    """The mean of -t log σ(x) - (1 - t) log(1 - σ(x)), which is log(1 + e^x) - t x."""
    return np.mean(np.logaddexp(0, x) - t * x)


def conv2d(call, x, weight, bias):
    """Cross-correlation: for each kernel offset (i, j), the strided window of the zero-padded input
    times that offset's weights, summed; groups split the channels."""
    top, left, bottom, right = call.attr("padding", [0, 0, 0, 0])
    (sh, sw), (dh, dw), groups = call.attr("stride", [1, 1]), call.attr("dilation", [1, 1]), call.attr("groups", 1)
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, channels, height, width = x.shape
    out_channels, per_group, kh, kw = weight.shape
    out_h, out_w = (height - dh * (kh - 1) - 1) // sh + 1, (width - dw * (kw - 1) - 1) // sw + 1
    if out_h <= 0 or out_w <= 0:
        raise CheckError(f"conv2d output size {out_h}x{out_w}")
    per_out = out_channels // groups
    y = np.zeros((n, out_channels, out_h, out_w))
    for g in range(groups):
        xs = x[:, g * per_group:(g + 1) * per_group]
        ws = weight[g * per_out:(g + 1) * per_out]
        for i in range(kh):
            for j in range(kw):
                window = xs[:, :, i * dh:i * dh + sh * (out_h - 1) + 1:sh, j * dw:j * dw + sw * (out_w - 1) + 1:sw]
                y[:, g * per_out:(g + 1) * per_out] += np.einsum("nchw,oc->nohw", window, ws[:, :, i, j])
    return y + channel_bias(bias, out_channels)


def conv_transpose2d(call, x, weight, bias):
    """The adjoint of conv2d: every input element scatters weight[c, :, i, j] to position
    (h * sh - top + i * dh, w * sw - left + j * dw), cropped to the result; output_padding extends
    the bottom and right."""
    top, left, bottom, right = call.attr("padding", [0, 0, 0, 0])
    (sh, sw), (dh, dw), groups = call.attr("stride", [1, 1]), call.attr("dilation", [1, 1]), call.attr("groups", 1)
    oph, opw = call.attr("output_padding", [0, 0])
    n, channels, height, width = x.shape
    _, per_out, kh, kw = weight.shape
    per_in = channels // groups
    full_h = (height - 1) * sh + dh * (kh - 1) + 1 + oph
    full_w = (width - 1) * sw + dw * (kw - 1) + 1 + opw
    full = np.zeros((n, per_out * groups, full_h, full_w))
    for g in range(groups):
        xs = x[:, g * per_in:(g + 1) * per_in]
        ws = weight[g * per_in:(g + 1) * per_in]
        for i in range(kh):
            for j in range(kw):
                full[:, g * per_out:(g + 1) * per_out,
                     i * dh:i * dh + sh * (height - 1) + 1:sh,
                     j * dw:j * dw + sw * (width - 1) + 1:sw] += np.einsum("nchw,co->nohw", xs, ws[:, :, i, j])
    y = full[:, :, top:full_h - bottom, left:full_w - right]
    return y + channel_bias(bias, per_out * groups)


def channel_bias(bias, channels):
    """A conv's bias: [C] per channel, or a scalar (0 when the layer has none)."""
    return bias.reshape(1, channels, 1, 1) if np.size(bias) == channels and np.ndim(bias) == 1 else bias


def batch_norm_statistics(call, x, running_mean, running_var):
    """Inference mode (what `lamina run` runs): the running statistics, as rows [mean,
    1/sqrt(var + eps), running_mean, running_var]; the batch's own statistics only matter in a
    training step."""
    eps = call.attr("eps", 1e-5)
    return np.stack([running_mean, 1 / np.sqrt(running_var + eps), running_mean, running_var])


def pooling_axis(size, kernel, stride, dilation, before, after, ceil_mode):
    """PyTorch's output size of a pooling axis (ceil mode: the last window starts inside the input or
    its leading padding)."""
    span = dilation * (kernel - 1) + 1
    out = (size + before + after - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and out > 0 and (out - 1) * stride >= size + before:
        out -= 1
    return out


def pool2d(call, x, maximum):
    """max_pool2d / avg_pool2d over NCHW, window by window, as ir-specs/ops.md defines them."""
    kernel = call.attr("kernel")
    stride = call.attr("stride", kernel)
    top, left, bottom, right = call.attr("padding", [0, 0, 0, 0])
    dilation = call.attr("dilation", [1, 1]) if maximum else [1, 1]
    ceil_mode = call.attr("ceil_mode", False)
    height, width = x.shape[2], x.shape[3]
    rows = pooling_axis(height, kernel[0], stride[0], dilation[0], top, bottom, ceil_mode)
    columns = pooling_axis(width, kernel[1], stride[1], dilation[1], left, right, ceil_mode)
    result = np.zeros(x.shape[:2] + (rows, columns))
    for i in range(rows):
        row0 = i * stride[0] - top
        row_positions = [r for r in range(row0, row0 + dilation[0] * kernel[0], dilation[0]) if 0 <= r < height]
        for j in range(columns):
            column0 = j * stride[1] - left
            column_positions = [c for c in range(column0, column0 + dilation[1] * kernel[1], dilation[1]) if 0 <= c < width]
            window = x[:, :, row_positions][:, :, :, column_positions]
            if maximum:
                # NaN wins, as numpy's max; a window with no input position (dilation) is -inf.
                result[:, :, i, j] = window.max(axis=(2, 3)) if window.size else -np.inf
            elif call.attr("count_include_pad", True):
                count = (min(row0 + kernel[0], height + bottom) - row0) * (min(column0 + kernel[1], width + right) - column0)
                result[:, :, i, j] = window.sum(axis=(2, 3)) / count
            else:
                result[:, :, i, j] = window.sum(axis=(2, 3)) / (len(row_positions) * len(column_positions))
    return result


def conv3d(call, x, weight, bias):
    """Cross-correlation over three spatial axes: for each kernel offset (a, i, j), the strided
    window of the zero-padded input times that offset's weights, summed; groups split the channels."""
    front, top, left, back, bottom, right = call.attr("padding", [0] * 6)
    (sd, sh, sw), (dd, dh, dw) = call.attr("stride", [1, 1, 1]), call.attr("dilation", [1, 1, 1])
    groups = call.attr("groups", 1)
    x = np.pad(x, ((0, 0), (0, 0), (front, back), (top, bottom), (left, right)))
    n, channels, depth, height, width = x.shape
    out_channels, per_group, kd, kh, kw = weight.shape
    out_d = (depth - dd * (kd - 1) - 1) // sd + 1
    out_h = (height - dh * (kh - 1) - 1) // sh + 1
    out_w = (width - dw * (kw - 1) - 1) // sw + 1
    per_out = out_channels // groups
    y = np.zeros((n, out_channels, out_d, out_h, out_w))
    for g in range(groups):
        xs = x[:, g * per_group:(g + 1) * per_group]
        ws = weight[g * per_out:(g + 1) * per_out]
        for a in range(kd):
            for i in range(kh):
                for j in range(kw):
                    window = xs[:, :, a * dd:a * dd + sd * (out_d - 1) + 1:sd,
                                i * dh:i * dh + sh * (out_h - 1) + 1:sh,
                                j * dw:j * dw + sw * (out_w - 1) + 1:sw]
                    y[:, g * per_out:(g + 1) * per_out] += np.einsum("ncdhw,oc->nodhw", window, ws[:, :, a, i, j])
    return y + (bias.reshape(1, out_channels, 1, 1, 1) if np.ndim(bias) == 1 else bias)


def conv_transpose3d(call, x, weight, bias):
    """The adjoint of conv3d: every input element scatters weight[c, :, a, i, j] to its strided,
    dilated position in the full result, then cropped by the padding; output_padding extends the end."""
    pads = call.attr("padding", [0] * 6)
    stride, dilation = call.attr("stride", [1, 1, 1]), call.attr("dilation", [1, 1, 1])
    groups, extra = call.attr("groups", 1), call.attr("output_padding", [0, 0, 0])
    n, channels = x.shape[:2]
    size = x.shape[2:]
    _, per_out, *kernel = weight.shape
    per_in = channels // groups
    full = [(size[k] - 1) * stride[k] + dilation[k] * (kernel[k] - 1) + 1 + extra[k] for k in range(3)]
    result = np.zeros((n, per_out * groups, *full))
    for g in range(groups):
        xs = x[:, g * per_in:(g + 1) * per_in]
        ws = weight[g * per_in:(g + 1) * per_in]
        for offset in np.ndindex(*kernel):
            region = tuple(slice(offset[k] * dilation[k], offset[k] * dilation[k] + stride[k] * (size[k] - 1) + 1, stride[k])
                           for k in range(3))
            result[(slice(None), slice(g * per_out, (g + 1) * per_out)) + region] += np.einsum(
                "ncdhw,co->nodhw", xs, ws[(slice(None), slice(None)) + offset])
    crop = tuple(slice(pads[k], full[k] - pads[k + 3]) for k in range(3))
    y = result[(slice(None), slice(None)) + crop]
    return y + (bias.reshape(1, -1, 1, 1, 1) if np.ndim(bias) == 1 else bias)


def pool3d(call, x, maximum):
    """max_pool3d / avg_pool3d over NCDHW, window by window (the 2-D rules on each axis)."""
    kernel = call.attr("kernel")
    stride = call.attr("stride", kernel)
    pads = call.attr("padding", [0] * 6)
    dilation = call.attr("dilation", [1, 1, 1]) if maximum else [1, 1, 1]
    ceil_mode = call.attr("ceil_mode", False)
    size = x.shape[2:]
    outs = [pooling_axis(size[k], kernel[k], stride[k], dilation[k], pads[k], pads[k + 3], ceil_mode) for k in range(3)]
    result = np.zeros(x.shape[:2] + tuple(outs))
    for index in np.ndindex(*outs):
        starts = [index[k] * stride[k] - pads[k] for k in range(3)]
        positions = [[p for p in range(starts[k], starts[k] + dilation[k] * kernel[k], dilation[k]) if 0 <= p < size[k]]
                     for k in range(3)]
        window = x[:, :, positions[0]][:, :, :, positions[1]][:, :, :, :, positions[2]]
        if maximum:
            result[(slice(None), slice(None)) + index] = window.max(axis=(2, 3, 4)) if window.size else -np.inf
        elif call.attr("count_include_pad", True):
            count = np.prod([min(starts[k] + kernel[k], size[k] + pads[k + 3]) - starts[k] for k in range(3)])
            result[(slice(None), slice(None)) + index] = window.sum(axis=(2, 3, 4)) / count
        else:
            result[(slice(None), slice(None)) + index] = window.sum(axis=(2, 3, 4)) / np.prod([len(p) for p in positions])
    return result


def instance_norm(call, x, scale, bias):
    """Each sample's channel to zero mean and unit (biased) variance over the spatial axes, then
    scaled and shifted per channel."""
    axes = tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(variance + call.attr("eps", 1e-5)) * scale.reshape(shape) + bias.reshape(shape)


def lrn(call, x, size=None):
    """ONNX's LRN: the squares summed over channels c - floor((size-1)/2) .. c + ceil((size-1)/2)."""
    size = call.attr("size")
    alpha, beta, k = call.attr("alpha", 1e-4), call.attr("beta", 0.75), call.attr("bias", 1.0)
    channels = x.shape[1]
    squares = np.zeros_like(x)
    for c in range(channels):
        low, high = max(0, c - (size - 1) // 2), min(channels - 1, c + size // 2)
        squares[:, c] = (x[:, low:high + 1] ** 2).sum(axis=1)
    return x / (k + alpha / size * squares) ** beta


def philox_words(seed, step, stream, count):
    """Philox-4x32-10 (Salmon et al., SC 2011) in numpy: word i of the blocks at counters
    (i / 4, stream, step mod 2^32, step / 2^32) under key (seed mod 2^32, seed / 2^32), for i < count,
    as ir-specs/language.md defines the model's generator."""
    mask = np.uint64(0xFFFFFFFF)
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    step = int(step) & 0xFFFFFFFFFFFFFFFF
    blocks = (count + 3) // 4
    c0 = np.arange(blocks, dtype=np.uint64)
    c1 = np.full(blocks, stream, dtype=np.uint64)
    c2 = np.full(blocks, step & 0xFFFFFFFF, dtype=np.uint64)
    c3 = np.full(blocks, step >> 32, dtype=np.uint64)
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    for round_ in range(10):
        if round_ > 0:
            k0 = (k0 + 0x9E3779B9) & 0xFFFFFFFF
            k1 = (k1 + 0xBB67AE85) & 0xFFFFFFFF
        product0 = np.uint64(0xD2511F53) * c0
        product1 = np.uint64(0xCD9E8D57) * c2
        next0 = (product1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0)
        next2 = (product0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1)
        c1, c3 = product1 & mask, product0 & mask
        c0, c2 = next0, next2
    return np.stack([c0, c1, c2, c3], axis=1).reshape(-1)[:count].astype(np.float64)


def random_samples(call, seed, step, normal):
    """random_normal (Box-Muller on pairs of words) and random_uniform, as ops.md defines them."""
    shape = call.shape()
    count = int(np.prod(shape))
    stream = call.attr("stream", 1 << 31)
    words = philox_words(np.asarray(seed).item(), np.asarray(step).item(), stream, count + (count & 1))
    if normal:
        u1 = (words[0::2] + 1) * 2.0**-32
        u2 = words[1::2] * 2.0**-32
        radius = np.sqrt(-2 * np.log(u1))
        angle = 2 * np.pi * u2
        z = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).reshape(-1)[:count]
        values = call.attr("mean", 0.0) + call.attr("std", 1.0) * z
    else:
        lo = call.attr("lo", 0.0)
        values = lo + (call.attr("hi", 1.0) - lo) * words[:count] * 2.0**-32
    return values.reshape(shape)
def checked_ids(call, ids, rows, what="id"):
    ids = np.asarray(ids).astype(np.int64)
    bad = np.argwhere((ids < 0) | (ids >= rows))
    if len(bad):
        position = tuple(int(i) for i in bad[0])
        raise CheckError(f"{what} {ids[position]} at position {list(position)} is outside 0..<{rows}")
    return ids


def gather_rows(call, table, ids):
    return table[checked_ids(call, ids, table.shape[0])]


def scatter_add_rows(call, values, ids):
    rows = int(call.attr("rows"))
    ids = checked_ids(call, ids, rows)
    result = np.zeros((rows,) + values.shape[ids.ndim:])
    np.add.at(result, ids, values)
    return result


def sequence_mask(call, lengths):
    steps = call.attributes["steps"]
    dims = steps.dims if isinstance(steps, Dims) else [(n, []) for n in steps]
    time = evaluate_dim(dims[0], call.bindings)
    lengths = checked_ids(call, lengths, time + 1, what="length")
    return (np.arange(time)[:, None] < lengths[None, :]).astype(np.float64)[:, :, None]


def reduction(reduce):
    return lambda call, x: reduce(x, axis=call.axes(), keepdims=call.attr("keepdims", False))


OPS = {
    # Elementwise, with numpy broadcasting.
    "add": lambda call, a, b: a + b,
    "sub": lambda call, a, b: a - b,
    "mul": lambda call, a, b: a * b,
    "div": div,
    "pow": lambda call, a, b: np.power(a, b),
    "maximum": lambda call, a, b: np.maximum(a, b),
    "minimum": lambda call, a, b: np.minimum(a, b),
    "neg": lambda call, x: -x,
    "abs": lambda call, x: np.abs(x),
    "exp": lambda call, x: np.exp(x),
    "log": lambda call, x: np.log(x),
    "sqrt": lambda call, x: np.sqrt(x),
    # Activations.
    "relu": lambda call, x: np.maximum(x, 0.0),
    "leaky_relu": lambda call, x: np.where(x > 0, x, call.attr("alpha", 0.01) * x),
    "sigmoid": lambda call, x: 0.5 * (1 + np.tanh(x / 2)),  # = 1 / (1 + e^-x)
    "tanh": lambda call, x: np.tanh(x),
    "gelu": gelu,
    "softplus": lambda call, x: np.logaddexp(0, x),  # = log(1 + e^x)
    # Linear algebra.
    "matmul": lambda call, a, b: np.matmul(
        np.swapaxes(a, -1, -2) if call.attr("transpose_a", False) and a.ndim >= 2 else a,
        np.swapaxes(b, -1, -2) if call.attr("transpose_b", False) and b.ndim >= 2 else b,
    ),
    "transpose": transpose,
    "permute": lambda call, x: np.transpose(x, call.attr("perm")),
    # Reductions.
    "sum": reduction(np.sum),
    "mean": reduction(np.mean),
    "max": reduction(np.max),
    "softmax": lambda call, x: softmax(x, call.attr("axis", -1)),
    "log_softmax": lambda call, x: log_softmax(x, call.attr("axis", -1)),
    "layer_norm": layer_norm,
    # `lamina run` evaluates in inference mode, where dropout is the identity.
    "dropout": lambda call, x, seed, step: x,
    # Samples of the model's generator (it draws at inference too).
    "random_normal": lambda call, seed, step: random_samples(call, seed, step, normal=True),
    "random_uniform": lambda call, seed, step: random_samples(call, seed, step, normal=False),
    # Shapes.
    "reshape": lambda call, x: np.reshape(x, call.shape()),
    "flatten": flatten,
    "broadcast_to": lambda call, x: np.broadcast_to(x, call.shape()),
    "concat": lambda call, *inputs: np.concatenate(inputs, axis=call.attr("axis", 0)),
    "slice": index,
    "squeeze": lambda call, x: np.squeeze(x, axis=call.axes()),
    "unsqueeze": lambda call, x: np.expand_dims(x, axis=call.axes()),
    # Convolution and pooling (NCHW).
    "conv2d": conv2d,
    "conv_transpose2d": conv_transpose2d,
    # Batch norm's statistics in inference mode (`lamina run`'s default).
    "batch_norm_statistics": batch_norm_statistics,
    # Losses.
    "mse": lambda call, prediction, target: np.mean((prediction - target) ** 2),
    "cross_entropy": cross_entropy,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits,
    "l2": lambda call, *inputs: sum(np.sum(x**2) for x in inputs),
    # Constants and conversions; cast's conversion is the rounding to the result dtype.
    "constant": lambda call: np.array(float(call.attr("value"))),
    "cast": lambda call, x: x,
    # Pooling (NCHW).
    "max_pool2d": lambda call, x: pool2d(call, x, maximum=True),
    "avg_pool2d": lambda call, x: pool2d(call, x, maximum=False),
    "global_avg_pool2d": lambda call, x: x.mean(axis=(2, 3)),
    # 3-D convolution and pooling (NCDHW), instance norm and LRN (onnx-ops2).
    "conv3d": conv3d,
    "conv_transpose3d": conv_transpose3d,
    "max_pool3d": lambda call, x: pool3d(call, x, maximum=True),
    "avg_pool3d": lambda call, x: pool3d(call, x, maximum=False),
    "instance_norm": instance_norm,
    "lrn": lrn,
    # Rows by id (the embedding), their gradient, and the mask of padded sequences.
    "gather_rows": gather_rows,
    "scatter_add_rows": scatter_add_rows,
    "sequence_mask": sequence_mask,
}


def round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """Rounds float64 values to a dtype: floats to nearest, integers toward zero, saturating."""
    values = np.asarray(values, dtype=np.float64)
    if dtype in ("f32", "f64"):
        return values.astype(NUMPY_DTYPES[dtype])
    info = np.iinfo(NUMPY_DTYPES[dtype])
    truncated = np.nan_to_num(np.trunc(values), nan=0.0, posinf=info.max, neginf=info.min)
    return np.clip(truncated, info.min, info.max).astype(NUMPY_DTYPES[dtype])


def scan(node: Node, environment: dict[str, np.ndarray], bindings: dict[str, int]) -> None:
    """A loop, from its definition: the body once per step along the sequences' leading axis,
    the carried values passed on, the per-step outputs stacked."""
    carried = node.attributes["carried"]
    sequences = node.attributes["sequences"]
    reverse = node.attributes.get("reverse", False)
    operands = [environment[name] for name in node.operands]
    steps = operands[carried].shape[0]
    state = operands[:carried]
    outputs: list[list[np.ndarray]] = [[] for _ in node.yields[carried:]]
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        local = dict(environment)
        for position, name in enumerate(node.args):
            if position < carried:
                local[name] = state[position]
            elif position < carried + sequences:
                local[name] = operands[position][t]
            else:
                local[name] = operands[position]
        evaluate_nodes(node.body, local, bindings)
        for position, name in enumerate(node.yields[carried:]):
            outputs[position].append(local[name])
        state = [local[name] for name in node.yields[:carried]]
    if reverse:
        outputs = [list(reversed(values)) for values in outputs]
    values = state + [np.stack(values) for values in outputs]
    for name, value, type_ in zip(node.results, values, node.types):
        declared = type_.concrete(bindings)
        if np.shape(value) != declared:
            raise CheckError(
                f"%{name} = scan: numpy gives shape {list(np.shape(value))}, "
                f"the IR declares {type_} = {list(declared)}"
            )
        environment[name] = value


def evaluate(graph: Graph, environment: dict[str, np.ndarray], bindings: dict[str, int]) -> None:
    """Evaluates every node in order, adding its result to `environment`."""
    evaluate_nodes(graph.nodes, environment, bindings)


def evaluate_nodes(
    nodes: list[Node], environment: dict[str, np.ndarray], bindings: dict[str, int]
) -> None:
    for node in nodes:
        if node.op == "scan":
            scan(node, environment, bindings)
            continue
        where = f"%{node.results[0]} = {node.op}"
        if len(node.results) != 1:
            raise CheckError(f"{where}: nodes with {len(node.results)} results are not supported")
        operands = [np.asarray(environment[name], dtype=np.float64) for name in node.operands]
        call = Call(node.attributes, bindings, node.types[0].dtype)
        try:
            # Overflow, log(0) and the like give inf and NaN, as in the interpreter; no warnings.
            with np.errstate(all="ignore"):
                value = OPS[node.op](call, *operands)
        except CheckError as error:
            raise CheckError(f"{where}: {error}") from None
        except Exception as error:  # numpy's complaint: a bad axis, shapes that do not broadcast
            raise CheckError(f"{where}: numpy failed: {type(error).__name__}: {error}") from None
        declared = node.types[0].concrete(bindings)
        if np.shape(value) != declared:
            raise CheckError(
                f"{where}: numpy gives shape {list(np.shape(value))}, "
                f"the IR declares {node.types[0]} = {list(declared)}"
            )
        environment[node.results[0]] = round_to(value, call.result_dtype)


# --------------------------------------------------------------------------------------------------
# Files: safetensors (weights), .npy (inputs and outputs)
# --------------------------------------------------------------------------------------------------

SAFETENSORS_DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """An 8-byte little-endian header length, a JSON header, then the raw little-endian data."""
    data = path.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    buffer = data[8 + header_length :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = SAFETENSORS_DTYPES[entry["dtype"]]
        tensors[name] = np.frombuffer(buffer[begin:end], dtype=dtype).reshape(entry["shape"])
    return tensors


# --------------------------------------------------------------------------------------------------
# Random inputs
# --------------------------------------------------------------------------------------------------

# Ops that move or convert values without changing which input they came from.
PASS_THROUGH = {
    "reshape", "flatten", "squeeze", "unsqueeze", "cast", "slice", "transpose", "permute",
    "broadcast_to",
}


def source_input(graph: Graph, value: str) -> str | None:
    """The graph input a value comes from through shape-only ops, if any."""
    producers = {result: node for node in graph.nodes for result in node.results}
    while value in producers and producers[value].op in PASS_THROUGH:
        value = producers[value].operands[0]
    return value if value in graph.inputs else None


def make_inputs(
    graph: Graph, bindings: dict[str, int], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random values for every graph input, in valid ranges for the losses that read them."""
    label_classes: dict[str, int] = {}  # input -> number of classes
    probability_targets: set[str] = set()
    for node in graph.nodes:
        if node.op == "cross_entropy":
            label = source_input(graph, node.operands[1])
            if label is not None:
                classes = graph.type_of(node.operands[0]).concrete(bindings)[1]
                label_classes[label] = min(classes, label_classes.get(label, classes))
        elif node.op in ("gather_rows", "sequence_mask"):
            # Ids pick rows of the table; lengths run from 0 to the number of steps.
            ids = source_input(graph, node.operands[1 if node.op == "gather_rows" else 0])
            if ids is not None:
                size = graph.type_of(node.operands[0] if node.op == "gather_rows" else node.results[0])
                count = size.concrete(bindings)[0] + (1 if node.op == "sequence_mask" else 0)
                label_classes[ids] = min(count, label_classes.get(ids, count))
        elif node.op == "binary_cross_entropy_with_logits":
            target = source_input(graph, node.operands[1])
            if target is not None:
                probability_targets.add(target)
    inputs = {}
    for name, type_ in graph.inputs.items():
        shape = type_.concrete(bindings)
        dtype = NUMPY_DTYPES[type_.dtype]
        if type_.dtype.startswith("i"):
            values = rng.integers(0, label_classes.get(name, 10), size=shape)
        elif name in probability_targets:
            values = rng.uniform(0.0, 1.0, size=shape)
        else:
            values = rng.standard_normal(size=shape)
        inputs[name] = np.asarray(values).astype(dtype)
    return inputs


# --------------------------------------------------------------------------------------------------
# Checking one model
# --------------------------------------------------------------------------------------------------


def run_lamina(lamina: str, *arguments: str) -> str:
    process = subprocess.run([lamina, *arguments], capture_output=True, text=True)
    if process.returncode != 0:
        message = (process.stderr or process.stdout).strip()
        raise CheckError(f"`lamina {arguments[0]}` exited with {process.returncode}:\n{message}")
    return process.stdout


@dataclass
class Row:
    name: str
    kind: str  # "output" or "loss"
    shape: str
    dtype: str
    max_abs: float | None
    max_rel: float | None
    passed: bool
    note: str = ""


def compare(
    name: str, kind: str, dtype: str, actual: np.ndarray, expected: np.ndarray, rtol: float
) -> Row:
    shape = str(list(expected.shape))
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        note = f"lamina gave {actual.dtype}{list(actual.shape)}, expected {expected.dtype}{shape}"
        return Row(name, kind, shape, dtype, None, None, False, note)
    atol = ABSOLUTE_TOLERANCE[dtype]
    if dtype.startswith("i"):
        rtol = 0.0  # integers must be equal
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    with np.errstate(invalid="ignore"):
        # Equal values (infinities too) and two NaNs differ by 0; NaN against a number by inf.
        same = (a == e) | (np.isnan(a) & np.isnan(e))
        difference = np.nan_to_num(np.where(same, 0.0, np.abs(a - e)), nan=np.inf)
    # Relative differences only where the expected value is not near zero; there atol decides.
    significant = np.abs(e) > atol
    relative = difference[significant] / np.abs(e[significant])
    excess = difference - (atol + rtol * np.abs(np.nan_to_num(e)))
    passed = bool(np.all(excess <= 0))
    note = ""
    if not passed:
        worst = np.unravel_index(np.argmax(excess), excess.shape)
        note = f"worst at {list(map(int, worst))}: lamina {actual[worst]}, numpy {expected[worst]}"
    return Row(name, kind, shape, dtype, float(difference.max(initial=0.0)),
               float(relative.max(initial=0.0)), passed, note)


def check_model(
    path: Path, lamina: str, batch: int, seed: int, rtol: float
) -> tuple[str, list[Row]]:
    """Returns the graph name and one row per output and loss; raises CheckError otherwise."""
    graph = IRReader(run_lamina(lamina, "dump", str(path))).graph()
    def every_node(nodes: list[Node]) -> list[Node]:
        return [inner for node in nodes for inner in [node] + every_node(node.body)]

    unknown = sorted(
        {node.op for node in every_node(graph.nodes) if node.op not in OPS and node.op != "scan"}
    )
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise CheckError(f"no numpy reference for op{plural} {', '.join(unknown)}")
    types = [*graph.inputs.values(), *graph.params.values()]
    types += [type_ for node in graph.nodes for type_ in node.types]
    symbols = {symbol for type_ in types for _, names in type_.shape for symbol in names}
    bindings = {symbol: batch for symbol in symbols}

    # Every output, then every loss (a loss with an output's name is the output's value).
    exposed = [(name, "output", value) for name, value in graph.outputs.items()]
    exposed += [
        (name, "loss", value) for name, value in graph.losses.items() if name not in graph.outputs
    ]

    with tempfile.TemporaryDirectory(prefix="lamina-reference-") as directory:
        folder = Path(directory)
        weights_path = folder / "weights.safetensors"
        run_lamina(lamina, "init", str(path), "-o", str(weights_path), "--seed", str(seed))
        weights = read_safetensors(weights_path)
        missing = [name for name in graph.params if name not in weights]
        if missing:
            raise CheckError(f"the weights file has no tensor for {', '.join(missing)}")

        inputs = make_inputs(graph, bindings, np.random.default_rng(seed))
        arguments = ["run", str(path), "--interpret", "--weights", str(weights_path)]
        for position, (name, values) in enumerate(inputs.items()):
            np.save(folder / f"input{position}.npy", values)
            arguments += ["--input", f"{name}={folder / f'input{position}.npy'}"]
        for position, (name, _, _) in enumerate(exposed):
            arguments += ["--output", f"{name}={folder / f'output{position}.npy'}"]
        run_lamina(lamina, *arguments)
        actual = [np.load(folder / f"output{position}.npy") for position in range(len(exposed))]

    environment: dict[str, np.ndarray] = dict(inputs)
    for name, type_ in graph.params.items():
        environment[name] = weights[name].astype(NUMPY_DTYPES[type_.dtype])
    for name, (type_, first) in graph.states.items():
        shape = type_.concrete(bindings)
        value = weights[name] if name in weights else np.full(shape, first)
        environment[name] = np.asarray(value).astype(NUMPY_DTYPES[type_.dtype])
    evaluate(graph, environment, bindings)

    rows = []
    for (name, kind, value), lamina_value in zip(exposed, actual):
        dtype = graph.type_of(value).dtype
        rows.append(compare(name, kind, dtype, lamina_value, environment[value], rtol))
    return graph.name, rows


def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    return "0" if value == 0 else f"{value:.3g}"


def print_table(title: str, rows: list[Row]) -> None:
    header = ["output", "kind", "shape", "dtype", "max abs diff", "max rel diff", "result"]
    lines = [header] + [
        [
            row.name, row.kind, row.shape, row.dtype,
            format_number(row.max_abs), format_number(row.max_rel),
            ("PASS" if row.passed else "FAIL") + (f"  {row.note}" if row.note else ""),
        ]
        for row in rows
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    print(title)
    for line in lines:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Check Lamina's reference interpreter against an independent numpy evaluation.",
        epilog="Exit status: 0 all pass, 1 something failed, 2 usage error.",
    )
    parser.add_argument("models", nargs="+", metavar="MODEL.lam", help="models to check")
    parser.add_argument(
        "--lamina", help="the lamina binary (default: $LAMINA, else .build/debug/lamina)"
    )
    parser.add_argument(
        "--batch", type=int, default=4, help="size of every symbolic dimension (default 4)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the weights and inputs (default 0)"
    )
    parser.add_argument(
        "--rtol", type=float, default=1e-5, help="relative tolerance (default 1e-5)"
    )
    options = parser.parse_args(argv)  # exits with 2 on a usage error

    lamina = options.lamina or os.environ.get("LAMINA") or str(DEFAULT_LAMINA)
    problems = []
    if not (os.path.isfile(lamina) and os.access(lamina, os.X_OK)):
        problems.append(
            f"no lamina executable at {lamina} (build it, or pass --lamina PATH or set LAMINA)"
        )
    if options.batch < 1:
        problems.append(f"--batch must be at least 1, got {options.batch}")
    if options.seed < 0:
        problems.append(f"--seed must be non-negative, got {options.seed}")
    if not options.rtol >= 0:
        problems.append(f"--rtol must be non-negative, got {options.rtol}")
    problems += [f"no such file: {model}" for model in options.models if not os.path.isfile(model)]
    if problems:
        for problem in problems:
            print(f"reference_check: {problem}", file=sys.stderr)
        return 2

    failures = 0
    for model in options.models:
        try:
            name, rows = check_model(Path(model), lamina, options.batch, options.seed, options.rtol)
        except CheckError as error:
            print(f"{model}: batch {options.batch}, seed {options.seed}\n  FAIL  {error}\n")
            failures += 1
            continue
        settings = f"batch {options.batch}, seed {options.seed}, rtol {options.rtol:g}"
        print_table(f"{name} ({model}): {settings}", rows)
        print()
        failures += sum(not row.passed for row in rows)
    count = len(options.models)
    verdict = "all PASS" if failures == 0 else f"{failures} FAILED"
    print(f"{count} model{'s' if count != 1 else ''}: {verdict}")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
