import LaminaSupport

/// The sizes of a convolution `y = conv(x, w)` over any number of spatial axes (NC + spatial): the
/// convolution's input x, its result y and its window. The 3-D ops use it; its interpreter loops are
/// rank-generic. `conv_transpose3d` is the input gradient of a convolution, so its operand is the y
/// of this geometry and its result the x.
public struct SpatialConvolutionGeometry: Sendable, Hashable {
  public var dtype: DType
  public var batch: Dim
  public var inChannels: Int
  /// The input's spatial sizes (`[D, H, W]` for 3-D).
  public var inputSize: [Int]
  public var outChannels: Int
  /// The result's spatial sizes.
  public var outputSize: [Int]
  public var kernel: [Int]
  public var stride: [Int]
  /// The padding before each spatial axis, then after each (ONNX's order: `[front, top, left,
  /// back, bottom, right]` for 3-D).
  public var padding: [Int]
  public var dilation: [Int]
  public var groups: Int

  public var spatialRank: Int { inputSize.count }

  /// The convolution's input type `[batch, in, spatial...]`.
  public var inputType: TensorType {
    TensorType(dtype, [batch, Dim(inChannels)] + inputSize.map { Dim($0) })
  }
  /// The convolution's result type `[batch, out, spatial...]`.
  public var outputType: TensorType {
    TensorType(dtype, [batch, Dim(outChannels)] + outputSize.map { Dim($0) })
  }
  /// The convolution's weight type `[out, in / groups, kernel...]`.
  public var weightType: TensorType {
    TensorType(dtype, [Dim(outChannels), Dim(inChannels / groups)] + kernel.map { Dim($0) })
  }

  /// The window's extent along `axis`: `dilation · (kernel − 1) + 1`.
  public func span(_ axis: Int) -> Int { dilation[axis] * (kernel[axis] - 1) + 1 }

  /// The `output_padding` a transposed convolution of this convolution's result needs to give back
  /// exactly the input's size (the positions the forward stride skipped at the end).
  public var outputPaddingForInput: [Int] {
    (0..<spatialRank).map { axis in
      inputSize[axis]
        - ((outputSize[axis] - 1) * stride[axis] - padding[axis] - padding[axis + spatialRank]
          + span(axis))
    }
  }

  /// The attributes every convolution op of this rank stores, for building gradient nodes.
  public var attributes: [String: Attribute] {
    [
      "stride": .ints(stride), "padding": .ints(padding), "dilation": .ints(dilation),
      "groups": .int(groups),
    ]
  }
}

extension OpRegistry {
  /// 3-D convolutions (NCDHW), their input gradient (the transposed convolution) and weight
  /// gradient. The C backend compiles each as its decomposition into the 2-D ops: the depth taps
  /// of the input are stacked into channels (a depth-only vol2col), so one `conv2d` over
  /// `[N · D_out, groups · kd · C/groups, H, W]` runs the tuned 2-D kernels.
  static let convolution3DOps: [OpDefinition] = [conv3d, convTranspose3d, conv3dBackwardWeight]

  static let convolution3DAttributes: [AttributeSpec] = [
    AttributeSpec("stride", .ints, default: .ints([1, 1, 1]), "[sd, sh, sw]"),
    AttributeSpec(
      "padding", .ints, default: .ints([0, 0, 0, 0, 0, 0]),
      "[front, top, left, back, bottom, right] (ONNX's order: every start, then every end)"),
    AttributeSpec("dilation", .ints, default: .ints([1, 1, 1]), "[dd, dh, dw]"),
    AttributeSpec(
      "groups", .int, default: .int(1),
      "channels split into this many independent convolutions (depthwise when it is the input's channel count)"
    ),
  ]

