import LaminaSupport

// MARK: Window geometry

/// One spatial axis of a 2-D pooling: the input size, the window, the padding, and the output size
/// they give. The shape rules, the interpreter and the C kernels all walk windows through this.
public struct PoolingAxis: Sendable, Hashable {
  public var input: Int
  public var kernel: Int
  public var stride: Int
  public var dilation: Int
  /// Padding before the first element (top or left) and after the last (bottom or right).
  public var padBefore: Int
  public var padAfter: Int
  public var ceilMode: Bool

  public init(
    input: Int, kernel: Int, stride: Int, dilation: Int = 1, padBefore: Int, padAfter: Int,
    ceilMode: Bool
  ) {
    self.input = input
    self.kernel = kernel
    self.stride = stride
    self.dilation = dilation
    self.padBefore = padBefore
    self.padAfter = padAfter
    self.ceilMode = ceilMode
  }

  /// The window's extent in the input: `dilation · (kernel − 1) + 1`.
  public var span: Int { dilation * (kernel - 1) + 1 }

  /// The output size as PyTorch computes it: ⌊(input + pads − span + (ceil mode ? stride − 1 : 0))
  /// / stride⌋ + 1; in ceil mode, one fewer when the last window would start past the input and its
  /// leading padding (it would see only trailing padding).
  public var output: Int {
    let extent = input + padBefore + padAfter - span + (ceilMode ? stride - 1 : 0)
    var size = floorDivision(extent, stride) + 1
    if ceilMode, size > 0, (size - 1) * stride >= input + padBefore { size -= 1 }
    return size
  }

  /// The input position of output `index`'s first window element (negative inside the padding).
  public func start(_ index: Int) -> Int { index * stride - padBefore }

  /// The input positions window `index` covers inside the input, in order.
  public func positions(_ index: Int) -> [Int] {
    (0..<kernel).map { start(index) + $0 * dilation }.filter { $0 >= 0 && $0 < input }
  }

  /// The window's length clipped to the padded input, which average pooling divides by when it
  /// counts padding (a ceil-mode window past the trailing padding counts only up to it, as PyTorch).
  public func paddedCount(_ index: Int) -> Int {
    Swift.min(start(index) + span, input + padAfter) - start(index)
  }

  /// The outputs whose whole window lies inside the input: the C kernels' interior, where the
  /// window needs no bounds checks and its size is the kernel's.
  public var interior: Range<Int> {
    let first = Swift.min(Swift.max(0, (padBefore + stride - 1) / stride), output)
    let last = floorDivision(input - span + padBefore, stride) + 1
    let end = Swift.max(first, Swift.min(last, output))
    return first..<end
  }
}

/// ⌊a / b⌋ for b > 0.
func floorDivision(_ a: Int, _ b: Int) -> Int {
  let quotient = a / b
  return (a % b != 0 && a < 0) ? quotient - 1 : quotient
}

/// The windows of a 2-D pooling over the last two axes of an NCHW tensor.
public struct PoolingWindows: Sendable, Hashable {
  public var height: PoolingAxis
  public var width: PoolingAxis

  /// The windows a pooling node's attributes describe over an input of `inputHeight × inputWidth`,
  /// checked as PyTorch checks them: positive kernel, stride and dilation, padding at most half the
  /// kernel on each side, and at least one output along each axis.
  public init(
    op: String, attributes: [String: Attribute], inputHeight: Int, inputWidth: Int
  ) throws(ShapeError) {
    let axes = try poolingAxes(
      op: op, attributes: attributes, inputSize: [inputHeight, inputWidth])
    height = axes[0]
    width = axes[1]
  }

  /// The window of output (`row`, `column`): the input positions (row-major within the plane)
  /// inside the input, in row-major window order.
  public func positions(row: Int, column: Int) -> [Int] {
    let columns = width.positions(column)
    return height.positions(row).flatMap { r in columns.map { r * width.input + $0 } }
  }
}

// MARK: Ops

