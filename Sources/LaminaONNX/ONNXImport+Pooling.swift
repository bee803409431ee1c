import LaminaSupport

extension ONNXTranslators {
  /// MaxPool, AveragePool (2-D) and the global pools.
  static let poolingTranslators: [ONNXTranslator] = [
    // MaxPool and AveragePool: spatialTranslators, which dispatch the 2-D form to `pool`.
    ONNXTranslator(["GlobalAveragePool"]) { context in
      let x = try context.tensor(0)
      _ = try spatialSizes(context, x, "GlobalAveragePool")
      // ONNX keeps the pooled axes: [N, C, 1, 1].
      let pooled = context.emitTemporary(
        "global_avg_pool2d(\(x.name))", shape: Array(x.shape.prefix(2)), dtype: x.dtype)
      return [
        context.emit(
          "unsqueeze(\(pooled.name), axes: [2, 3])",
          shape: Array(x.shape.prefix(2)) + [ImportedDim(1), ImportedDim(1)], dtype: x.dtype)
      ]
    },
    ONNXTranslator(["GlobalMaxPool"]) { context in
      let x = try context.tensor(0)
      guard x.rank >= 3 else { throw context.error("GlobalMaxPool of a rank-\(x.rank) tensor") }
      let axes = Array(2..<x.rank)
      return [
        context.emit(
          "max(\(x.name), axes: \(context.list(axes)), keepdims: true)",
          shape: Array(x.shape.prefix(2)) + axes.map { _ in ImportedDim(1) }, dtype: x.dtype)
      ]
    },
  ]

  static func pool(_ context: inout ONNXNodeContext, maximum: Bool) throws -> [ImportedValue] {
    let what = maximum ? "MaxPool" : "AveragePool"
    let x = try context.tensor(0)
    let spatial = try spatialSizes(context, x, what)
    if context.node.outputs.count > 1, !context.node.outputs[1].isEmpty {
      throw context.error("MaxPool's Indices output is not supported")
    }
    guard let kernel = context.ints("kernel_shape"), kernel.count == 2,
      kernel.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 })
    else { throw context.error("kernel_shape must be two sizes") }
    let stride = try pair(context, "strides")
    let dilation = try pair(context, "dilations")
    if !maximum, dilation != [1, 1] {
      throw context.error("AveragePool with dilations \(dilation) is not supported")
    }
    let ceilMode = try context.int("ceil_mode", default: 0) != 0
    let padding = try resolvePadding(
      context, input: spatial, kernel: kernel, stride: stride, dilation: dilation)
    var output: [Int] = []
    for axis in 0..<2 {
      let span =
        spatial[axis] + padding[axis] + padding[axis + 2] - dilation[axis] * (kernel[axis] - 1) - 1
      var size = (span + (ceilMode ? stride[axis] - 1 : 0)) / stride[axis] + 1
      if ceilMode, (size - 1) * stride[axis] >= spatial[axis] + padding[axis] { size -= 1 }
      guard span >= 0, size >= 1 else {
        throw context.error("the kernel \(kernel) does not fit the padded input")
      }
      output.append(size)
    }
    var arguments =
      "kernel: \(context.list(kernel)), stride: \(context.list(stride)), padding: \(context.list(padding))"
    if maximum, dilation != [1, 1] { arguments += ", dilation: \(context.list(dilation))" }
    if ceilMode { arguments += ", ceil_mode: true" }
    if !maximum {
      // ONNX's default divisor counts only input positions (PyTorch's counts the padding).
      let includePad = try context.int("count_include_pad", default: 0) != 0
      arguments += ", count_include_pad: \(includePad)"
    }
    let shape = Array(x.shape.prefix(2)) + output.map { ImportedDim($0) }
    return [
      context.emit(
        "\(maximum ? "max_pool2d" : "avg_pool2d")(\(x.name), \(arguments))", shape: shape,
        dtype: x.dtype)
    ]
  }
}
