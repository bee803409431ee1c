import LaminaSupport

extension ONNXTranslators {
  /// Gemm, MatMul, Conv and ConvTranspose (2-D).
  static let convolutionTranslators: [ONNXTranslator] = [
    ONNXTranslator(["Gemm"], translateGemm),
    ONNXTranslator(["MatMul"], translateMatMul),
    // Conv and ConvTranspose: spatialTranslators, which dispatch the 2-D form to `convolution`.
  ]

  /// alpha · A' B' + beta · C, with A' and B' optionally transposed; the GEMM reads a transposed
  /// operand in place.
  @Sendable static func translateGemm(_ context: inout ONNXNodeContext) throws -> [ImportedValue] {
    let a = try context.tensor(0)
    let b = try context.tensor(1, dtype: a.dtype)
    guard a.rank == 2, b.rank == 2 else {
      throw context.error("Gemm of shapes \(a.shape) and \(b.shape): both must be 2-D")
    }
    let transposeA = try context.int("transA", default: 0) != 0
    let transposeB = try context.int("transB", default: 0) != 0
    let alpha = context.float("alpha", default: 1)
    let beta = context.float("beta", default: 1)
    let inner = transposeA ? a.shape[0] : a.shape[1]
    let innerB = transposeB ? b.shape[1] : b.shape[0]
    guard inner == innerB else {
      throw context.error(
        "Gemm of shapes \(a.shape) and \(b.shape) (transA \(transposeA), transB \(transposeB)): inner sizes differ"
      )
    }
    var shape = [transposeA ? a.shape[1] : a.shape[0], transposeB ? b.shape[0] : b.shape[1]]
    var flags = ""
    if transposeA { flags += ", transpose_a: true" }
    if transposeB { flags += ", transpose_b: true" }
    var expression = "matmul(\(a.name), \(b.name)\(flags))"
    if alpha != 1 { expression = "\(try floatLiteral(alpha)) * \(expression)" }
    if context.hasInput(2), beta != 0 {
      let c = try context.tensor(2, dtype: a.dtype)
      shape = try context.broadcast(shape, c.shape)
      expression += beta == 1 ? " + \(c.name)" : " + \(try floatLiteral(beta)) * \(c.name)"
    }
    return [context.emit(expression, shape: shape, dtype: a.dtype)]
  }

  /// numpy matmul; a 1-D operand gets a unit axis that the result drops.
  @Sendable static func translateMatMul(_ context: inout ONNXNodeContext) throws -> [ImportedValue]
  {
    var a = try context.tensor(0)
    var b = try context.tensor(1, dtype: a.dtype)
    guard a.rank >= 1, b.rank >= 1 else { throw context.error("MatMul of a scalar") }
    let vectorA = a.rank == 1
    let vectorB = b.rank == 1
    if vectorA { a = try context.reshape(a, to: [ImportedDim(1)] + a.shape) }
    if vectorB { b = try context.reshape(b, to: b.shape + [ImportedDim(1)]) }
    guard a.shape[a.rank - 1] == b.shape[b.rank - 2] else {
      throw context.error("MatMul of shapes \(a.shape) and \(b.shape): inner sizes differ")
    }
    let batch = try context.broadcast(Array(a.shape.dropLast(2)), Array(b.shape.dropLast(2)))
    var shape = batch + [a.shape[a.rank - 2], b.shape[b.rank - 1]]
    let expression = "\(a.name) @ \(b.name)"
    guard vectorA || vectorB else {
      return [context.emit(expression, shape: shape, dtype: a.dtype)]
    }
    let product = context.emitTemporary(expression, shape: shape, dtype: a.dtype)
    if vectorB { shape.removeLast() }
    if vectorA { shape.remove(at: shape.count - (vectorB ? 1 : 2)) }
    return [
      context.emit(
        "reshape(\(product.name), shape: \(try context.reshapeText(shape)))", shape: shape,
        dtype: a.dtype)
    ]
  }

