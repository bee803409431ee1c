"""Makes the small ONNX fixtures the Swift tests import (Tests/LaminaTests/Fixtures/onnx/NAME/).

Each folder holds model.onnx, input_K.npy for the graph's inputs (in order) and output_K.npy for its
outputs, the reference computed by ONNX Runtime (and, for the PyTorch models, checked against
PyTorch). Run with the venv python: /work/venv/bin/python tools/make_onnx_fixtures.py
"""

import os
import sys

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(__file__), "..", "Tests", "LaminaTests", "Fixtures", "onnx")
rng = np.random.default_rng(17)


def save(name, model, inputs, torch_outputs=None, reference=None):
    folder = os.path.join(ROOT, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    if isinstance(model, onnx.ModelProto):
        model = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(model)
        onnx.save(model, path)
    if reference is not None:
        # ONNX Runtime has no kernels for opset 6's Add and Mul: numpy computes the reference.
        outputs = reference(*inputs)
    else:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        feeds = {i.name: x for i, x in zip(session.get_inputs(), inputs)}
        outputs = session.run(None, feeds)
    if torch_outputs is not None:
        for ours, theirs in zip(outputs, torch_outputs):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    for k, x in enumerate(inputs):
        np.save(os.path.join(folder, f"input_{k}.npy"), x)
    for k, y in enumerate(outputs):
        np.save(os.path.join(folder, f"output_{k}.npy"), y)
    print(name, os.path.getsize(path), "bytes,", [o.shape for o in outputs])


def cnn_dynamic_batch():
    """A small CNN exported from PyTorch with a dynamic batch: Conv, BatchNormalization (kept:
    no constant folding), ReLU, MaxPool in ceil mode, AveragePool, `x.view(x.size(0), -1)` (a
    Shape-Gather-Unsqueeze-Concat-Reshape chain), Gemm, Softmax."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 6, 3, padding=1)
            self.bn1 = torch.nn.BatchNorm2d(6)
            self.conv2 = torch.nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2, bias=False)
            self.fc = torch.nn.Linear(8 * 2 * 2, 5)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.nn.functional.max_pool2d(x, 2, ceil_mode=True)
            x = self.conv2(x)
            x = torch.nn.functional.avg_pool2d(x, 2)
            x = x.view(x.size(0), -1)
            return torch.softmax(self.fc(x), dim=1)

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.bn1.weight.uniform_(0.5, 1.5)
        net.bn1.bias.uniform_(-0.5, 0.5)
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
    x = rng.standard_normal((3, 3, 17, 17)).astype(np.float32)
    folder = os.path.join(ROOT, "cnn_dynamic_batch")
    os.makedirs(folder, exist_ok=True)
    torch.onnx.export(
        net, torch.from_numpy(x), os.path.join(folder, "model.onnx"), input_names=["image"],
        output_names=["probabilities"], dynamic_axes={"image": {0: "N"}, "probabilities": {0: "N"}},
        opset_version=11, do_constant_folding=False, dynamo=False)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    save("cnn_dynamic_batch", None, [x], [expected])


def initializer(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def legacy_opset6():
    """Opset 6: Add/Mul with `broadcast: 1, axis: 1`, Softmax's 2-D coercion on a 4-D input,
    Flatten at axis 2, Squeeze/Unsqueeze/Slice/Split attributes, Gemm with C broadcast."""
    nodes = [
        helper.make_node("Add", ["x", "bias"], ["added"], broadcast=1, axis=1, name="add"),
        helper.make_node("Mul", ["added", "scale"], ["scaled"], broadcast=1, axis=1, name="mul"),
        helper.make_node("Softmax", ["scaled"], ["soft"], axis=1, name="softmax"),
        helper.make_node("Flatten", ["soft"], ["flat"], axis=2, name="flatten"),
        helper.make_node("Slice", ["flat"], ["sliced"], starts=[1, 0], ends=[1000, -2], axes=[0, 1],
                         name="slice"),
        helper.make_node("Split", ["sliced"], ["part_a", "part_b"], axis=0, split=[2, 3], name="split"),
        helper.make_node("Unsqueeze", ["part_a"], ["part_a_4d"], axes=[0], name="unsqueeze"),
        helper.make_node("Squeeze", ["part_a_4d"], ["part_a_3d"], axes=[0], name="squeeze"),
        helper.make_node("Sum", ["part_a_3d", "part_a_3d"], ["doubled"], name="sum"),
        helper.make_node("Flatten", ["part_b"], ["rows"], axis=1, name="flatten_b"),
        helper.make_node("Gemm", ["rows", "weight", "c"], ["gemm"], transB=1, alpha=0.5, beta=2.0,
                         broadcast=1, name="gemm"),
        helper.make_node("LogSoftmax", ["gemm"], ["log_probabilities"], name="log_softmax"),
        helper.make_node("Relu", ["doubled"], ["relu"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "legacy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5]),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("weight", TensorProto.FLOAT, [4, 18]),
         helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("log_probabilities", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("relu", TensorProto.FLOAT, [2, 18])],
        [initializer("bias", rng.standard_normal(3).astype(np.float32)),
         initializer("scale", rng.standard_normal((3, 4)).astype(np.float32)),
         initializer("weight", rng.standard_normal((4, 18)).astype(np.float32)),
         initializer("c", rng.standard_normal(4).astype(np.float32))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)],
                              producer_name="make_onnx_fixtures")
    model.ir_version = 3
    weights = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}

    def reference(x):
        x = x.astype(np.float64)
        added = x + weights["bias"].reshape(1, 3, 1, 1)
        scaled = added * weights["scale"].reshape(1, 3, 4, 1)
        rows = scaled.reshape(2, 60)
        soft = np.exp(rows - rows.max(axis=1, keepdims=True))
        soft = (soft / soft.sum(axis=1, keepdims=True)).reshape(6, 20)
        sliced = soft[1:, 0:18]
        relu = np.maximum(2 * sliced[:2], 0)
        gemm = 0.5 * sliced[2:] @ weights["weight"].T + 2.0 * weights["c"]
        shifted = gemm - gemm.max(axis=1, keepdims=True)
        log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return [log_probabilities.astype(np.float32), relu.astype(np.float32)]

    save("legacy_opset6", model, [rng.standard_normal((2, 3, 4, 5)).astype(np.float32)],
         reference=reference)


def ops_opset13():
    """Opset 13: arithmetic and activations, variadic Max/Min, Transpose, Concat, axes as inputs,
    Slice with a negative step, Split sizes as an input, reductions, ConstantOfShape of an
    initializer's shape, Cast, MatMul (batched), ConvTranspose, asymmetric pools, GlobalAveragePool."""
    f = TensorProto.FLOAT
    i64 = lambda name, values: initializer(name, np.array(values, dtype=np.int64))
    nodes = [
        helper.make_node("ConvTranspose", ["x", "deconv_w", "deconv_b"], ["up"], strides=[2, 2],
                         pads=[1, 0, 0, 1], output_padding=[1, 0], name="deconv"),
        helper.make_node("MaxPool", ["up"], ["pooled"], kernel_shape=[3, 2], strides=[2, 1],
                         pads=[1, 0, 1, 1], name="maxpool"),
        helper.make_node("AveragePool", ["pooled"], ["averaged"], kernel_shape=[2, 2],
                         pads=[0, 1, 1, 0], name="avgpool"),
        helper.make_node("Shape", ["averaged"], ["shape_of"], name="shape"),
        helper.make_node("ConstantOfShape", ["shape_of"], ["halves"],
                         value=helper.make_tensor("v", f, [1], [0.5]), name="fill"),
        helper.make_node("Add", ["averaged", "halves"], ["shifted"], name="add_fill"),
        helper.make_node("Abs", ["shifted"], ["absolute"], name="abs"),
        helper.make_node("Constant", [], ["one"], value=helper.make_tensor("one", f, [], [1.0]),
                         name="constant"),
        helper.make_node("Add", ["absolute", "one"], ["positive"], name="add_one"),
        helper.make_node("Log", ["positive"], ["logged"], name="log"),
        helper.make_node("Sqrt", ["positive"], ["rooted"], name="sqrt"),
        helper.make_node("Pow", ["rooted", "exponent"], ["powered"], name="pow"),
        helper.make_node("Div", ["logged", "powered"], ["ratio"], name="div"),
        helper.make_node("Sub", ["ratio", "shifted"], ["difference"], name="sub"),
        helper.make_node("Neg", ["difference"], ["negated"], name="neg"),
        helper.make_node("Exp", ["negated"], ["exponential"], name="exp"),
        helper.make_node("Sigmoid", ["difference"], ["sig"], name="sigmoid"),
        helper.make_node("Tanh", ["difference"], ["tan"], name="tanh"),
        helper.make_node("Softplus", ["difference"], ["soft"], name="softplus"),
        helper.make_node("LeakyRelu", ["difference"], ["leaky"], alpha=0.2, name="leaky"),
        helper.make_node("Max", ["sig", "tan", "leaky"], ["largest"], name="max"),
        helper.make_node("Min", ["soft", "exponential"], ["smallest"], name="min"),
        helper.make_node("Sum", ["largest", "smallest", "tan"], ["total"], name="sum"),
        helper.make_node("Identity", ["total"], ["same"], name="identity"),
        helper.make_node("Transpose", ["same"], ["transposed"], perm=[0, 2, 3, 1], name="transpose"),
        helper.make_node("Concat", ["transposed", "transposed"], ["joined"], axis=-1, name="concat"),
        helper.make_node("Slice", ["joined", "starts", "ends", "axes", "steps"], ["sliced"],
                         name="slice"),
        helper.make_node("Split", ["sliced", "split"], ["left", "right"], axis=3, name="split"),
        helper.make_node("Unsqueeze", ["left", "axes_0"], ["left_5d"], name="unsqueeze"),
        helper.make_node("Squeeze", ["left_5d", "axes_0"], ["left_4d"], name="squeeze"),
        helper.make_node("ReduceSum", ["left_4d", "axes_1"], ["summed"], keepdims=1, name="reduce_sum"),
        helper.make_node("ReduceMean", ["right"], ["mean"], axes=[1, 2], keepdims=0, name="reduce_mean"),
        helper.make_node("Cast", ["mean"], ["mean_f64"], to=TensorProto.DOUBLE, name="cast"),
        helper.make_node("Cast", ["mean_f64"], ["mean_f32"], to=TensorProto.FLOAT, name="cast_back"),
        helper.make_node("MatMul", ["summed", "matrix"], ["product"], name="matmul"),
        helper.make_node("GlobalAveragePool", ["up"], ["global"], name="global_pool"),
        helper.make_node("Softmax", ["product"], ["probabilities"], axis=1, name="softmax"),
    ]
    graph = helper.make_graph(
        nodes, "ops13",
        [helper.make_tensor_value_info("x", f, ["batch", 2, 4, 3])],
        [helper.make_tensor_value_info("probabilities", f, None),
         helper.make_tensor_value_info("mean_f32", f, None),
         helper.make_tensor_value_info("global", f, None)],
        [initializer("deconv_w", (0.5 * rng.standard_normal((2, 3, 3, 3))).astype(np.float32)),
         initializer("deconv_b", rng.standard_normal(3).astype(np.float32)),
         initializer("exponent", np.array(1.5, dtype=np.float32)),
         i64("starts", [-1, 0]), i64("ends", [-1000, 1000]), i64("axes", [3, 1]), i64("steps", [-1, 2]),
         i64("split", [2, 4]), i64("axes_0", [0]), i64("axes_1", [1]),
         initializer("matrix", rng.standard_normal((2, 4)).astype(np.float32))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="make_onnx_fixtures")
    model.ir_version = 7
    save("ops_opset13", model, [rng.standard_normal((2, 2, 4, 3)).astype(np.float32)])


def ops_opset20():
    """Opset 20 with a dynamic batch: Conv with SAME_UPPER, MaxPool with dilation, batch norm on
    [N, C, L] and [N, C], Dropout's ratio as an input, Split's num_outputs, Expand, Mean, Sign,
    Reciprocal, Gelu (opset 20), ReduceMax, GlobalMaxPool, and shape
    arithmetic: x.view(N, C * H, -1) from Shape, Gather, Mul, Concat."""
    f = TensorProto.FLOAT
    i64 = lambda name, values: initializer(name, np.array(values, dtype=np.int64))
    channels = 4
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["conv"], auto_pad="SAME_UPPER", strides=[2, 2],
                         name="conv"),
        helper.make_node("MaxPool", ["conv"], ["pooled"], kernel_shape=[2, 2], dilations=[2, 1],
                         pads=[1, 0, 1, 1], name="pool"),
        helper.make_node("GlobalMaxPool", ["pooled"], ["global_max"], name="global_max"),
        helper.make_node("Shape", ["pooled"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "index_0"], ["batch"], axis=0, name="gather_n"),
        helper.make_node("Gather", ["shape", "index_1"], ["c"], axis=0, name="gather_c"),
        helper.make_node("Gather", ["shape", "index_2"], ["h"], axis=0, name="gather_h"),
        helper.make_node("Mul", ["c", "h"], ["ch"], name="mul_ch"),
        helper.make_node("Unsqueeze", ["batch", "axes_0"], ["batch_1d"], name="unsqueeze_n"),
        helper.make_node("Unsqueeze", ["ch", "axes_0"], ["ch_1d"], name="unsqueeze_ch"),
        helper.make_node("Concat", ["batch_1d", "ch_1d", "minus_one"], ["view_shape"], axis=0,
                         name="concat_shape"),
        helper.make_node("Reshape", ["pooled", "view_shape"], ["viewed"], name="view"),
        helper.make_node("BatchNormalization", ["viewed", "bn3_scale", "bn3_bias", "bn3_mean", "bn3_var"],
                         ["normalized3"], epsilon=1e-3, momentum=0.8, name="bn3"),
        helper.make_node("Dropout", ["normalized3", "ratio"], ["dropped"], name="dropout"),
        helper.make_node("Split", ["dropped"], ["half_a", "half_b"], axis=1, num_outputs=2, name="split"),
        helper.make_node("Mean", ["half_a", "half_b", "half_a"], ["averaged"], name="mean"),
        helper.make_node("Sign", ["averaged"], ["signs"], name="sign"),
        helper.make_node("Abs", ["averaged"], ["magnitude"], name="abs"),
        helper.make_node("Add", ["magnitude", "one"], ["shifted"], name="add_one"),
        helper.make_node("Reciprocal", ["shifted"], ["inverse"], name="reciprocal"),
        helper.make_node("Mul", ["inverse", "signs"], ["signed"], name="mul_sign"),
        helper.make_node("Expand", ["bias_row", "expand_shape"], ["expanded"], name="expand"),
        helper.make_node("Add", ["signed", "expanded"], ["biased"], name="add_bias"),
        helper.make_node("ReduceMax", ["biased", "axes_2"], ["row_max"], keepdims=0, name="reduce_max"),
        helper.make_node("BatchNormalization", ["row_max", "bn2_scale", "bn2_bias", "bn2_mean", "bn2_var"],
                         ["normalized2"], name="bn2"),
        helper.make_node("Gelu", ["normalized2"], ["activated"], approximate="tanh", name="gelu"),
    ]
    graph = helper.make_graph(
        nodes, "ops20",
        [helper.make_tensor_value_info("x", f, ["N", 3, 7, 6])],
        [helper.make_tensor_value_info("activated", f, None),
         helper.make_tensor_value_info("global_max", f, None)],
        [initializer("conv_w", (0.4 * rng.standard_normal((channels, 3, 3, 2))).astype(np.float32)),
         i64("index_0", 0), i64("index_1", 1), i64("index_2", 2), i64("axes_0", [0]),
         i64("axes_2", [2]), i64("minus_one", [-1]),
         initializer("bn3_scale", rng.uniform(0.5, 1.5, 16).astype(np.float32)),
         initializer("bn3_bias", rng.standard_normal(16).astype(np.float32)),
         initializer("bn3_mean", rng.standard_normal(16).astype(np.float32)),
         initializer("bn3_var", rng.uniform(0.5, 2, 16).astype(np.float32)),
         initializer("ratio", np.array(0.25, dtype=np.float32)),
         initializer("one", np.array(1.0, dtype=np.float32)),
         initializer("bias_row", rng.standard_normal((1, 1, 3)).astype(np.float32)),
         i64("expand_shape", [8, 1]),
         initializer("bn2_scale", rng.uniform(0.5, 1.5, 8).astype(np.float32)),
         initializer("bn2_bias", rng.standard_normal(8).astype(np.float32)),
         initializer("bn2_mean", rng.standard_normal(8).astype(np.float32)),
         initializer("bn2_var", rng.uniform(0.5, 2, 8).astype(np.float32))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)],
                              producer_name="make_onnx_fixtures")
    model.ir_version = 9
    save("ops_opset20", model, [rng.standard_normal((2, 3, 7, 6)).astype(np.float32)])