  static let conv3d: OpDefinition = {
    var definition = OpDefinition(
      "conv3d",
      summary:
        "3-D convolution (cross-correlation, as PyTorch and ONNX) of an NCDHW input with a weight [out, in / groups, kd, kh, kw], plus a bias. The C backend compiles it as conv2d over the input's stacked depth taps.",
      semantics:
        "y[n, o, od, oh, ow] = bias[o] + Σ_{c, a, i, j} x[n, g · C/G + c, od · sd - front + a · dd, oh · sh - top + i · dh, ow · sw - left + j · dw] · w[o, c, a, i, j], g = o / (O/G), positions outside x reading 0 (padding); each output size ⌊(size + pads - dilation · (kernel - 1) - 1) / stride⌋ + 1. bias is [O] or a scalar (0 for none).",
      operands: [OperandSpec("x"), OperandSpec("weight"), OperandSpec("bias")],
      attributes: convolution3DAttributes,
      fusion: .opaque,
      c: .decomposed,
      shape: ShapeRule("conv3d(x, weight, bias)") { context throws(ShapeError) in
        [try conv3dGeometry(context).outputType]
      },
      interpret: { context in
        let geometry = try conv3dGeometry(try context.checked("conv3d"))
        return [
          context.result(
            0,
            interpretSpatialConvolution(
              geometry, batch: context.operands[0].shape[0], x: context.operands[0].doubles(),
              weight: context.operands[1].doubles(), bias: context.operands[2].doubles()))
        ]
      },
      // ∂x = conv_transpose3d(g, w), ∂w = conv3d_backward_weight(x, g), ∂b = Σ g over all but the
      // channels, as for conv2d.
      gradient: { builder, inputs throws(ShapeError) in
        let (x, w, b) = (inputs.operands[0], inputs.operands[1], inputs.operands[2])
        let g = inputs.resultGradient
        let geometry = try conv3dGeometry(
          ShapeContext(
            op: "conv3d",
            operands: [builder.type(of: x), builder.type(of: w), builder.type(of: b)],
            attributes: inputs.attributes))
        var gradients: [ValueID?] = [nil, nil, nil]
        if builder.wants(x) {
          var attributes = geometry.attributes
          attributes["output_padding"] = .ints(geometry.outputPaddingForInput)
          gradients[0] = try builder.op(
            "conv_transpose3d", [g, w, builder.constant(0, like: g)], attributes)
        }
        if builder.wants(w) {
          var attributes = geometry.attributes
          attributes["kernel"] = .ints(geometry.kernel)
          gradients[1] = try builder.op("conv3d_backward_weight", [x, g], attributes)
        }
        if builder.wants(b) { gradients[2] = try spatialBiasGradient(&builder, g, bias: b) }
        return gradients
      })
    definition.decomposition = { builder, node throws(ShapeError) in
      let operands = node.operands
      let geometry = try conv3dGeometry(
        ShapeContext(
          op: "conv3d", operands: operands.map { builder.type(of: $0) },
          attributes: node.attributes))
      let lowering = DepthLowering(geometry)
      let stacked = try lowering.stackDepthTaps(&builder, operands[0])
      let weight = try lowering.planarWeight(&builder, operands[1])
      let planar = try builder.op(
        Ops.conv2d, [stacked, weight, operands[2]], lowering.planarAttributes)
      return [try lowering.unstackOutput(&builder, planar)]
    }
    return definition
  }()

