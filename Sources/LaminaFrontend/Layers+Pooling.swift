import LaminaIR
import LaminaSupport

extension LayerRegistry {
  /// The padding forms of the spatial layers: `1`, `[ph, pw]`, `[top, left, bottom, right]`,
  /// `"same"` or `"valid"`.
  static let poolingPaddingKind = LayerOptionKind.anyOf([
    .integers(lengths: [2, 4]), .oneOf(["same", "valid"]),
  ])

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
        "padding", poolingPaddingKind, default: .integer(0),
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
    let kernel = pair(builder.ints("kernel") ?? [])
    let stride = builder.ints("stride").map(pair) ?? kernel
    let dilation = builder.ints("dilation").map(pair) ?? [1, 1]
    let input = builder.type(of: builder.inputs[0])
    let padding = try resolvedPoolingPadding(
      builder.options["padding"], layer: name, input: input, kernel: kernel, stride: stride,
      dilation: dilation)
    var attributes: [String: Attribute] = [
      "kernel": .ints(kernel), "stride": .ints(stride), "padding": .ints(padding),
      "ceil_mode": .bool(builder.bool("ceil_mode") ?? false),
    ]
    if hasDilation { attributes["dilation"] = .ints(dilation) }
    return attributes
  }

  /// `k` as `[k, k]`; two values as they are.
  private static func pair(_ values: [Int]) -> [Int] {
    values.count == 1 ? [values[0], values[0]] : values
  }

  // The conv helper writes the shared `resolvedPadding` (SpatialHelpers.swift); this one serves the
  // pooling layers until the two are unified.
  /// A padding option as `[top, left, bottom, right]`. `"same"` pads so the output has
  /// ⌈input / stride⌉ positions per axis, the odd one on the bottom or right (ONNX's SAME_UPPER);
  /// `"valid"` pads nothing.
  static func resolvedPoolingPadding(
    _ option: LayerOption?, layer: String, input: TensorType, kernel: [Int], stride: [Int],
    dilation: [Int]
  ) throws(ShapeError) -> [Int] {
    switch option {
    case nil, .string("valid")?: return [0, 0, 0, 0]
    case .integer(let p)?: return [p, p, p, p]
    case .integers(let values)? where values.count == 1:
      return [values[0], values[0], values[0], values[0]]
    case .integers(let values)? where values.count == 2:
      return [values[0], values[1], values[0], values[1]]
    case .integers(let values)? where values.count == 4: return values
    case .string("same")?:
      guard input.rank == 4, let height = input.shape[2].staticValue,
        let width = input.shape[3].staticValue
      else {
        throw ShapeError(
          "\(layer) with padding \"same\" needs an NCHW input with static height and width, got \(input)"
        )
      }
      var before: [Int] = []
      var after: [Int] = []
      for (size, axis) in [(height, 0), (width, 1)] {
        let output = (size + stride[axis] - 1) / stride[axis]
        let span = dilation[axis] * (kernel[axis] - 1) + 1
        let total = Swift.max((output - 1) * stride[axis] + span - size, 0)
        before.append(total / 2)
        after.append(total - total / 2)
      }
      return before + after
    default:
      throw ShapeError("\(layer): padding must be \(poolingPaddingKind.phrase), got \(option!)")
    }
  }
}
