import Foundation
import LaminaSupport

extension OpRegistry {
  /// Normalizations ONNX models use besides batch and layer norm: instance normalization and
  /// local response normalization across channels.
  static let channelNormalizationOps: [OpDefinition] = [instanceNorm, localResponseNorm]

  /// `instance_norm(x, scale, bias)`: one op in the IR, compiled as its decomposition (the rows of
  /// each sample and channel through layer norm's mean, variance and normalization, then the
  /// per-channel scale and shift), which fusion makes row kernels.
  static let instanceNorm: OpDefinition = {
    var definition = OpDefinition(
      "instance_norm",
      summary:
        "Instance normalization (ONNX's InstanceNormalization, PyTorch's InstanceNorm with affine weights): each sample's channel normalized over the spatial axes to zero mean and unit variance, then scaled and shifted per channel.",
      semantics:
        "y[n, c, s] = (x[n, c, s] - m[n, c]) / √(v[n, c] + eps) · scale[c] + bias[c], m and v the mean and biased variance of x[n, c, ·] over the spatial axes",
      operands: [OperandSpec("x"), OperandSpec("scale"), OperandSpec("bias")],
      attributes: [AttributeSpec("eps", .float, default: .float(1e-5), "added to the variance")],
      fusion: .reduction,
      c: .decomposed,
      shape: ShapeRule("same(x [N, C, spatial...]); scale, bias: [C]") {
        context throws(ShapeError) in
        _ = try instanceNormChannels(context)
        return [context.operands[0]]
      },
      interpret: { context in
        let channels = try instanceNormChannels(try context.checked("instance_norm"))
        let x = context.operands[0]
        let values = x.doubles()
        let scale = context.operands[1].doubles()
        let bias = context.operands[2].doubles()
        let eps = context.double("eps") ?? 1e-5
        let columns = x.shape.dropFirst(2).reduce(1, *)
        var output = [Double](repeating: 0, count: values.count)
        for row in 0..<(columns == 0 ? 0 : values.count / columns) {
          let channel = row % channels
          let slice = values[(row * columns)..<((row + 1) * columns)]
          let mean = slice.reduce(0, +) / Double(columns)
          let variance = slice.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(columns)
          let deviation = (variance + eps).squareRoot()
          for (offset, value) in slice.enumerated() {
            output[row * columns + offset] =
              (value - mean) / deviation * scale[channel] + bias[channel]
          }
        }
        return [context.result(0, output)]
      },
      // As layer norm's over the rows [N, C, S] with g' = g · scale[c]:
      // ∂x = (g' − mean(g') − x̂ · mean(g' · x̂)) / σ; ∂scale = Σ_{n, s} g · x̂; ∂bias = Σ_{n, s} g.
      gradient: { builder, inputs throws(ShapeError) in
        let (x, scale, bias) = (inputs.operands[0], inputs.operands[1], inputs.operands[2])
        let xType = builder.type(of: x)
        let eps = inputs.attributes["eps"]?.doubleValue ?? 1e-5
        let rows = try builder.instanceNormRows(x)
        let statistics = try builder.layerNormStatistics(rows, eps: eps)
        let normalized = try builder.div(statistics.centered, statistics.deviation)
        let gradientRows = try builder.instanceNormRows(inputs.resultGradient)
        var gradients: [ValueID?] = [nil, nil, nil]
        if builder.wants(x) {
          let scaled = try builder.mul(gradientRows, try builder.instanceNormColumn(scale))
          let last: [String: Attribute] = ["axes": .ints([-1]), "keepdims": .bool(true)]
          let meanGradient = try builder.op(Ops.mean, [scaled], last)
          let meanProjection = try builder.op(
            Ops.mean, [try builder.mul(scaled, normalized)], last)
          let difference = try builder.sub(
            try builder.sub(scaled, meanGradient), try builder.mul(normalized, meanProjection))
          gradients[0] = try builder.op(
            Ops.reshape, [try builder.div(difference, statistics.deviation)],
            ["shape": .dims(xType.shape)])
        }
        let perChannel: [String: Attribute] = ["axes": .ints([0, 2])]
        if builder.wants(scale) {
          gradients[1] = try builder.op(
            Ops.sum, [try builder.mul(gradientRows, normalized)], perChannel)
        }
        if builder.wants(bias) {
          gradients[2] = try builder.op(Ops.sum, [gradientRows], perChannel)
        }
        return gradients
      })
    definition.decomposition = { builder, node throws(ShapeError) in
      let (x, scale, bias) = (node.operands[0], node.operands[1], node.operands[2])
      let eps = node.attributes["eps"]?.doubleValue ?? 1e-5
      let statistics = try builder.layerNormStatistics(try builder.instanceNormRows(x), eps: eps)
      var y = try builder.div(statistics.centered, statistics.deviation)
      y = try builder.mul(y, try builder.instanceNormColumn(scale))
      y = try builder.add(y, try builder.instanceNormColumn(bias))
      return [try builder.op(Ops.reshape, [y], ["shape": .dims(builder.type(of: x).shape)])]
    }
    return definition
  }()

