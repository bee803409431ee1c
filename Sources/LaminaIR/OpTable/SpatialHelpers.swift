import LaminaSupport

/// How a layer asks for the padding of a spatial op (convolution, pooling), before it is resolved to
/// the four sides an op stores.
public enum SpatialPadding: Sendable, Hashable {
  /// Explicit sizes: one for every side (`padding: 1`), `[ph, pw]` (each axis on both sides), or
  /// `[top, left, bottom, right]` (ONNX's order).
  case explicit([Int])
  /// The output has `ceil(input / stride)` positions; an odd total puts the extra row or column at
  /// the bottom or right (ONNX's SAME_UPPER, TensorFlow's and PyTorch's "same").
  case same
  /// No padding.
  case valid
}

/// The largest kernel size, stride, dilation or padding a spatial op takes (2^20): far past any real
/// network, and small enough that the size arithmetic of shapes (a static dimension is below 2^40)
/// cannot overflow.
public let spatialAttributeLimit = 1 << 20

/// Rejects a kernel size, stride, dilation or padding past `spatialAttributeLimit`.
public func checkSpatialLimit(_ name: String, _ values: [Int], op: String) throws(ShapeError) {
  if let large = values.first(where: { $0 > spatialAttributeLimit }) {
    throw ShapeError(
      "\(op): \(name) \(large) is too large (at most \(spatialAttributeLimit))",
      help: "kernel sizes, strides, dilations and paddings past 2^20 are not supported")
  }
}

/// The padding `[top, left, bottom, right]` for `padding` around an input of `inputSize` ([h, w])
/// with a kernel of `kernel`, `stride` and `dilation` (each [h, w]); `op` names the caller in errors.
///
/// "same" pads a total of `max((out - 1) · stride + dilation · (kernel - 1) + 1 - input, 0)` along
/// each axis, `out = ceil(input / stride)`, half before and the rest (the odd one) after.
public func resolvedPadding(
  _ padding: SpatialPadding, kernel: [Int], stride: [Int], dilation: [Int], inputSize: [Int],
  op: String
) throws(ShapeError) -> [Int] {
  switch padding {
  case .valid:
    return [0, 0, 0, 0]
  case .same:
    var before = [0, 0]
    var after = [0, 0]
    for axis in 0..<2 {
      let output = (inputSize[axis] + stride[axis] - 1) / stride[axis]
      let span = dilation[axis] * (kernel[axis] - 1) + 1
      let total = max((output - 1) * stride[axis] + span - inputSize[axis], 0)
      before[axis] = total / 2
      after[axis] = total - total / 2
    }
    return [before[0], before[1], after[0], after[1]]
  case .explicit(let sizes):
    let resolved: [Int]
    switch sizes.count {
    case 1: resolved = Array(repeating: sizes[0], count: 4)
    case 2: resolved = [sizes[0], sizes[1], sizes[0], sizes[1]]
    case 4: resolved = sizes
    default:
      throw ShapeError(
        "\(op): padding takes 1, 2 ([ph, pw]) or 4 ([top, left, bottom, right]) sizes, got \(sizes.count)"
      )
    }
    guard resolved.allSatisfy({ $0 >= 0 }) else {
      throw ShapeError("\(op): padding must not be negative, got \(sizes)")
    }
    return resolved
  }
}

/// An option given once for both spatial axes or as `[h, w]` (`kernel: 3`, `stride: [2, 1]`), as a
/// pair; nil when it has another length.
public func spatialPair(_ values: [Int]) -> [Int]? {
  switch values.count {
  case 1: return [values[0], values[0]]
  case 2: return values
  default: return nil
  }
}

// MARK: Shape rules over any number of spatial axes

/// The names of `rank` spatial axes, for errors: `[height, width]`, `[depth, height, width]`.
func spatialAxisNames(_ rank: Int) -> [String] {
  rank <= 3 ? Array(["depth", "height", "width"].suffix(rank)) : (0..<rank).map { "axis \($0)" }
}

/// The sides a padding of `rank` spatial axes lists, every start then every end (ONNX's order):
/// `[top, left, bottom, right]`, `[front, top, left, back, bottom, right]`.
func spatialSideNames(_ rank: Int) -> [String] {
  guard rank <= 3 else { return (0..<(2 * rank)).map { "entry \($0)" } }
  return Array(["front", "top", "left"].suffix(rank)) + ["back", "bottom", "right"].suffix(rank)
}

/// `[sh, sw]`-style names of an attribute with one value per spatial axis (`prefix` "s", "d", "").
func spatialLetters(_ prefix: String, rank: Int) -> String {
  "[" + spatialAxisNames(rank).map { prefix + String($0.prefix(1)) }.joined(separator: ", ") + "]"
}