def escaped_names():
    """Names a .lam file cannot use as they are: an input `0`, nodes `a/b`, `model` and one with a
    newline, an output `model`, an initializer `input` and a graph named with a quote."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Mul", ["0", "input"], ["a/b"], name="a/b"),
        helper.make_node("Relu", ["a/b"], ["line\nbreak"], name="line\nbreak // */"),
        helper.make_node("Add", ["line\nbreak", "0"], ["model"], name="model"),
    ]
    graph = helper.make_graph(
        nodes, "graph \"quoted\"\nname",
        [helper.make_tensor_value_info("0", f, [None, 4])],
        [helper.make_tensor_value_info("model", f, None)],
        [initializer("input", rng.standard_normal(4).astype(np.float32))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="make_onnx_fixtures\nsecond line")
    model.ir_version = 7
    save("escaped_names", model, [rng.standard_normal((3, 4)).astype(np.float32)])


def spatial_1d():
    """1-D ops from PyTorch with a dynamic batch (lowered to the 2-D layers on [N, C, 1, L]):
    Conv1d with padding, BatchNormalization on [N, C, L], MaxPool1d with dilation and padding, a
    grouped strided dilated Conv1d without bias, AvgPool1d in ceil mode, ConvTranspose1d."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv1d(3, 6, 3, padding=1)
            self.bn1 = torch.nn.BatchNorm1d(6)
            self.conv2 = torch.nn.Conv1d(6, 4, 2, stride=2, dilation=2, groups=2, bias=False)
            self.up = torch.nn.ConvTranspose1d(4, 2, 3, stride=2, padding=1, output_padding=1)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.nn.functional.max_pool1d(x, 3, stride=2, padding=1, dilation=2)
            x = self.conv2(x)
            x = torch.nn.functional.avg_pool1d(x, 2, ceil_mode=True)
            return self.up(x)

    export_pytorch("spatial_1d", Net(), rng.standard_normal((3, 3, 23)).astype(np.float32),
                   ["bn1"])


