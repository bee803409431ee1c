import LaminaSupport

/// The windows of a pooling over the spatial axes of a `[N, C, spatial...]` tensor, one
/// `PoolingAxis` per spatial axis; the 3-D poolings use it, its loops are rank-generic.
public struct SpatialPoolingWindows: Sendable, Hashable {
  public var axes: [PoolingAxis]

  /// The windows a pooling node's attributes describe over an input of spatial size `inputSize`,
  /// checked as `PoolingWindows` checks the 2-D ones (PyTorch's rules): positive kernel, stride and
  /// dilation, padding (every start, then every end) at most half the kernel, at least one output
  /// along each axis.
  public init(op: String, attributes: [String: Attribute], inputSize: [Int]) throws(ShapeError) {
    axes = try poolingAxes(op: op, attributes: attributes, inputSize: inputSize)
  }

  public var outputSize: [Int] { axes.map(\.output) }

  /// Calls `body(plane offset, window coordinate, positions)` for every output element in
  /// row-major order; the positions are the window's input positions inside the input, flat within
  /// the plane, in row-major window order.
  func forEachWindow(planes: Int, _ body: (Int, [Int], [Int]) -> Void) {
    let inputSize = axes.map(\.input)
    let strides = rowMajorStrides(inputSize)
    var table: [(window: [Int], positions: [Int])] = []
    forEachCoordinate(outputSize) { window in
      var positions = [0]
      for (axis, index) in window.enumerated() {
        let along = axes[axis].positions(index)
        positions = positions.flatMap { base in along.map { base + $0 * strides[axis] } }
      }
      table.append((window, positions))
    }
    let planeSize = inputSize.reduce(1, *)
    for plane in 0..<planes {
      for entry in table { body(plane * planeSize, entry.window, entry.positions) }
    }
  }

  /// What an average divides window `window` by: the window clipped to the padded input when
  /// padding counts, else the number of input positions in it.
  func averageDivisor(_ window: [Int], positions: [Int], includePad: Bool) -> Int {
    guard includePad else { return positions.count }
    return zip(axes, window).reduce(1) { $0 * $1.0.paddedCount($1.1) }
  }

  /// The attributes of the 2-D pooling that pools axes `first` and `first + 1` of these windows
  /// (`first + 1` may be past the last axis: then the second axis is a size-1 one, kernel 1).
  func planarAttributes(axes pair: [Int], base: [String: Attribute]) -> [String: Attribute] {
    let unit = PoolingAxis(
      input: 1, kernel: 1, stride: 1, padBefore: 0, padAfter: 0, ceilMode: false)
    let chosen = pair.map { $0 < axes.count ? axes[$0] : unit }
    var attributes = base
    attributes["kernel"] = .ints(chosen.map(\.kernel))
    attributes["stride"] = .ints(chosen.map(\.stride))
    attributes["padding"] = .ints(
      [chosen[0].padBefore, chosen[1].padBefore, chosen[0].padAfter, chosen[1].padAfter])
    if base["dilation"] != nil { attributes["dilation"] = .ints(chosen.map(\.dilation)) }
    attributes["input_size"] = nil
    return attributes
  }
}

extension OpRegistry {
  /// Max and average pooling over the three spatial axes of NCDHW tensors and their gradients. The
  /// C backend compiles each as two 2-D poolings (windows are boxes, so both separate exactly: the
  /// height and width of every depth first, then the depth), which run the tuned 2-D kernels.
  static let pooling3DOps: [OpDefinition] = [
    maxPool3d, maxPool3dBackward, avgPool3d, avgPool3dBackward,
  ]

  static func pooling3DAttributes(dilation: Bool) -> [AttributeSpec] {
    [
      AttributeSpec("kernel", .ints, required: true, "window size [kernel_d, kernel_h, kernel_w]"),
      AttributeSpec(
        "stride", .ints, "step between windows [stride_d, stride_h, stride_w]; absent: the kernel"),
      AttributeSpec(
        "padding", .ints, default: .ints([0, 0, 0, 0, 0, 0]),
        "[front, top, left, back, bottom, right] (ONNX's order), each at most half the kernel"),
    ]
      + (dilation
        ? [
          AttributeSpec(
            "dilation", .ints, default: .ints([1, 1, 1]),
            "spacing of window elements [dilation_d, dilation_h, dilation_w]")
        ] : [])
      + [
        AttributeSpec(
          "ceil_mode", .bool, default: .bool(false),
          "round the output size up (PyTorch's rule: the last window must start inside the input or its leading padding)"
        )
      ]
  }

