import Foundation
import LaminaSupport

extension OpRegistry {
  /// Layer normalization.
  static let layerNormOps: [OpDefinition] = [layerNorm]

  /// `layer_norm(x, weight?, bias?)`: one op in the IR (so the interpreter, autodiff and the docs see
  /// one node), compiled as its decomposition into a row mean, a row variance and a normalization,
  /// which the fusion pass makes one row kernel, as it does for W6 written out.
  static let layerNorm: OpDefinition = {
    var definition = OpDefinition(
      "layer_norm",
      summary:
        "Layer normalization over the last axes (PyTorch's LayerNorm): each row of the normalized axes to zero mean and unit variance, then scaled by `weight` and shifted by `bias` when given (both of the normalized axes' shape). The C backend compiles its decomposition, which fuses into one row kernel.",
      semantics:
        "y = (x - m) / √(v + eps) · weight + bias, m and v the mean and biased variance over axes",
      operands: [
        OperandSpec("x"), OperandSpec("weight", optional: true),
        OperandSpec("bias", optional: true),
      ],
      attributes: [
        AttributeSpec(
          "axes", .ints, default: .ints([-1]),
          "the normalized axes: the last ones of x, in order (negative count from the end)"),
        AttributeSpec("eps", .float, default: .float(1e-5), "added to the variance"),
      ],
      fusion: .reduction,
      c: .decomposed,
      shape: ShapeRule("same(x); weight, bias: x's normalized axes") {
        context throws(ShapeError) in
        _ = try layerNormPlan(context)
        return [context.operands[0]]
      },
      // Step by step as the formula, each step rounded to x's dtype as the ops of the
      // decomposition round theirs: interpreting the backend's decomposed graph gives the same bits.
      interpret: { context in
        let axisCount = try layerNormPlan(try context.checked("layer_norm"))
        let x = context.operands[0]
        let round: (Double) -> Double =
          x.dtype == .f32 ? { Double(Float($0)) } : { $0 }
        let columns = x.shape.suffix(axisCount).reduce(1, *)
        let values = x.doubles()
        let weight = context.operands.count > 1 ? context.operands[1].doubles() : nil
        let bias = context.operands.count > 2 ? context.operands[2].doubles() : nil
        let eps = round(context.double("eps") ?? 1e-5)
        var output = [Double](repeating: 0, count: values.count)
        var start = 0
        while start < values.count {
          let row = values[start..<(start + columns)]
          let mean = round(row.reduce(0, +) / Double(columns))
          let centered = row.map { round($0 - mean) }
          let variance = round(
            centered.map { round($0 * $0) }.reduce(0, +) / Double(columns))
          let deviation = round((round(variance + eps)).squareRoot())
          for column in 0..<columns {
            var y = round(centered[column] / deviation)
            if let weight { y = round(y * weight[column]) }
            if let bias { y = round(y + bias[column]) }
            output[start + column] = y
          }
          start += columns
        }
        return [context.result(0, output)]
      },
      // With x̂ = (x - m)/σ, σ = √(v + eps), and g' = g · weight over a row of n elements:
      // ∂/∂x = (g' - mean(g') - x̂ · mean(g' · x̂)) / σ; ∂/∂weight = Σ_rows g · x̂; ∂/∂bias = Σ_rows g
      // (the autodiff pass sums the row-shaped gradients over the leading axes).
      gradient: { builder, inputs throws(ShapeError) in
        let operands = inputs.operands
        let x = operands[0]
        let xType = builder.type(of: x)
        let eps = inputs.attributes["eps"]?.doubleValue ?? 1e-5
        let axisCount = inputs.attributes["axes"]?.intsValue?.count ?? 1
        let rows = try builder.layerNormRows(x, axisCount: axisCount)
        let statistics = try builder.layerNormStatistics(rows, eps: eps)
        let normalized = try builder.div(statistics.centered, statistics.deviation)
        let gradientRows = try builder.layerNormRows(inputs.resultGradient, axisCount: axisCount)
        var gradients: [ValueID?] = [nil]
        if builder.wants(x) {
          var scaled = gradientRows
          if operands.count > 1 {
            scaled = try builder.mul(
              gradientRows, try builder.layerNormRows(operands[1], axisCount: axisCount))
          }
          let rowMean = { (builder: inout GradientBuilder, value: ValueID) throws(ShapeError) in
            try builder.op(Ops.mean, [value], ["axes": .ints([-1]), "keepdims": .bool(true)])
          }
          let meanGradient = try rowMean(&builder, scaled)
          let meanProjection = try rowMean(&builder, try builder.mul(scaled, normalized))
          let difference = try builder.sub(
            try builder.sub(scaled, meanGradient), try builder.mul(normalized, meanProjection))
          let rowGradient = try builder.div(difference, statistics.deviation)
          gradients[0] = try builder.layerNormUnrows(rowGradient, like: xType)
        }
        if operands.count > 1 {
          gradients.append(
            builder.wants(operands[1])
              ? try builder.mul(
                inputs.resultGradient, try builder.layerNormUnrows(normalized, like: xType))
              : nil)
        }
        if operands.count > 2 {
          gradients.append(builder.wants(operands[2]) ? inputs.resultGradient : nil)
        }
        return gradients
      })
    definition.decomposition = { builder, node throws(ShapeError) in
      let operands = node.operands
      let x = operands[0]
      let xType = builder.type(of: x)
      let axisCount = node.attributes["axes"]?.intsValue?.count ?? 1
      let eps = node.attributes["eps"]?.doubleValue ?? 1e-5
      let rows = try builder.layerNormRows(x, axisCount: axisCount)
      let statistics = try builder.layerNormStatistics(rows, eps: eps)
      // Divided as W6 writes it; the row kernel multiplies by the one reciprocal per row.
      var y = try builder.div(statistics.centered, statistics.deviation)
      if operands.count > 1 {
        y = try builder.mul(y, try builder.layerNormRows(operands[1], axisCount: axisCount))
      }
      if operands.count > 2 {
        y = try builder.add(y, try builder.layerNormRows(operands[2], axisCount: axisCount))
      }
      return [try builder.layerNormUnrows(y, like: xType)]
    }
    return definition
  }()