  /// Checks `instance_norm`'s operands (x floating-point `[N, C, spatial...]` with static C and at
  /// least one spatial axis; scale and bias `[C]` of x's dtype) and returns C.
  static func instanceNormChannels(_ context: ShapeContext) throws(ShapeError) -> Int {
    let x = context.operands[0]
    try context.requireFloat(x)
    guard x.rank >= 3, let channels = x.shape[1].staticValue else {
      throw ShapeError(
        "instance_norm needs x of rank 3 or more ([batch, channels, spatial...]) with static channels, got \(x)"
      )
    }
    for (position, name) in [(1, "scale"), (2, "bias")] {
      let operand = context.operands[position]
      guard operand.dtype == x.dtype, operand.shape == [Dim(channels)] else {
        throw ShapeError(
          "instance_norm: \(name) must be \(x.with(shape: [Dim(channels)])) (one per channel), got \(operand)"
        )
      }
    }
    return channels
  }

  /// `lrn(x)`: one op in the IR, compiled as its decomposition: the squares' sum over each window of
  /// channels is an `avg_pool2d` down the channel axis of x² seen as `[N, 1, C, spatial]`.
  static let localResponseNorm: OpDefinition = {
    var definition = OpDefinition(
      "lrn",
      summary:
        "Local response normalization across channels (ONNX's LRN, PyTorch's LocalResponseNorm): each element divided by a power of the sum of squares over `size` neighbouring channels.",
      semantics:
        "y[n, c, s] = x[n, c, s] / (bias + alpha / size · Σ_{i = max(0, c − ⌊(size − 1)/2⌋)}^{min(C − 1, c + ⌈(size − 1)/2⌉)} x[n, i, s]²)^beta",
      operands: [OperandSpec("x")],
      attributes: [
        AttributeSpec("size", .int, required: true, "the number of channels in a window"),
        AttributeSpec("alpha", .float, default: .float(1e-4), "the scale of the squares' sum"),
        AttributeSpec("beta", .float, default: .float(0.75), "the exponent"),
        AttributeSpec("bias", .float, default: .float(1.0), "added before the power"),
      ],
      fusion: .opaque,
      c: .decomposed,
      shape: ShapeRule("same(x [N, C, spatial...])") { context throws(ShapeError) in
        _ = try localResponseNormPlan(context)
        return [context.operands[0]]
      },
      interpret: { context in
        let plan = try localResponseNormPlan(try context.checked("lrn"))
        let x = context.operands[0]
        let values = x.doubles()
        let columns = x.shape.dropFirst(2).reduce(1, *)
        let channels = plan.channels
        var output = [Double](repeating: 0, count: values.count)
        for index in values.indices {
          let channel = (index / columns) % channels
          let base = index - channel * columns
          var sum = 0.0
          for neighbour in max(0, channel - plan.before)...min(channels - 1, channel + plan.after) {
            let value = values[base + neighbour * columns]
            sum += value * value
          }
          output[index] =
            values[index]
            / Foundation.pow(plan.bias + plan.alpha / Double(plan.size) * sum, plan.beta)
        }
        return [context.result(0, output)]
      },
      // y_c = x_c · d_c^(−β), d_c = bias + α/size · Σ_{i ∈ W(c)} x_i²:
      // ∂x_j = g_j · d_j^(−β) − 2αβ/size · x_j · Σ_{c : j ∈ W(c)} g_c · x_c · d_c^(−β−1), the last sum
      // a window sum with the window's sides swapped.
      gradient: { builder, inputs throws(ShapeError) in
        let x = inputs.operands[0]
        let g = inputs.resultGradient
        let plan = try localResponseNormPlan(
          ShapeContext(op: "lrn", operands: [builder.type(of: x)], attributes: inputs.attributes))
        let divisor = try builder.localResponseDivisor(x, plan)
        let power = { (builder: inout GradientBuilder, exponent: Double) throws(ShapeError) in
          try builder.op(Ops.pow, [divisor, builder.constant(exponent, like: x)])
        }
        let direct = try builder.mul(g, try power(&builder, -plan.beta))
        let terms = try builder.mul(
          try builder.mul(g, x), try power(&builder, -plan.beta - 1))
        let windowMean = try builder.channelWindowMean(
          terms, plan, before: plan.after, after: plan.before)
        let coefficient = builder.constant(2 * plan.alpha * plan.beta, like: x)
        let indirect = try builder.mul(try builder.mul(coefficient, x), windowMean)
        return [try builder.sub(direct, indirect)]
      })
    definition.decomposition = { builder, node throws(ShapeError) in
      let x = node.operands[0]
      let plan = try localResponseNormPlan(
        ShapeContext(op: "lrn", operands: [builder.type(of: x)], attributes: node.attributes))
      let divisor = try builder.localResponseDivisor(x, plan)
      let power = try builder.op(Ops.pow, [divisor, builder.constant(plan.beta, like: x)])
      return [try builder.div(x, power)]
    }
    return definition
  }()

