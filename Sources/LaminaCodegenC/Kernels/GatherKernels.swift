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
    IndexingKernels.emitIndexCheck(
      context, indices: ids, size: cDim(table.shape[0]), wrapsNegative: false, into: &body)
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

  /// `out = 0; out[in1[p], :] += in0[p, :]` for every position in order: `scatter_add` along axis
  /// 0 of ids that must not be negative.
  static func emitScatterAdd(
    _ context: KernelContext, into body: inout CWriter, prelude: inout CWriter,
    symbolIndex: [String: Int]
  ) {
    let ids = context.operandTypes[1]
    let result = context.resultType
    IndexingKernels.emitScatterAdd(
      context, indices: ids, layout: IndexingKernels.cLayout(result.shape, axis: 0),
      wrapsNegative: false, work: cProduct(ids.shape + result.shape.dropFirst()), into: &body,
      prelude: &prelude, symbolIndex: symbolIndex)
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
