#!/usr/bin/env python3
"""Lamina's recurrent and embedding layers beside PyTorch's nn.RNN, nn.LSTM, nn.GRU and nn.Embedding,
on the same weights: every output and every gradient.

Each case is a small generated `.lam` model: `param x: f32[B, T, F]` (so d loss / d x is a parameter
gradient; an embedding case takes `input tokens: i32[B, T]` instead) goes through one layer call as
issue 15 writes it (`lstm(units: H, return: "last", bidirectional: true, lengths: lengths,
initial: [h0, c0])`), and `loss = sum(h * target)` with a random `target` input. The weights are the
names `lamina init` gives the layer (`lstm_0.weight_ih`, `lstm_0.bias_hh_reverse`,
`embedding_0.weight`), filled with random values and written to a .safetensors file; PyTorch loads
the same values into its module by name, with the `_l0` suffix it puts on every recurrent parameter
(`weight_ih_l0`, `weight_ih_l0_reverse`) added. Initial states are parameters too (`param h0`), so
their gradients are compared.

Lamina: `lamina run` compiled and `--interpret` (the output h), `lamina gradients` (the loss and every
gradient, reference interpreter). PyTorch: the module in float64 and autograd; `lengths` through
`pack_padded_sequence(..., enforce_sorted=False)` and `pad_packed_sequence(total_length=T)` (steps
past a row's length are zeros); `return: "last"` is PyTorch's h_n (for a bidirectional layer, the
forward direction's h_n and the backward one's, concatenated, which is what issue 15 defines).

A value passes when |lamina - torch| <= 1e-4 |torch| + 1e-5 max(max|torch|, 1e-3) everywhere (the
tolerance of tools/compare_cnn_torch.py, whose helpers this script uses).

Usage:
  swift build
  /work/venv/bin/python tools/compare_rnn_torch.py [--lamina PATH] [--only lstm,gru] [--seed 0]
  /work/venv/bin/python tools/compare_rnn_torch.py --list     # the cases, with their Lamina source
"""

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_cnn_torch import (  # noqa: E402  (the helpers of the CNN comparison)
    DEFAULT_LAMINA, LaminaError, Row, compare, lamina_names, print_rows, read_safetensors, run_lamina,
    shape_text, torch, write_safetensors)

BATCH, TIME = 3, 5


@dataclass
class Case:
    name: str
    layer: str                 # "rnn", "lstm", "gru" or "embedding"
    features: int = 4          # input features (rnn/lstm/gru) or vocab (embedding)
    units: int = 6             # hidden units (rnn/lstm/gru) or dim (embedding)
    options: dict = field(default_factory=dict)   # return, bidirectional, activation
    lengths: list | None = None                   # one per row, each in 1..TIME
    initial: bool = False
    then_lstm: int = 0         # embedding cases: an lstm of this many units after the embedding


CASES = [
    Case("rnn tanh sequence", "rnn"),
    Case("rnn relu last", "rnn", options={"activation": "relu", "return": "last"}),
    Case("rnn initial", "rnn", initial=True),
    Case("rnn bidirectional lengths", "rnn", options={"bidirectional": True}, lengths=[5, 2, 1]),
    Case("lstm sequence", "lstm"),
    Case("lstm last", "lstm", options={"return": "last"}),
    Case("lstm initial", "lstm", initial=True),
    Case("lstm bidirectional", "lstm", options={"bidirectional": True}),
    Case("lstm lengths sequence", "lstm", lengths=[5, 3, 1]),
    Case("lstm lengths last", "lstm", options={"return": "last"}, lengths=[2, 5, 4]),
    Case("lstm bidirectional lengths last", "lstm", options={"bidirectional": True, "return": "last"},
         lengths=[4, 1, 5]),
    Case("gru sequence", "gru"),
    Case("gru last", "gru", options={"return": "last"}),
    Case("gru initial", "gru", initial=True),
    Case("gru bidirectional", "gru", options={"bidirectional": True}),
    Case("gru lengths last", "gru", options={"return": "last"}, lengths=[3, 5, 1]),
    Case("gru bidirectional lengths sequence", "gru", options={"bidirectional": True}, lengths=[1, 4, 5]),
    Case("embedding", "embedding", features=7, units=5),
    Case("embedding then lstm last", "embedding", features=8, units=4, then_lstm=6),
]


# --------------------------------------------------------------------------------------------------
# Lamina source
# --------------------------------------------------------------------------------------------------

def option_text(options):
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        return str(v)
    return "".join(f", {k}: {value(v)}" for k, v in options.items())