/// `a, b and c`.
private func spokenList(_ items: [String]) -> String {
  items.count <= 1
    ? items.joined() : items.dropLast().joined(separator: ", ") + " and " + items.last!
}

extension OpRegistry {
  /// Stride, padding, dilation and groups of a convolution over `rank` spatial axes, checked.
  static func spatialWindowAttributes(_ context: ShapeContext, rank: Int) throws(ShapeError) -> (
    stride: [Int], padding: [Int], dilation: [Int], groups: Int
  ) {
    let op = context.op
    let stride = context.ints("stride") ?? Array(repeating: 1, count: rank)
    let padding = context.ints("padding") ?? Array(repeating: 0, count: 2 * rank)
    let dilation = context.ints("dilation") ?? Array(repeating: 1, count: rank)
    let groups = context.int("groups") ?? 1
    guard stride.count == rank, stride.allSatisfy({ $0 >= 1 }) else {
      throw ShapeError(
        "\(op): stride must be \(rank) positive integers \(spatialLetters("s", rank: rank)), got \(stride)"
      )
    }
    guard dilation.count == rank, dilation.allSatisfy({ $0 >= 1 }) else {
      throw ShapeError(
        "\(op): dilation must be \(rank) positive integers \(spatialLetters("d", rank: rank)), got \(dilation)"
      )
    }
    guard padding.count == 2 * rank, padding.allSatisfy({ $0 >= 0 }) else {
      throw ShapeError(
        "\(op): padding must be \(2 * rank) sizes [\(spatialSideNames(rank).joined(separator: ", "))], none negative, got \(padding)"
      )
    }
    guard groups >= 1 else { throw ShapeError("\(op): groups must be positive, got \(groups)") }
    try checkSpatialLimit("stride", stride, op: op)
    try checkSpatialLimit("padding", padding, op: op)
    try checkSpatialLimit("dilation", dilation, op: op)
    return (stride, padding, dilation, groups)
  }

  /// A floating-point operand `[batch, channels, spatial...]` of rank `2 + rank` with static
  /// channels and spatial sizes: those.
  static func channelsFirst(_ type: TensorType, rank: Int, _ op: String, _ what: String)
    throws(ShapeError) -> (channels: Int, size: [Int])
  {
    let names = spatialAxisNames(rank)
    guard type.rank == rank + 2 else {
      let layout = "NC" + names.map { $0.prefix(1).uppercased() }.joined()
      throw ShapeError(
        "\(op): \(what) must be \(layout) (rank \(rank + 2): [batch, channels, \(names.joined(separator: ", "))]), got \(type)",
        help: "reshape the input to [batch, channels, \(names.joined(separator: ", "))]")
    }
    guard type.dtype.isFloatingPoint else {
      throw ShapeError("\(op) needs a floating-point \(what), got \(type)")
    }
    let sizes = type.shape.dropFirst().compactMap(\.staticValue)
    guard sizes.count == rank + 1 else {
      throw ShapeError(
        "\(op): \(what) \(type) needs static \(spokenList(["channels"] + names)) (only the batch may be symbolic)"
      )
    }
    return (sizes[0], Array(sizes.dropFirst()))
  }

  /// A static weight of rank `rank + 2` with positive sizes.
  static func staticSpatialWeight(_ type: TensorType, rank: Int, _ op: String) throws(ShapeError)
    -> [Int]
  {
    let sizes = type.shape.compactMap(\.staticValue)
    guard type.rank == rank + 2, sizes.count == rank + 2, sizes.allSatisfy({ $0 >= 1 }) else {
      throw ShapeError(
        "\(op): the weight must have rank \(rank + 2) and static, positive sizes, got \(type)")
    }
    return sizes
  }

  /// The bias: one value per result channel, or a scalar.
  static func checkBias(_ type: TensorType, channels: Int, _ op: String) throws(ShapeError) {
    guard type.isScalar || type.shape == [Dim(channels)] else {
      throw ShapeError(
        "\(op): the bias must be [\(channels)] (one per output channel) or a scalar, got \(type)")
    }
  }

  /// The `kernel` attribute of a convolution's weight gradient: `rank` positive sizes.
  static func weightGradientKernel(_ context: ShapeContext, rank: Int) throws(ShapeError) -> [Int] {
    let kernel = context.ints("kernel") ?? []
    guard kernel.count == rank, kernel.allSatisfy({ $0 >= 1 }) else {
      throw ShapeError(
        "\(context.op): kernel must be \(rank) positive sizes \(spatialLetters("k", rank: rank)), got \(kernel)"
      )
    }
    try checkSpatialLimit("kernel", kernel, op: context.op)
    return kernel
  }

