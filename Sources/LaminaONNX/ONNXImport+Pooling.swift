import LaminaSupport

extension ONNXTranslators {
  /// The global pools.
  static let poolingTranslators: [ONNXTranslator] = [
    // MaxPool and AveragePool: spatialTranslators.
    ONNXTranslator(["GlobalAveragePool"]) { context in
      let x = try context.tensor(0)
      _ = try spatialSizes(context, x, "GlobalAveragePool")
      // ONNX keeps the pooled axes: [N, C, 1, 1].
      let pooled = context.emitTemporary(
        "global_avg_pool2d(\(x.name))", shape: Array(x.shape.prefix(2)), dtype: x.dtype)
      return [
        context.emit(
          "unsqueeze(\(pooled.name), axes: [2, 3])",
          shape: Array(x.shape.prefix(2)) + [ImportedDim(1), ImportedDim(1)], dtype: x.dtype)
      ]
    },
    ONNXTranslator(["GlobalMaxPool"]) { context in
      let x = try context.tensor(0)
      guard x.rank >= 3 else { throw context.error("GlobalMaxPool of a rank-\(x.rank) tensor") }
      let axes = Array(2..<x.rank)
      return [
        context.emit(
          "max(\(x.name), axes: \(context.list(axes)), keepdims: true)",
          shape: Array(x.shape.prefix(2)) + axes.map { _ in ImportedDim(1) }, dtype: x.dtype)
      ]
    },
  ]

  /// The spatial sizes of an NCHW tensor, which must be static.
  static func spatialSizes(_ context: ONNXNodeContext, _ x: TensorExpression, _ what: String)
    throws -> [Int]
  {
    guard x.rank == 4 else {
      throw context.error(
        "\(what) over \(x.rank - 2) spatial dimensions: lamina import translates the 2-D form (input [N, C, H, W]), the input is \(x.shape)"
      )
    }
    guard let height = x.shape[2].staticValue, let width = x.shape[3].staticValue else {
      throw context.error("\(what) needs static height and width, the input is \(x.shape)")
    }
    return [height, width]
  }
}