  static let convTranspose3d: OpDefinition = {
    var definition = OpDefinition(
      "conv_transpose3d",
      summary:
        "3-D transposed convolution (the input gradient of conv3d, PyTorch's ConvTranspose3d) of an NCDHW input with a weight [in, out / groups, kd, kh, kw], plus a bias. The C backend compiles it as conv_transpose2d and a sum over the depth taps.",
      semantics:
        "y[n, g · O/G + o, p] = bias[g · O/G + o] + Σ x[n, c, q] · weight[c, o, k] over c in group g = c / (C/G) and output positions q, kernel positions k with q · stride - pad_start + k · dilation = p on each axis; each result size (size - 1) · stride - pad_start - pad_end + dilation · (kernel - 1) + 1 + output_padding. output_padding must be smaller than the stride. bias is [O] or a scalar.",
      operands: [OperandSpec("x"), OperandSpec("weight"), OperandSpec("bias")],
      attributes: convolution3DAttributes + [
        AttributeSpec(
          "output_padding", .ints, default: .ints([0, 0, 0]),
          "[d, h, w] positions added at the end of each result axis (each smaller than the stride)")
      ],
      fusion: .opaque,
      c: .decomposed,
      shape: ShapeRule("conv_transpose3d(x, weight, bias)") { context throws(ShapeError) in
        [try convTranspose3dGeometry(context).inputType]
      },
      interpret: { context in
        let geometry = try convTranspose3dGeometry(try context.checked("conv_transpose3d"))
        return [
          context.result(
            0,
            interpretSpatialConvolutionTranspose(
              geometry, batch: context.operands[0].shape[0], dy: context.operands[0].doubles(),
              weight: context.operands[1].doubles(), bias: context.operands[2].doubles()))
        ]
      },
      // As conv_transpose2d: ∂x = conv3d(g, w), ∂w = conv3d_backward_weight(g, x), ∂b = Σ g.
      gradient: { builder, inputs throws(ShapeError) in
        let (x, w, b) = (inputs.operands[0], inputs.operands[1], inputs.operands[2])
        let g = inputs.resultGradient
        let geometry = try convTranspose3dGeometry(
          ShapeContext(
            op: "conv_transpose3d",
            operands: [builder.type(of: x), builder.type(of: w), builder.type(of: b)],
            attributes: inputs.attributes))
        var gradients: [ValueID?] = [nil, nil, nil]
        if builder.wants(x) {
          gradients[0] = try builder.op(
            "conv3d", [g, w, builder.constant(0, like: g)], geometry.attributes)
        }
        if builder.wants(w) {
          var attributes = geometry.attributes
          attributes["kernel"] = .ints(geometry.kernel)
          gradients[1] = try builder.op("conv3d_backward_weight", [g, x], attributes)
        }
        if builder.wants(b) { gradients[2] = try spatialBiasGradient(&builder, g, bias: b) }
        return gradients
      })
    definition.decomposition = { builder, node throws(ShapeError) in
      let operands = node.operands
      let geometry = try convTranspose3dGeometry(
        ShapeContext(
          op: "conv_transpose3d", operands: operands.map { builder.type(of: $0) },
          attributes: node.attributes))
      let lowering = DepthLowering(geometry)
      let planarGradient = try lowering.stackOutput(&builder, operands[0])
      let weight = try lowering.planarWeight(&builder, operands[1])
      var attributes = lowering.planarAttributes
      attributes["output_padding"] = .ints(
        Array(geometry.outputPaddingForInput.suffix(2)))
      let planar = try builder.op(
        Ops.convTranspose2d, [planarGradient, weight, builder.constant(0, like: operands[0])],
        attributes)
      var y = try lowering.sumDepthTaps(&builder, planar)
      let bias = operands[2]
      if builder.type(of: bias).isScalar {
        y = try builder.add(y, bias)
      } else {
        let channels = builder.type(of: bias).shape
        let column = try builder.op(
          Ops.reshape, [bias], ["shape": .dims(channels + [Dim(1), Dim(1), Dim(1)])])
        y = try builder.add(y, column)
      }
      return [y]
    }
    return definition
  }()

