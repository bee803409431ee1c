#!/usr/bin/env python3
"""The ONNX backend test data (shipped in the `onnx` wheel) through `lamina import` and `lamina run`.

For every test of onnx/backend/test/data/{pytorch-converted, pytorch-operator, light, simple}:
  1. `lamina import model.onnx -o model.lam --weights model.safetensors` (in a temporary folder);
  2. `lamina run model.lam --weights ... --input NAME=input_i.npy ... --output NAME=output_i.npy ...`
     on the test's stored inputs (TensorProto .pb files converted to .npy);
  3. every output compared with the stored one: |lamina - expected| <= atol + rtol * |expected|
     elementwise, as numpy.testing.assert_allclose does (NaN equals NaN), with equal shapes and dtypes.

Each test ends in one result:
  pass          every output within tolerance (the worst absolute and relative errors are listed)
  fail          an output out of tolerance, or of another shape or dtype (worst errors listed)
  unsupported   the importer's `unsupported ONNX ops:` error (the ops it names are listed)
  import error  any other `lamina import` failure (first line of its error)
  compile error `lamina run` failed: the model did not check, compile or run (first line of its error)
  timeout       a step took longer than the time limit (--timeout, --light-timeout)

Tolerances: rtol 1e-3 and atol 1e-5 (issue 17) unless the test states its own in a data.json. The light
models state theirs in onnx/backend/test/data/real/test_NAME/data.json (rtol 1e-3, atol 1e-7): their
outputs are softmax probabilities near 1/1000, so atol 1e-5 would accept 1% errors and is not used.
The light models' inputs are not stored: like ONNX's backend runner, the input is arange(n) / n in the
input's shape (dims without a value are 1), the expected output light_NAME_output_0.pb.

The random-weight copies of the light models (tools/onnx_light_random.py, in its cache folder) are
checked too when present (--random-dir): each copy's logits against ONNX Runtime's on its stored random
input, passing when the largest difference is at most 1e-3 of the largest |logit|.

Nothing is skipped: a test the importer cannot handle is listed with its reason, and the `simple` suite
(mostly string and sequence ops) is run and listed but not part of the target.

Usage:
  swift build -c release --product lamina --scratch-path .build-release
  /work/venv/bin/python tools/onnx_conformance.py [--lamina .build-release/release/lamina]
      [--suite pytorch-converted,pytorch-operator,light,simple,light-random] [--only REGEX] [--jobs N]
      [--timeout S] [--light-timeout S] [--write CONFORMANCE.md] [--json FILE] [--keep DIR]
      [--cache-dir DIR]
"""

import argparse
import concurrent.futures
import datetime
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITES = ["pytorch-converted", "pytorch-operator", "light", "simple", "light-random"]
TARGETED = ["pytorch-converted", "pytorch-operator"]
DEFAULT_RTOL, DEFAULT_ATOL = 1e-3, 1e-5
RANDOM_COPY_BOUND = 1e-3  # largest |difference| over largest |logit|
DEFAULT_RANDOM_DIR = os.path.join(os.path.expanduser("~"), ".cache", "lamina-onnx")
UNSUPPORTED_PREFIX = "unsupported ONNX ops:"


def data_root():
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


# --------------------------------------------------------------------------------------------------
# Tests: where the model, the inputs and the expected outputs are
# --------------------------------------------------------------------------------------------------

class Test:
    """One test: a model file, named inputs (arrays) by position, expected outputs by position."""

    def __init__(self, suite, name, model, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, check="allclose"):
        self.suite, self.name, self.model = suite, name, model
        self.rtol, self.atol, self.check = rtol, atol, check
        self.load_data = None  # () -> (inputs [(onnx name, array)], outputs [(onnx name, array)])


def tensor_from_pb(path):
    import onnx
    from onnx import numpy_helper
    tensor = onnx.TensorProto()
    with open(path, "rb") as file:
        tensor.ParseFromString(file.read())
    if tensor.data_type == 0:
        raise ValueError(f"{path} is not a TensorProto (a sequence or map value)")
    return numpy_helper.to_array(tensor)


def graph_inputs_outputs(model_path):
    """The graph's non-initializer inputs (name, elem_type, dims) and its outputs (names), in order."""
    import onnx
    model = onnx.load(model_path, load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim]
        inputs.append((value.name, value.type.tensor_type.elem_type, dims))
    return inputs, [value.name for value in model.graph.output], model