extension OpRegistry {
  /// Pooling over the spatial axes of NCHW tensors, and the gradients of the windowed poolings.
  static let poolingOps: [OpDefinition] = [
    OpDefinition(
      "max_pool2d",
      summary:
        "The largest element of each window over the last two axes of an NCHW tensor (PyTorch's MaxPool2d).",
      semantics:
        "y[n, c, i, j] = max over window (i, j) of x[n, c, ·, ·]; window (i, j) covers rows i·stride_h − top + a·dilation_h, a < kernel_h, and columns likewise; positions in the padding are skipped (as −∞); a NaN in the window gives NaN",
      operands: [OperandSpec("x")],
      attributes: windowAttributes(dilation: true),
      fusion: .opaque,
      c: .kernel(.maxPool),
      windowReduction: .maximum,
      shape: ShapeRule("[N, C, H, W] → [N, C, H_out, W_out]") { context throws(ShapeError) in
        [try poolingResult(context).type]
      },
      interpret: { context in
        let checked = try context.checked("max_pool2d")
        let windows = try poolingWindows(checked)
        let x = context.operands[0]
        let values = x.doubles()
        var output: [Double] = []
        forEachWindow(x.shape, windows) { plane, _, positions in
          let (value, _) = windowMaximum(values, plane: plane, positions: positions)
          output.append(value)
        }
        return [context.result(0, output)]
      },
      // ∂/∂x: g of each window goes to its maximum (the first one on ties, as PyTorch)
      gradient: { builder, inputs throws(ShapeError) in
        [
          try builder.op(
            "max_pool2d_backward", [inputs.operands[0], inputs.resultGradient],
            inputs.attributes)
        ]
      }),
    OpDefinition(
      "max_pool2d_backward",
      summary:
        "The gradient of max_pool2d: each window's gradient added at the position of the window's maximum in `x` (the first one on ties).",
      semantics:
        "dx = zeros(x.shape); for each window (n, c, i, j): dx[n, c, argmax] += gradient[n, c, i, j], argmax the first position of the window's maximum (the last NaN when there is one, as PyTorch); windows may overlap, so contributions add up",
      operands: [OperandSpec("x"), OperandSpec("gradient")],
      attributes: windowAttributes(dilation: true),
      fusion: .opaque,
      c: .kernel(.maxPoolBackward),
      shape: ShapeRule("x: [N, C, H, W], gradient: max_pool2d(x)'s shape → x's shape") {
        context throws(ShapeError) in
        let (resultType, _) = try poolingResult(context)
        let gradient = context.operands[1]
        guard gradient == resultType else {
          throw ShapeError(
            "max_pool2d_backward: the gradient is \(gradient), but max_pool2d of \(context.operands[0]) gives \(resultType)"
          )
        }
        return [context.operands[0]]
      },
      interpret: { context in
        let checked = try context.checked("max_pool2d_backward")
        let windows = try poolingWindows(checked)
        let x = context.operands[0]
        let values = x.doubles()
        let gradient = context.operands[1].doubles()
        var output = [Double](repeating: 0, count: values.count)
        var flat = 0
        forEachWindow(x.shape, windows) { plane, _, positions in
          let (_, position) = windowMaximum(values, plane: plane, positions: positions)
          if let position { output[position] += gradient[flat] }
          flat += 1
        }
        return [context.result(0, output)]
      }),
    OpDefinition(
      "avg_pool2d",
      summary:
        "The mean of each window over the last two axes of an NCHW tensor (PyTorch's AvgPool2d).",
      semantics:
        "y[n, c, i, j] = (Σ over window (i, j) of x[n, c, ·, ·]) / d; padding adds zeros; d is the window clipped to the padded input when count_include_pad (PyTorch's default), else the number of input positions in the window",
      operands: [OperandSpec("x")],
      attributes: windowAttributes(dilation: false) + [countIncludePad],
      fusion: .opaque,
      c: .kernel(.averagePool),
      shape: ShapeRule("[N, C, H, W] → [N, C, H_out, W_out]") { context throws(ShapeError) in
        [try poolingResult(context).type]
      },
      interpret: { context in
        let checked = try context.checked("avg_pool2d")
        let windows = try poolingWindows(checked)
        let includePad = checked.bool("count_include_pad") ?? true
        let x = context.operands[0]
        let values = x.doubles()
        var output: [Double] = []
        forEachWindow(x.shape, windows) { plane, window, positions in
          let total = positions.reduce(0.0) { $0 + values[plane + $1] }
          output.append(
            total / Double(averageDivisor(windows, window, positions, includePad: includePad)))
        }
        return [context.result(0, output)]
      },
      // ∂/∂x: each window's g / d spread over the window's input positions
      gradient: { builder, inputs throws(ShapeError) in
        let x = builder.type(of: inputs.operands[0])
        var attributes = inputs.attributes
        attributes["input_size"] = .ints(x.shape.suffix(2).map { $0.staticValue ?? 0 })
        return [try builder.op("avg_pool2d_backward", [inputs.resultGradient], attributes)]
      }),
    OpDefinition(
      "avg_pool2d_backward",
      summary:
        "The gradient of avg_pool2d: each window's gradient divided by the window's divisor and added at every input position of the window.",
      semantics:
        "dx = zeros([N, C, input_size...]); for each window (n, c, i, j) and input position p in it: dx[n, c, p] += gradient[n, c, i, j] / d, d as avg_pool2d divides",
      operands: [OperandSpec("gradient")],
      attributes: windowAttributes(dilation: false) + [
        countIncludePad,
        AttributeSpec(
          "input_size", .ints, required: true,
          "[H, W] of the pooled input (ceil mode makes it more than the output size tells)"),
      ],
      fusion: .opaque,
      c: .kernel(.averagePoolBackward),
      shape: ShapeRule("gradient: [N, C, H_out, W_out] → [N, C, input_size...]") {
        context throws(ShapeError) in
        [try averageBackwardResult(context)]
      },
      interpret: { context in
        let checked = try context.checked("avg_pool2d_backward")
        let inputSize = checked.ints("input_size") ?? []
        let windows = try PoolingWindows(
          op: "avg_pool2d_backward", attributes: checked.attributes, inputHeight: inputSize[0],
          inputWidth: inputSize[1])
        let includePad = checked.bool("count_include_pad") ?? true
        let shape = context.results[0].shape
        let gradient = context.operands[0].doubles()
        var output = [Double](repeating: 0, count: shape.reduce(1, *))
        var flat = 0
        forEachWindow(shape, windows) { plane, window, positions in
          let share =
            gradient[flat]
            / Double(averageDivisor(windows, window, positions, includePad: includePad))
          for position in positions {
            output[plane + position] += share
          }
          flat += 1
        }
        return [context.result(0, output)]
      },
      // linear in the gradient, the adjoint of avg_pool2d: ∂/∂gradient = avg_pool2d(g)
      gradient: { builder, inputs throws(ShapeError) in
        var attributes = inputs.attributes
        attributes["input_size"] = nil
        return [try builder.op("avg_pool2d", [inputs.resultGradient], attributes)]
      }),
    OpDefinition(
      "global_avg_pool2d",
      summary: "The mean over the last two axes of an NCHW tensor: [N, C, H, W] → [N, C].",
      semantics: "y[n, c] = (Σ_{h, w} x[n, c, h, w]) / (H·W); an empty plane gives NaN",
      operands: [OperandSpec("x")],
      fusion: .opaque,
      c: .kernel(.globalAveragePool),
      shape: ShapeRule("[N, C, H, W] → [N, C]") { context throws(ShapeError) in
        let x = context.operands[0]
        try context.requireFloat(x, "input")
        guard x.rank == 4 else {
          throw ShapeError(
            "global_avg_pool2d needs an NCHW input of rank 4, got \(x)",
            help: "reshape the input to [batch, channels, height, width]")
        }
        return [x.with(shape: Array(x.shape.prefix(2)))]
      },
      interpret: { context in
        _ = try context.checked("global_avg_pool2d")
        let x = context.operands[0]
        let values = x.doubles()
        let plane = x.shape[2] * x.shape[3]
        let planes = x.shape[0] * x.shape[1]
        let output = (0..<planes).map { index in
          values[(index * plane)..<((index + 1) * plane)].reduce(0, +) / Double(plane)
        }
        return [context.result(0, output)]
      },
      // ∂/∂x = g / (H·W), spread over each plane
      gradient: { builder, inputs throws(ShapeError) in
        let x = builder.type(of: inputs.operands[0])
        let spread = try builder.expand(inputs.resultGradient, to: x, reducing: [2, 3])
        let count = try builder.count(Array(x.shape.suffix(2)), like: inputs.resultGradient)
        return [try builder.div(spread, count)]
      }),
  ]