  static let conv3dBackwardWeight: OpDefinition = {
    var definition = OpDefinition(
      "conv3d_backward_weight",
      summary:
        "The weight gradient of conv3d: for the convolution's input x and the gradient dy of its result, ∂loss/∂weight [out, in / groups, kd, kh, kw].",
      semantics:
        "dw[o, c, a, i, j] = Σ_{n, od, oh, ow} dy[n, o, od, oh, ow] · x[n, g · C/G + c, od · sd - front + a · dd, oh · sh - top + i · dh, ow · sw - left + j · dw] (0 outside x), g = o / (O/G); dy must have the shape conv3d gives x with this kernel size.",
      operands: [OperandSpec("x"), OperandSpec("dy")],
      attributes: convolution3DAttributes + [
        AttributeSpec("kernel", .ints, required: true, "[kd, kh, kw] of the convolution's weight")
      ],
      fusion: .opaque,
      c: .decomposed,
      shape: ShapeRule("conv3d_backward_weight(x, dy)") { context throws(ShapeError) in
        [try conv3dBackwardWeightGeometry(context).weightType]
      },
      interpret: { context in
        let geometry = try conv3dBackwardWeightGeometry(
          try context.checked("conv3d_backward_weight"))
        return [
          context.result(
            0,
            interpretSpatialConvolutionWeightGradient(
              geometry, batch: context.operands[0].shape[0], x: context.operands[0].doubles(),
              dy: context.operands[1].doubles()))
        ]
      },
      // Bilinear, as conv2d_backward_weight: ∂x = conv_transpose3d(dy, G), ∂dy = conv3d(x, G).
      gradient: { builder, inputs throws(ShapeError) in
        let (x, dy) = (inputs.operands[0], inputs.operands[1])
        let g = inputs.resultGradient
        let geometry = try conv3dBackwardWeightGeometry(
          ShapeContext(
            op: "conv3d_backward_weight", operands: [builder.type(of: x), builder.type(of: dy)],
            attributes: inputs.attributes))
        var gradients: [ValueID?] = [nil, nil]
        if builder.wants(x) {
          var attributes = geometry.attributes
          attributes["output_padding"] = .ints(geometry.outputPaddingForInput)
          gradients[0] = try builder.op(
            "conv_transpose3d", [dy, g, builder.constant(0, like: g)], attributes)
        }
        if builder.wants(dy) {
          gradients[1] = try builder.op(
            "conv3d", [x, g, builder.constant(0, like: g)], geometry.attributes)
        }
        return gradients
      })
    definition.decomposition = { builder, node throws(ShapeError) in
      let operands = node.operands
      let geometry = try conv3dBackwardWeightGeometry(
        ShapeContext(
          op: "conv3d_backward_weight", operands: operands.map { builder.type(of: $0) },
          attributes: node.attributes))
      let lowering = DepthLowering(geometry)
      let stacked = try lowering.stackDepthTaps(&builder, operands[0])
      let planarGradient = try lowering.stackOutput(&builder, operands[1])
      var attributes = lowering.planarAttributes
      attributes["kernel"] = .ints(Array(geometry.kernel.suffix(2)))
      let planar = try builder.op(
        Ops.conv2dBackwardWeight, [stacked, planarGradient], attributes)
      return [try lowering.volumeWeight(&builder, planar)]
    }
    return definition
  }()

  // MARK: Shape rules

  /// `conv3d(x, weight, bias)`.
  static func conv3dGeometry(_ context: ShapeContext) throws(ShapeError)
    -> SpatialConvolutionGeometry
  {
    let op = context.op
    let (x, w, b) = (context.operands[0], context.operands[1], context.operands[2])
    let dtype = try context.commonDType()
    let (channels, size) = try channelsFirst(x, rank: 3, op, "the input")
    let (stride, padding, dilation, groups) = try spatialWindowAttributes(context, rank: 3)
    let weight = try staticSpatialWeight(w, rank: 3, op)
    let outChannels = weight[0]
    guard channels % groups == 0, outChannels % groups == 0 else {
      throw ShapeError(
        "\(op): groups \(groups) must divide both the input's \(channels) channels and the weight's \(outChannels) output channels"
      )
    }
    guard weight[1] * groups == channels else {
      throw ShapeError(
        "\(op): the input has \(channels) channels but the weight \(w) expects \(weight[1] * groups) (its axis 1, in_channels / groups = \(weight[1]), times groups \(groups))",
        help: "the weight is [out, in / groups, kd, kh, kw]")
    }
    try checkBias(b, channels: outChannels, op)
    let kernel = Array(weight.suffix(3))
    var outputSize: [Int] = []
    for axis in 0..<3 {
      outputSize.append(
        try convolutionOutputSize(
          op, input: size[axis], axis: axis, kernel: kernel, stride: stride, padding: padding,
          dilation: dilation))
    }
    return SpatialConvolutionGeometry(
      dtype: dtype, batch: x.shape[0], inChannels: channels, inputSize: size,
      outChannels: outChannels, outputSize: outputSize, kernel: kernel, stride: stride,
      padding: padding, dilation: dilation, groups: groups)
  }