def stored_test(suite, directory):
    name = os.path.basename(directory)
    rtol, atol = DEFAULT_RTOL, DEFAULT_ATOL
    if os.path.exists(os.path.join(directory, "data.json")):
        with open(os.path.join(directory, "data.json")) as file:
            stated = json.load(file)
        rtol, atol = stated.get("rtol", rtol), stated.get("atol", atol)
    test = Test(suite, name, os.path.join(directory, "model.onnx"), rtol, atol)

    def load():
        inputs, outputs, _ = graph_inputs_outputs(test.model)
        data_sets = sorted(glob.glob(os.path.join(directory, "test_data_set_*")))
        sets = []
        for data_set in data_sets:
            given = sorted(glob.glob(os.path.join(data_set, "input_*.pb")), key=pb_index)
            expected = sorted(glob.glob(os.path.join(data_set, "output_*.pb")), key=pb_index)
            # The stored inputs follow graph.input's order (initializers excluded), as the runner feeds them.
            sets.append(([(inputs[i][0] if i < len(inputs) else f"input_{i}", tensor_from_pb(p))
                          for i, p in enumerate(given)],
                         [(outputs[i] if i < len(outputs) else f"output_{i}", tensor_from_pb(p))
                          for i, p in enumerate(expected)]))
        return sets
    test.load_data = load
    return test


def pb_index(path):
    return int(re.search(r"_(\d+)\.pb$", path).group(1))


def light_test(root, model_path):
    stem = os.path.basename(model_path)[: -len(".onnx")]  # light_resnet50
    short = stem[len("light_"):]
    rtol, atol = DEFAULT_RTOL, DEFAULT_ATOL
    stated_path = os.path.join(root, "real", f"test_{short}", "data.json")
    if os.path.exists(stated_path):
        with open(stated_path) as file:
            stated = json.load(file)
        rtol, atol = stated.get("rtol", rtol), stated.get("atol", atol)
    test = Test("light", stem, model_path, rtol, atol)

    def load():
        inputs, outputs, _ = graph_inputs_outputs(model_path)
        feeds = []
        for name, _, dims in inputs:
            n = int(numpy.prod(dims))
            feeds.append((name, (numpy.arange(n).reshape(dims) / n).astype(numpy.float32)))
        expected = []
        for i, output in enumerate(outputs):
            expected.append((output, tensor_from_pb(os.path.join(os.path.dirname(model_path),
                                                                 f"{stem}_output_{i}.pb"))))
        return [(feeds, expected)]
    test.load_data = load
    return test


def random_copy_test(directory):
    """A copy written by tools/onnx_light_random.py: model.onnx, input.npy, logits.npy, meta.json."""
    name = os.path.basename(directory)
    test = Test("light-random", name, os.path.join(directory, "model.onnx"), check="relative_to_max")

    def load():
        with open(os.path.join(directory, "meta.json")) as file:
            meta = json.load(file)
        return [([(meta["input"], numpy.load(os.path.join(directory, "input.npy")))],
                 [(meta["output"], numpy.load(os.path.join(directory, "logits.npy")))])]
    test.load_data = load
    return test


def collect(suites, random_dir, only):
    root = data_root()
    tests = []
    for suite in suites:
        if suite == "light":
            tests += [light_test(root, p) for p in sorted(glob.glob(os.path.join(root, "light", "*.onnx")))]
        elif suite == "light-random":
            tests += [random_copy_test(d) for d in sorted(glob.glob(os.path.join(random_dir, "light_*")))
                      if os.path.exists(os.path.join(d, "meta.json"))]
        else:
            tests += [stored_test(suite, d) for d in sorted(glob.glob(os.path.join(root, suite, "test_*")))
                      if os.path.isdir(d)]
    if only:
        pattern = re.compile(only)
        tests = [t for t in tests if pattern.search(f"{t.suite}/{t.name}")]
    return tests


# --------------------------------------------------------------------------------------------------
# Running Lamina
# --------------------------------------------------------------------------------------------------

class StepTimeout(Exception):
    pass