  /// A 3-D pooling's result type and windows: the input must be a floating-point NCDHW tensor with
  /// static spatial sizes.
  static func pooling3DResult(_ context: ShapeContext) throws(ShapeError) -> (
    type: TensorType, windows: SpatialPoolingWindows
  ) {
    let x = context.operands[0]
    let sizes = try poolingInputSize(context, rank: 3)
    let windows = try SpatialPoolingWindows(
      op: context.op, attributes: context.attributes, inputSize: sizes)
    return (x.with(shape: Array(x.shape.prefix(2)) + windows.outputSize.map { Dim($0) }), windows)
  }

  static func pooling3DWindows(_ context: ShapeContext) throws(InterpretError)
    -> SpatialPoolingWindows
  {
    do {
      return try pooling3DResult(context).windows
    } catch {
      throw InterpretError(error.message)
    }
  }

  static let maxPool3d: OpDefinition = {
    var definition = OpDefinition(
      "max_pool3d",
      summary:
        "The largest element of each window over the last three axes of an NCDHW tensor (PyTorch's MaxPool3d). The C backend compiles it as two max_pool2d.",
      semantics:
        "y[n, c, i, j, k] = max over window (i, j, k) of x[n, c, ·, ·, ·]; the window covers depths i·stride_d − front + a·dilation_d, a < kernel_d, and rows and columns likewise; positions in the padding are skipped (as −∞); a NaN in the window gives NaN",
      operands: [OperandSpec("x")],
      attributes: pooling3DAttributes(dilation: true),
      fusion: .opaque,
      c: .decomposed,
      shape: ShapeRule("[N, C, D, H, W] → [N, C, D_out, H_out, W_out]") {
        context throws(ShapeError) in
        [try pooling3DResult(context).type]
      },
      interpret: { context in
        let windows = try pooling3DWindows(try context.checked("max_pool3d"))
        let x = context.operands[0]
        let values = x.doubles()
        var output: [Double] = []
        windows.forEachWindow(planes: x.shape[0] * x.shape[1]) { plane, _, positions in
          output.append(windowMaximum(values, plane: plane, positions: positions).value)
        }
        return [context.result(0, output)]
      },
      // ∂/∂x: g of each window goes to its maximum (the first one on ties, as PyTorch)
      gradient: { builder, inputs throws(ShapeError) in
        [
          try builder.op(
            "max_pool3d_backward", [inputs.operands[0], inputs.resultGradient],
            inputs.attributes)
        ]
      })
    // max over the box = max over depth of the max over each depth's rectangle; the first maximum
    // in (d, h, w) order is the first depth's first, so the 2-D ops' tie rule carries over.
    definition.decomposition = { builder, node throws(ShapeError) in
      let lowering = try Pooling3DLowering(&builder, node)
      let planar = try lowering.poolPlanes(&builder, node.operands[0], op: Ops.maxPool2d)
      let depth = try builder.op(
        Ops.maxPool2d, [try lowering.depthRows(&builder, planar)], lowering.depthAttributes)
      return [try lowering.volume(&builder, depth)]
    }
    return definition
  }()

