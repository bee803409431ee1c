import LaminaSupport

/// The sizes of one 2-D convolution `y = conv2d(x, w)` in NCHW: the convolution's input x, its result
/// y and its window. `conv_transpose2d` is the input gradient of a convolution, so its operand is
/// the y of this geometry and its result the x.
public struct ConvolutionGeometry: Sendable, Hashable {
  public var dtype: DType
  public var batch: Dim
  public var inChannels: Int
  public var inHeight: Int
  public var inWidth: Int
  public var outChannels: Int
  public var outHeight: Int
  public var outWidth: Int
  /// `[kh, kw]`.
  public var kernel: [Int]
  /// `[sh, sw]`.
  public var stride: [Int]
  /// `[top, left, bottom, right]`.
  public var padding: [Int]
  /// `[dh, dw]`.
  public var dilation: [Int]
  public var groups: Int

  /// The convolution's input type `[batch, in, h, w]`.
  public var inputType: TensorType {
    TensorType(dtype, [batch, Dim(inChannels), Dim(inHeight), Dim(inWidth)])
  }
  /// The convolution's result type `[batch, out, oh, ow]`.
  public var outputType: TensorType {
    TensorType(dtype, [batch, Dim(outChannels), Dim(outHeight), Dim(outWidth)])
  }
  /// The convolution's weight type `[out, in / groups, kh, kw]`.
  public var weightType: TensorType {
    TensorType(
      dtype, [Dim(outChannels), Dim(inChannels / groups), Dim(kernel[0]), Dim(kernel[1])])
  }

  /// The `output_padding` a `conv_transpose2d` of this convolution's result needs to give back
  /// exactly the input's size (the rows and columns the forward stride skipped at the end).
  public var outputPaddingForInput: [Int] {
    (0..<2).map { axis in
      let input = axis == 0 ? inHeight : inWidth
      let output = axis == 0 ? outHeight : outWidth
      let span = dilation[axis] * (kernel[axis] - 1) + 1
      return input - ((output - 1) * stride[axis] - padding[axis] - padding[axis + 2] + span)
    }
  }

  /// The attributes every convolution op stores, for building gradient nodes.
  public var attributes: [String: Attribute] {
    [
      "stride": .ints(stride), "padding": .ints(padding), "dilation": .ints(dilation),
      "groups": .int(groups),
    ]
  }
}