def spatial_3d():
    """3-D ops from PyTorch with a dynamic batch: Conv3d with stride and padding,
    BatchNormalization on [N, C, D, H, W], MaxPool3d with padding, a grouped Conv3d without bias,
    AvgPool3d not counting its padding, ConvTranspose3d, InstanceNormalization."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv3d(2, 4, (2, 3, 3), stride=(1, 2, 2), padding=(1, 1, 0))
            self.bn1 = torch.nn.BatchNorm3d(4)
            self.conv2 = torch.nn.Conv3d(4, 4, 2, groups=2, bias=False)
            self.up = torch.nn.ConvTranspose3d(4, 3, 2, stride=2, padding=(1, 0, 0))
            self.norm = torch.nn.InstanceNorm3d(3, affine=True)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.nn.functional.max_pool3d(x, 2, stride=(1, 2, 2), padding=1)
            x = self.conv2(x)
            x = torch.nn.functional.avg_pool3d(x, 3, stride=1, padding=1, count_include_pad=False)
            return self.norm(self.up(x))

    export_pytorch("spatial_3d", Net(), rng.standard_normal((2, 2, 5, 13, 13)).astype(np.float32),
                   ["bn1", "norm"])


def export_pytorch(name, net, x, normalizations):
    """Exports `net` (with random affine weights and statistics in `normalizations`) at opset 11
    with a dynamic batch, and saves it with its input and ONNX Runtime's output, checked against
    PyTorch's."""
    torch.manual_seed(0)
    net = net.eval()
    with torch.no_grad():
        for attribute in normalizations:
            module = getattr(net, attribute)
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.5, 0.5)
            if module.running_mean is not None:
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    folder = os.path.join(ROOT, name)
    os.makedirs(folder, exist_ok=True)
    torch.onnx.export(
        net, torch.from_numpy(x), os.path.join(folder, "model.onnx"), input_names=["x"],
        output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=11,
        do_constant_folding=False, dynamo=False)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    save(name, None, [x], [expected])