  /// `lrn`'s checked attributes and x's channel count.
  struct LocalResponsePlan {
    var size: Int
    var alpha: Double
    var beta: Double
    var bias: Double
    var channels: Int
    /// The channels a window reaches before and after its own: ⌊(size − 1)/2⌋ and ⌈(size − 1)/2⌉.
    var before: Int { (size - 1) / 2 }
    var after: Int { size / 2 }
  }

  static func localResponseNormPlan(_ context: ShapeContext) throws(ShapeError)
    -> LocalResponsePlan
  {
    let x = context.operands[0]
    try context.requireFloat(x)
    guard x.rank >= 3, x.shape.dropFirst().allSatisfy(\.isStatic),
      let channels = x.shape[1].staticValue
    else {
      throw ShapeError(
        "lrn needs x of rank 3 or more ([batch, channels, spatial...]) with static channels and spatial sizes, got \(x)"
      )
    }
    let size = context.int("size") ?? 0
    guard size >= 1 else { throw ShapeError("lrn: size must be positive, got \(size)") }
    try checkSpatialLimit("size", [size], op: "lrn")
    return LocalResponsePlan(
      size: size, alpha: context.double("alpha") ?? 1e-4, beta: context.double("beta") ?? 0.75,
      bias: context.double("bias") ?? 1.0, channels: channels)
  }
}

extension GradientBuilder {
  /// `[N, C, spatial...]` → `[N, C, S]`, S the spatial axes' product.
  mutating func instanceNormRows(_ value: ValueID) throws(ShapeError) -> ValueID {
    let shape = type(of: value).shape
    return try op(
      Ops.reshape, [value],
      ["shape": .dims([shape[0], shape[1], Array(shape.dropFirst(2)).product])])
  }

  /// A per-channel `[C]` → `[C, 1]`, to broadcast over `[N, C, S]` rows.
  mutating func instanceNormColumn(_ value: ValueID) throws(ShapeError) -> ValueID {
    try op(Ops.reshape, [value], ["shape": .dims(type(of: value).shape + [Dim(1)])])
  }

  /// The mean of `value` `[N, C, spatial...]` over the channels `c − before ... c + after` (zeros
  /// past the ends, dividing by the window's full size): an `avg_pool2d` of `[N, 1, C, S]`.
  mutating func channelWindowMean(
    _ value: ValueID, _ plan: OpRegistry.LocalResponsePlan, before: Int, after: Int
  ) throws(ShapeError) -> ValueID {
    let shape = type(of: value).shape
    let rows = try op(
      Ops.reshape, [value],
      ["shape": .dims([shape[0], Dim(1), shape[1], Array(shape.dropFirst(2)).product])])
    let pooled = try op(
      Ops.avgPool2d, [rows],
      [
        "kernel": .ints([plan.size, 1]), "stride": .ints([1, 1]),
        "padding": .ints([before, 0, after, 0]), "count_include_pad": .bool(true),
      ])
    return try op(Ops.reshape, [pooled], ["shape": .dims(shape)])
  }

  /// lrn's `bias + alpha / size · Σ_window x²`.
  mutating func localResponseDivisor(_ x: ValueID, _ plan: OpRegistry.LocalResponsePlan)
    throws(ShapeError) -> ValueID
  {
    let mean = try channelWindowMean(
      try mul(x, x), plan, before: plan.before, after: plan.after)
    return try add(
      try mul(mean, constant(plan.alpha, like: x)), constant(plan.bias, like: x))
  }
}
