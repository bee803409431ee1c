import LaminaSupport

extension ONNXTranslators {
  /// Gemm and MatMul.
  static let convolutionTranslators: [ONNXTranslator] = [
    ONNXTranslator(["Gemm"], translateGemm),
    ONNXTranslator(["MatMul"], translateMatMul),
    // Conv and ConvTranspose: spatialTranslators.
  ]

  /// alpha · A' B' + beta · C, with A' and B' optionally transposed; the GEMM reads a transposed
  /// operand in place.
  @Sendable static func translateGemm(_ context: inout ONNXNodeContext) throws -> [ImportedValue] {
    let a = try context.tensor(0)
    let b = try context.tensor(1, dtype: a.dtype)
    guard a.rank == 2, b.rank == 2 else {
      throw context.error("Gemm of shapes \(a.shape) and \(b.shape): both must be 2-D")
    }
    let transposeA = try context.int("transA", default: 0) != 0
    let transposeB = try context.int("transB", default: 0) != 0
    let alpha = context.float("alpha", default: 1)
    let beta = context.float("beta", default: 1)
    let inner = transposeA ? a.shape[0] : a.shape[1]
    let innerB = transposeB ? b.shape[1] : b.shape[0]
    guard inner == innerB else {
      throw context.error(
        "Gemm of shapes \(a.shape) and \(b.shape) (transA \(transposeA), transB \(transposeB)): inner sizes differ"
      )
    }
    var shape = [transposeA ? a.shape[1] : a.shape[0], transposeB ? b.shape[0] : b.shape[1]]
    var flags = ""
    if transposeA { flags += ", transpose_a: true" }
    if transposeB { flags += ", transpose_b: true" }
    var expression = "matmul(\(a.name), \(b.name)\(flags))"
    if alpha != 1 { expression = "\(try floatLiteral(alpha)) * \(expression)" }
    if context.hasInput(2), beta != 0 {
      let c = try context.tensor(2, dtype: a.dtype)
      shape = try context.broadcast(shape, c.shape)
      expression += beta == 1 ? " + \(c.name)" : " + \(try floatLiteral(beta)) * \(c.name)"
    }
    return [context.emit(expression, shape: shape, dtype: a.dtype)]
  }

  /// numpy matmul; a 1-D operand gets a unit axis that the result drops.
  @Sendable static func translateMatMul(_ context: inout ONNXNodeContext) throws -> [ImportedValue]
  {
    var a = try context.tensor(0)
    var b = try context.tensor(1, dtype: a.dtype)
    guard a.rank >= 1, b.rank >= 1 else { throw context.error("MatMul of a scalar") }
    let vectorA = a.rank == 1
    let vectorB = b.rank == 1
    if vectorA { a = try context.reshape(a, to: [ImportedDim(1)] + a.shape) }
    if vectorB { b = try context.reshape(b, to: b.shape + [ImportedDim(1)]) }
    guard a.shape[a.rank - 1] == b.shape[b.rank - 2] else {
      throw context.error("MatMul of shapes \(a.shape) and \(b.shape): inner sizes differ")
    }
    let batch = try context.broadcast(Array(a.shape.dropLast(2)), Array(b.shape.dropLast(2)))
    var shape = batch + [a.shape[a.rank - 2], b.shape[b.rank - 1]]
    let expression = "\(a.name) @ \(b.name)"
    guard vectorA || vectorB else {
      return [context.emit(expression, shape: shape, dtype: a.dtype)]
    }
    let product = context.emitTemporary(expression, shape: shape, dtype: a.dtype)
    if vectorB { shape.removeLast() }
    if vectorA { shape.remove(at: shape.count - (vectorB ? 1 : 2)) }
    return [
      context.emit(
        "reshape(\(product.name), shape: \(try context.reshapeText(shape)))", shape: shape,
        dtype: a.dtype)
    ]
  }
}