  /// The output size of a convolution along `axis` (of `kernel.count`): ⌊(input + pads − span) /
  /// stride⌋ + 1, with the error, naming the axis, that a kernel larger than the padded input gets.
  static func convolutionOutputSize(
    _ op: String, input: Int, axis: Int, kernel: [Int], stride: [Int], padding: [Int],
    dilation: [Int]
  ) throws(ShapeError) -> Int {
    let rank = kernel.count
    let padded = input + padding[axis] + padding[axis + rank]
    let span = dilation[axis] * (kernel[axis] - 1) + 1
    let size = floorDivision(padded - span, stride[axis]) + 1
    guard size >= 1 else {
      let name = spatialAxisNames(rank)[axis]
      let dilated = dilation[axis] > 1 ? " (dilated to \(span))" : ""
      throw ShapeError(
        "\(op): the kernel \(name) \(kernel[axis])\(dilated) is larger than the padded input \(name) \(padded) (\(input) + padding \(padding[axis]) + \(padding[axis + rank])): the output \(name) would be (\(padded) - \(span)) / \(stride[axis]) + 1 = \(size)",
        help:
          "pad the input (padding: \"same\"), use a smaller kernel or dilation, or downsample less before this layer"
      )
    }
    return size
  }

  /// The `output_padding` of a transposed convolution: one size per spatial axis, each smaller
  /// than the stride.
  static func transposedOutputPadding(_ context: ShapeContext, stride: [Int]) throws(ShapeError)
    -> [Int]
  {
    let rank = stride.count
    let outputPadding = context.ints("output_padding") ?? Array(repeating: 0, count: rank)
    guard outputPadding.count == rank else {
      throw ShapeError(
        "\(context.op): output_padding must be \(spatialLetters("", rank: rank)), got \(outputPadding)"
      )
    }
    for axis in 0..<rank where outputPadding[axis] < 0 || outputPadding[axis] >= stride[axis] {
      throw ShapeError(
        "\(context.op): output_padding \(outputPadding) must be at least 0 and smaller than the stride \(stride)"
      )
    }
    return outputPadding
  }

  /// The result size of a transposed convolution along every axis: (input − 1) · stride − pads +
  /// span + output_padding, with the error, naming the axis, that padding removing everything gets.
  static func transposedConvolutionSize(
    _ op: String, input: [Int], kernel: [Int], stride: [Int], padding: [Int], dilation: [Int],
    outputPadding: [Int]
  ) throws(ShapeError) -> [Int] {
    let rank = input.count
    var result: [Int] = []
    for axis in 0..<rank {
      let span = dilation[axis] * (kernel[axis] - 1) + 1
      let size =
        (input[axis] - 1) * stride[axis] - padding[axis] - padding[axis + rank] + span
        + outputPadding[axis]
      guard size >= 1 else {
        throw ShapeError(
          "\(op): the padding \(padding) removes more than the result has: the result \(spatialAxisNames(rank)[axis]) would be (\(input[axis]) - 1) · \(stride[axis]) - \(padding[axis]) - \(padding[axis + rank]) + \(span) + \(outputPadding[axis]) = \(size)"
        )
      }
      result.append(size)
    }
    return result
  }

  /// The static spatial sizes of a pooling's floating-point input `[N, C, spatial...]` of rank
  /// `2 + rank`.
  static func poolingInputSize(_ context: ShapeContext, rank: Int) throws(ShapeError) -> [Int] {
    let x = context.operands[0]
    let names = spatialAxisNames(rank)
    try context.requireFloat(x, "input")
    guard x.rank == rank + 2 else {
      let layout = "NC" + names.map { $0.prefix(1).uppercased() }.joined()
      throw ShapeError(
        "\(context.op) needs an \(layout) input of rank \(rank + 2), got \(x)",
        help: "reshape the input to [batch, channels, \(names.joined(separator: ", "))]")
    }
    let sizes = x.shape.suffix(rank).compactMap(\.staticValue)
    guard sizes.count == rank else {
      throw ShapeError(
        "\(context.op) needs static \(spokenList(names)), got \(x)",
        help: "only the batch and channel axes may be symbolic")
    }
    return sizes
  }