def lrn_instance_norm():
    """LRN (AlexNet's size 5, and size 3; ONNX Runtime refuses even sizes) and InstanceNormalization on NCHW, opset 13."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("LRN", ["x"], ["lrn5"], size=5, alpha=1e-3, beta=0.75, bias=2.0,
                         name="lrn5"),
        helper.make_node("LRN", ["lrn5"], ["lrn3"], size=3, alpha=0.3, beta=0.5, name="lrn3"),
        helper.make_node("InstanceNormalization", ["lrn3", "scale", "shift"], ["normalized"],
                         epsilon=1e-3, name="instance_norm"),
    ]
    graph = helper.make_graph(
        nodes, "norms",
        [helper.make_tensor_value_info("x", f, ["batch", 7, 5, 6])],
        [helper.make_tensor_value_info("normalized", f, None),
         helper.make_tensor_value_info("lrn5", f, None)],
        [initializer("scale", rng.uniform(0.5, 1.5, 7).astype(np.float32)),
         initializer("shift", rng.standard_normal(7).astype(np.float32))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="make_onnx_fixtures")
    model.ir_version = 7
    save("lrn_instance_norm", model, [(3 * rng.standard_normal((2, 7, 5, 6))).astype(np.float32)])


def pytorch_indexing_opset9():
    """A PyTorch model exported at opset 9: Embedding (Gather of an initializer by int64 token ids,
    a graph input), ReflectionPad2d and ReplicationPad2d (Pad with attributes), PReLU (a
    per-channel slope), ELU, SELU, Hardtanh (Clip with attributes), repeat (Expand and Tile) and
    indexing a computed tensor with a list (Gather of a model tensor, negative index). Softsign
    exports as x / (1 + |x|) at this opset; indexing_opset13 has the op."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(11, 6)
            self.conv = torch.nn.Conv2d(2, 3, 3)
            self.prelu = torch.nn.PReLU(3, init=0.1)
            self.reflect = torch.nn.ReflectionPad2d((1, 2, 2, 1))
            self.edge = torch.nn.ReplicationPad2d((2, 0, 1, 1))

        def forward(self, ids, image):
            e = self.embedding(ids)  # [N, T, 6]
            e = torch.nn.functional.elu(e, alpha=0.7) + torch.nn.functional.selu(e)
            e = torch.nn.functional.softsign(e).repeat(1, 2, 1)
            h = self.prelu(self.conv(self.reflect(image)))
            h = torch.nn.functional.hardtanh(self.edge(h), -0.5, 0.75)
            picked = h[:, :, :, [0, -1, 2]]
            return e, picked

    torch.manual_seed(1)
    net = Net().eval()
    with torch.no_grad():
        net.prelu.weight.uniform_(-0.5, 0.5)
    ids = rng.integers(0, 11, size=(2, 5)).astype(np.int64)
    image = rng.standard_normal((2, 2, 7, 6)).astype(np.float32)
    folder = os.path.join(ROOT, "pytorch_indexing_opset9")
    os.makedirs(folder, exist_ok=True)
    torch.onnx.export(
        net, (torch.from_numpy(ids), torch.from_numpy(image)), os.path.join(folder, "model.onnx"),
        input_names=["ids", "image"], output_names=["embedded", "picked"],
        dynamic_axes={"ids": {0: "N"}, "image": {0: "N"}, "embedded": {0: "N"}, "picked": {0: "N"}},
        opset_version=9, do_constant_folding=False, dynamo=False)
    with torch.no_grad():
        expected = [y.numpy() for y in net(torch.from_numpy(ids), torch.from_numpy(image))]
    save("pytorch_indexing_opset9", None, [ids, image], expected)


