import LaminaIR
import LaminaSupport

extension LayerRegistry {
  /// The padding option's forms: an integer, `[ph, pw]`, `[top, left, bottom, right]`, a word.
  static let paddingKind = LayerOptionKind.anyOf([
    .integers(lengths: [2, 4]), .oneOf(["same", "valid"]),
  ])

  /// The options both convolution layers take.
  static func convolutionOptions(transposed: Bool) -> [LayerOptionSpec] {
    var options = [
      LayerOptionSpec("filters", .integer, required: true, "output channels"),
      LayerOptionSpec(
        "kernel", .integers(lengths: [2]), required: true, "window size: kh = kw, or [kh, kw]"),
      LayerOptionSpec(
        "stride", .integers(lengths: [2]), default: .integer(1),
        "step: one for both axes or [sh, sw]"
      ),
      LayerOptionSpec(
        "padding", paddingKind, default: .integer(0),
        transposed
          ? "rows and columns removed from each side of the full result: one size, [ph, pw], [top, left, bottom, right], \"valid\" (0) or \"same\" (the padding conv2d's \"same\" would use)"
          : "zeros around the input: one size, [ph, pw], [top, left, bottom, right] (ONNX's order), \"valid\" (none) or \"same\" (output size ceil(input / stride); an odd total puts the extra row or column at the bottom or right, as ONNX's SAME_UPPER)"
      ),
    ]
    if transposed {
      options.append(
        LayerOptionSpec(
          "output_padding", .integers(lengths: [2]), default: .integer(0),
          "rows and columns added at the bottom and right of the result (smaller than the stride)"))
    }
    options += [
      LayerOptionSpec(
        "dilation", .integers(lengths: [2]), default: .integer(1),
        "spacing of the kernel's taps: one for both axes or [dh, dw]"),
      LayerOptionSpec(
        "groups", .integer, default: .integer(1),
        "independent channel groups (depthwise when it equals the input channels)"),
      LayerOptionSpec("bias", .bool, default: .bool(true), "add a bias per output channel"),
      LayerOptionSpec("activation", .oneOf(activations), "apply an activation"),
      LayerOptionSpec(
        "init", .initializer, default: .initializer(Initializer("glorot_uniform")),
        "weight initializer (fans from channels × kernel size, as PyTorch and Keras)"),
      LayerOptionSpec(
        "bias_init", .initializer, default: .initializer(Initializer("zeros")), "bias initializer"),
      LayerOptionSpec(
        "name", .string,
        "scope name of the layer's parameters (default \(transposed ? "conv_transpose2d" : "conv2d")_N)"
      ),
    ]
    return options
  }

  /// Convolution layers over NCHW inputs.
  static let convolutionLayers: [LayerDefinition] = [
    LayerDefinition(
      "conv2d",
      summary:
        "2-D convolution over NCHW input [batch, channels, height, width]: weight [filters, channels / groups, kh, kw] and bias [filters], as PyTorch's Conv2d.",
      options: convolutionOptions(transposed: false)
    ) { builder throws(ShapeError) in
      try expandConvolution(&builder, transposed: false)
    },
    LayerDefinition(
      "conv_transpose2d",
      summary:
        "2-D transposed convolution (the gradient of conv2d with respect to its input; upsampling in decoders and generators) over NCHW input: weight [channels, filters / groups, kh, kw] and bias [filters], as PyTorch's ConvTranspose2d.",
      options: convolutionOptions(transposed: true)
    ) { builder throws(ShapeError) in
      try expandConvolution(&builder, transposed: true)
    },
  ]