  /// `conv_transpose3d(x, weight, bias)`: x is the geometry's output, the result its input.
  static func convTranspose3dGeometry(_ context: ShapeContext) throws(ShapeError)
    -> SpatialConvolutionGeometry
  {
    let op = context.op
    let (x, w, b) = (context.operands[0], context.operands[1], context.operands[2])
    let dtype = try context.commonDType()
    let (channels, size) = try channelsFirst(x, rank: 3, op, "the input")
    let (stride, padding, dilation, groups) = try spatialWindowAttributes(context, rank: 3)
    let weight = try staticSpatialWeight(w, rank: 3, op)
    guard weight[0] == channels else {
      throw ShapeError(
        "\(op): the input has \(channels) channels but the weight \(w) expects \(weight[0]) (its axis 0)",
        help: "the weight is [in, out / groups, kd, kh, kw]")
    }
    guard channels % groups == 0 else {
      throw ShapeError("\(op): groups \(groups) does not divide the input's \(channels) channels")
    }
    let outputPadding = try transposedOutputPadding(context, stride: stride)
    let resultChannels = weight[1] * groups
    try checkBias(b, channels: resultChannels, op)
    let kernel = Array(weight.suffix(3))
    let resultSize = try transposedConvolutionSize(
      op, input: size, kernel: kernel, stride: stride, padding: padding, dilation: dilation,
      outputPadding: outputPadding)
    return SpatialConvolutionGeometry(
      dtype: dtype, batch: x.shape[0], inChannels: resultChannels, inputSize: resultSize,
      outChannels: channels, outputSize: size, kernel: kernel, stride: stride, padding: padding,
      dilation: dilation, groups: groups)
  }

  /// `conv3d_backward_weight(x, dy)`.
  static func conv3dBackwardWeightGeometry(_ context: ShapeContext) throws(ShapeError)
    -> SpatialConvolutionGeometry
  {
    let op = context.op
    let (x, dy) = (context.operands[0], context.operands[1])
    let dtype = try context.commonDType()
    let (channels, size) = try channelsFirst(x, rank: 3, op, "the input")
    let (outChannels, outSize) = try channelsFirst(dy, rank: 3, op, "the result gradient")
    let (stride, padding, dilation, groups) = try spatialWindowAttributes(context, rank: 3)
    let kernel = try weightGradientKernel(context, rank: 3)
    guard channels % groups == 0, outChannels % groups == 0 else {
      throw ShapeError(
        "\(op): groups \(groups) does not divide both \(channels) input and \(outChannels) output channels"
      )
    }
    var expected: [Int] = []
    for axis in 0..<3 {
      expected.append(
        try convolutionOutputSize(
          op, input: size[axis], axis: axis, kernel: kernel, stride: stride, padding: padding,
          dilation: dilation))
    }
    guard dy.shape[0] == x.shape[0], expected == outSize else {
      throw ShapeError(
        "\(op): dy \(dy) does not have the shape conv3d gives \(x): [\(x.shape[0]), \(outChannels), \(expected.map(String.init).joined(separator: ", "))]"
      )
    }
    return SpatialConvolutionGeometry(
      dtype: dtype, batch: x.shape[0], inChannels: channels, inputSize: size,
      outChannels: outChannels, outputSize: outSize, kernel: kernel, stride: stride,
      padding: padding, dilation: dilation, groups: groups)
  }

  /// The bias gradient of a convolution over any rank: g summed over every axis but the channels
  /// (all of them for a scalar bias).
  static func spatialBiasGradient(_ builder: inout GradientBuilder, _ g: ValueID, bias: ValueID)
    throws(ShapeError) -> ValueID
  {
    if builder.type(of: bias).isScalar { return try builder.op("sum", [g]) }
    let rank = builder.type(of: g).rank
    return try builder.op("sum", [g], ["axes": .ints([0] + Array(2..<rank))])
  }

  // MARK: Interpreter (rank-generic)