def directions(case):
    return 2 if case.options.get("bidirectional") else 1


def output_shape(case):
    if case.layer == "embedding":
        if case.then_lstm:
            return (BATCH, case.then_lstm)
        return (BATCH, TIME, case.units)
    width = case.units * directions(case)
    return (BATCH, width) if case.options.get("return") == "last" else (BATCH, TIME, width)


def source(case):
    lines = [f"model {case.layer.capitalize()}Case {{"]
    if case.layer == "embedding":
        lines.append(f"  input tokens: i32[{BATCH}, {TIME}]")
        call = f"tokens |> embedding(vocab: {case.features}, dim: {case.units})"
        if case.then_lstm:
            call += f' |> lstm(units: {case.then_lstm}, return: "last")'
    else:
        lines.append(f"  param x: f32[{BATCH}, {TIME}, {case.features}]")
        options = dict(case.options)
        arguments = f"units: {case.units}" + option_text(options)
        if case.lengths is not None:
            lines.append(f"  input lengths: i32[{BATCH}]")
            arguments += ", lengths: lengths"
        if case.initial:
            lines.append(f"  param h0: f32[{BATCH}, {case.units}]")
            if case.layer == "lstm":
                lines.append(f"  param c0: f32[{BATCH}, {case.units}]")
                arguments += ", initial: [h0, c0]"
            else:
                arguments += ", initial: [h0]"
        call = f"x |> {case.layer}({arguments})"
    lines.append(f"  input target: f32{shape_text(output_shape(case))}")
    lines.append(f"  let h = {call}")
    lines.append("  output h")
    lines.append("  loss = sum(h * target)")
    lines.append("  train with sgd(lr: 0.1)")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------------

def torch_name(lamina_name):
    """`lstm_0.weight_ih_reverse` -> `weight_ih_l0_reverse` (the module's own state_dict key)."""
    local = lamina_name.split(".", 1)[1]
    if local.endswith("_reverse"):
        return local[: -len("_reverse")] + "_l0_reverse"
    return local + "_l0"


def recurrent_module(layer, features, units, options):
    bidirectional = bool(options.get("bidirectional"))
    if layer == "rnn":
        return torch.nn.RNN(features, units, nonlinearity=options.get("activation", "tanh"), batch_first=True,
                            bidirectional=bidirectional)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[layer]
    return module(features, units, batch_first=True, bidirectional=bidirectional)


def torch_case(case, values):
    """The output h and the gradients of sum(h * target) with respect to every Lamina parameter."""
    p = {name: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True)
         for name, v in values.items() if name not in ("target", "tokens", "lengths")}
    target = torch.tensor(values["target"], dtype=torch.float64)
    if case.layer == "embedding":
        # nn.Embedding's forward, on the weight tensor itself (so its gradient is p's).
        h = torch.nn.functional.embedding(torch.tensor(values["tokens"], dtype=torch.long),
                                          p["embedding_0.weight"])
        if case.then_lstm:
            lstm = recurrent_module("lstm", case.units, case.then_lstm, {})
            h = run_with_parameters(lstm, p, "lstm_0", h, {"return": "last"})
    else:
        module = recurrent_module(case.layer, case.features, case.units, case.options)
        scope = f"{case.layer}_0"
        initial = None
        if case.initial:
            h0 = p["h0"].unsqueeze(0)
            initial = (h0, p["c0"].unsqueeze(0)) if case.layer == "lstm" else h0
        h = run_with_parameters(module, p, scope, x=p["x"], options=case.options, lengths=case.lengths,
                                initial=initial)
    loss = (h * target).sum()
    names = sorted(p)
    gradients = dict(zip(names, torch.autograd.grad(loss, [p[n] for n in names])))
    return h.detach().numpy(), loss.detach().numpy(), gradients


def run_with_parameters(module, p, scope, x, options, lengths=None, initial=None):
    """Runs `module` with Lamina's `scope.*` values of `p` as its parameters: each module parameter
    becomes the tensor of `p` (renamed), so autograd's gradients with respect to `p` are the module's."""
    module.double()
    names = {torch_name(name): name for name in p if name.startswith(scope + ".")}
    expected = {name for name, _ in module.named_parameters()}
    if set(names) != expected:
        raise LaminaError(f"Lamina's {scope} parameters {sorted(n for n in p if n.startswith(scope))} "
                          f"are not PyTorch's {sorted(expected)} (after renaming)")
    for key, lamina in names.items():
        parameter = torch.nn.Parameter(p[lamina].detach().clone())
        setattr(module, key, parameter)
        p[lamina] = parameter      # the leaf autograd differentiates with respect to
    if hasattr(module, "flatten_parameters"):
        module._init_flat_weights()
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=True,
                                                         enforce_sorted=False)
        packed_output, final = module(packed, initial)
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_output, batch_first=True, total_length=x.shape[1])
    else:
        output, final = module(x, initial)
    if options.get("return") != "last":
        return output
    h_n = final[0] if isinstance(final, tuple) else final
    return torch.cat(list(h_n), dim=-1)