def run_command(command, timeout):
    """Runs `command` in its own process group; on timeout the whole group (cc included) is killed."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise StepTimeout()
    return process.returncode, stdout, stderr


LAM_INPUT = re.compile(r"^\s*input\s+([A-Za-z_][A-Za-z0-9_]*)\s*:")
LAM_OUTPUT = re.compile(r"^\s*output\s+([A-Za-z_][A-Za-z0-9_]*)\b")


def lam_signature(path):
    """The `input` and `output` names of the imported .lam, in file order."""
    inputs, outputs = [], []
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            line = line.split("//", 1)[0]
            if match := LAM_INPUT.match(line):
                inputs.append(match.group(1))
            elif match := LAM_OUTPUT.match(line):
                outputs.append(match.group(1))
    return inputs, outputs


def lam_name(onnx_name, candidates, position):
    """The .lam name for an ONNX value: the design's spelling (invalid characters to `_`, a leading digit
    prefixed) when the file has it, else the one at the same position."""
    spelled = re.sub(r"[^A-Za-z0-9_]", "_", onnx_name)
    for guess in (spelled, f"input_{spelled}", f"output_{spelled}", f"v_{spelled}", f"_{spelled}"):
        if guess in candidates:
            return guess
    return candidates[position] if position < len(candidates) else None


def first_line(text):
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "(no error text)"


def unsupported_ops(text):
    """The op names after `unsupported ONNX ops:` (the importer's one error listing all of them)."""
    start = text.find(UNSUPPORTED_PREFIX)
    body = text[start + len(UNSUPPORTED_PREFIX):]
    names = re.findall(r"\b([A-Z][A-Za-z0-9]*)\b", body.split("\n\n", 1)[0])
    seen = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen, " ".join(body.split())[:300]


def npy_input(array):
    """The stored input as Lamina reads it: float32/64 and int32/64 as they are; bool and narrower ints
    are converted to what the importer declares (noted in the result)."""
    if array.dtype in (numpy.float32, numpy.float64, numpy.int32, numpy.int64):
        return numpy.ascontiguousarray(array), None
    if array.dtype == numpy.bool_ or numpy.issubdtype(array.dtype, numpy.integer):
        return numpy.ascontiguousarray(array.astype(numpy.int64)), f"input {array.dtype} given as int64"
    if numpy.issubdtype(array.dtype, numpy.floating):
        return numpy.ascontiguousarray(array.astype(numpy.float32)), f"input {array.dtype} given as float32"
    raise ValueError(f"an input of dtype {array.dtype} cannot be given to Lamina")


def compare(test, expected, got):
    """(ok, worst absolute error, worst relative error, note) for one output."""
    note = None
    if got.shape != expected.shape:
        if got.size == expected.size:
            note = f"shape {list(got.shape)}, expected {list(expected.shape)}"
            got = got.reshape(expected.shape)
        else:
            return False, None, None, f"shape {list(got.shape)}, expected {list(expected.shape)}"
    if got.dtype != expected.dtype:
        note = (note + "; " if note else "") + f"dtype {got.dtype}, expected {expected.dtype}"
    if expected.dtype == object or not numpy.issubdtype(expected.dtype, numpy.number) and expected.dtype != bool:
        return False, None, None, f"expected dtype {expected.dtype} (not a numeric tensor)"
    exp = expected.astype(numpy.float64)
    out = got.astype(numpy.float64)
    both_nan = numpy.isnan(exp) & numpy.isnan(out)
    difference = numpy.where(both_nan, 0.0, numpy.abs(out - exp))
    difference = numpy.where(numpy.isnan(difference), numpy.inf, difference)
    worst_abs = float(difference.max()) if difference.size else 0.0
    with numpy.errstate(divide="ignore", invalid="ignore"):
        relative = numpy.where(difference == 0, 0.0, difference / numpy.abs(exp))
    worst_rel = float(numpy.nan_to_num(relative, nan=numpy.inf).max()) if relative.size else 0.0
    if test.check == "relative_to_max":
        largest = float(numpy.abs(exp).max()) if exp.size else 0.0
        ok = worst_abs <= RANDOM_COPY_BOUND * largest
        worst_rel = worst_abs / largest if largest > 0 else numpy.inf
    else:
        ok = bool(numpy.all(both_nan | (difference <= test.atol + test.rtol * numpy.abs(exp))))
    return ok and note is None, worst_abs, worst_rel, note


def run_test(test, arguments, scratch):
    """Imports, runs and checks one test; returns a result dict."""
    result = {"suite": test.suite, "name": test.name, "rtol": test.rtol, "atol": test.atol}
    started = time.monotonic()
    timeout = arguments.light_timeout if test.suite.startswith("light") else arguments.timeout
    folder = tempfile.mkdtemp(prefix=f"{test.name}-", dir=scratch)
    try:
        result.update(run_steps(test, arguments, folder, timeout))
    except StepTimeout:
        result.update(result="timeout", detail=f"a step took more than {timeout:.0f} s")
    except Exception as error:  # the script's own failure on this test: listed, never hidden
        result.update(result="harness error", detail=f"{type(error).__name__}: {error}")
    result["seconds"] = round(time.monotonic() - started, 2)
    if not arguments.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def run_steps(test, arguments, folder, timeout):
    import onnx
    model = onnx.load(test.model, load_external_data=False)
    ops = sorted({node.op_type for node in model.graph.node})
    info = {"ops": ops, "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                                     default=None)}
    lam, weights = os.path.join(folder, "model.lam"), os.path.join(folder, "model.safetensors")
    command = [arguments.lamina, "import", test.model, "-o", lam, "--weights", weights]
    started = time.monotonic()
    status, stdout, stderr = run_command(command, timeout)
    info["import_seconds"] = round(time.monotonic() - started, 2)
    if status != 0 or not os.path.exists(lam):
        text = (stderr + stdout).replace(folder + os.sep, "")
        if UNSUPPORTED_PREFIX in text:
            names, detail = unsupported_ops(text)
            return {**info, "result": "unsupported", "unsupported": names, "detail": detail}
        return {**info, "result": "import error", "detail": first_line(text) if status != 0 else
                f"exit 0 but no {os.path.basename(lam)} written"}

    lam_inputs, lam_outputs = lam_signature(lam)
    notes = []
    results = []
    for set_index, (feeds, expected) in enumerate(test.load_data()):
        command = [arguments.lamina, "run", lam, "--cache-dir", arguments.cache_dir or os.path.join(folder, "cache")]
        if os.path.exists(weights):
            command += ["--weights", weights]
        for position, (name, array) in enumerate(feeds):
            target = lam_name(name, lam_inputs, position)
            if target is None:
                return {**info, "result": "import error",
                        "detail": f"no .lam input for ONNX input {name!r} (the .lam declares {lam_inputs})"}
            array, note = npy_input(array)
            if note:
                notes.append(note)
            path = os.path.join(folder, f"in{set_index}_{position}.npy")
            numpy.save(path, array)
            command += ["--input", f"{target}={path}"]
        output_paths = []
        for position, (name, _) in enumerate(expected):
            target = lam_name(name, lam_outputs, position)
            if target is None:
                return {**info, "result": "import error",
                        "detail": f"no .lam output for ONNX output {name!r} (the .lam declares {lam_outputs})"}
            path = os.path.join(folder, f"out{set_index}_{position}.npy")
            output_paths.append(path)
            command += ["--output", f"{target}={path}"]
        started = time.monotonic()
        status, stdout, stderr = run_command(command, timeout)
        info["run_seconds"] = round(info.get("run_seconds", 0) + time.monotonic() - started, 2)
        if status != 0:
            return {**info, "result": "compile error",
                    "detail": first_line((stderr + stdout).replace(folder + os.sep, ""))}
        for (name, array), path in zip(expected, output_paths):
            if not os.path.exists(path):
                return {**info, "result": "compile error", "detail": f"lamina run wrote no {name!r}"}
            results.append((name,) + compare(test, array, numpy.load(path)))
    ok = all(r[1] for r in results)
    absolute = [r[2] for r in results if r[2] is not None]
    relative = [r[3] for r in results if r[3] is not None]
    notes += [f"{r[0]}: {r[4]}" for r in results if r[4]]
    return {**info, "result": "pass" if ok else "fail",
            "worst_abs": max(absolute) if absolute else None, "worst_rel": max(relative) if relative else None,
            "detail": "; ".join(dict.fromkeys(notes))}


# --------------------------------------------------------------------------------------------------
# CONFORMANCE.md
# --------------------------------------------------------------------------------------------------

def error_text(value):
    return "—" if value is None else f"{value:.2e}"


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def describe(result):
    kind = result["result"]
    if kind in ("pass", "fail"):
        text = f"worst abs {error_text(result.get('worst_abs'))}, rel {error_text(result.get('worst_rel'))}"
        return text + (f"; {result['detail']}" if result.get("detail") else "")
    if kind == "unsupported":
        return ", ".join(result.get("unsupported") or []) or result.get("detail", "")
    return result.get("detail", "")


def totals(results):
    counts = {}
    for result in results:
        counts[result["result"]] = counts.get(result["result"], 0) + 1
    return counts


ORDER = ["pass", "fail", "unsupported", "import error", "compile error", "timeout", "harness error"]


def markdown(results, command_line, started, finished, lamina_version):
    by_suite = {}
    for result in results:
        by_suite.setdefault(result["suite"], []).append(result)
    lines = ["# ONNX conformance", "",
             "The ONNX backend test data shipped in the `onnx` wheel, imported with `lamina import` and run "
             "with `lamina run` (compiled) on each test's stored inputs; written by `tools/onnx_conformance.py` "
             "(its docstring describes the checks). Every test is listed; none is skipped.", "",
             f"- Run: {started:%Y-%m-%d %H:%M} – {finished:%H:%M} UTC, `{command_line or '(defaults)'}`",
             f"- Lamina: `{lamina_version}`",
             f"- onnx {onnx_version()}, data {data_root()}",
             f"- Tolerance: |lamina − expected| ≤ atol + rtol·|expected| elementwise, rtol {DEFAULT_RTOL:g}, "
             f"atol {DEFAULT_ATOL:g} unless the test states its own (the light models: rtol 1e-3, atol 1e-7, "
             "from onnx/backend/test/data/real/*/data.json); shapes and dtypes must match. The random-weight "
             f"light copies: largest |difference| ≤ {RANDOM_COPY_BOUND:g} · largest |logit|.", ""]
    lines += ["## Totals", "", "| suite | tests | " + " | ".join(ORDER) + " |",
              "|---|---|" + "---|" * len(ORDER)]
    for suite in SUITES:
        if suite not in by_suite:
            continue
        counts = totals(by_suite[suite])
        label = suite + ("" if suite != "simple" else " (not targeted)")
        lines.append(f"| {label} | {len(by_suite[suite])} | " + " | ".join(str(counts.get(k, 0)) for k in ORDER) + " |")
    targeted = [r for s in TARGETED for r in by_suite.get(s, [])]
    if targeted:
        passed = sum(r["result"] == "pass" for r in targeted)
        needed = -(-9 * 117 // 10)  # 90% of the 117 tests, rounded up
        lines += ["", f"**Target (issue 17): at least 90% of the 117 pytorch-converted + pytorch-operator tests "
                  f"pass, i.e. {needed}. Passing: {passed} of {len(targeted)} "
                  f"({100 * passed / len(targeted):.1f}%)" + (" — met.**" if passed >= needed else " — not met.**")]
    for suite in ("light", "light-random"):
        if suite in by_suite:
            passed = sum(r["result"] == "pass" for r in by_suite[suite])
            lines += ["", f"**{suite}: {passed} of {len(by_suite[suite])} pass "
                      f"(target: all {9 if suite == 'light' else 'nine copies'}).**"]
    causes = {}
    for result in results:
        if result["suite"] == "simple" or result["result"] == "pass":
            continue
        label = result["name"] + (" (random copy)" if result["suite"] == "light-random" else "")
        if result["result"] == "unsupported":
            for op in result.get("unsupported") or ["?"]:
                causes.setdefault(f"unsupported op {op}", []).append(label)
        else:
            if result["result"] == "fail":
                key = "fail (out of tolerance, or another shape or dtype)"
            else:  # numbers generalized so that one message with different sizes is one cause
                key = result["result"] + ": " + re.sub(r"\b[0-9]+\b", "N", describe(result))[:110]
            causes.setdefault(key, []).append(label)
    if causes:
        lines += ["", "## Failures by cause (targeted suites and light models)", "",
                  "| cause | tests |", "|---|---|"]
        for cause, names in sorted(causes.items(), key=lambda item: -len(item[1])):
            lines.append(f"| {cell(cause)} | {len(names)}: {cell(', '.join(names))} |")
    for suite in SUITES:
        if suite not in by_suite:
            continue
        title = {"simple": "simple (not targeted: mostly string and sequence ops outside a tensor compiler)",
                 "light-random": "light-random (random-weight copies, tools/onnx_light_random.py)"}.get(suite, suite)
        if suite == "light":
            title += ("\n\nThe stored outputs of the light models are constant vectors (every class 0.001, "
                      "DenseNet-121 every element 0.46096: the constant weights make all logits equal), so "
                      "these tests show that a model imports, compiles and runs, little more; the "
                      "random-weight copies below are the numerical check.")
        lines += ["", f"## {title}", "", "| test | result | detail | ONNX ops | opset | seconds |",
                  "|---|---|---|---|---|---|"]
        for result in sorted(by_suite[suite], key=lambda r: r["name"]):
            lines.append(f"| {cell(result['name'])} | {result['result']} | {cell(describe(result))} | "
                         f"{cell(' '.join(result.get('ops', [])))} | {result.get('opset', '')} | "
                         f"{result['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def onnx_version():
    import onnx
    return onnx.__version__


def lamina_version(binary):
    try:
        commit = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %s"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "?"
    return f"{binary} (built from {ROOT} at {commit[:90]})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamina", default=os.environ.get("LAMINA", os.path.join(ROOT, ".build-release/release/lamina")))
    parser.add_argument("--suite", default="pytorch-converted,pytorch-operator,light,simple,light-random")
    parser.add_argument("--only", help="a regular expression on SUITE/TEST")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per step (import, run) of a small test")
    parser.add_argument("--light-timeout", type=float, default=1800, help="seconds per step of a light model")
    parser.add_argument("--random-dir", default=DEFAULT_RANDOM_DIR, help="tools/onnx_light_random.py's folder")
    parser.add_argument("--write", help="write the table to this Markdown file (CONFORMANCE.md)")
    parser.add_argument("--json", help="also write the results as JSON")
    parser.add_argument("--keep", help="keep every test's temporary files in this folder")
    parser.add_argument("--from-json", help="rewrite --write from the results a --json run saved (no tests run)")
    parser.add_argument("--cache-dir", help="lamina's library cache (default: a fresh one per test, removed after)")
    arguments = parser.parse_args()
    arguments.lamina = os.path.abspath(arguments.lamina)
    suites = arguments.suite.split(",")
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite {unknown}; the suites are {SUITES}")
    if not os.path.exists(arguments.lamina):
        print(f"no lamina binary at {arguments.lamina}", file=sys.stderr)
        return 2
    if arguments.from_json:
        with open(arguments.from_json) as file:
            saved = json.load(file)
        with open(arguments.write, "w") as file:
            file.write(markdown(saved["results"], saved.get("arguments", ""),
                                datetime.datetime.fromisoformat(saved["started"]),
                                datetime.datetime.fromisoformat(saved["finished"]),
                                saved.get("lamina", lamina_version(arguments.lamina))))
        print(f"wrote {arguments.write} from {arguments.from_json}")
        return 0
    tests = collect(suites, arguments.random_dir, arguments.only)
    if "light-random" in suites and not any(t.suite == "light-random" for t in tests) and not arguments.only:
        print(f"no random-weight copies in {arguments.random_dir} (tools/onnx_light_random.py makes them)",
              file=sys.stderr)
    if arguments.keep:
        os.makedirs(arguments.keep, exist_ok=True)
    scratch = arguments.keep or tempfile.mkdtemp(prefix="lamina-onnx-conformance-")
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"{len(tests)} tests, {arguments.jobs} jobs, lamina {arguments.lamina}; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    results = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=arguments.jobs) as pool:
            # the light models first (largest), so a long one does not finish the run alone
            ordered = sorted(tests, key=lambda t: not t.suite.startswith("light"))
            futures = {pool.submit(run_test, test, arguments, scratch): test for test in ordered}
            for future in concurrent.futures.as_completed(futures):
                result = future.result()
                results.append(result)
                print(f"[{len(results):3}/{len(tests)}] {result['suite']}/{result['name']}: {result['result']} "
                      f"({result['seconds']:.1f} s) {describe(result)[:160]}", flush=True)
    finally:
        if not arguments.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    finished = datetime.datetime.now(datetime.timezone.utc)
    by_suite = {}
    for result in results:
        by_suite.setdefault(result["suite"], []).append(result)
    for suite, suite_results in by_suite.items():
        counts = totals(suite_results)
        print(f"{suite}: {len(suite_results)} tests, " + ", ".join(f"{k} {counts[k]}" for k in ORDER if k in counts))
    if arguments.write:
        with open(arguments.write, "w") as file:
            file.write(markdown(results, " ".join(sys.argv[1:]), started, finished, lamina_version(arguments.lamina)))
        print(f"wrote {arguments.write}")
    if arguments.json:
        with open(arguments.json, "w") as file:
            json.dump({"started": started.isoformat(), "finished": finished.isoformat(), "results": results,
                       "arguments": " ".join(sys.argv[1:]), "lamina": lamina_version(arguments.lamina)},
                      file, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