  /// Calls `body(output, input, weight)` with the flat positions of every product term of the
  /// convolution: output (n, o, q) reading input (n, group · C/G + c, q · stride − pad + k ·
  /// dilation) with weight (o, c, k), positions outside the input skipped.
  static func forEachSpatialTerm(
    _ g: SpatialConvolutionGeometry, batch: Int,
    _ body: (_ output: Int, _ input: Int, _ weight: Int) -> Void
  ) {
    let rank = g.spatialRank
    let inPerGroup = g.inChannels / g.groups
    let outPerGroup = g.outChannels / g.groups
    let inputPlane = g.inputSize.reduce(1, *)
    let outputPlane = g.outputSize.reduce(1, *)
    let kernelVolume = g.kernel.reduce(1, *)
    let inputStrides = rowMajorStrides(g.inputSize)
    var outputPositions: [[Int]] = []
    forEachCoordinate(g.outputSize) { outputPositions.append($0) }
    var kernelPositions: [[Int]] = []
    forEachCoordinate(g.kernel) { kernelPositions.append($0) }
    for n in 0..<batch {
      for o in 0..<g.outChannels {
        let group = o / outPerGroup
        for (q, outputPosition) in outputPositions.enumerated() {
          let output = (n * g.outChannels + o) * outputPlane + q
          for c in 0..<inPerGroup {
            let channel = group * inPerGroup + c
            for (k, kernelPosition) in kernelPositions.enumerated() {
              var offset = 0
              var inside = true
              for axis in 0..<rank {
                let position =
                  outputPosition[axis] * g.stride[axis] - g.padding[axis] + kernelPosition[axis]
                  * g.dilation[axis]
                if position < 0 || position >= g.inputSize[axis] {
                  inside = false
                  break
                }
                offset += position * inputStrides[axis]
              }
              guard inside else { continue }
              let input = (n * g.inChannels + channel) * inputPlane + offset
              let weight = (o * inPerGroup + c) * kernelVolume + k
              body(output, input, weight)
            }
          }
        }
      }
    }
  }

  static func interpretSpatialConvolution(
    _ g: SpatialConvolutionGeometry, batch: Int, x: [Double], weight: [Double], bias: [Double]
  ) -> [Double] {
    let plane = g.outputSize.reduce(1, *)
    var y = [Double](repeating: 0, count: batch * g.outChannels * plane)
    forEachSpatialTerm(g, batch: batch) { output, input, w in y[output] += x[input] * weight[w] }
    for index in y.indices {
      y[index] += bias.count == 1 ? bias[0] : bias[(index / plane) % g.outChannels]
    }
    return y
  }

  static func interpretSpatialConvolutionTranspose(
    _ g: SpatialConvolutionGeometry, batch: Int, dy: [Double], weight: [Double], bias: [Double]
  ) -> [Double] {
    let plane = g.inputSize.reduce(1, *)
    var dx = [Double](repeating: 0, count: batch * g.inChannels * plane)
    forEachSpatialTerm(g, batch: batch) { output, input, w in dx[input] += dy[output] * weight[w] }
    for index in dx.indices {
      dx[index] += bias.count == 1 ? bias[0] : bias[(index / plane) % g.inChannels]
    }
    return dx
  }

  static func interpretSpatialConvolutionWeightGradient(
    _ g: SpatialConvolutionGeometry, batch: Int, x: [Double], dy: [Double]
  ) -> [Double] {
    var dw = [Double](
      repeating: 0, count: g.outChannels * (g.inChannels / g.groups) * g.kernel.reduce(1, *))
    forEachSpatialTerm(g, batch: batch) { output, input, w in dw[w] += dy[output] * x[input] }
    return dw
  }
}

/// How the 3-D convolution ops compile as 2-D ones: the input's depth taps (the depth positions
/// `od · sd − front + a · dd` of each kernel depth `a`) stacked into channels, group-major so
/// `conv2d`'s groups still split them: x `[N, C, D, H, W]` becomes `[N · D_out, G · kd · C/G, H, W]`,
/// the weight `[O, C/G, kd, kh, kw]` becomes `[O, kd · C/G, kh, kw]`, and a `conv2d` with the height
/// and width attributes gives `[N · D_out, O, H_out, W_out]`.
struct DepthLowering {
  let geometry: SpatialConvolutionGeometry