  static let maxPool3dBackward: OpDefinition = {
    var definition = OpDefinition(
      "max_pool3d_backward",
      summary:
        "The gradient of max_pool3d: each window's gradient added at the position of the window's maximum in `x` (the first one on ties).",
      semantics:
        "dx = zeros(x.shape); for each window (n, c, i, j, k): dx[n, c, argmax] += gradient[n, c, i, j, k], argmax the first position of the window's maximum in (d, h, w) order (the last NaN when there is one, as PyTorch); windows may overlap, so contributions add up",
      operands: [OperandSpec("x"), OperandSpec("gradient")],
      attributes: pooling3DAttributes(dilation: true),
      fusion: .opaque,
      c: .decomposed,
      shape: ShapeRule("x: [N, C, D, H, W], gradient: max_pool3d(x)'s shape → x's shape") {
        context throws(ShapeError) in
        let (resultType, _) = try pooling3DResult(context)
        guard context.operands[1] == resultType else {
          throw ShapeError(
            "max_pool3d_backward: the gradient is \(context.operands[1]), but max_pool3d of \(context.operands[0]) gives \(resultType)"
          )
        }
        return [context.operands[0]]
      },
      interpret: { context in
        let windows = try pooling3DWindows(try context.checked("max_pool3d_backward"))
        let x = context.operands[0]
        let values = x.doubles()
        let gradient = context.operands[1].doubles()
        var output = [Double](repeating: 0, count: values.count)
        var flat = 0
        windows.forEachWindow(planes: x.shape[0] * x.shape[1]) { plane, _, positions in
          if let position = windowMaximum(values, plane: plane, positions: positions).position {
            output[position] += gradient[flat]
          }
          flat += 1
        }
        return [context.result(0, output)]
      })
    // Back through the two stages of max_pool3d's decomposition: the depth stage's gradient goes
    // to each depth's rectangle maximum, which the planar stage sends to its position.
    definition.decomposition = { builder, node throws(ShapeError) in
      let lowering = try Pooling3DLowering(&builder, node)
      let x = node.operands[0]
      let planarInput = try lowering.planes(&builder, x)
      let planar = try builder.op(Ops.maxPool2d, [planarInput], lowering.planarAttributes)
      let depthGradient = try builder.op(
        Ops.maxPool2dBackward,
        [
          try lowering.depthRows(&builder, planar),
          try lowering.outputRows(&builder, node.operands[1]),
        ],
        lowering.depthAttributes)
      let planarGradient = try builder.op(
        Ops.reshape, [depthGradient], ["shape": .dims(builder.type(of: planar).shape)])
      let gradient = try builder.op(
        Ops.maxPool2dBackward, [planarInput, planarGradient], lowering.planarAttributes)
      return [try builder.op(Ops.reshape, [gradient], ["shape": .dims(builder.type(of: x).shape)])]
    }
    return definition
  }()

  static let avgPool3d: OpDefinition = {
    var definition = OpDefinition(
      "avg_pool3d",
      summary:
        "The mean of each window over the last three axes of an NCDHW tensor (PyTorch's AvgPool3d). The C backend compiles it as two avg_pool2d.",
      semantics:
        "y[n, c, i, j, k] = (Σ over window (i, j, k) of x[n, c, ·, ·, ·]) / d; padding adds zeros; d is the window clipped to the padded input when count_include_pad (PyTorch's default), else the number of input positions in the window",
      operands: [OperandSpec("x")],
      attributes: pooling3DAttributes(dilation: false) + [countIncludePad],
      fusion: .opaque,
      c: .decomposed,
      shape: ShapeRule("[N, C, D, H, W] → [N, C, D_out, H_out, W_out]") {
        context throws(ShapeError) in
        [try pooling3DResult(context).type]
      },
      interpret: { context in
        let checked = try context.checked("avg_pool3d")
        let windows = try pooling3DWindows(checked)
        let includePad = checked.bool("count_include_pad") ?? true
        let x = context.operands[0]
        let values = x.doubles()
        var output: [Double] = []
        windows.forEachWindow(planes: x.shape[0] * x.shape[1]) { plane, window, positions in
          let total = positions.reduce(0.0) { $0 + values[plane + $1] }
          output.append(
            total
              / Double(windows.averageDivisor(window, positions: positions, includePad: includePad))
          )
        }
        return [context.result(0, output)]
      },
      // ∂/∂x: each window's g / d spread over the window's input positions
      gradient: { builder, inputs throws(ShapeError) in
        let x = builder.type(of: inputs.operands[0])
        var attributes = inputs.attributes
        attributes["input_size"] = .ints(x.shape.suffix(3).map { $0.staticValue ?? 0 })
        return [try builder.op("avg_pool3d_backward", [inputs.resultGradient], attributes)]
      })
    // Both divisors factor over the axes (a box's clipped size, or its count of input positions,
    // is the product of the axes'), so the mean of the rectangle means is the box's mean.
    definition.decomposition = { builder, node throws(ShapeError) in
      let lowering = try Pooling3DLowering(&builder, node)
      let planar = try lowering.poolPlanes(&builder, node.operands[0], op: Ops.avgPool2d)
      let depth = try builder.op(
        Ops.avgPool2d, [try lowering.depthRows(&builder, planar)], lowering.depthAttributes)
      return [try lowering.volume(&builder, depth)]
    }
    return definition
  }()

