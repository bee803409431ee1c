import LaminaSupport

extension ONNXTranslators {
  /// Indexing, padding and tiling: `Gather` of model tensors (shape chains fold at import time),
  /// `Pad` (attributes before opset 11, inputs after) and `Tile`.
  static let indexingTranslators: [ONNXTranslator] = [
    ONNXTranslator(["Gather"], translateGather),
    ONNXTranslator(["Pad"], translatePad),
    ONNXTranslator(["Tile"], translateTile),
  ]

  /// Gather: folded at import time when data and indices are known (shape chains); otherwise the
  /// `gather` op, with static data or indices becoming parameters (an embedding table stays
  /// trainable).
  @Sendable static func translateGather(_ context: inout ONNXNodeContext) throws -> [ImportedValue]
  {
    if let folded = try gatherStatic(context) { return [folded] }
    let data = try context.tensor(0)
    let indices = try context.tensor(1)
    guard indices.dtype.isInteger else {
      throw context.error("the indices must be integers, got \(indices.dtype)")
    }
    guard data.rank >= 1 else { throw context.error("Gather of a scalar") }
    let axis = try context.normalizedAxis(try context.int("axis", default: 0), rank: data.rank)
    let shape = Array(data.shape[..<axis]) + indices.shape + Array(data.shape[(axis + 1)...])
    return [
      context.emit(
        "gather(\(data.name), \(indices.name), axis: \(axis), input: \"\(indices.name)\")",
        shape: shape, dtype: data.dtype)
    ]
  }

  /// Pad: `pads` (and `value`) are attributes before opset 11 and inputs from it (`axes` from 18).
  @Sendable static func translatePad(_ context: inout ONNXNodeContext) throws -> [ImportedValue] {
    let x = try context.tensor(0)
    let mode = context.string("mode") ?? "constant"
    guard ["constant", "reflect", "edge"].contains(mode) else {
      throw context.error("pad mode \"\(escapedText(mode))\" is not supported")
    }
    var pads: [Int]
    var value = 0.0
    if context.opset < 11 {
      guard let given = context.ints("pads") ?? context.ints("paddings") else {
        throw context.error("the pads attribute is missing")
      }
      pads = given
      value = Double(context.float("value", default: 0))
    } else {
      pads = try context.integers(1, "the pads")
      if context.hasInput(2) {
        let fill = try context.constant(2, "the constant value")
        guard fill.count == 1 else { throw context.error("the constant value must be a scalar") }
        value = fill.doubles()[0]
      }
      if context.hasInput(3) {
        // Pads for the listed axes only; every other axis gets none.
        let axes = try context.integers(3, "the axes")
        guard pads.count == 2 * axes.count else {
          throw context.error("\(pads.count) pads for \(axes.count) axes")
        }
        var full = [Int](repeating: 0, count: 2 * x.rank)
        for (position, axis) in axes.enumerated() {
          let resolved = try context.normalizedAxis(axis, rank: x.rank)
          full[resolved] = pads[position]
          full[x.rank + resolved] = pads[axes.count + position]
        }
        pads = full
      }
    }
    guard pads.count == 2 * x.rank else {
      throw context.error("\(pads.count) pads for a tensor of rank \(x.rank)")
    }
    if pads.allSatisfy({ $0 == 0 }) { return [.tensor(x)] }
    var shape: [ImportedDim] = []
    for (axis, dim) in x.shape.enumerated() {
      let change = pads[axis] + pads[x.rank + axis]
      guard change != 0 else {
        shape.append(dim)
        continue
      }
      guard let size = dim.staticValue, size + change >= 1 else {
        throw context.error("pads \(pads) cannot apply to axis \(axis) of size \(dim)")
      }
      shape.append(ImportedDim(size + change))
    }
    var arguments = "pads: \(context.list(pads))"
    if mode != "constant" { arguments += ", mode: \"\(mode)\"" }
    if mode == "constant", value != 0 {
      let literal = x.dtype == .f32 ? try floatLiteral(Float(value)) : try floatLiteral(value)
      arguments += ", value: \(literal)"
    }
    return [context.emit("pad(\(x.name), \(arguments))", shape: shape, dtype: x.dtype)]
  }

  /// Tile: the repeats are an input known at import time.
  @Sendable static func translateTile(_ context: inout ONNXNodeContext) throws -> [ImportedValue] {
    let x = try context.tensor(0)
    let repeats = try context.integers(1, "the repeats")
    guard repeats.count == x.rank else {
      throw context.error("\(repeats.count) repeats for a tensor of rank \(x.rank)")
    }
    guard repeats.allSatisfy({ $0 >= 1 }) else {
      throw context.error("repeats \(repeats): a repeat of 0 (an empty result) is not supported")
    }
    if repeats.allSatisfy({ $0 == 1 }) { return [.tensor(x)] }
    var shape: [ImportedDim] = []
    for (dim, count) in zip(x.shape, repeats) {
      guard let product = dim.times(ImportedDim(count)) else {
        throw context.error("\(x.shape) repeated \(repeats) is too large")
      }
      shape.append(product)
    }
    return [
      context.emit(
        "tile(\(x.name), repeats: \(context.list(repeats)))", shape: shape, dtype: x.dtype)
    ]
  }
}