extension OpRegistry {
  /// 2-D convolutions (NCHW) and the op of a convolution's weight gradient.
  static let convolutionOps: [OpDefinition] = [
    OpDefinition(
      "conv2d",
      summary:
        "2-D convolution (cross-correlation, as PyTorch and ONNX) of an NCHW input with a weight [out, in / groups, kh, kw], plus a bias.",
      semantics:
        "y[n, o, oh, ow] = bias[o] + Σ_{c, i, j} x[n, g · C/G + c, oh · sh - top + i · dh, ow · sw - left + j · dw] · w[o, c, i, j], g = o / (O/G), positions outside x reading 0 (padding); oh < (H + top + bottom - dh · (kh - 1) - 1) / sh + 1 (floor), likewise ow. bias is [O] or a scalar (0 for none).",
      operands: [OperandSpec("x"), OperandSpec("weight"), OperandSpec("bias")],
      attributes: convolutionAttributes,
      fusion: .matmulLike,
      c: .kernel(.convolution),
      // The kernel (direct, or a GEMM per image on im2col) hands each finished block to an
      // epilogue; the direct kernels can also write a max pool of their result (lamina_conv.h).
      epilogue: EpilogueProducer(
        poolsWindowMaximum: { operands, attributes in
          guard
            let geometry = try? OpRegistry.conv2dGeometry(
              operands: operands, attributes: attributes)
          else { return false }
          return ConvolutionSchedule(geometry).poolsInScratch
        },
        viewsPlanes: true,
        accepts: { operands, result in result.dtype.isFloatingPoint }),
      shape: ShapeRule("conv2d(x, weight, bias)") { context throws(ShapeError) in
        [try conv2dGeometry(context).outputType]
      },
      interpret: { context in
        let geometry = try conv2dGeometry(try context.checked("conv2d"))
        return [
          context.result(
            0,
            interpretConv2d(
              geometry, batch: context.operands[0].shape[0], x: context.operands[0].doubles(),
              weight: context.operands[1].doubles(), bias: context.operands[2].doubles()))
        ]
      },
      gradient: conv2dGradient),
    OpDefinition(
      "conv_transpose2d",
      summary:
        "2-D transposed convolution (the input gradient of conv2d, PyTorch's ConvTranspose2d) of an NCHW input with a weight [in, out / groups, kh, kw], plus a bias.",
      semantics:
        "y[n, g · O/G + o, ih, iw] = bias[g · O/G + o] + Σ x[n, c, h, w] · weight[c, o, i, j] over c in group g = c / (C/G) and (h, w, i, j) with h · sh - top + i · dh = ih, w · sw - left + j · dw = iw; result height (H - 1) · sh - top - bottom + dh · (kh - 1) + 1 + output_padding[0], likewise the width. output_padding must be smaller than the stride. bias is [O] or a scalar.",
      operands: [OperandSpec("x"), OperandSpec("weight"), OperandSpec("bias")],
      attributes: convolutionAttributes + [
        AttributeSpec(
          "output_padding", .ints, default: .ints([0, 0]),
          "[h, w] rows and columns added at the bottom and right of the result (each smaller than the stride), to pick among the input sizes a strided conv2d maps to the same size"
        )
      ],
      fusion: .matmulLike,
      c: .kernel(.convolutionTranspose),
      // col2im finishes the result one (image, channel) plane at a time and runs the epilogue on it.
      epilogue: EpilogueProducer { operands, result in result.dtype.isFloatingPoint },
      shape: ShapeRule("conv_transpose2d(x, weight, bias)") { context throws(ShapeError) in
        [try convTranspose2dGeometry(context).inputType]
      },
      interpret: { context in
        let geometry = try convTranspose2dGeometry(try context.checked("conv_transpose2d"))
        return [
          context.result(
            0,
            interpretConvTranspose2d(
              geometry, batch: context.operands[0].shape[0], dy: context.operands[0].doubles(),
              weight: context.operands[1].doubles(), bias: context.operands[2].doubles()))
        ]
      },
      gradient: convTranspose2dGradient),
    OpDefinition(
      "conv2d_backward_weight",
      summary:
        "The weight gradient of conv2d: for the convolution's input x and the gradient dy of its result, ∂loss/∂weight [out, in / groups, kh, kw].",
      semantics:
        "dw[o, c, i, j] = Σ_{n, oh, ow} dy[n, o, oh, ow] · x[n, g · C/G + c, oh · sh - top + i · dh, ow · sw - left + j · dw] (0 outside x), g = o / (O/G); dy must have the shape conv2d gives x with this kernel size.",
      operands: [OperandSpec("x"), OperandSpec("dy")],
      attributes: convolutionAttributes + [
        AttributeSpec("kernel", .ints, required: true, "[kh, kw] of the convolution's weight")
      ],
      fusion: .opaque,
      c: .kernel(.convolutionWeightGradient),
      shape: ShapeRule("conv2d_backward_weight(x, dy)") { context throws(ShapeError) in
        [try conv2dBackwardWeightGeometry(context).weightType]
      },
      interpret: { context in
        let geometry = try conv2dBackwardWeightGeometry(
          try context.checked("conv2d_backward_weight"))
        return [
          context.result(
            0,
            interpretConv2dBackwardWeight(
              geometry, batch: context.operands[0].shape[0], x: context.operands[0].doubles(),
              dy: context.operands[1].doubles()))
        ]
      },
      gradient: conv2dBackwardWeightGradient),
  ]

  static let convolutionAttributes: [AttributeSpec] = [
    AttributeSpec("stride", .ints, default: .ints([1, 1]), "[sh, sw]"),
    AttributeSpec(
      "padding", .ints, default: .ints([0, 0, 0, 0]),
      "[top, left, bottom, right] (ONNX's order; layers resolve \"same\" and the short forms)"),
    AttributeSpec("dilation", .ints, default: .ints([1, 1]), "[dh, dw]"),
    AttributeSpec(
      "groups", .int, default: .int(1),
      "channels split into this many independent convolutions (depthwise when it is the input's channel count)"
    ),
  ]

  // MARK: Shape rules

