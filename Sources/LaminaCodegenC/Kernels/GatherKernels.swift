import LaminaIR
import LaminaSupport

/// Row lookups by integer id (`gather_rows`, the embedding) and their gradient (`scatter_add_rows`).
///
/// Both check every id on the calling thread before any row moves, so an id outside the table is
/// reported through the entry point's error (naming the ids, the position and the value) and never
/// read or written out of bounds.
enum GatherKernels {
  /// `out[p, :] = in0[in1[p], :]`, the positions split across the thread pool, each row a
  /// vectorized copy.
  static func emitGather(
    _ context: KernelContext, into body: inout CWriter, prelude: inout CWriter,
    symbolIndex: [String: Int]
  ) {
    let table = context.operandTypes[0]
    let ids = context.operandTypes[1]
    let type = CExpressionContext.cType(table.dtype)
    body.line("const int64_t positions = \(cProduct(ids.shape));")
    emitIdCheck(context, ids: ids, rows: cDim(table.shape[0]), into: &body)
    var range = CWriter()
    range.line("const int64_t row_size = \(cProduct(Array(table.shape.dropFirst())));")
    range.block("for (int64_t p = begin; p < end; p++)") { loop in
      loop.line("const \(type)* source = in0 + (int64_t)in1[p] * row_size;")
      loop.line("\(type)* target = out + p * row_size;")
      loop.line("#pragma omp simd")
      loop.line("for (int64_t k = 0; k < row_size; k++) target[k] = source[k];")
    }
    dispatch(
      context, range: range, extent: "positions",
      work: cProduct(ids.shape + table.shape.dropFirst()), chunkAlignment: 1, into: &body,
      prelude: &prelude, symbolIndex: symbolIndex)
  }

  /// `out = 0; out[in1[p], :] += in0[p, :]` for every position in order. The threads split the
  /// columns, so no two write the same element and the sums do not depend on the thread count.
  static func emitScatterAdd(
    _ context: KernelContext, into body: inout CWriter, prelude: inout CWriter,
    symbolIndex: [String: Int]
  ) {
    let ids = context.operandTypes[1]
    let result = context.resultType
    let type = CExpressionContext.cType(result.dtype)
    let rowSize = cProduct(Array(result.shape.dropFirst()))
    body.line("const int64_t positions = \(cProduct(ids.shape));")
    emitIdCheck(context, ids: ids, rows: cDim(result.shape[0]), into: &body)
    body.line("const int64_t row_size = \(rowSize);")
    var range = CWriter()
    range.line("const int64_t positions = \(cProduct(ids.shape));")
    range.line("const int64_t rows = \(cDim(result.shape[0])), row_size = \(rowSize);")
    range.block("for (int64_t r = 0; r < rows; r++)") { clear in
      clear.line("\(type)* target = out + r * row_size;")
      clear.line("#pragma omp simd")
      clear.line("for (int64_t k = begin; k < end; k++) target[k] = 0;")
    }
    range.block("for (int64_t p = 0; p < positions; p++)") { loop in
      loop.line("const \(type)* source = in0 + p * row_size;")
      loop.line("\(type)* target = out + (int64_t)in1[p] * row_size;")
      loop.line("#pragma omp simd")
      loop.line("for (int64_t k = begin; k < end; k++) target[k] += source[k];")
    }
    // Chunks of 16 columns: whole cache lines of f32, so threads never share one inside a row.
    dispatch(
      context, range: range, extent: "row_size",
      work: cProduct(ids.shape + result.shape.dropFirst()), chunkAlignment: 16, into: &body,
      prelude: &prelude, symbolIndex: symbolIndex)
  }

  /// Fails with the first id outside `0..<rows`, its position written as coordinates of the ids'
  /// shape (`[1, 3]`), as the interpreter writes it.
  static func emitIdCheck(
    _ context: KernelContext, ids: TensorType, rows: String, into body: inout CWriter
  ) {
    let input = context.attributes["input"]?.stringValue
    // The name is user text: a string literal passed to %s, never part of the format. `@` is
    // escaped too, so no name can spell the kernel-name placeholder.
    let name = CText.stringLiteral(OpRegistry.idsDescription(input: input))
      .replacingOccurrences(of: "@", with: "\\100")
    let strides = cStrides(ids.shape)
    let coordinates = ids.shape.indices.map { axis in
      let quotient = strides[axis] == "1" ? "p" : "p / \(strides[axis])"
      return axis == 0
        ? "(long long)(\(quotient))" : "(long long)(\(quotient) % \(cDim(ids.shape[axis])))"
    }
    let format =
      "\(context.node.op): id %lld at position ["
      + coordinates.map { _ in "%lld" }.joined(separator: ", ")
      + "] of %s is outside 0..<%lld"
    body.line("const int64_t table_rows = \(rows);")
    body.block("for (int64_t p = 0; p < positions; p++)") { loop in
      loop.line("const int64_t id = (int64_t)in1[p];")
      loop.line(
        "if (id < 0 || id >= table_rows) return lamina_fail(ctx, LAMINA_ERROR_INDEX, \"\(format)\", (long long)id, "
          + (coordinates + [name, "(long long)table_rows"]).joined(separator: ", ") + ");")
    }
  }

  /// Runs `range` (over `begin..<end` of `extent`) across the thread pool.
  static func dispatch(
    _ context: KernelContext, range: CWriter, extent: String, work: String, chunkAlignment: Int,
    into body: inout CWriter, prelude: inout CWriter, symbolIndex: [String: Int]
  ) {
    let arguments =
      context.operandTypes.enumerated().map { index, type in
        ParallelLoop.Argument(
          elementType: CExpressionContext.cType(type.dtype), name: "in\(index)", isWritten: false)
      } + [
        ParallelLoop.Argument(
          elementType: CExpressionContext.cType(context.resultType.dtype), name: "out",
          isWritten: true)
      ]
    let loop = ParallelLoop(
      kernel: "@KERNEL@", arguments: arguments,
      dimensionPrologue: context.dimensionPrologue(symbolIndex: symbolIndex), extent: extent,
      work: work, chunkAlignment: chunkAlignment)
    loop.declarations(rangeBody: range, into: &prelude)
    loop.dispatch(into: &body)
  }
}