  /// Checks `layer_norm`'s operands and axes (the last axes of x, in order; `weight` and `bias` of
  /// their shape and x's dtype) and returns the number of normalized axes.
  static func layerNormPlan(_ context: ShapeContext) throws(ShapeError) -> Int {
    let x = context.operands[0]
    try context.requireFloat(x)
    let given = context.ints("axes") ?? [-1]
    guard !given.isEmpty else {
      throw ShapeError("layer_norm: axes must name at least one axis, got []")
    }
    let axes = try context.axes(given, rank: x.rank, operand: x.description)
    let trailing = Array((x.rank - axes.count)..<x.rank)
    guard axes == trailing else {
      throw ShapeError(
        "layer_norm normalizes over the last axes of x in order: expected \(trailing) for \(x), got \(given)",
        help: "to normalize other axes, permute them to the end first")
    }
    let normalizedShape = Array(x.shape.suffix(axes.count))
    for (position, name) in [(1, "weight"), (2, "bias")] where context.operands.count > position {
      let operand = context.operands[position]
      guard operand.dtype == x.dtype, operand.shape == normalizedShape else {
        throw ShapeError(
          "layer_norm: \(name) must be \(x.with(shape: normalizedShape)) (x's normalized axes), got \(operand)"
        )
      }
    }
    return axes.count
  }
}

extension GradientBuilder {
  /// `value` seen as rows of its last `axisCount` axes flattened into one, so every statistic is a
  /// reduction over the last axis (the fused row kernels' shape); itself when `axisCount` is 1.
  mutating func layerNormRows(_ value: ValueID, axisCount: Int) throws(ShapeError) -> ValueID {
    guard axisCount > 1 else { return value }
    let shape = type(of: value).shape
    let rowShape = Array(shape.dropLast(axisCount)) + [Array(shape.suffix(axisCount)).product]
    return try op(Ops.reshape, [value], ["shape": .dims(rowShape)])
  }

  /// Rows (`layerNormRows`) back in the shape of `type`.
  mutating func layerNormUnrows(_ rows: ValueID, like type: TensorType) throws(ShapeError)
    -> ValueID
  {
    if self.type(of: rows).shape == type.shape { return rows }
    return try op(Ops.reshape, [rows], ["shape": .dims(type.shape)])
  }

  /// The centered rows and each row's deviation √(variance + eps), kept as `[..., 1]`.
  mutating func layerNormStatistics(_ rows: ValueID, eps: Double) throws(ShapeError) -> (
    centered: ValueID, deviation: ValueID
  ) {
    let last: [String: Attribute] = ["axes": .ints([-1]), "keepdims": .bool(true)]
    let mean = try op(Ops.mean, [rows], last)
    let centered = try sub(rows, mean)
    let variance = try op(Ops.mean, [try mul(centered, centered)], last)
    let deviation = try op(Ops.sqrt, [try add(variance, constant(eps, like: rows))])
    return (centered, deviation)
  }
}
