#!/usr/bin/env python3
"""Random-weight copies of the nine `light` ONNX models, with ONNX Runtime's logits as the reference.

The light models in onnx/backend/test/data/light are full architectures (AlexNet, VGG-19, ResNet-50,
DenseNet-121, Inception v1 and v2, SqueezeNet, ShuffleNet, ZFNet-512) whose weights are constant fills
(`ConstantOfShape` of each weight's shape, value 0.02, and a few constant initializers), so their stored
outputs are nearly uniform probabilities that hide most errors. Each copy written here:

  - has every weight as an initializer of its full shape with seeded random values scaled by the
    tensor's role (how the graph uses it, followed through Reshape/Unsqueeze/Squeeze/Transpose/Flatten):
      Conv weight            normal, He-scaled: std sqrt(2 / fan_in), fan_in = C_in/groups · kernel size
      Gemm weight            the same with fan_in = K (Gemm's transB says which axis K is)
      Conv and Gemm bias     normal(0, 0.01)
      BatchNormalization     scale uniform(0.8, 1.2), shift normal(0, 0.1), mean normal(0, 0.1),
                             variance uniform(0.5, 1.5)
      Mul operand (a Caffe2 scale layer after a batch norm)   uniform(0.8, 1.2)
      Add operand (its shift)                                 normal(0, 0.1)
    the ConstantOfShape nodes are gone (their outputs are initializers now) and so are the shape
    initializers they read; a float initializer of any other role keeps its stored values (listed);
  - has the final Softmax removed: the graph's output is the logits, renamed `logits` (a softmax of
    random-weight logits is saturated or flat, and would hide errors again);
  - comes with a seeded random input (standard normal, the model's input shape) and ONNX Runtime's
    logits on it (CPU, float32, default graph optimizations).

Saved under --out (default ~/.cache/lamina-onnx; the copies total about 1.3 GB, outside the repo):
  light_NAME/model.onnx, input.npy, logits.npy, meta.json (input and output names, seed, roles, ranges).
tools/onnx_conformance.py --suite light-random checks Lamina on them: the largest |difference| at most
1e-3 of the largest |logit|.

Usage:
  /work/venv/bin/python tools/onnx_light_random.py [--out DIR] [--only resnet50,vgg19] [--seed 0]
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy

DEFAULT_OUT = os.path.join(os.path.expanduser("~"), ".cache", "lamina-onnx")
PASS_THROUGH = {"Reshape", "Unsqueeze", "Squeeze", "Transpose", "Flatten", "Identity"}


def light_models():
    import onnx
    folder = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    return sorted(glob.glob(os.path.join(folder, "light_*.onnx")))


def consumers_of(graph):
    uses = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, position))
    return uses


def roles_of(name, uses, depth=0):
    """The (op, input position, node) uses of a value, looking through shape-only ops."""
    found = []
    for node, position in uses.get(name, []):
        if node.op_type in PASS_THROUGH and position == 0 and depth < 4:
            found += roles_of(node.output[0], uses, depth + 1)
        else:
            found.append((node.op_type, position, node))
    return found


def attribute(node, key, default):
    import onnx
    for a in node.attribute:
        if a.name == key:
            return onnx.helper.get_attribute_value(a)
    return default


def random_values(role, shape, shapes, rng):
    """Values for a weight of `shape` used as `role` (op, position, node), or None to keep the stored ones."""
    op, position, node = role
    size = int(numpy.prod(shape)) if shape else 1
    if op == "Conv" and position == 1:
        fan_in = int(numpy.prod(shape[1:]))
        return rng.normal(0.0, numpy.sqrt(2.0 / fan_in), shape), f"he_normal(fan_in {fan_in})"
    if op == "Gemm" and position == 1:
        seen = shapes.get(node.input[1]) or shape  # the shape Gemm sees, after a Reshape
        fan_in = seen[1] if attribute(node, "transB", 0) else seen[0]
        return rng.normal(0.0, numpy.sqrt(2.0 / fan_in), shape), f"he_normal(fan_in {fan_in})"
    if op in ("Conv", "Gemm") and position == 2:
        return rng.normal(0.0, 0.01, shape), "normal(0, 0.01)"
    if op == "BatchNormalization":
        if position == 1:
            return rng.uniform(0.8, 1.2, shape), "uniform(0.8, 1.2)"
        if position in (2, 3):
            return rng.normal(0.0, 0.1, shape), "normal(0, 0.1)"
        if position == 4:
            return rng.uniform(0.5, 1.5, shape), "uniform(0.5, 1.5)"
    if op == "Mul" and size > 0:
        return rng.uniform(0.8, 1.2, shape), "uniform(0.8, 1.2)"
    if op in ("Add", "Sum") and size > 0:
        return rng.normal(0.0, 0.1, shape), "normal(0, 0.1)"
    return None, f"kept (used by {op} input {position})"


def make_copy(path, out, seed):
    import onnx
    from onnx import helper, numpy_helper, shape_inference
    model = onnx.load(path)
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    listed_inputs = {i.name for i in graph.input}

    # 1. ConstantOfShape of an initializer's shape -> an initializer of that shape (zeros for now).
    weights = {}  # name -> shape, in graph order: the weights to fill
    removed_nodes, shape_tensors = [], set()
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in initializers:
            shape = [int(d) for d in numpy_helper.to_array(initializers[node.input[0]])]
            weights[node.output[0]] = shape
            removed_nodes.append(node)
            shape_tensors.add(node.input[0])
    for node in removed_nodes:
        graph.node.remove(node)
    for name, initializer in initializers.items():
        if initializer.data_type == onnx.TensorProto.FLOAT and name not in weights:
            weights[name] = list(initializer.dims)
    still_read = {name for node in graph.node for name in node.input}
    for name in shape_tensors - still_read:
        graph.initializer.remove(initializers.pop(name))
        for value in list(graph.input):
            if value.name == name:
                graph.input.remove(value)
    for name, shape in weights.items():
        if name not in initializers:
            tensor = graph.initializer.add()  # append() would store a copy
            tensor.CopyFrom(numpy_helper.from_array(numpy.zeros(shape, numpy.float32), name))
            initializers[name] = tensor
            if model.ir_version < 4 and name not in listed_inputs:  # IR < 4 lists every initializer as an input
                graph.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape))

    # 2. The final Softmax removed; its input becomes the output `logits`.
    output = graph.output[0]
    producer = next(n for n in graph.node if output.name in n.output)
    removed_softmax = False
    if producer.op_type == "Softmax":
        logits = producer.input[0]
        graph.node.remove(producer)
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == logits:
                    node.output[i] = "logits"
            for i, name in enumerate(node.input):
                if name == logits:
                    node.input[i] = "logits"
        removed_softmax = True
    else:
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == output.name:
                    node.output[i] = "logits"
    dims = [d.dim_value for d in output.type.tensor_type.shape.dim]
    graph.output.remove(output)
    graph.output.append(helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, dims or None))

    # 3. Random values by role (shapes as each consumer sees them, from ONNX's shape inference).
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    uses = consumers_of(graph)
    roles, kept = {}, []
    for index, (name, shape) in enumerate(weights.items()):
        found = roles_of(name, uses)
        if not found:
            kept.append(f"{name} (unused)")
            continue
        rng = numpy.random.default_rng([seed, index])
        values, how = random_values(found[0], shape, shapes, rng)
        roles[how.split("(")[0]] = roles.get(how.split("(")[0], 0) + 1
        if values is None:
            kept.append(f"{name} {how}")
            continue
        replacement = numpy_helper.from_array(values.astype(numpy.float32), name)
        initializers[name].CopyFrom(replacement)
    onnx.checker.check_model(model, full_check=False) if model.ByteSize() < 2_000_000_000 else None

    # 4. A seeded random input and ONNX Runtime's logits.
    data = [i for i in graph.input if i.name not in initializers]
    assert len(data) == 1, f"expected one data input, found {[i.name for i in data]}"
    input_shape = [d.dim_value if d.dim_value > 0 else 1 for d in data[0].type.tensor_type.shape.dim]
    x = numpy.random.default_rng([seed, 1_000_000]).standard_normal(input_shape).astype(numpy.float32)
    stem = os.path.basename(path)[: -len(".onnx")]
    folder = os.path.join(out, stem)
    os.makedirs(folder, exist_ok=True)
    model_path = os.path.join(folder, "model.onnx")
    onnx.save(model, model_path)
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {data[0].name: x})
    numpy.save(os.path.join(folder, "input.npy"), x)
    numpy.save(os.path.join(folder, "logits.npy"), logits)
    meta = {"source": path, "seed": seed, "input": data[0].name, "output": "logits",
            "input_shape": input_shape, "logits_shape": list(logits.shape),
            "softmax_removed": removed_softmax, "constant_of_shape_replaced": len(removed_nodes),
            "weights": len(weights), "roles": roles, "kept": kept,
            "logits_max_abs": float(numpy.abs(logits).max()), "logits_std": float(logits.std()),
            "onnxruntime": onnxruntime.__version__}
    with open(os.path.join(folder, "meta.json"), "w") as file:
        json.dump(meta, file, indent=1)
    return folder, meta


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--only", help="comma-separated model names (resnet50,vgg19,...)")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    paths = light_models()
    if arguments.only:
        wanted = arguments.only.split(",")
        paths = [p for p in paths if any(os.path.basename(p) == f"light_{w}.onnx" for w in wanted)]
    for path in paths:
        started = time.monotonic()
        folder, meta = make_copy(path, arguments.out, arguments.seed)
        print(f"{os.path.basename(folder)}: {meta['weights']} weights ({meta['constant_of_shape_replaced']} were "
              f"ConstantOfShape), roles {meta['roles']}, softmax removed: {meta['softmax_removed']}, logits "
              f"{meta['logits_shape']} max |.| {meta['logits_max_abs']:.3g} std {meta['logits_std']:.3g}; "
              f"kept {meta['kept']} ({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