  /// `conv2d(x, weight, bias)`.
  static func conv2dGeometry(_ context: ShapeContext) throws(ShapeError) -> ConvolutionGeometry {
    let (x, w, b) = (context.operands[0], context.operands[1], context.operands[2])
    let dtype = try context.commonDType()
    let (channels, size) = try channelsFirst(x, rank: 2, "conv2d", "the input")
    let (height, width) = (size[0], size[1])
    let (stride, padding, dilation, groups) = try spatialWindowAttributes(context, rank: 2)
    let weight = try staticSpatialWeight(w, rank: 2, "conv2d")
    let outChannels = weight[0]
    guard channels % groups == 0 else {
      throw ShapeError(
        "conv2d: groups \(groups) does not divide the input's \(channels) channels",
        help: "groups must divide both the input and the output channels")
    }
    guard outChannels % groups == 0 else {
      throw ShapeError(
        "conv2d: groups \(groups) does not divide the \(outChannels) output channels of the weight \(w)",
        help: "groups must divide both the input and the output channels")
    }
    guard weight[1] * groups == channels else {
      throw ShapeError(
        "conv2d: the input has \(channels) channels but the weight \(w) expects \(weight[1] * groups) (its axis 1, in_channels / groups = \(weight[1]), times groups \(groups))",
        help: "the weight is [out, in / groups, kh, kw]")
    }
    try checkBias(b, channels: outChannels, "conv2d")
    let kernel = [weight[2], weight[3]]
    let outHeight = try convolutionOutputSize(
      "conv2d", input: height, axis: 0, kernel: kernel, stride: stride, padding: padding,
      dilation: dilation)
    let outWidth = try convolutionOutputSize(
      "conv2d", input: width, axis: 1, kernel: kernel, stride: stride, padding: padding,
      dilation: dilation)
    return ConvolutionGeometry(
      dtype: dtype, batch: x.shape[0], inChannels: channels, inHeight: height, inWidth: width,
      outChannels: outChannels, outHeight: outHeight, outWidth: outWidth, kernel: kernel,
      stride: stride, padding: padding, dilation: dilation, groups: groups)
  }

  /// `conv_transpose2d(x, weight, bias)`: x is the geometry's output, the result its input.
  static func convTranspose2dGeometry(_ context: ShapeContext) throws(ShapeError)
    -> ConvolutionGeometry
  {
    let op = "conv_transpose2d"
    let (x, w, b) = (context.operands[0], context.operands[1], context.operands[2])
    let dtype = try context.commonDType()
    let (channels, size) = try channelsFirst(x, rank: 2, op, "the input")
    let (height, width) = (size[0], size[1])
    let (stride, padding, dilation, groups) = try spatialWindowAttributes(context, rank: 2)
    let weight = try staticSpatialWeight(w, rank: 2, op)
    guard weight[0] == channels else {
      throw ShapeError(
        "\(op): the input has \(channels) channels but the weight \(w) expects \(weight[0]) (its axis 0)",
        help: "the weight is [in, out / groups, kh, kw]")
    }
    guard channels % groups == 0 else {
      throw ShapeError(
        "\(op): groups \(groups) does not divide the input's \(channels) channels",
        help: "groups must divide both the input and the output channels")
    }
    let outputPadding = try transposedOutputPadding(context, stride: stride)
    let resultChannels = weight[1] * groups
    try checkBias(b, channels: resultChannels, op)
    let kernel = [weight[2], weight[3]]
    let resultSize = try transposedConvolutionSize(
      op, input: size, kernel: kernel, stride: stride, padding: padding, dilation: dilation,
      outputPadding: outputPadding)
    return ConvolutionGeometry(
      dtype: dtype, batch: x.shape[0], inChannels: resultChannels, inHeight: resultSize[0],
      inWidth: resultSize[1], outChannels: channels, outHeight: height, outWidth: width,
      kernel: kernel, stride: stride, padding: padding, dilation: dilation, groups: groups)
  }

  /// `conv2d_backward_weight(x, dy)`.
  static func conv2dBackwardWeightGeometry(_ context: ShapeContext) throws(ShapeError)
    -> ConvolutionGeometry
  {
    let op = "conv2d_backward_weight"
    let (x, dy) = (context.operands[0], context.operands[1])
    let dtype = try context.commonDType()
    let (channels, size) = try channelsFirst(x, rank: 2, op, "the input")
    let (height, width) = (size[0], size[1])
    let (outChannels, outSize) = try channelsFirst(dy, rank: 2, op, "the result gradient")
    let (outHeight, outWidth) = (outSize[0], outSize[1])
    let (stride, padding, dilation, groups) = try spatialWindowAttributes(context, rank: 2)
    let kernel = try weightGradientKernel(context, rank: 2)
    guard channels % groups == 0, outChannels % groups == 0 else {
      throw ShapeError(
        "\(op): groups \(groups) does not divide both \(channels) input and \(outChannels) output channels"
      )
    }
    let expectedHeight = try convolutionOutputSize(
      op, input: height, axis: 0, kernel: kernel, stride: stride, padding: padding,
      dilation: dilation)
    let expectedWidth = try convolutionOutputSize(
      op, input: width, axis: 1, kernel: kernel, stride: stride, padding: padding,
      dilation: dilation)
    guard dy.shape[0] == x.shape[0], expectedHeight == outHeight, expectedWidth == outWidth else {
      throw ShapeError(
        "\(op): dy \(dy) does not have the shape conv2d gives \(x): [\(x.shape[0]), \(outChannels), \(expectedHeight), \(expectedWidth)]"
      )
    }
    return ConvolutionGeometry(
      dtype: dtype, batch: x.shape[0], inChannels: channels, inHeight: height, inWidth: width,
      outChannels: outChannels, outHeight: outHeight, outWidth: outWidth, kernel: kernel,
      stride: stride, padding: padding, dilation: dilation, groups: groups)
  }