  static let avgPool3dBackward: OpDefinition = {
    var definition = OpDefinition(
      "avg_pool3d_backward",
      summary:
        "The gradient of avg_pool3d: each window's gradient divided by the window's divisor and added at every input position of the window.",
      semantics:
        "dx = zeros([N, C, input_size...]); for each window (n, c, i, j, k) and input position p in it: dx[n, c, p] += gradient[n, c, i, j, k] / d, d as avg_pool3d divides",
      operands: [OperandSpec("gradient")],
      attributes: pooling3DAttributes(dilation: false) + [
        countIncludePad,
        AttributeSpec(
          "input_size", .ints, required: true,
          "[D, H, W] of the pooled input (ceil mode makes it more than the output size tells)"),
      ],
      fusion: .opaque,
      c: .decomposed,
      shape: ShapeRule("gradient: [N, C, D_out, H_out, W_out] → [N, C, input_size...]") {
        context throws(ShapeError) in
        [try averagePool3DBackwardResult(context)]
      },
      interpret: { context in
        let checked = try context.checked("avg_pool3d_backward")
        let inputSize = checked.ints("input_size") ?? []
        let windows: SpatialPoolingWindows
        do {
          windows = try SpatialPoolingWindows(
            op: "avg_pool3d_backward", attributes: checked.attributes, inputSize: inputSize)
        } catch let error as ShapeError {
          throw InterpretError(error.message)
        }
        let includePad = checked.bool("count_include_pad") ?? true
        let shape = context.results[0].shape
        let gradient = context.operands[0].doubles()
        var output = [Double](repeating: 0, count: shape.reduce(1, *))
        var flat = 0
        windows.forEachWindow(planes: shape[0] * shape[1]) { plane, window, positions in
          let share =
            gradient[flat]
            / Double(windows.averageDivisor(window, positions: positions, includePad: includePad))
          for position in positions { output[plane + position] += share }
          flat += 1
        }
        return [context.result(0, output)]
      },
      // linear in the gradient, the adjoint of avg_pool3d: ∂/∂gradient = avg_pool3d(g)
      gradient: { builder, inputs throws(ShapeError) in
        var attributes = inputs.attributes
        attributes["input_size"] = nil
        return [try builder.op("avg_pool3d", [inputs.resultGradient], attributes)]
      })
    // The adjoint of avg_pool3d's decomposition: the depth stage's backward, then the planar one's.
    definition.decomposition = { builder, node throws(ShapeError) in
      let lowering = try Pooling3DLowering(&builder, node)
      let g = node.operands[0]
      let depthGradient = try builder.op(
        Ops.avgPool2dBackward, [try lowering.outputRows(&builder, g)],
        lowering.depthAttributes.merging(
          ["input_size": .ints([lowering.inputSize[0], lowering.outputPlane])]) { $1 })
      let planarGradient = try builder.op(
        Ops.reshape, [depthGradient],
        [
          "shape": .dims([
            lowering.batch, lowering.channels * Dim(lowering.inputSize[0]),
            Dim(lowering.windows.axes[1].output), Dim(lowering.windows.axes[2].output),
          ])
        ])
      let gradient = try builder.op(
        Ops.avgPool2dBackward, [planarGradient],
        lowering.planarAttributes.merging(
          ["input_size": .ints(Array(lowering.inputSize.suffix(2)))]) { $1 })
      return [
        try builder.op(
          Ops.reshape, [gradient],
          [
            "shape": .dims(
              [lowering.batch, lowering.channels] + lowering.inputSize.map { Dim($0) })
          ])
      ]
    }
    return definition
  }()