  /// The window attributes of the windowed poolings and their gradients.
  static func windowAttributes(dilation: Bool) -> [AttributeSpec] {
    [
      AttributeSpec("kernel", .ints, required: true, "window size [kernel_h, kernel_w]"),
      AttributeSpec(
        "stride", .ints, "step between windows [stride_h, stride_w]; absent: the kernel"),
      AttributeSpec(
        "padding", .ints, default: .ints([0, 0, 0, 0]),
        "[top, left, bottom, right] (ONNX's order), each at most half the kernel"),
    ]
      + (dilation
        ? [
          AttributeSpec(
            "dilation", .ints, default: .ints([1, 1]),
            "spacing of window elements [dilation_h, dilation_w]")
        ] : [])
      + [
        AttributeSpec(
          "ceil_mode", .bool, default: .bool(false),
          "round the output size up (PyTorch's rule: the last window must start inside the input or its leading padding)"
        )
      ]
  }

  static let countIncludePad = AttributeSpec(
    "count_include_pad", .bool, default: .bool(true),
    "divide by the window clipped to the padded input (true, PyTorch's default) or by the input positions in it (false, ONNX's default)"
  )

  /// A pooling's result type and windows: the input must be a floating-point NCHW tensor with static
  /// height and width.
  static func poolingResult(_ context: ShapeContext) throws(ShapeError) -> (
    type: TensorType, windows: PoolingWindows
  ) {
    let x = context.operands[0]
    let size = try poolingInputSize(context, rank: 2)
    let (height, width) = (size[0], size[1])
    let windows = try PoolingWindows(
      op: context.op, attributes: context.attributes, inputHeight: height, inputWidth: width)
    let shape = [x.shape[0], x.shape[1], Dim(windows.height.output), Dim(windows.width.output)]
    return (x.with(shape: shape), windows)
  }

