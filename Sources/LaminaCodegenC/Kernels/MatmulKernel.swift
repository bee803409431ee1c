import LaminaIR
import LaminaSupport

/// `matmul`: one GEMM call per batch element (numpy semantics: leading axes broadcast, 1-D operands
/// are vectors), or one for all when only a is batched. Floating-point products go to the runtime's packed, blocked, multi-threaded GEMM;
/// integer ones use a plain loop.
enum MatmulKernel {
  static func emit(_ context: KernelContext, into writer: inout CWriter) {
    let (a, b) = (context.operandTypes[0], context.operandTypes[1])
    // Treat 1-D operands as a row (a) or a column (b) vector.
    let aShape = a.rank == 1 ? [Dim(1)] + a.shape : a.shape
    let bShape = b.rank == 1 ? b.shape + [Dim(1)] : b.shape
    // A transposed operand is stored with its last two axes swapped; the GEMM reads it as it is.
    let transposeA = context.attributes["transpose_a"]?.boolValue ?? false
    let transposeB = context.attributes["transpose_b"]?.boolValue ?? false
    let m = aShape[aShape.count - (transposeA ? 1 : 2)]
    let k = aShape[aShape.count - (transposeA ? 2 : 1)]
    let n = bShape[bShape.count - (transposeB ? 2 : 1)]
    var aBatch = Array(aShape.dropLast(2))
    let bBatch = Array(bShape.dropLast(2))
    // A batched, untransposed a times one matrix b: a's batch rows stacked are one taller matrix,
    // so the product is one GEMM (a dense layer over [batch, time, features]) rather than one per
    // batch element.
    var rows = cDim(m)
    if bBatch.isEmpty && !transposeA && !aBatch.isEmpty {
      rows = "(\(cProduct(aBatch))) * \(cDim(m))"
      aBatch = []
    }
    let batchRank = max(aBatch.count, bBatch.count)
    let batch = broadcastShapes(aBatch, bBatch) ?? []

    writer.line("const int64_t m = \(rows), n = \(cDim(n)), k = \(cDim(k));")
    let indices = (0..<batchRank).map { "b\($0)" }
    func strides(_ own: [Dim], matrix: String) -> [String] {
      let ownStrides = cStrides(own).map { "\($0) * \(matrix)" }
      let offset = batchRank - own.count
      return (0..<batchRank).map { axis in
        let ownAxis = axis - offset
        return ownAxis >= 0 && own[ownAxis] != Dim(1) ? ownStrides[ownAxis] : "0"
      }
    }
    let aStrides = strides(aBatch, matrix: "m * k")
    let bStrides = strides(bBatch, matrix: "k * n")
    let cStridesList = cStrides(batch).map { "\($0) * m * n" }

    func body(_ writer: inout CWriter) {
      let aOffset = cIndex(indices, aStrides)
      let bOffset = cIndex(indices, bStrides)
      let cOffset = cIndex(indices, cStridesList)
      func plus(_ offset: String) -> String { offset == "0" ? "" : " + \(offset)" }
      switch context.resultType.dtype {
      case .f32, .f64:
        let gemm = context.resultType.dtype == .f32 ? "lamina_sgemm" : "lamina_dgemm"
        let (lda, ldb) = (transposeA ? "m" : "k", transposeB ? "k" : "n")
        writer.line(
          "\(gemm)(ctx->pool, \(transposeA ? 1 : 0), \(transposeB ? 1 : 0), m, n, k, 1, in0\(plus(aOffset)), \(lda), in1\(plus(bOffset)), \(ldb), 0, out\(plus(cOffset)), n, NULL);"
        )
      case .i32, .i64:
        writer.block("for (int64_t i = 0; i < m; i++)") { rows in
          rows.block("for (int64_t j = 0; j < n; j++)") { columns in
            // In uint64_t, where overflow is defined: the low bits are the wrapped (two's
            // complement) result at either width, as ops.md defines integer arithmetic.
            columns.line("uint64_t total = 0;")
            let aIndex = transposeA ? "p * m + i" : "i * k + p"
            let bIndex = transposeB ? "j * k + p" : "p * n + j"
            columns.line(
              "for (int64_t p = 0; p < k; p++) total += (uint64_t)in0[\(aOffset) + \(aIndex)] * (uint64_t)in1[\(bOffset) + \(bIndex)];"
            )
            columns.line(
              "out[\(cOffset) + i * n + j] = (\(CExpressionContext.cType(context.resultType.dtype)))total;"
            )
          }
        }
      }
    }
    func nest(_ axis: Int, _ writer: inout CWriter) {
      if axis == batchRank { return body(&writer) }
      writer.block("for (int64_t b\(axis) = 0; b\(axis) < \(cDim(batch[axis])); b\(axis)++)") {
        inner in
        nest(axis + 1, &inner)
      }
    }
    nest(0, &writer)
  }
}

/// A 2-D floating-point matmul is the GEMM, which hands each finished block of C to the epilogue.
extension MatmulKernel: EpilogueProducerEmitter {
  static func matrixShape(of producer: Node, in graph: Graph) -> (rows: Dim, columns: Dim) {
    let domain = graph.type(of: producer.result).shape
    return (domain[0], domain[1])
  }

  static func emitProduce(
    _ producer: Node, in graph: Graph, operand: (ValueID) -> String, destination: String,
    epilogue: String, into body: inout CWriter
  ) {
    let (m, n) = matrixShape(of: producer, in: graph)
    let transposeA = producer.attributes["transpose_a"]?.boolValue ?? false
    let transposeB = producer.attributes["transpose_b"]?.boolValue ?? false
    let aShape = graph.type(of: producer.operands[0]).shape
    let k = aShape[transposeA ? 0 : 1]
    let gemm = graph.type(of: producer.result).dtype == .f32 ? "lamina_sgemm" : "lamina_dgemm"
    let (lda, ldb) = (transposeA ? cDim(m) : cDim(k), transposeB ? cDim(k) : cDim(n))
    body.line(
      "\(gemm)(ctx->pool, \(transposeA ? 1 : 0), \(transposeB ? 1 : 0), \(cDim(m)), \(cDim(n)), \(cDim(k)), 1, \(operand(producer.operands[0])), \(lda), \(operand(producer.operands[1])), \(ldb), 0, \(destination), \(cDim(n)), \(epilogue));"
    )
  }
}