  /// Explicit `[top, left, bottom, right]` padding from `pads` or `auto_pad`.
  static func resolvePadding(
    _ context: ONNXNodeContext, input: [Int], kernel: [Int], stride: [Int], dilation: [Int]
  ) throws -> [Int] {
    let autoPad = context.string("auto_pad") ?? "NOTSET"
    switch autoPad {
    case "NOTSET", "":
      let pads = context.ints("pads") ?? [0, 0, 0, 0]
      guard pads.count == 4, pads.allSatisfy({ $0 >= 0 && $0 <= 1 << 20 }) else {
        throw context.error("pads \(pads) must be four sizes")
      }
      return pads
    case "VALID":
      return [0, 0, 0, 0]
    case "SAME_UPPER", "SAME_LOWER":
      var before: [Int] = []
      var after: [Int] = []
      for axis in 0..<2 {
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

  /// Two sizes from an attribute (`strides`, `dilations`), each in 1...2^20.
  static func pair(_ context: ONNXNodeContext, _ name: String, default value: Int = 1) throws
    -> [Int]
  {
    let values = context.ints(name) ?? [value, value]
    guard values.count == 2, values.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }) else {
      throw context.error("\(name) \(values) must be two sizes from 1 to 2^20")
    }
    return values
  }

  /// The spatial sizes of an NCHW tensor, which must be static.
  static func spatialSizes(_ context: ONNXNodeContext, _ x: TensorExpression, _ what: String)
    throws -> [Int]
  {
    guard x.rank == 4 else {
      throw context.error(
        "\(what) over \(x.rank - 2) spatial dimensions: lamina import translates the 2-D form (input [N, C, H, W]), the input is \(x.shape)"
      )
    }
    guard let height = x.shape[2].staticValue, let width = x.shape[3].staticValue else {
      throw context.error("\(what) needs static height and width, the input is \(x.shape)")
    }
    return [height, width]
  }

  /// Conv and ConvTranspose as the `conv2d` / `conv_transpose2d` layers, whose weights are the
  /// node's weight and bias under the layer's names (`SCOPE.weight`, `SCOPE.bias`).
  static func convolution(_ context: inout ONNXNodeContext, transposed: Bool) throws
    -> [ImportedValue]
  {
    let what = transposed ? "ConvTranspose" : "Conv"
    let x = try context.tensor(0)
    let spatial = try spatialSizes(context, x, what)
    let weight = try context.constant(1, "the \(what) weight").converted(to: x.dtype)
    guard x.dtype.isFloatingPoint, weight.rank == 4 else {
      throw context.error("the \(what) weight has shape \(weight.shape), expected 4 axes")
    }
    let groups = try context.int("group", default: 1)
    let kernel = [weight.shape[2], weight.shape[3]]
    if let declared = context.ints("kernel_shape"), declared != kernel {
      throw context.error("kernel_shape \(declared) differs from the weight's \(kernel)")
    }
    let stride = try pair(context, "strides")
    let dilation = try pair(context, "dilations")
    guard let channels = x.shape[1].staticValue else {
      throw context.error("\(what) needs a static channel count, the input is \(x.shape)")
    }
    guard groups >= 1, channels % groups == 0 else {
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
    var outputPadding = [0, 0]
    var output: [Int] = []
    if transposed {
      outputPadding = context.ints("output_padding") ?? [0, 0]
      guard outputPadding.count == 2, outputPadding.allSatisfy({ $0 >= 0 }) else {
        throw context.error("output_padding \(outputPadding) must be two sizes")
      }
      let autoPad = context.string("auto_pad") ?? "NOTSET"
      if let outputShape = context.ints("output_shape")
        ?? (autoPad.hasPrefix("SAME")
          ? spatial.map { $0 }.enumerated().map { $0.element * stride[$0.offset] } : nil)
      {
        let target = Array(outputShape.suffix(2))
        guard target.count == 2 else { throw context.error("output_shape \(outputShape)") }
        var before: [Int] = []
        var after: [Int] = []
        for axis in 0..<2 {
          let total =
            stride[axis] * (spatial[axis] - 1) + outputPadding[axis]
            + (kernel[axis] - 1) * dilation[axis] + 1 - target[axis]
          guard total >= 0 else {
            throw context.error("output_shape \(outputShape) is larger than the full result")
          }
          let small = total / 2
          before.append(autoPad == "SAME_UPPER" ? small : total - small)
          after.append(autoPad == "SAME_UPPER" ? total - small : small)
        }
        padding = before + after
      } else {
        padding = try resolvePadding(
          context, input: spatial, kernel: kernel, stride: stride, dilation: dilation)
      }
      for axis in 0..<2 {
        output.append(
          (spatial[axis] - 1) * stride[axis] - padding[axis] - padding[axis + 2]
            + dilation[axis] * (kernel[axis] - 1) + 1 + outputPadding[axis])
      }
    } else {
      padding = try resolvePadding(
        context, input: spatial, kernel: kernel, stride: stride, dilation: dilation)
      for axis in 0..<2 {
        output.append(
          (spatial[axis] + padding[axis] + padding[axis + 2] - dilation[axis] * (kernel[axis] - 1)
            - 1) / stride[axis] + 1)
      }
    }
    guard output.allSatisfy({ $0 >= 1 }) else {
      throw context.error("the output would have size \(output)")
    }
    let scope = context.layerScope(weightSuffixes: [1: "weight", 2: "bias"])
    try context.addWeight("\(scope).weight", weight, fromInput: 1)
    let hasBias = context.hasInput(2)
    if hasBias {
      let bias = try context.constant(2, "the \(what) bias").converted(to: x.dtype)
      guard bias.shape == [filters] else {
        throw context.error("the bias has shape \(bias.shape), expected [\(filters)]")
      }
      try context.addWeight("\(scope).bias", bias, fromInput: 2)
    }
    let layer = transposed ? "conv_transpose2d" : "conv2d"
    var arguments =
      "filters: \(filters), kernel: \(context.list(kernel)), stride: \(context.list(stride)), padding: \(context.list(padding))"
    if dilation != [1, 1] { arguments += ", dilation: \(context.list(dilation))" }
    if groups != 1 { arguments += ", groups: \(groups)" }
    if outputPadding != [0, 0] { arguments += ", output_padding: \(context.list(outputPadding))" }
    if !hasBias { arguments += ", bias: false" }
    let shape = [x.shape[0], ImportedDim(filters)] + output.map { ImportedDim($0) }
    return [
      context.emit(
        "\(layer)(\(x.name), \(arguments), name: \"\(scope)\")", shape: shape, dtype: x.dtype)
    ]
  }
}
