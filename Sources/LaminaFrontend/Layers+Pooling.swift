import LaminaIR
import LaminaSupport

extension LayerRegistry {
  /// Pooling over the spatial axes of NCHW tensors.
  static let poolingLayers: [LayerDefinition] = [
    LayerDefinition(
      "max_pool2d",
      summary:
        "The largest element of each window over the height and width of an NCHW tensor (PyTorch's MaxPool2d).",
      options: windowOptions(dilation: true)
    ) { builder throws(ShapeError) in
      try builder.op(
        "max_pool2d", [builder.inputs[0]],
        try windowAttributes(builder, layer: "max_pool2d", dilation: true))
    },
    LayerDefinition(
      "avg_pool2d",
      summary:
        "The mean of each window over the height and width of an NCHW tensor (PyTorch's AvgPool2d).",
      options: windowOptions(dilation: false) + [
        LayerOptionSpec(
          "count_include_pad", .bool, default: .bool(true),
          "divide by the window including its padding (PyTorch's default; ONNX's is false)")
      ]
    ) { builder throws(ShapeError) in
      var attributes = try windowAttributes(builder, layer: "avg_pool2d", dilation: false)
      attributes["count_include_pad"] = .bool(builder.bool("count_include_pad") ?? true)
      return try builder.op("avg_pool2d", [builder.inputs[0]], attributes)
    },
    LayerDefinition(
      "global_avg_pool2d",
      summary: "The mean over the height and width of an NCHW tensor: [N, C, H, W] → [N, C].",
      options: []
    ) { builder throws(ShapeError) in
      try builder.op("global_avg_pool2d", [builder.inputs[0]])
    },
  ]

  /// The options of `max_pool2d` and `avg_pool2d`.
  static func windowOptions(dilation: Bool) -> [LayerOptionSpec] {
    [
      LayerOptionSpec(
        "kernel", .integers(lengths: [2]), required: true, "window size: k or [kh, kw]"),
      LayerOptionSpec(
        "stride", .integers(lengths: [2]),
        "step between windows: s or [sh, sw] (default: the kernel)"),
      LayerOptionSpec(
        "padding", paddingKind, default: .integer(0),
        "p, [ph, pw], [top, left, bottom, right], \"same\" (extra on the bottom and right) or \"valid\"; at most half the kernel per side"
      ),
    ]
      + (dilation
        ? [
          LayerOptionSpec(
            "dilation", .integers(lengths: [2]), default: .integer(1),
            "spacing of window elements: d or [dh, dw]")
        ] : [])
      + [
        LayerOptionSpec(
          "ceil_mode", .bool, default: .bool(false),
          "round the output size up, as PyTorch (the last window starts inside the input or its leading padding)"
        )
      ]
  }

  /// The op attributes of a pooling layer call: kernel, stride, dilation and padding resolved to
  /// the op's two- and four-value forms.
  static func windowAttributes(
    _ builder: LayerBuilder, layer name: String, dilation hasDilation: Bool
  )
    throws(ShapeError) -> [String: Attribute]
  {
    // The binder accepts only one or two values for these.
    let kernel = spatialPair(builder.ints("kernel") ?? []) ?? []
    let stride = builder.ints("stride").flatMap(spatialPair) ?? kernel
    let dilation = builder.ints("dilation").flatMap(spatialPair) ?? [1, 1]
    let form: SpatialPadding
    switch builder.options["padding"] {
    case .string("same")?: form = .same
    case .string(_)?, nil: form = .valid
    default: form = .explicit(builder.ints("padding") ?? [0])
    }
    // "same" depends on the input's size; explicit sizes and "valid" do not.
    var inputSize = [0, 0]
    if form == .same {
      let input = builder.type(of: builder.inputs[0])
      guard input.rank == 4, let height = input.shape[2].staticValue,
        let width = input.shape[3].staticValue
      else {
        throw ShapeError(
          "\(name) with padding \"same\" needs an NCHW input with static height and width, got \(input)"
        )
      }
      inputSize = [height, width]
    }
    let padding = try resolvedPadding(
      form, kernel: kernel, stride: stride, dilation: dilation, inputSize: inputSize, op: name)
    var attributes: [String: Attribute] = [
      "kernel": .ints(kernel), "stride": .ints(stride), "padding": .ints(padding),
      "ceil_mode": .bool(builder.bool("ceil_mode") ?? false),
    ]
    if hasDilation { attributes["dilation"] = .ints(dilation) }
    return attributes
  }
}