  init(_ geometry: SpatialConvolutionGeometry) { self.geometry = geometry }

  private var batch: Dim { geometry.batch }
  private var depth: Int { geometry.inputSize[0] }
  private var outputDepth: Int { geometry.outputSize[0] }
  private var paddedDepth: Int { depth + geometry.padding[0] + geometry.padding[3] }
  private var channelsPerGroup: Int { geometry.inChannels / geometry.groups }
  private var plane: Int { geometry.inputSize[1] * geometry.inputSize[2] }

  /// conv2d's attributes: the height and width parts of the 3-D ones.
  var planarAttributes: [String: Attribute] {
    let p = geometry.padding
    return [
      "stride": .ints(Array(geometry.stride.suffix(2))),
      "padding": .ints([p[1], p[2], p[4], p[5]]),
      "dilation": .ints(Array(geometry.dilation.suffix(2))),
      "groups": .int(geometry.groups),
    ]
  }

  /// The depth positions tap `a` reads, in the depth-padded input.
  private func tap(_ a: Int) -> SliceIndex {
    let start = a * geometry.dilation[0]
    return .range(
      start: start, stop: start + (outputDepth - 1) * geometry.stride[0] + 1,
      step: geometry.stride[0])
  }

  /// x `[N, C, D, H, W]` → `[N · D_out, G · kd · C/G, H, W]`.
  func stackDepthTaps(_ builder: inout GradientBuilder, _ x: ValueID) throws(ShapeError)
    -> ValueID
  {
    let g = geometry
    var depthFirst = try builder.op(Ops.permute, [x], ["perm": .ints([0, 2, 1, 3, 4])])
    if paddedDepth != depth {
      let type = builder.type(of: depthFirst)
      var shape = type.shape
      shape[1] = Dim(paddedDepth)
      depthFirst = try builder.op(
        Ops.sliceBackward, [depthFirst],
        [
          "index": .slices([
            .all, .range(start: g.padding[0], stop: g.padding[0] + depth, step: 1),
          ]),
          "shape": .dims(shape),
        ])
    }
    var taps: [ValueID] = []
    for a in 0..<g.kernel[0] {
      let slice = try builder.op(Ops.slice, [depthFirst], ["index": .slices([.all, tap(a)])])
      taps.append(
        try builder.op(
          Ops.reshape, [slice],
          [
            "shape": .dims([
              batch, Dim(outputDepth), Dim(g.groups), Dim(1), Dim(channelsPerGroup), Dim(plane),
            ])
          ]))
    }
    let stacked = taps.count == 1 ? taps[0] : try builder.op(Ops.concat, taps, ["axis": .int(3)])
    return try builder.op(
      Ops.reshape, [stacked],
      [
        "shape": .dims([
          batch * Dim(outputDepth), Dim(g.kernel[0] * g.inChannels), Dim(g.inputSize[1]),
          Dim(g.inputSize[2]),
        ])
      ])
  }