def indexing_opset13():
    """Opset 13: Gather of a model tensor along axes 0 and 2 by an int64 input and by static
    negative indices, Pad with pads and the fill as inputs (constant, reflect, edge, negative
    pads cropping), Tile with repeats as an input, Clip with optional bound inputs (min only), PRelu
    with a broadcasting slope, Elu, Selu, Softsign and HardSigmoid with their attributes."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Gather", ["x", "ids"], ["rows"], axis=0, name="gather_rows"),
        helper.make_node("Gather", ["x", "columns"], ["cols"], axis=2, name="gather_columns"),
        helper.make_node("Pad", ["cols", "pads_constant", "fill"], ["padded"], mode="constant",
                         name="pad_constant"),
        helper.make_node("Pad", ["x", "pads_reflect"], ["reflected"], mode="reflect",
                         name="pad_reflect"),
        helper.make_node("Pad", ["x", "pads_edge"], ["edged"], mode="edge", name="pad_edge"),
        helper.make_node("Tile", ["rows", "repeats"], ["tiled"], name="tile"),
        helper.make_node("Clip", ["tiled", "low"], ["clipped"], name="clip_min_only"),
        helper.make_node("Clip", ["reflected", "low", "high"], ["clipped_both"], name="clip"),
        helper.make_node("PRelu", ["edged", "slope"], ["prelu"], name="prelu"),
        helper.make_node("Elu", ["prelu"], ["elu"], alpha=0.5, name="elu"),
        helper.make_node("Selu", ["elu"], ["selu"], name="selu"),
        helper.make_node("Softsign", ["padded"], ["softsign"], name="softsign"),
        helper.make_node("HardSigmoid", ["clipped_both"], ["hard"], alpha=0.3, beta=0.4,
                         name="hard_sigmoid"),
    ]
    graph = helper.make_graph(
        nodes, "indexing",
        [helper.make_tensor_value_info("x", f, [4, 3, 5]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("clipped", f, None),
         helper.make_tensor_value_info("softsign", f, None),
         helper.make_tensor_value_info("selu", f, None),
         helper.make_tensor_value_info("hard", f, None)],
        [initializer("columns", np.array([4, -1, 0, 2], dtype=np.int64)),
         initializer("pads_constant", np.array([0, 1, -1, 1, 0, 2], dtype=np.int64)),
         initializer("fill", np.array(0.25, dtype=np.float32)),
         initializer("pads_reflect", np.array([0, 2, 3, 0, 1, 4], dtype=np.int64)),
         initializer("pads_edge", np.array([1, 0, 2, 0, 2, -1], dtype=np.int64)),
         initializer("repeats", np.array([1, 2, 1, 3], dtype=np.int64)),
         initializer("low", np.array(-0.4, dtype=np.float32)),
         initializer("high", np.array(0.6, dtype=np.float32)),
         initializer("slope", rng.uniform(-0.5, 0.5, (5, 1)).astype(np.float32))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="make_onnx_fixtures")
    model.ir_version = 7
    save("indexing_opset13", model,
         [rng.standard_normal((4, 3, 5)).astype(np.float32),
          rng.integers(-4, 4, size=(2, 3)).astype(np.int64)])


if __name__ == "__main__":
    for make in [cnn_dynamic_batch, legacy_opset6, ops_opset13, ops_opset20, escaped_names,
                 spatial_1d, spatial_3d, lrn_instance_norm, pytorch_indexing_opset9,
                 indexing_opset13]:
        if len(sys.argv) > 1 and make.__name__ not in sys.argv[1:]:
            continue
        make()
