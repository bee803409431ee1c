import Foundation
import LaminaSupport

extension OpRegistry {
  /// Reductions over axes, and the normalizing reductions softmax and log-softmax.
  static let reductionOps: [OpDefinition] = [
    reduction(
      "sum", "Sums elements over the given axes (all axes when `axes` is absent).",
      "y = Σ_{reduced axes} x; an empty axis sums to 0; integers sum exactly and wrap around (two's complement) at the dtype's width",
      // ∂/∂x_i Σ x = 1: g spread over the reduced axes
      gradient: { builder, inputs throws(ShapeError) in
        let x = builder.type(of: inputs.operands[0])
        let axes = builder.reducedAxes(inputs.attributes, rank: x.rank)
        return [try builder.expand(inputs.resultGradient, to: x, reducing: axes)]
      }, description: ReductionDescription(identity: 0, combine: .add)),
    reduction(
      "mean", "Averages elements over the given axes (all axes when `axes` is absent).",
      "y = (Σ_{reduced axes} x) / n, n = product of the reduced dimensions; an empty axis gives NaN",
      floatOnly: true,
      // ∂/∂x_i (Σ x)/n = 1/n: g/n spread over the reduced axes (n counted at run time if symbolic)
      gradient: { builder, inputs throws(ShapeError) in
        let x = builder.type(of: inputs.operands[0])
        let axes = builder.reducedAxes(inputs.attributes, rank: x.rank)
        let count = try builder.count(axes.map { x.shape[$0] }, like: inputs.resultGradient)
        let spread = try builder.expand(inputs.resultGradient, to: x, reducing: axes)
        return [try builder.div(spread, count)]
      }, description: ReductionDescription(identity: 0, combine: .add, finalize: .divideByCount)),
    reduction(
      "max", "The largest element over the given axes (all axes when `axes` is absent).",
      "y = max_{reduced axes} x; reducing an empty axis is an error at run time",
      // ∂/∂x_i max x = [x_i = y] / #{j: x_j = y}: g goes to the maxima, shared evenly between ties
      // (a subgradient; x_i ≥ y only where x_i is a maximum)
      gradient: { builder, inputs throws(ShapeError) in
        let operand = inputs.operands[0]
        let x = builder.type(of: operand)
        let axes = builder.reducedAxes(inputs.attributes, rank: x.rank)
        let maximum = try builder.keepingDims(inputs.result, of: x, reducing: axes)
        let isMaximum = try builder.op("greater_equal", [operand, maximum])
        let ties = try builder.op(
          "sum", [isMaximum], ["axes": .ints(axes), "keepdims": .bool(true)])
        let share = try builder.div(
          try builder.keepingDims(inputs.resultGradient, of: x, reducing: axes), ties)
        return [try builder.mul(isMaximum, share)]
      },
      // NaN propagates, as in numpy and PyTorch.
      description: ReductionDescription(
        identity: -.infinity, combine: .maximum, nanRule: .explicit, emptyAxis: .error)),
    normalization(
      "softmax", "Exponentials normalized to sum to 1 along an axis, computed stably.",
      "y_i = e^(x_i - m) / Σ_j e^(x_j - m), m = max_j x_j, along axis",
      // ∂/∂x_i: Σ_j g_j ∂y_j/∂x_i = y_i (g_i - Σ_j g_j y_j), along axis
      gradient: { builder, inputs throws(ShapeError) in
        let (y, g) = (inputs.result, inputs.resultGradient)
        let axis = inputs.attributes["axis"]?.intValue ?? -1
        let weighted = try builder.op(
          "sum", [try builder.mul(g, y)], ["axes": .ints([axis]), "keepdims": .bool(true)])
        return [try builder.mul(y, try builder.sub(g, weighted))]
      },
      normalization: .exponential, transform: { shifted, total in Foundation.exp(shifted) / total }),
    normalization(
      "log_softmax", "Logarithm of softmax along an axis, computed stably.",
      "y_i = (x_i - m) - ln Σ_j e^(x_j - m), m = max_j x_j, along axis",
      // ∂/∂x_i: Σ_j g_j ∂y_j/∂x_i = g_i - softmax(x)_i Σ_j g_j, softmax(x) = e^y, along axis
      gradient: { builder, inputs throws(ShapeError) in
        let (y, g) = (inputs.result, inputs.resultGradient)
        let axis = inputs.attributes["axis"]?.intValue ?? -1
        let total = try builder.op("sum", [g], ["axes": .ints([axis]), "keepdims": .bool(true)])
        return [try builder.sub(g, try builder.mul(try builder.op("exp", [y]), total))]
      },
      normalization: .logarithm, transform: { shifted, total in shifted - Foundation.log(total) }),
  ]