  /// `avg_pool3d_backward`'s result: [N, C, input_size...], when avg_pool3d of it gives the
  /// gradient's shape.
  static func averagePool3DBackwardResult(_ context: ShapeContext) throws(ShapeError)
    -> TensorType
  {
    try averagePoolBackwardResult(context, rank: 3) { forward throws(ShapeError) in
      try pooling3DResult(forward).type
    }
  }
}

/// How a 3-D pooling compiles as two 2-D ones: x `[N, C, D, H, W]` seen as `[N, C · D, H, W]`
/// pools every depth's rectangle, the result seen as `[N · C, 1, D, H_out · W_out]` pools the depth
/// (a `[kernel_d, 1]` window), and `[N · C, 1, D_out, H_out · W_out]` is the result
/// `[N, C, D_out, H_out, W_out]`.
struct Pooling3DLowering {
  let windows: SpatialPoolingWindows
  let batch: Dim
  let channels: Dim
  let inputSize: [Int]
  let planarAttributes: [String: Attribute]
  let depthAttributes: [String: Attribute]

  init(_ builder: inout GradientBuilder, _ node: Node) throws(ShapeError) {
    let operand = builder.type(of: node.operands[0])
    let backwardOfAverage = node.attributes["input_size"] != nil
    inputSize =
      backwardOfAverage
      ? node.attributes["input_size"]?.intsValue ?? []
      : operand.shape.suffix(3).map { $0.staticValue ?? 0 }
    windows = try SpatialPoolingWindows(
      op: node.op, attributes: node.attributes, inputSize: inputSize)
    batch = operand.shape[0]
    channels = operand.shape[1]
    planarAttributes = windows.planarAttributes(axes: [1, 2], base: node.attributes)
    depthAttributes = windows.planarAttributes(axes: [0, 3], base: node.attributes)
  }

  var outputPlane: Int { windows.axes[1].output * windows.axes[2].output }

  /// x `[N, C, D, H, W]` → `[N, C · D, H, W]`.
  func planes(_ builder: inout GradientBuilder, _ x: ValueID) throws(ShapeError) -> ValueID {
    try builder.op(
      Ops.reshape, [x],
      [
        "shape": .dims([
          batch, channels * Dim(inputSize[0]), Dim(inputSize[1]), Dim(inputSize[2]),
        ])
      ])
  }

  /// Every depth's rectangle pooled by `op`: `[N, C · D, H_out, W_out]`.
  func poolPlanes(_ builder: inout GradientBuilder, _ x: ValueID, op: OpHandle)
    throws(ShapeError) -> ValueID
  {
    try builder.op(op, [try planes(&builder, x)], planarAttributes)
  }

  /// `[N, C · D, H_out, W_out]` → `[N · C, 1, D, H_out · W_out]`.
  func depthRows(_ builder: inout GradientBuilder, _ planar: ValueID) throws(ShapeError)
    -> ValueID
  {
    try builder.op(
      Ops.reshape, [planar],
      ["shape": .dims([batch * channels, Dim(1), Dim(inputSize[0]), Dim(outputPlane)])])
  }

  /// A result-shaped `[N, C, D_out, H_out, W_out]` → `[N · C, 1, D_out, H_out · W_out]`.
  func outputRows(_ builder: inout GradientBuilder, _ value: ValueID) throws(ShapeError)
    -> ValueID
  {
    try builder.op(
      Ops.reshape, [value],
      ["shape": .dims([batch * channels, Dim(1), Dim(windows.axes[0].output), Dim(outputPlane)])])
  }

  /// `[N · C, 1, D_out, H_out · W_out]` → `[N, C, D_out, H_out, W_out]`.
  func volume(_ builder: inout GradientBuilder, _ rows: ValueID) throws(ShapeError) -> ValueID {
    try builder.op(
      Ops.reshape, [rows],
      ["shape": .dims([batch, channels] + windows.outputSize.map { Dim($0) })])
  }
}