  // MARK: Geometry for the C backend

  /// The geometry of a `conv2d` node's operand and result types and attributes.
  public static func conv2dGeometry(operands: [TensorType], attributes: [String: Attribute])
    throws(ShapeError) -> ConvolutionGeometry
  {
    try conv2dGeometry(ShapeContext(op: "conv2d", operands: operands, attributes: attributes))
  }

  /// The geometry of a `conv_transpose2d` node (its operand is the geometry's output).
  public static func convTranspose2dGeometry(
    operands: [TensorType], attributes: [String: Attribute]
  ) throws(ShapeError) -> ConvolutionGeometry {
    try convTranspose2dGeometry(
      ShapeContext(op: "conv_transpose2d", operands: operands, attributes: attributes))
  }

  /// The geometry of a `conv2d_backward_weight` node.
  public static func conv2dBackwardWeightGeometry(
    operands: [TensorType], attributes: [String: Attribute]
  ) throws(ShapeError) -> ConvolutionGeometry {
    try conv2dBackwardWeightGeometry(
      ShapeContext(op: "conv2d_backward_weight", operands: operands, attributes: attributes))
  }

  // MARK: Gradients

  /// y = conv2d(x, w, b), g = ∂loss/∂y:
  ///   ∂x = conv_transpose2d(g, w) (with the output padding that gives back x's size),
  ///   ∂w = conv2d_backward_weight(x, g),  ∂b = Σ g over batch, height and width.
  static let conv2dGradient: GradientRule = { builder, inputs throws(ShapeError) in
    let (x, w, b) = (inputs.operands[0], inputs.operands[1], inputs.operands[2])
    let g = inputs.resultGradient
    let geometry = try conv2dGeometry(
      ShapeContext(
        op: "conv2d", operands: [builder.type(of: x), builder.type(of: w), builder.type(of: b)],
        attributes: inputs.attributes))
    var gradients: [ValueID?] = [nil, nil, nil]
    if builder.wants(x) {
      var attributes = geometry.attributes
      attributes["output_padding"] = .ints(geometry.outputPaddingForInput)
      gradients[0] = try builder.op(
        "conv_transpose2d", [g, w, builder.constant(0, like: g)], attributes)
    }
    if builder.wants(w) {
      var attributes = geometry.attributes
      attributes["kernel"] = .ints(geometry.kernel)
      gradients[1] = try builder.op("conv2d_backward_weight", [x, g], attributes)
    }
    if builder.wants(b) { gradients[2] = try biasGradient(&builder, g, bias: b) }
    return gradients
  }

  /// y = conv_transpose2d(x, w, b) is the input gradient of z = conv2d(y', w) at x, a linear map
  /// A(w)ᵀ x; with g = ∂loss/∂y:
  ///   ∂x = A(w) g = conv2d(g, w),  ∂w = conv2d_backward_weight(g, x),  ∂b = Σ g.
  static let convTranspose2dGradient: GradientRule = { builder, inputs throws(ShapeError) in
    let (x, w, b) = (inputs.operands[0], inputs.operands[1], inputs.operands[2])
    let g = inputs.resultGradient
    let geometry = try convTranspose2dGeometry(
      ShapeContext(
        op: "conv_transpose2d",
        operands: [builder.type(of: x), builder.type(of: w), builder.type(of: b)],
        attributes: inputs.attributes))
    var gradients: [ValueID?] = [nil, nil, nil]
    if builder.wants(x) {
      gradients[0] = try builder.op(
        "conv2d", [g, w, builder.constant(0, like: g)], geometry.attributes)
    }
    if builder.wants(w) {
      var attributes = geometry.attributes
      attributes["kernel"] = .ints(geometry.kernel)
      gradients[1] = try builder.op("conv2d_backward_weight", [g, x], attributes)
    }
    if builder.wants(b) { gradients[2] = try biasGradient(&builder, g, bias: b) }
    return gradients
  }

