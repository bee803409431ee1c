import LaminaIR
import LaminaSupport

/// Elementwise and broadcasting ops: one loop nest over the result, each operand read through its own
/// strides (0 along broadcast axes), and the op's C expression applied to the loaded elements.
///
/// Operands of the result's shape are read with the same flat index, so the common cases (same shape,
/// scalar, bias row) become loops the C compiler vectorizes. Large results are split along their
/// outermost loop across the thread pool; small ones run on the calling thread, where a dispatch would
/// cost more than it saves.
enum ElementwiseKernel {
  /// Results with fewer elements than this run on one thread.
  static let parallelThreshold = 1 << 16

  /// The loop nest, with its outermost loop running over `begin..<end`, and that loop's extent.
  static func loopNest(
    _ context: KernelContext, expression: (CExpressionContext) -> String
  ) -> (extent: String, loop: CWriter) {
    let resultShape = context.resultType.shape
    let rank = resultShape.count
    let operandTypes = context.operandTypes
    let valueNames = operandTypes.indices.map { "a\($0)" }
    let expressionText = expression(
      CExpressionContext(
        operands: valueNames, attributes: context.attributes, dtype: context.resultType.dtype,
        operandDTypes: operandTypes.map(\.dtype), mode: context.mode))
    let resultType = CExpressionContext.cType(context.resultType.dtype)
    var writer = CWriter()

    // Operands shaped like the result share the flat index; scalars read element 0.
    let isFlat =
      rank == 0 || operandTypes.allSatisfy { $0.shape == resultShape || $0.shape.product == Dim(1) }
    if isFlat {
      // The memory plan runs kernels in place (`out == in0`), which makes clang's run-time alias
      // check fail and fall back to its scalar loop; each element reads only its own index, so
      // the iterations are independent and `omp simd` says so.
      writer.line("#pragma omp simd")
      writer.block("for (int64_t i = begin; i < end; i++)") { body in
        for (index, type) in operandTypes.enumerated() {
          let element = type.shape == resultShape ? "in\(index)[i]" : "in\(index)[0]"
          body.line("const \(CExpressionContext.cType(type.dtype)) a\(index) = \(element);")
        }
        body.line("out[i] = (\(resultType))(\(expressionText));")
      }
      return (cProduct(resultShape), writer)
    }

    // Broadcasting: nested loops over the result axes, each operand with its own strides.
    let indices = (0..<rank).map { "i\($0)" }
    let resultStrides = cStrides(resultShape)
    let operandStrides: [[String]] = operandTypes.map { type in
      let own = cStrides(type.shape)
      let offset = rank - type.rank
      return (0..<rank).map { axis in
        let operandAxis = axis - offset
        guard operandAxis >= 0, type.shape[operandAxis] != Dim(1) || resultShape[axis] == Dim(1)
        else {
          return "0"
        }
        return own[operandAxis]
      }
    }
    func nest(_ axis: Int, _ writer: inout CWriter) {
      if axis == rank {
        for (index, type) in operandTypes.enumerated() {
          writer.line(
            "const \(CExpressionContext.cType(type.dtype)) a\(index) = in\(index)[\(cIndex(indices, operandStrides[index]))];"
          )
        }
        writer.line("out[\(cIndex(indices, resultStrides))] = (\(resultType))(\(expressionText));")
        return
      }
      let range =
        axis == 0
        ? "int64_t i0 = begin; i0 < end; i0++"
        : "int64_t i\(axis) = 0; i\(axis) < \(cDim(resultShape[axis])); i\(axis)++"
      writer.block("for (\(range))") { inner in nest(axis + 1, &inner) }
    }
    nest(0, &writer)
    return (cDim(resultShape[0]), writer)
  }

  /// The kernel body: the loop nest on the calling thread for small results, across the pool for
  /// large ones. Large results need `task(...)` emitted before the kernel; `kernelName` is the
  /// placeholder the generator replaces with the kernel's function name.
  static func emit(
    _ context: KernelContext, expression: (CExpressionContext) -> String,
    into writer: inout CWriter,
    prelude: inout CWriter, kernelName: String, symbolIndex: [String: Int]
  ) {
    let (extent, loop) = loopNest(context, expression: expression)
    let mayBeLarge =
      context.resultType.shape.product.staticValue.map { $0 >= parallelThreshold } ?? true
    guard mayBeLarge else {
      writer.line("const int64_t begin = 0, end = \(extent);")
      writer.append(indented(loop.text, by: 0))
      return
    }
    // Chunks of whole cache lines (16 floats) so threads never write the same line.
    let arguments =
      context.operandTypes.enumerated().map { index, type in
        ParallelLoop.Argument(
          elementType: CExpressionContext.cType(type.dtype), name: "in\(index)", isWritten: false)
      } + [
        ParallelLoop.Argument(
          elementType: CExpressionContext.cType(context.resultType.dtype), name: "out",
          isWritten: true)
      ]
    let parallel = ParallelLoop(
      kernel: kernelName, arguments: arguments,
      dimensionPrologue: context.dimensionPrologue(symbolIndex: symbolIndex), extent: extent,
      work: cProduct(context.resultType.shape), chunkAlignment: 16)
    parallel.declarations(rangeBody: loop, into: &prelude)
    parallel.dispatch(into: &writer)
  }

  /// The loop nest on the calling thread only (for kernels that have no place for a task function).
  static func emitSerial(
    _ context: KernelContext, expression: (CExpressionContext) -> String, into writer: inout CWriter
  ) {
    let (extent, loop) = loopNest(context, expression: expression)
    writer.line("const int64_t begin = 0, end = \(extent);")
    writer.append(loop.text)
  }

  private static func indented(_ text: String, by levels: Int) -> String {
    let prefix = String(repeating: "  ", count: levels)
    return text.split(separator: "\n", omittingEmptySubsequences: false).map {
      $0.isEmpty ? "" : prefix + $0
    }.joined(separator: "\n")
  }
}