  /// The windows of a checked interpreter call.
  static func poolingWindows(_ context: ShapeContext) throws(InterpretError) -> PoolingWindows {
    do {
      return try poolingResult(context).windows
    } catch {
      throw InterpretError(error.message)
    }
  }

  /// `avg_pool2d_backward`'s result: [N, C, input_size...], when avg_pool2d of it gives the
  /// gradient's shape.
  static func averageBackwardResult(_ context: ShapeContext) throws(ShapeError) -> TensorType {
    try averagePoolBackwardResult(context, rank: 2) { forward throws(ShapeError) in
      try poolingResult(forward).type
    }
  }
}

/// A window of a pooling: the output row and column it computes.
struct PoolingWindow {
  var row: Int
  var column: Int
}

/// Visits every output element of a pooling in row-major order: the offset of its input plane
/// (`inputShape`'s last two axes), its window, and the window's input positions in the plane
/// (listed once per plane shape, not per plane).
func forEachWindow(
  _ inputShape: [Int], _ windows: PoolingWindows, _ body: (Int, PoolingWindow, [Int]) -> Void
) {
  var table: [(window: PoolingWindow, positions: [Int])] = []
  for row in 0..<windows.height.output {
    for column in 0..<windows.width.output {
      table.append(
        (PoolingWindow(row: row, column: column), windows.positions(row: row, column: column)))
    }
  }
  let planes = inputShape[0] * inputShape[1]
  let planeSize = inputShape[2] * inputShape[3]
  for plane in 0..<planes {
    for entry in table { body(plane * planeSize, entry.window, entry.positions) }
  }
}

/// The largest value of a window and its flat position, by PyTorch's rule: starting from −∞ at the
/// window's first position, a later value replaces the maximum when it is larger or NaN, so ties keep
/// the first and a NaN wins. A window with no input position (possible only with dilation) gives −∞
/// and no position.
func windowMaximum(_ values: [Double], plane: Int, positions: [Int]) -> (
  value: Double, position: Int?
) {
  guard let first = positions.first else { return (-.infinity, nil) }
  var maximum = -Double.infinity
  var position = plane + first
  for offset in positions {
    let value = values[plane + offset]
    if value > maximum || value.isNaN {
      maximum = value
      position = plane + offset
    }
  }
  return (maximum, position)
}

/// What avg_pool2d divides a window by: the window clipped to the padded input when padding
/// counts, else the number of input positions in it.
func averageDivisor(
  _ windows: PoolingWindows, _ window: PoolingWindow, _ positions: [Int], includePad: Bool
) -> Int {
  includePad
    ? windows.height.paddedCount(window.row) * windows.width.paddedCount(window.column)
    : positions.count
}