  /// An average pooling's gradient result `[N, C, input_size...]` (of `rank` spatial axes), when
  /// `forward` (the pooling's result type of an input) gives the gradient's shape from it.
  static func averagePoolBackwardResult(
    _ context: ShapeContext, rank: Int,
    forward: (ShapeContext) throws(ShapeError) -> TensorType
  ) throws(ShapeError) -> TensorType {
    let op = context.op
    let pooling = op.hasSuffix("_backward") ? String(op.dropLast("_backward".count)) : op
    let gradient = context.operands[0]
    guard let inputSize = context.ints("input_size"), inputSize.count == rank,
      inputSize.allSatisfy({ $0 >= 0 })
    else {
      throw ShapeError(
        "\(op): input_size must be [\(spatialAxisNames(rank).joined(separator: ", "))], got \(context.attributes["input_size"]?.description ?? "nothing")"
      )
    }
    guard gradient.rank == rank + 2 else {
      throw ShapeError("\(op) needs a gradient of rank \(rank + 2), got \(gradient)")
    }
    let input = gradient.with(shape: Array(gradient.shape.prefix(2)) + inputSize.map { Dim($0) })
    let result = try forward(
      ShapeContext(op: op, operands: [input], attributes: context.attributes))
    guard result == gradient else {
      throw ShapeError(
        "\(op): the gradient is \(gradient), but \(pooling) of \(input) gives \(result)")
    }
    return input
  }
}

/// The windows of a pooling over `inputSize` (one `PoolingAxis` per spatial axis) that a node's
/// attributes describe, checked as PyTorch checks them: positive kernel, stride and dilation,
/// padding (every start, then every end) at most half the kernel on each side, and at least one
/// output along each axis.
func poolingAxes(op: String, attributes: [String: Attribute], inputSize: [Int]) throws(ShapeError)
  -> [PoolingAxis]
{
  let rank = inputSize.count
  let names = spatialAxisNames(rank)
  let sides = spatialSideNames(rank)
  let kernel = attributes["kernel"]?.intsValue ?? []
  let stride = attributes["stride"]?.intsValue ?? kernel
  let padding = attributes["padding"]?.intsValue ?? Array(repeating: 0, count: 2 * rank)
  let dilation = attributes["dilation"]?.intsValue ?? Array(repeating: 1, count: rank)
  let ceilMode = attributes["ceil_mode"]?.boolValue ?? false
  for (name, values, count) in [
    ("kernel", kernel, rank), ("stride", stride, rank), ("dilation", dilation, rank),
    ("padding", padding, 2 * rank),
  ] where values.count != count {
    throw ShapeError(
      "\(op): \(name) needs \(count) values, got \(values.count) (\(values))",
      help: name == "padding"
        ? "padding is [\(sides.joined(separator: ", "))]"
        : "\(name) is [\(names.joined(separator: ", "))]")
  }
  for (name, values) in [("kernel", kernel), ("stride", stride), ("dilation", dilation)]
  where values.contains(where: { $0 < 1 }) {
    throw ShapeError("\(op): \(name) must be positive, got \(values)")
  }
  for (name, values) in [
    ("kernel", kernel), ("stride", stride), ("dilation", dilation), ("padding", padding),
  ] {
    try checkSpatialLimit(name, values, op: op)
  }
  if let negative = padding.first(where: { $0 < 0 }) {
    throw ShapeError("\(op): padding must not be negative, got \(negative) in \(padding)")
  }
  // PyTorch refuses padding past half the kernel: a window could then see only padding.
  for index in 0..<(2 * rank) where padding[index] > kernel[index % rank] / 2 {
    let axisKernel = kernel[index % rank]
    throw ShapeError(
      "\(op): padding \(padding[index]) on the \(sides[index]) is more than half the kernel \(axisKernel) (at most \(axisKernel / 2))",
      help:
        "padding is [\(sides.joined(separator: ", "))]; PyTorch refuses padding past half the kernel"
    )
  }
  let axes = (0..<rank).map { axis in
    PoolingAxis(
      input: inputSize[axis], kernel: kernel[axis], stride: stride[axis],
      dilation: dilation[axis], padBefore: padding[axis], padAfter: padding[axis + rank],
      ceilMode: ceilMode)
  }
  guard axes.allSatisfy({ $0.output >= 1 }) else {
    func sizes(_ values: [Int]) -> String { values.map(String.init).joined(separator: "x") }
    let dilated =
      dilation.allSatisfy({ $0 == 1 })
      ? "" : " (dilation \(dilation), window \(sizes(axes.map(\.span))))"
    let padded = axes.map { $0.input + $0.padBefore + $0.padAfter }
    throw ShapeError(
      "\(op): the kernel \(sizes(kernel))\(dilated) is larger than the padded input \(sizes(padded)) (input \(sizes(inputSize)), padding \(padding)): the computed output size is \(sizes(axes.map(\.output)))",
      help: "use a smaller kernel or more padding, or pool an earlier, larger feature map")
  }
  return axes
}