  /// W = conv2d_backward_weight(x, dy) is bilinear: ⟨W, V⟩ = ⟨conv2d(x, V), dy⟩. With G = ∂loss/∂W:
  ///   ∂x = conv_transpose2d(dy, G),  ∂dy = conv2d(x, G).
  static let conv2dBackwardWeightGradient: GradientRule = { builder, inputs throws(ShapeError) in
    let (x, dy) = (inputs.operands[0], inputs.operands[1])
    let g = inputs.resultGradient
    let geometry = try conv2dBackwardWeightGeometry(
      ShapeContext(
        op: "conv2d_backward_weight", operands: [builder.type(of: x), builder.type(of: dy)],
        attributes: inputs.attributes))
    var gradients: [ValueID?] = [nil, nil]
    if builder.wants(x) {
      var attributes = geometry.attributes
      attributes["output_padding"] = .ints(geometry.outputPaddingForInput)
      gradients[0] = try builder.op(
        "conv_transpose2d", [dy, g, builder.constant(0, like: g)], attributes)
    }
    if builder.wants(dy) {
      gradients[1] = try builder.op(
        "conv2d", [x, g, builder.constant(0, like: g)], geometry.attributes)
    }
    return gradients
  }

  /// The bias gradient: g summed over every axis but the channels (all of them for a scalar bias).
  static func biasGradient(_ builder: inout GradientBuilder, _ g: ValueID, bias: ValueID)
    throws(ShapeError) -> ValueID
  {
    if builder.type(of: bias).isScalar { return try builder.op("sum", [g]) }
    return try builder.op("sum", [g], ["axes": .ints([0, 2, 3])])
  }

  // MARK: Interpreter

  /// Calls `body(n, group, o, c, i, j, oh, ow, ih, iw)` for every product term of the convolution:
  /// output (n, o, oh, ow) reading input (n, group · C/G + c, ih, iw) with weight (o, c, i, j).
  static func forEachTerm(
    _ g: ConvolutionGeometry, batch: Int,
    _ body: (_ output: Int, _ input: Int, _ weight: Int) -> Void
  ) {
    let inPerGroup = g.inChannels / g.groups
    let outPerGroup = g.outChannels / g.groups
    for n in 0..<batch {
      for o in 0..<g.outChannels {
        let group = o / outPerGroup
        for oh in 0..<g.outHeight {
          for ow in 0..<g.outWidth {
            let output = ((n * g.outChannels + o) * g.outHeight + oh) * g.outWidth + ow
            for c in 0..<inPerGroup {
              let channel = group * inPerGroup + c
              for i in 0..<g.kernel[0] {
                let ih = oh * g.stride[0] - g.padding[0] + i * g.dilation[0]
                guard ih >= 0, ih < g.inHeight else { continue }
                for j in 0..<g.kernel[1] {
                  let iw = ow * g.stride[1] - g.padding[1] + j * g.dilation[1]
                  guard iw >= 0, iw < g.inWidth else { continue }
                  let input = ((n * g.inChannels + channel) * g.inHeight + ih) * g.inWidth + iw
                  let weight = ((o * inPerGroup + c) * g.kernel[0] + i) * g.kernel[1] + j
                  body(output, input, weight)
                }
              }
            }
          }
        }
      }
    }
  }

  static func interpretConv2d(
    _ g: ConvolutionGeometry, batch: Int, x: [Double], weight: [Double], bias: [Double]
  ) -> [Double] {
    var y = [Double](repeating: 0, count: batch * g.outChannels * g.outHeight * g.outWidth)
    forEachTerm(g, batch: batch) { output, input, w in y[output] += x[input] * weight[w] }
    let plane = g.outHeight * g.outWidth
    for index in y.indices {
      y[index] += bias.count == 1 ? bias[0] : bias[(index / plane) % g.outChannels]
    }
    return y
  }

  static func interpretConvTranspose2d(
    _ g: ConvolutionGeometry, batch: Int, dy: [Double], weight: [Double], bias: [Double]
  ) -> [Double] {
    var dx = [Double](repeating: 0, count: batch * g.inChannels * g.inHeight * g.inWidth)
    forEachTerm(g, batch: batch) { output, input, w in dx[input] += dy[output] * weight[w] }
    let plane = g.inHeight * g.inWidth
    for index in dx.indices {
      dx[index] += bias.count == 1 ? bias[0] : bias[(index / plane) % g.inChannels]
    }
    return dx
  }

  static func interpretConv2dBackwardWeight(
    _ g: ConvolutionGeometry, batch: Int, x: [Double], dy: [Double]
  ) -> [Double] {
    var dw = [Double](
      repeating: 0, count: g.outChannels * (g.inChannels / g.groups) * g.kernel[0] * g.kernel[1])
    forEachTerm(g, batch: batch) { output, input, w in dw[w] += dy[output] * x[input] }
    return dw
  }
}