def random_values(names, rng):
    """Standard normal inputs, initial states and embedding tables; other weights uniform in ±0.5 (about
    PyTorch's ±1/√H for these sizes, large enough that every gate is away from saturation and zero)."""
    values = {}
    for name, shape in names.items():
        if name in ("x", "h0", "c0") or name.startswith("embedding"):
            values[name] = rng.standard_normal(shape).astype(np.float32)
        else:
            values[name] = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
    return values


def check_case(lamina, case, seed, directory):
    rows = []
    rng = np.random.default_rng(seed)
    model = Path(directory) / "case.lam"
    model.write_text(source(case))
    names = lamina_names(lamina, model, Path(directory) / "init.safetensors", seed)
    values = random_values(names, rng)
    weights_path = Path(directory) / "weights.safetensors"
    write_safetensors(weights_path, values)
    inputs = {"target": rng.standard_normal(output_shape(case)).astype(np.float32)}
    if case.layer == "embedding":
        inputs["tokens"] = rng.integers(0, case.features, (BATCH, TIME)).astype(np.int32)
    if case.lengths is not None:
        inputs["lengths"] = np.array(case.lengths, dtype=np.int32)
    input_arguments = []
    for name, value in inputs.items():
        path = Path(directory) / f"{name}.npy"
        np.save(path, value)
        input_arguments += ["--input", f"{name}={path}"]
    try:
        h, loss, gradients = torch_case(case, {**values, **inputs})
    except LaminaError as error:
        return [Row(case.name, "parameters", ok=False, note=str(error))]
    for interpret in (False, True):
        check = f"h {'interpreted' if interpret else 'compiled'}"
        output_path = Path(directory) / "h.npy"
        try:
            run_lamina(lamina, "run", str(model), "--weights", str(weights_path), *input_arguments,
                       "--output", f"h={output_path}", *(["--interpret"] if interpret else []))
            rows.append(compare(case.name, check, np.load(output_path), h))
        except LaminaError as error:
            rows.append(Row(case.name, check, ok=False, note=str(error)))
    grads_path = Path(directory) / "grads.safetensors"
    try:
        run_lamina(lamina, "gradients", str(model), "--weights", str(weights_path), *input_arguments,
                   "-o", str(grads_path))
    except LaminaError as error:
        return rows + [Row(case.name, "gradients", ok=False, note=str(error))]
    ours = read_safetensors(grads_path)
    rows.append(compare(case.name, "loss", ours.get("loss", np.nan), loss))
    for name in sorted(gradients):
        if name not in ours:
            rows.append(Row(case.name, f"d loss / d {name}", ok=False, note="missing in Lamina"))
        else:
            rows.append(compare(case.name, f"d loss / d {name}", ours[name], gradients[name].numpy()))
    for name in sorted(set(ours) - set(gradients) - {"loss"}):
        rows.append(Row(case.name, f"d loss / d {name}", ok=False, note="not a PyTorch parameter"))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamina", default=os.environ.get("LAMINA", str(DEFAULT_LAMINA)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--list", action="store_true", help="print each case's Lamina source and exit")
    arguments = parser.parse_args()
    torch.set_num_threads(2)
    wanted = [w for w in arguments.only.split(",") if w]
    cases = [c for c in CASES if not wanted or any(w in c.name for w in wanted)]
    if arguments.list:
        for case in cases:
            print(f"// {case.name}\n{source(case)}")
        return 0
    if not Path(arguments.lamina).exists():
        print(f"no lamina binary at {arguments.lamina}: run `swift build` (or pass --lamina)", file=sys.stderr)
        return 2
    rows = []
    for case in cases:
        with tempfile.TemporaryDirectory() as directory:
            try:
                rows += check_case(arguments.lamina, case, arguments.seed, directory)
            except LaminaError as error:
                rows.append(Row(case.name, "lamina", ok=False, note=str(error)))
    print_rows(rows)
    failed = sum(not row.ok for row in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