  /// The gradient of `stackDepthTaps`: `[N · D_out, G · kd · C/G, H, W]` → x `[N, C, D, H, W]`,
  /// each tap's values added back at the depth positions it read.
  func sumDepthTaps(_ builder: inout GradientBuilder, _ stacked: ValueID) throws(ShapeError)
    -> ValueID
  {
    let g = geometry
    let taps = try builder.op(
      Ops.reshape, [stacked],
      [
        "shape": .dims([
          batch, Dim(outputDepth), Dim(g.groups), Dim(g.kernel[0]), Dim(channelsPerGroup),
          Dim(plane),
        ])
      ])
    let paddedShape = [
      batch, Dim(paddedDepth), Dim(g.inChannels), Dim(g.inputSize[1]), Dim(g.inputSize[2]),
    ]
    var total: ValueID?
    for a in 0..<g.kernel[0] {
      let tapValues = try builder.op(
        Ops.slice, [taps], ["index": .slices([.all, .all, .all, .index(a)])])
      let depthFirst = try builder.op(
        Ops.reshape, [tapValues],
        [
          "shape": .dims([
            batch, Dim(outputDepth), Dim(g.inChannels), Dim(g.inputSize[1]), Dim(g.inputSize[2]),
          ])
        ])
      let placed = try builder.op(
        Ops.sliceBackward, [depthFirst],
        ["index": .slices([.all, tap(a)]), "shape": .dims(paddedShape)])
      if let previous = total {
        total = try builder.add(previous, placed)
      } else {
        total = placed
      }
    }
    guard var depthFirst = total else { throw ShapeError("conv3d: the kernel has no depth") }
    if paddedDepth != depth {
      depthFirst = try builder.op(
        Ops.slice, [depthFirst],
        [
          "index": .slices([
            .all, .range(start: g.padding[0], stop: g.padding[0] + depth, step: 1),
          ])
        ])
    }
    return try builder.op(Ops.permute, [depthFirst], ["perm": .ints([0, 2, 1, 3, 4])])
  }

  /// The weight `[O, C/G, kd, kh, kw]` → `[O, kd · C/G, kh, kw]`.
  func planarWeight(_ builder: inout GradientBuilder, _ weight: ValueID) throws(ShapeError)
    -> ValueID
  {
    let g = geometry
    let depthFirst = try builder.op(Ops.permute, [weight], ["perm": .ints([0, 2, 1, 3, 4])])
    let shape = builder.type(of: weight).shape
    return try builder.op(
      Ops.reshape, [depthFirst],
      ["shape": .dims([shape[0], Dim(g.kernel[0]) * shape[1], shape[3], shape[4]])])
  }

  /// The gradient of `planarWeight`: `[O, kd · C/G, kh, kw]` → `[O, C/G, kd, kh, kw]`.
  func volumeWeight(_ builder: inout GradientBuilder, _ planar: ValueID) throws(ShapeError)
    -> ValueID
  {
    let g = geometry
    let split = try builder.op(
      Ops.reshape, [planar],
      [
        "shape": .dims([
          Dim(g.outChannels), Dim(g.kernel[0]), Dim(channelsPerGroup), Dim(g.kernel[1]),
          Dim(g.kernel[2]),
        ])
      ])
    return try builder.op(Ops.permute, [split], ["perm": .ints([0, 2, 1, 3, 4])])
  }

  /// conv2d's result `[N · D_out, O, H_out, W_out]` → `[N, O, D_out, H_out, W_out]`.
  func unstackOutput(_ builder: inout GradientBuilder, _ planar: ValueID) throws(ShapeError)
    -> ValueID
  {
    let g = geometry
    let outputPlane = Dim(g.outputSize[1] * g.outputSize[2])
    let split = try builder.op(
      Ops.reshape, [planar],
      ["shape": .dims([batch, Dim(outputDepth), Dim(g.outChannels), outputPlane])])
    let channelsFirst = try builder.op(Ops.permute, [split], ["perm": .ints([0, 2, 1, 3])])
    return try builder.op(
      Ops.reshape, [channelsFirst], ["shape": .dims(g.outputType.shape)])
  }

  /// The inverse of `unstackOutput`: `[N, O, D_out, H_out, W_out]` → `[N · D_out, O, H_out, W_out]`.
  func stackOutput(_ builder: inout GradientBuilder, _ value: ValueID) throws(ShapeError)
    -> ValueID
  {
    let g = geometry
    let outputPlane = Dim(g.outputSize[1] * g.outputSize[2])
    let split = try builder.op(
      Ops.reshape, [value],
      ["shape": .dims([batch, Dim(g.outChannels), Dim(outputDepth), outputPlane])])
    let depthFirst = try builder.op(Ops.permute, [split], ["perm": .ints([0, 2, 1, 3])])
    return try builder.op(
      Ops.reshape, [depthFirst],
      [
        "shape": .dims([
          batch * Dim(outputDepth), Dim(g.outChannels), Dim(g.outputSize[1]),
          Dim(g.outputSize[2]),
        ])
      ])
  }
}
