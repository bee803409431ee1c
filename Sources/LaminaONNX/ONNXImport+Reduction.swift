import LaminaSupport

extension ONNXTranslators {
  /// ReduceMean, ReduceSum and ReduceMax.
  static let reductionTranslators: [ONNXTranslator] = [
    ONNXTranslator(["ReduceMean"]) { try reduce(&$0, "mean", axesInputFrom: 18) },
    ONNXTranslator(["ReduceSum"]) { try reduce(&$0, "sum", axesInputFrom: 13) },
    ONNXTranslator(["ReduceMax"]) { try reduce(&$0, "max", axesInputFrom: 18) },
  ]

  /// `axes` is an attribute before `axesInputFrom` and an optional input from it.
  static func reduce(_ context: inout ONNXNodeContext, _ function: String, axesInputFrom: Int)
    throws -> [ImportedValue]
  {
    let x = try context.tensor(0)
    let keepDims = try context.int("keepdims", default: 1) != 0
    var axes: [Int]?
    if context.opset >= axesInputFrom {
      if context.hasInput(1) { axes = try context.integers(1, "the axes") }
    } else {
      axes = context.ints("axes")
    }
    if axes?.isEmpty ?? true {
      if try context.int("noop_with_empty_axes", default: 0) != 0 { return [.tensor(x)] }
      axes = Array(0..<x.rank)
    }
    let resolved = try Set(axes!.map { try context.normalizedAxis($0, rank: x.rank) }).sorted()
    var shape: [ImportedDim] = []
    for (axis, dim) in x.shape.enumerated() {
      if !resolved.contains(axis) {
        shape.append(dim)
      } else if keepDims {
        shape.append(ImportedDim(1))
      }
    }
    return [
      context.emit(
        "\(function)(\(x.name), axes: \(context.list(resolved)), keepdims: \(keepDims))",
        shape: shape, dtype: x.dtype)
    ]
  }
}