  /// A reduction over `axes` with `keepdims`; `description` folds the values of one output element
  /// (the C kernels follow the same description).
  ///
  /// `axes: []` reduces nothing (numpy's `axis=()`), which is different from leaving `axes` out.
  static func reduction(
    _ name: String, _ summary: String, _ semantics: String, floatOnly: Bool = false,
    gradient: GradientRule? = nil, description: ReductionDescription
  ) -> OpDefinition {
    OpDefinition(
      name, summary: summary, semantics: semantics, operands: [OperandSpec("x")],
      attributes: [
        AttributeSpec(
          "axes", .ints, "axes to reduce (negative count from the end); absent reduces all axes"),
        AttributeSpec(
          "keepdims", .bool, default: .bool(false), "keep each reduced axis with size 1"),
      ],
      fusion: .reduction,
      c: .kernel(.reduce),
      reduction: description,
      shape: ShapeRule("reduce(x, axes, keepdims)") { context throws(ShapeError) in
        if floatOnly { try context.requireFloat(context.operands[0]) }
        return [try reductionPlan(context).result]
      },
      interpret: { context in
        let plan = try reductionPlan(try context.checked(name))
        let operand = context.operands[0]
        if description.emptyAxis == .error,
          let empty = plan.axes.first(where: { operand.shape[$0] == 0 })
        {
          throw InterpretError(
            "\(name): cannot reduce over axis \(empty) of \(operand.typeDescription): it is empty")
        }
        // Keeping or dropping the reduced axes does not change the row-major order of the output, so
        // the output position of an element is its coordinate with the reduced axes left out.
        let keptAxes = (0..<operand.rank).filter { !plan.axes.contains($0) }
        let outputStrides = rowMajorStrides(keptAxes.map { operand.shape[$0] })
        let outputCount = keptAxes.map { operand.shape[$0] }.reduce(1, *)
        if operand.dtype.isInteger {
          var groups = [[Int64]](repeating: [], count: outputCount)
          let values = integerValues(operand)
          var flat = 0
          forEachCoordinate(operand.shape) { coordinate in
            var position = 0
            for (index, axis) in keptAxes.enumerated() {
              position += coordinate[axis] * outputStrides[index]
            }
            groups[position].append(values[flat])
            flat += 1
          }
          let result = context.results[0]
          return [
            integerTensor(
              result.dtype, result.shape, groups.map { description.reduce(integers: $0) })
          ]
        }
        var groups = [[Double]](repeating: [], count: outputCount)
        let values = operand.doubles()
        var flat = 0
        forEachCoordinate(operand.shape) { coordinate in
          var position = 0
          for (index, axis) in keptAxes.enumerated() {
            position += coordinate[axis] * outputStrides[index]
          }
          groups[position].append(values[flat])
          flat += 1
        }
        return [context.result(0, groups.map(description.reduce))]
      }, gradient: gradient)
  }

  /// The normalized reduced axes and the result type of a reduction.
  static func reductionPlan(_ context: ShapeContext) throws(ShapeError) -> (
    axes: [Int], result: TensorType
  ) {
    let operand = context.operands[0]
    let axes =
      try context.ints("axes").map { axes throws(ShapeError) in
        try context.axes(axes, rank: operand.rank, operand: operand.description)
      } ?? Array(0..<operand.rank)
    var shape: [Dim] = []
    for (axis, dim) in operand.shape.enumerated() {
      if !axes.contains(axis) {
        shape.append(dim)
      } else if context.bool("keepdims") == true {
        shape.append(1)
      }
    }
    return (axes, operand.with(shape: shape))
  }

  /// Softmax-like ops: along `axis`, each element is `transform(x - max, Σ e^(x - max))`.
  ///
  /// Subtracting the line's maximum keeps every exponent at or below 0, so large logits cannot overflow.
  static func normalization(
    _ name: String, _ summary: String, _ semantics: String, gradient: GradientRule? = nil,
    normalization: Normalization,
    transform: @escaping @Sendable (_ shifted: Double, _ total: Double) -> Double
  ) -> OpDefinition {
    var definition = OpDefinition(
      name, summary: summary, semantics: semantics, operands: [OperandSpec("x")],
      attributes: [AttributeSpec("axis", .int, default: .int(-1), "the axis to normalize along")],
      fusion: .reduction,
      c: .kernel(.normalize),
      shape: ShapeRule("same(x)") { context throws(ShapeError) in
        _ = try normalizationAxis(context)
        return [context.operands[0]]
      },
      interpret: { context in
        let axis = try normalizationAxis(try context.checked(name))
        let values = context.operands[0].doubles()
        var output = [Double](repeating: 0, count: values.count)
        for line in lines(of: context.operands[0].shape, along: axis) {
          let maximum = line.map { values[$0] }.reduce(-Double.infinity) { Swift.max($0, $1) }
          let total = line.map { Foundation.exp(values[$0] - maximum) }.reduce(0, +)
          for index in line { output[index] = transform(values[index] - maximum, total) }
        }
        return [context.result(0, output)]
      }, gradient: gradient)
    definition.normalization = normalization
    return definition
  }

  /// The normalized `axis` of softmax and log-softmax, after checking the operand.
  static func normalizationAxis(_ context: ShapeContext) throws(ShapeError) -> Int {
    let operand = context.operands[0]
    try context.requireFloat(operand)
    guard operand.rank >= 1 else {
      throw ShapeError("\(context.op) needs an operand of rank 1 or more, got \(operand)")
    }
    return try context.axis(
      context.int("axis") ?? -1, rank: operand.rank, operand: operand.description)
  }
}
