/// Every ONNX op type `lamina import` translates. Each family file declares its translators; this
/// is the one registration list (a new family adds one line).
///
/// A translator reads its node through `ONNXNodeContext`: attributes (`int`, `ints`, `float`,
/// `string`, `tensorAttribute`), inputs as model tensors (`tensor(i)`: a static input becomes a
/// parameter of its full shape) or as values known at import time (`constant(i, what)`,
/// `integers(i, what)`, `input(i).staticDims`), and the opset. It writes `let`s with
/// `emit(expression, shape:, dtype:, output:)` (named after the ONNX output) and
/// `emitTemporary` (intermediates), and returns one `ImportedValue` per output; the shapes it
/// passes are its own shape inference, which later translators rely on. Layers with weights take a
/// scope from `layerScope(weightSuffixes:)` and store their weights with `addWeight`. Errors are
/// `context.error("...")`, which names the node.
public enum ONNXTranslators {
  public static let all: [ONNXTranslator] =
    elementwiseTranslators
    + convolutionTranslators
    + poolingTranslators
    + normalizationTranslators
    + shapeTranslators
    + reductionTranslators
    + spatialTranslators
    + indexingTranslators
    + activationTranslators
}

extension ONNXNodeContext {
  /// An axis attribute made non-negative for a tensor of `rank`.
  public func normalizedAxis(_ axis: Int, rank: Int) throws -> Int {
    let resolved = axis < 0 ? axis + rank : axis
    guard resolved >= 0, resolved < max(rank, 1) || (rank == 0 && resolved == 0) else {
      throw error("axis \(axis) is out of range for rank \(rank)")
    }
    return resolved
  }

  /// numpy broadcasting of two shapes.
  public func broadcast(_ a: [ImportedDim], _ b: [ImportedDim]) throws -> [ImportedDim] {
    let rank = max(a.count, b.count)
    var result: [ImportedDim] = []
    for position in 0..<rank {
      let left = position - (rank - a.count)
      let right = position - (rank - b.count)
      let x = left >= 0 ? a[left] : ImportedDim(1)
      let y = right >= 0 ? b[right] : ImportedDim(1)
      if x == y || y == ImportedDim(1) {
        result.append(x)
      } else if x == ImportedDim(1) {
        result.append(y)
      } else {
        throw error("shapes \(a) and \(b) do not broadcast")
      }
    }
    return result
  }

  /// A list of integers as `.lam` text: `[1, 2]`.
  public func list(_ values: [Int]) -> String {
    "[\(values.map(String.init).joined(separator: ", "))]"
  }
}