  static func expandConvolution(_ builder: inout LayerBuilder, transposed: Bool) throws(ShapeError)
    -> ValueID
  {
    let op = transposed ? "conv_transpose2d" : "conv2d"
    let x = builder.inputs[0]
    let type = builder.type(of: x)
    guard type.rank == 4 else {
      throw ShapeError(
        "\(op) needs an NCHW input [batch, channels, height, width], got \(type)",
        help: "reshape it first: reshape(x, shape: [batch, 1, 28, 28])")
    }
    guard type.dtype.isFloatingPoint else {
      throw ShapeError(
        "\(op) needs a floating-point input, got \(type)",
        help: "convert it with cast(x, dtype: f32)")
    }
    guard let channels = type.shape[1].staticValue, let height = type.shape[2].staticValue,
      let width = type.shape[3].staticValue
    else {
      throw ShapeError(
        "\(op) needs static channels, height and width, got \(type) (only the batch may be symbolic)"
      )
    }
    func pair(_ name: String) throws(ShapeError) -> [Int] {
      guard let values = builder.ints(name), let pair = spatialPair(values) else {
        throw ShapeError("\(op): \(name) must be one integer or [h, w]")
      }
      guard pair.allSatisfy({ $0 >= (name == "output_padding" ? 0 : 1) }) else {
        throw ShapeError(
          "\(op): \(name) must be \(name == "output_padding" ? "at least 0" : "positive"), got \(values)"
        )
      }
      try checkSpatialLimit(name, pair, op: op)
      return pair
    }
    guard let filters = builder.int("filters"), filters >= 1 else {
      throw ShapeError("\(op): filters must be a positive integer")
    }
    let kernel = try pair("kernel")
    let stride = try pair("stride")
    let dilation = try pair("dilation")
    let groups = builder.int("groups") ?? 1
    guard groups >= 1 else { throw ShapeError("\(op): groups must be positive, got \(groups)") }
    guard channels % groups == 0 else {
      throw ShapeError(
        "\(op): groups \(groups) does not divide the input's \(channels) channels (input \(type))",
        help: "groups must divide both the input channels and filters")
    }
    guard filters % groups == 0 else {
      throw ShapeError(
        "\(op): groups \(groups) does not divide filters \(filters)",
        help: "groups must divide both the input channels and filters")
    }
    let form: SpatialPadding
    switch builder.options["padding"] {
    case .string("same")?: form = .same
    case .string(_)?: form = .valid
    default: form = .explicit(builder.ints("padding") ?? [0])
    }
    var attributes: [String: Attribute] = [
      "stride": .ints(stride), "dilation": .ints(dilation), "groups": .int(groups),
    ]
    let dtype = type.dtype
    let weightType: TensorType
    if transposed {
      // "same" for a transposed convolution undoes the padding conv2d's "same" adds on its result.
      let outputPadding = try pair("output_padding")
      let resultSize = [height * stride[0], width * stride[1]]
      attributes["padding"] = .ints(
        try resolvedPadding(
          form, kernel: kernel, stride: stride, dilation: dilation, inputSize: resultSize, op: op))
      attributes["output_padding"] = .ints(outputPadding)
      weightType = TensorType(
        dtype, [Dim(channels), Dim(filters / groups), Dim(kernel[0]), Dim(kernel[1])])
    } else {
      attributes["padding"] = .ints(
        try resolvedPadding(
          form, kernel: kernel, stride: stride, dilation: dilation, inputSize: [height, width],
          op: op))
      weightType = TensorType(
        dtype, [Dim(filters), Dim(channels / groups), Dim(kernel[0]), Dim(kernel[1])])
    }
    // An instance called again applies the weight of its first call: the channels must match it.
    if builder.sharesParameters,
      let existing = builder.graph.value(named: "\(builder.scopeName).weight")
    {
      let shared = builder.type(of: existing)
      if shared.rank == 4, shared != weightType {
        let expected =
          transposed
          ? shared.shape[0].description : (shared.shape[1] * Dim(groups)).description
        throw ShapeError(
          "\(op): the input has \(channels) channels but the shared weight \(builder.scopeName).weight \(shared) expects \(expected) (input \(type))",
          help:
            "an instance applies the same weight on every call; use a separate layer for inputs with other channels"
        )
      }
    }
    let weight = try builder.param("weight", weightType, initializedBy: "init")
    let bias: ValueID
    if builder.bool("bias") == true {
      bias = try builder.param(
        "bias", TensorType(dtype, [Dim(filters)]), initializedBy: "bias_init")
    } else {
      // No bias: the op's bias operand is the literal 0.
      bias = try builder.op("constant", [], ["value": .float(0), "dtype": .dtype(dtype)])
    }
    var y = try builder.op(op, [x, weight, bias], attributes)
    if let activation = builder.string("activation") {
      y = try builder.op(activation, [y])
    }
    return y
  }
}
