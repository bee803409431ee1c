import LaminaSupport

extension ONNXTranslators {
  /// Conv, ConvTranspose, MaxPool and AveragePool over 1, 2 or 3 spatial axes (by the input's
  /// rank: 2-D as the 2-D layers and ops, 1-D lowered to them on `[N, C, 1, L]`, 3-D as the
  /// `conv3d`, `conv_transpose3d`, `max_pool3d` and `avg_pool3d` ops), InstanceNormalization and LRN.
  static let spatialTranslators: [ONNXTranslator] = [
    ONNXTranslator(["Conv"]) { try spatialConvolution(&$0, transposed: false) },
    ONNXTranslator(["ConvTranspose"]) { try spatialConvolution(&$0, transposed: true) },
    ONNXTranslator(["MaxPool"]) { try spatialPool(&$0, maximum: true) },
    ONNXTranslator(["AveragePool"]) { try spatialPool(&$0, maximum: false) },
    ONNXTranslator(["InstanceNormalization"], translateInstanceNorm),
    ONNXTranslator(["LRN"], translateLRN),
  ]

  // MARK: Attributes over any number of spatial axes

  /// `rank` sizes from an attribute (`strides`, `dilations`), each in 1...2^20.
  static func spatialAttribute(
    _ context: ONNXNodeContext, _ name: String, rank: Int, default value: Int = 1
  ) throws -> [Int] {
    let values = context.ints(name) ?? Array(repeating: value, count: rank)
    guard values.count == rank, values.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }) else {
      throw context.error("\(name) \(values) must be \(rank) sizes from 1 to 2^20")
    }
    return values
  }

  /// Explicit padding (every start, then every end, ONNX's order) from `pads` or `auto_pad`, over
  /// `input.count` spatial axes.
  static func resolveSpatialPadding(
    _ context: ONNXNodeContext, input: [Int], kernel: [Int], stride: [Int], dilation: [Int]
  ) throws -> [Int] {
    let rank = input.count
    let autoPad = context.string("auto_pad") ?? "NOTSET"
    switch autoPad {
    case "NOTSET", "":
      let pads = context.ints("pads") ?? Array(repeating: 0, count: 2 * rank)
      guard pads.count == 2 * rank, pads.allSatisfy({ $0 >= 0 && $0 <= 1 << 20 }) else {
        throw context.error("pads \(pads) must be \(2 * rank) sizes, none negative")
      }
      return pads
    case "VALID":
      return Array(repeating: 0, count: 2 * rank)
    case "SAME_UPPER", "SAME_LOWER":
      var before: [Int] = []
      var after: [Int] = []
      for axis in 0..<rank {
        let output = (input[axis] + stride[axis] - 1) / stride[axis]
        let total = max(
          (output - 1) * stride[axis] + (kernel[axis] - 1) * dilation[axis] + 1 - input[axis], 0)
        let small = total / 2
        before.append(autoPad == "SAME_UPPER" ? small : total - small)
        after.append(autoPad == "SAME_UPPER" ? total - small : small)
      }
      return before + after
    default:
      throw context.error(
        "auto_pad \"\(escapedText(autoPad))\" is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    }
  }

  /// The static spatial sizes of a `[N, C, spatial...]` input.
  static func staticSpatialSizes(_ context: ONNXNodeContext, _ x: TensorExpression, _ what: String)
    throws -> [Int]
  {
    let sizes = x.shape.dropFirst(2).compactMap(\.staticValue)
    guard x.rank >= 3, sizes.count == x.rank - 2 else {
      throw context.error("\(what) needs static spatial sizes, the input is \(x.shape)")
    }
    return sizes
  }

  /// The padding (every start, then every end) of a transposed convolution that crops its full
  /// result to `output_shape`, or to `input · stride` under a SAME `auto_pad`; nil when neither is
  /// asked for (the padding is then `pads`' or `auto_pad`'s).
  static func transposedPadding(
    _ context: ONNXNodeContext, input: [Int], kernel: [Int], stride: [Int], dilation: [Int],
    outputPadding: [Int]
  ) throws -> [Int]? {
    let rank = input.count
    let autoPad = context.string("auto_pad") ?? "NOTSET"
    let declared = context.ints("output_shape")
    guard
      let target = declared.map({ Array($0.suffix(rank)) })
        ?? (autoPad.hasPrefix("SAME") ? zip(input, stride).map { $0 * $1 } : nil)
    else { return nil }
    guard target.count == rank, target.allSatisfy({ $0 >= 1 && $0 <= 1 << 40 }) else {
      throw context.error("output_shape \(declared ?? target) must end with \(rank) sizes")
    }
    var before: [Int] = []
    var after: [Int] = []
    for axis in 0..<rank {
      let total =
        stride[axis] * (input[axis] - 1) + outputPadding[axis]
        + (kernel[axis] - 1) * dilation[axis] + 1 - target[axis]
      guard total >= 0 else {
        throw context.error("output_shape \(target) is larger than the full result")
      }
      let small = total / 2
      before.append(autoPad == "SAME_UPPER" ? small : total - small)
      after.append(autoPad == "SAME_UPPER" ? total - small : small)
    }
    return before + after
  }

  // MARK: Convolution

  /// Conv and ConvTranspose by the input's rank: [N, C, H, W] as the `conv2d` / `conv_transpose2d`
  /// layers (the node's weight and bias under the layer's names, `SCOPE.weight` and `SCOPE.bias`),
  /// [N, C, L] through the same layers on [N, C, 1, L], [N, C, D, H, W] as the `conv3d` /
  /// `conv_transpose3d` ops.
  @Sendable static func spatialConvolution(_ context: inout ONNXNodeContext, transposed: Bool)
    throws -> [ImportedValue]
  {
    let what = transposed ? "ConvTranspose" : "Conv"
    let x = try context.tensor(0)
    guard (3...5).contains(x.rank) else {
      throw context.error(
        "\(what) over \(x.rank - 2) spatial dimensions: lamina import translates 1-, 2- and 3-D convolutions, the input is \(x.shape)"
      )
    }
    let spatial = try staticSpatialSizes(context, x, what)
    let rank = spatial.count
    let weight = try context.constant(1, "the \(what) weight").converted(to: x.dtype)
    guard x.dtype.isFloatingPoint, weight.rank == rank + 2 else {
      throw context.error("the \(what) weight has shape \(weight.shape), expected \(rank + 2) axes")
    }
    let groups = try context.int("group", default: 1)
    let kernel = Array(weight.shape.suffix(rank))
    if let declared = context.ints("kernel_shape"), declared != kernel {
      throw context.error("kernel_shape \(declared) differs from the weight's \(kernel)")
    }
    let stride = try spatialAttribute(context, "strides", rank: rank)
    let dilation = try spatialAttribute(context, "dilations", rank: rank)
    guard let channels = x.shape[1].staticValue else {
      throw context.error("\(what) needs a static channel count, the input is \(x.shape)")
    }
    guard groups >= 1, groups <= channels, channels % groups == 0 else {
      throw context.error("group \(groups) does not divide the \(channels) input channels")
    }
    let filters = transposed ? weight.shape[1] * groups : weight.shape[0]
    let expectedInputChannels = transposed ? weight.shape[0] : weight.shape[1] * groups
    guard expectedInputChannels == channels else {
      throw context.error(
        "the weight \(weight.shape) with group \(groups) expects \(expectedInputChannels) input channels, the input has \(channels)"
      )
    }
    var padding: [Int]
    var outputPadding = Array(repeating: 0, count: rank)
    var output: [Int] = []
    if transposed {
      outputPadding = context.ints("output_padding") ?? outputPadding
      guard outputPadding.count == rank,
        outputPadding.allSatisfy({ $0 >= 0 && $0 <= 1 << 20 })
      else {
        throw context.error("output_padding \(outputPadding) must be \(rank) sizes")
      }
      padding =
        try transposedPadding(
          context, input: spatial, kernel: kernel, stride: stride, dilation: dilation,
          outputPadding: outputPadding)
        ?? resolveSpatialPadding(
          context, input: spatial, kernel: kernel, stride: stride, dilation: dilation)
      for axis in 0..<rank {
        output.append(
          (spatial[axis] - 1) * stride[axis] - padding[axis] - padding[axis + rank]
            + dilation[axis] * (kernel[axis] - 1) + 1 + outputPadding[axis])
      }
    } else {
      padding = try resolveSpatialPadding(
        context, input: spatial, kernel: kernel, stride: stride, dilation: dilation)
      for axis in 0..<rank {
        let extent =
          spatial[axis] + padding[axis] + padding[axis + rank] - dilation[axis] * (kernel[axis] - 1)
          - 1
        output.append(extent < 0 ? 0 : extent / stride[axis] + 1)
      }
    }
    guard output.allSatisfy({ $0 >= 1 }) else {
      throw context.error("the output would have size \(output)")
    }
    let hasBias = context.hasInput(2)
    let shape = [x.shape[0], ImportedDim(filters)] + output.map { ImportedDim($0) }
    if rank == 3 {
      // The ops themselves: no layer has three spatial axes. The weight and bias are parameters
      // of ONNX's shapes; a missing bias is the scalar 0.
      let w = try context.tensor(1, dtype: x.dtype)
      var bias = "0.0"
      if hasBias {
        let b = try context.tensor(2, dtype: x.dtype)
        guard b.shape == [ImportedDim(filters)] else {
          throw context.error("the bias has shape \(b.shape), expected [\(filters)]")
        }
        bias = b.name
      }
      var arguments =
        "stride: \(context.list(stride)), padding: \(context.list(padding)), dilation: \(context.list(dilation)), groups: \(groups)"
      if transposed { arguments += ", output_padding: \(context.list(outputPadding))" }
      let op = transposed ? "conv_transpose3d" : "conv3d"
      return [
        context.emit(
          "\(op)(\(x.name), \(w.name), \(bias), \(arguments))", shape: shape, dtype: x.dtype)
      ]
    }
    // 2-D: the layer. 1-D: the 2-D layer over [N, C, 1, L] with a unit kernel height, its weight
    // [.., .., 1, k].
    let planar = rank == 1
    let scope = context.layerScope(weightSuffixes: [1: "weight", 2: "bias"])
    let layerWeight =
      planar ? weight.reshaped(Array(weight.shape.prefix(2)) + [1, kernel[0]])! : weight
    try context.addWeight("\(scope).weight", layerWeight, fromInput: 1)
    if hasBias {
      let bias = try context.constant(2, "the \(what) bias").converted(to: x.dtype)
      guard bias.shape == [filters] else {
        throw context.error("the bias has shape \(bias.shape), expected [\(filters)]")
      }
      try context.addWeight("\(scope).bias", bias, fromInput: 2)
    }
    let (layerKernel, layerStride, layerDilation, layerPadding, layerOutputPadding) =
      planar
      ? (
        [1, kernel[0]], [1, stride[0]], [1, dilation[0]], [0, padding[0], 0, padding[1]],
        [0, outputPadding[0]]
      )
      : (kernel, stride, dilation, padding, outputPadding)
    let layer = transposed ? "conv_transpose2d" : "conv2d"
    var arguments =
      "filters: \(filters), kernel: \(context.list(layerKernel)), stride: \(context.list(layerStride)), padding: \(context.list(layerPadding))"
    if layerDilation != [1, 1] { arguments += ", dilation: \(context.list(layerDilation))" }
    if groups != 1 { arguments += ", groups: \(groups)" }
    if layerOutputPadding != [0, 0] {
      arguments += ", output_padding: \(context.list(layerOutputPadding))"
    }
    if !hasBias { arguments += ", bias: false" }
    guard planar else {
      return [
        context.emit(
          "\(layer)(\(x.name), \(arguments), name: \"\(scope)\")", shape: shape, dtype: x.dtype)
      ]
    }
    let planarInput = try context.reshape(
      x, to: [x.shape[0], x.shape[1], ImportedDim(1), x.shape[2]])
    let planarResult = context.emitTemporary(
      "\(layer)(\(planarInput.name), \(arguments), name: \"\(scope)\")",
      shape: [x.shape[0], ImportedDim(filters), ImportedDim(1), ImportedDim(output[0])],
      dtype: x.dtype)
    return [
      context.emit(
        "reshape(\(planarResult.name), shape: \(try context.reshapeText(shape)))", shape: shape,
        dtype: x.dtype)
    ]
  }

  // MARK: Pooling

  /// MaxPool and AveragePool by the input's rank: [N, C, H, W] as `max_pool2d` / `avg_pool2d`,
  /// [N, C, L] through the same ops on [N, C, 1, L], [N, C, D, H, W] as `max_pool3d` /
  /// `avg_pool3d`.
  @Sendable static func spatialPool(_ context: inout ONNXNodeContext, maximum: Bool) throws
    -> [ImportedValue]
  {
    let what = maximum ? "MaxPool" : "AveragePool"
    let x = try context.tensor(0)
    guard (3...5).contains(x.rank) else {
      throw context.error(
        "\(what) over \(x.rank - 2) spatial dimensions: lamina import translates 1-, 2- and 3-D pooling, the input is \(x.shape)"
      )
    }
    let spatial = try staticSpatialSizes(context, x, what)
    let rank = spatial.count
    if context.node.outputs.count > 1, !context.node.outputs[1].isEmpty {
      throw context.error("MaxPool's Indices output is not supported")
    }
    guard let kernel = context.ints("kernel_shape"), kernel.count == rank,
      kernel.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 })
    else { throw context.error("kernel_shape must be \(rank) sizes") }
    let stride = try spatialAttribute(context, "strides", rank: rank)
    let dilation = try spatialAttribute(context, "dilations", rank: rank)
    if !maximum, dilation != Array(repeating: 1, count: rank) {
      throw context.error("AveragePool with dilations \(dilation) is not supported")
    }
    let ceilMode = try context.int("ceil_mode", default: 0) != 0
    let padding = try resolveSpatialPadding(
      context, input: spatial, kernel: kernel, stride: stride, dilation: dilation)
    var output: [Int] = []
    for axis in 0..<rank {
      let span =
        spatial[axis] + padding[axis] + padding[axis + rank] - dilation[axis] * (kernel[axis] - 1)
        - 1
      var size = (span + (ceilMode ? stride[axis] - 1 : 0)) / stride[axis] + 1
      if ceilMode, (size - 1) * stride[axis] >= spatial[axis] + padding[axis] { size -= 1 }
      guard span >= 0, size >= 1 else {
        throw context.error("the kernel \(kernel) does not fit the padded input")
      }
      output.append(size)
    }
    // 1-D pools the 2-D way over [N, C, 1, L]: a unit window height.
    let planar = rank == 1
    let (windowKernel, windowStride, windowDilation, windowPadding) =
      planar
      ? ([1] + kernel, [1] + stride, [1] + dilation, [0, padding[0], 0, padding[1]])
      : (kernel, stride, dilation, padding)
    var arguments =
      "kernel: \(context.list(windowKernel)), stride: \(context.list(windowStride)), padding: \(context.list(windowPadding))"
    if maximum, dilation != Array(repeating: 1, count: rank) {
      arguments += ", dilation: \(context.list(windowDilation))"
    }
    if ceilMode { arguments += ", ceil_mode: true" }
    if !maximum {
      // ONNX's default divisor counts only input positions (PyTorch's counts the padding).
      let includePad = try context.int("count_include_pad", default: 0) != 0
      arguments += ", count_include_pad: \(includePad)"
    }
    let shape = Array(x.shape.prefix(2)) + output.map { ImportedDim($0) }
    let op = (maximum ? "max_pool" : "avg_pool") + (rank == 3 ? "3d" : "2d")
    guard planar else {
      return [context.emit("\(op)(\(x.name), \(arguments))", shape: shape, dtype: x.dtype)]
    }
    let planarInput = try context.reshape(
      x, to: [x.shape[0], x.shape[1], ImportedDim(1), x.shape[2]])
    let planarResult = context.emitTemporary(
      "\(op)(\(planarInput.name), \(arguments))",
      shape: [x.shape[0], x.shape[1], ImportedDim(1), ImportedDim(output[0])], dtype: x.dtype)
    return [
      context.emit(
        "reshape(\(planarResult.name), shape: \(try context.reshapeText(shape)))", shape: shape,
        dtype: x.dtype)
    ]
  }

  // MARK: Normalization

  /// InstanceNormalization as `instance_norm`, its scale and bias parameters of ONNX's shapes.
  @Sendable static func translateInstanceNorm(_ context: inout ONNXNodeContext) throws
    -> [ImportedValue]
  {
    let x = try context.tensor(0)
    guard x.rank >= 3, let channels = x.shape[1].staticValue else {
      throw context.error(
        "InstanceNormalization needs an input [N, C, spatial...] with static channels, the input is \(x.shape)"
      )
    }
    let scale = try context.tensor(1, dtype: x.dtype)
    let bias = try context.tensor(2, dtype: x.dtype)
    for (name, value) in [("scale", scale), ("bias", bias)]
    where value.shape != [ImportedDim(channels)] {
      throw context.error("the \(name) has shape \(value.shape), expected [\(channels)]")
    }
    let epsilon = context.float("epsilon", default: 1e-5)
    return [
      context.emit(
        "instance_norm(\(x.name), \(scale.name), \(bias.name), eps: \(try floatLiteral(epsilon)))",
        shape: x.shape, dtype: x.dtype)
    ]
  }

  /// LRN as `lrn` (ONNX's window: ⌊(size − 1)/2⌋ channels before, ⌈(size − 1)/2⌉ after).
  @Sendable static func translateLRN(_ context: inout ONNXNodeContext) throws -> [ImportedValue] {
    let x = try context.tensor(0)
    guard x.rank >= 3 else {
      throw context.error("LRN needs an input [N, C, spatial...], the input is \(x.shape)")
    }
    guard let size = try context.int("size"), size >= 1, size <= 1 << 20 else {
      throw context.error("LRN needs a positive size")
    }
    let alpha = try floatLiteral(context.float("alpha", default: 1e-4))
    let beta = try floatLiteral(context.float("beta", default: 0.75))
    let bias = try floatLiteral(context.float("bias", default: 1))
    return [
      context.emit(
        "lrn(\(x.name), size: \(size), alpha: \(alpha), beta: \(beta), bias: \(bias))",
        shape: x.shape, dtype: x.dtype)
    ]
  }
}
