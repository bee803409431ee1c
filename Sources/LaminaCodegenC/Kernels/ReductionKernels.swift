import LaminaIR
import LaminaSupport

/// Reductions over axes (`sum`, `mean`, `max`: their op's `ReductionDescription`), and the
/// normalizations `softmax` / `log_softmax` along one axis.
///
/// Reductions loop over the kept axes outside and the reduced axes inside, accumulating each result
/// element in a `double` so f32 sums keep the interpreter's accuracy (integers in 64-bit integers,
/// exactly: `ReductionDescription.cAccumulatorType`).
enum ReductionKernels {
  /// The reduction description of the node's op.
  static func description(_ context: KernelContext) -> ReductionDescription {
    guard let description = context.node.definition?.reduction else {
      preconditionFailure("\(context.node.op) has no reduction description")
    }
    return description
  }

  static func reducedAxes(_ context: KernelContext) -> [Int] {
    let rank = context.operandTypes[0].rank
    guard let axes = context.attributes["axes"]?.intsValue else { return Array(0..<rank) }
    return axes.map { $0 < 0 ? $0 + rank : $0 }
  }

  /// Every reduction shares this loop nest; its description gives the start value, the update and
  /// the end.
  static func emitReduce(_ context: KernelContext, into writer: inout CWriter) {
    let input = context.operandTypes[0]
    let reduced = Set(reducedAxes(context))
    let kept = (0..<input.rank).filter { !reduced.contains($0) }
    let inputStrides = cStrides(input.shape)
    let keptShape = kept.map { input.shape[$0] }
    let outputStrides = cStrides(keptShape)
    let reduction = description(context)
    let resultType = CExpressionContext.cType(context.resultType.dtype)
    let reducedCount = cProduct(reduced.sorted().map { input.shape[$0] })
    let leading = reduced.count
    if leading < input.rank, reduced == Set(0..<leading) {
      emitColumnReduce(
        context, rows: cProduct(Array(input.shape[..<leading])),
        columns: cProduct(Array(input.shape[leading...])), into: &writer)
      return
    }

    func inner(
      _ position: Int, _ axes: [Int], _ writer: inout CWriter, innermostPragma: String? = nil,
      _ innermost: (inout CWriter) -> Void
    ) {
      if position == axes.count { return innermost(&writer) }
      let axis = axes[position]
      if position == axes.count - 1, let innermostPragma {
        writer.line("#pragma \(innermostPragma)")
      }
      writer.block("for (int64_t i\(axis) = 0; i\(axis) < \(cDim(input.shape[axis])); i\(axis)++)")
      { nested in
        inner(position + 1, axes, &nested, innermostPragma: innermostPragma, innermost)
      }
    }
    let inputIndex = cIndex((0..<input.rank).map { "i\($0)" }, inputStrides)
    let outputIndex = cIndex(kept.map { "i\($0)" }, outputStrides)
    let accumulatorType = reduction.cAccumulatorType(input.dtype)
    inner(0, kept, &writer) { body in
      body.line("\(accumulatorType) acc = \(reduction.cIdentity(input.dtype));")
      // The innermost loop of a plain reduction (a sum or mean) vectorizes (lanes of double
      // partial sums) when it runs along the input's last axis, contiguous in memory.
      let pragma = reduction.simdOperator.flatMap { symbol in
        reduced.contains(input.rank - 1) ? "omp simd reduction(\(symbol):acc)" : nil
      }
      inner(0, reduced.sorted(), &body, innermostPragma: pragma) { update in
        accumulate(
          reduction, into: "acc", element: "in0[\(inputIndex)]", type: accumulatorType, &update)
      }
      if reduction.finalize == .none {
        body.line("out[\(outputIndex)] = (\(resultType))acc;")
      } else {
        let value = reduction.cFinalize("acc", count: reducedCount, type: accumulatorType)
        body.line("out[\(outputIndex)] = (\(resultType))(\(value));")
      }
    }
  }

  /// One element's update of a reduction's accumulator, of C type `type`.
  static func accumulate(
    _ reduction: ReductionDescription, into acc: String, element: String, type: String,
    _ update: inout CWriter
  ) {
    for line in reduction.cUpdate(
      accumulator: acc, value: "(\(type))\(element)", candidate: "v", type: type)
    {
      update.line(line)
    }
  }

  /// The largest element of a line (`peak`) and the sum of e^(element - peak) (`sumName`), in
  /// double: what softmax, log_softmax and the cross-entropy kernels start each line with.
  /// `element(i)` is the C expression for the line's i-th element.
  static func emitPeakAndExpSum(
    length: String, sumName: String, element: (String) -> String, into body: inout CWriter
  ) {
    body.line("double peak = -INFINITY;")
    body.line(
      "for (int64_t i = 0; i < \(length); i++) { const double v = \(element("i")); if (v > peak) peak = v; }"
    )
    body.line("double \(sumName) = 0;")
    body.line("#pragma omp simd reduction(+:\(sumName))")
    body.line(
      "for (int64_t i = 0; i < \(length); i++) \(sumName) += lamina_exp((double)\(element("i")) - peak);"
    )
  }

  /// Columns of the result per block of the column form: a row of double accumulators on the stack.
  static let columnBlock = 256

  /// A reduction over leading axes (a bias gradient: sum over the batch) as `[rows, columns]` → `[columns]`,
  /// walking the input row by row into a block of accumulators: contiguous, vectorized loads instead of
  /// one strided walk down each column. Each column still adds its rows in order, in double, so the
  /// result is the one the element-by-element loop gives.
  static func emitColumnReduce(
    _ context: KernelContext, rows: String, columns: String, into writer: inout CWriter
  ) {
    let reduction = description(context)
    let resultType = CExpressionContext.cType(context.resultType.dtype)
    let operandDType = context.operandTypes[0].dtype
    let accumulatorType = reduction.cAccumulatorType(operandDType)
    let block = columnBlock
    writer.line("const int64_t rows = \(rows), columns = \(columns);")
    writer.block("for (int64_t j0 = 0; j0 < columns; j0 += \(block))") { body in
      body.line("const int64_t width = columns - j0 < \(block) ? columns - j0 : \(block);")
      body.line("\(accumulatorType) acc[\(block)];")
      body.line(
        "for (int64_t j = 0; j < width; j++) acc[j] = \(reduction.cIdentity(operandDType));")
      body.block("for (int64_t i = 0; i < rows; i++)") { row in
        row.line(
          "const \(CExpressionContext.cType(context.operandTypes[0].dtype))* line = in0 + i * columns + j0;"
        )
        row.line("#pragma omp simd")
        row.block("for (int64_t j = 0; j < width; j++)") { update in
          accumulate(reduction, into: "acc[j]", element: "line[j]", type: accumulatorType, &update)
        }
      }
      let value = reduction.cFinalize("acc[j]", count: "rows", type: accumulatorType)
      body.line("for (int64_t j = 0; j < width; j++) out[j0 + j] = (\(resultType))(\(value));")
    }
  }

  /// `emitReduce`, except that a floating-point sum over leading axes (a bias gradient over
  /// `[time·batch, 4·units]`) large enough to split runs its rows on the thread pool: each task
  /// sums its share of the rows into its own row of double partial sums, which the calling thread
  /// adds up in task order (deterministic). One task gives the serial sum, in row order.
  static func emitReduce(
    _ context: KernelContext, into writer: inout CWriter, prelude: inout CWriter,
    symbolIndex: [String: Int]
  ) {
    let input = context.operandTypes[0]
    let reduced = Set(reducedAxes(context))
    let leading = reduced.count
    guard leading < input.rank, reduced == Set(0..<leading), input.dtype.isFloatingPoint,
      description(context).combine == .add
    else { return emitReduce(context, into: &writer) }
    let reduction = description(context)
    let rows = cProduct(Array(input.shape[..<leading]))
    let columns = cProduct(Array(input.shape[leading...]))
    let operandType = CExpressionContext.cType(input.dtype)
    let resultType = CExpressionContext.cType(context.resultType.dtype)
    var range = CWriter()
    range.line("double* partial = job->partials + slot * \(columns);")
    range.line("for (int64_t c = 0; c < \(columns); c++) partial[c] = 0;")
    range.block("for (int64_t r = begin; r < end; r++)") { row in
      row.line("const \(operandType)* line = in0 + r * \(columns);")
      row.line("#pragma omp simd")
      row.line("for (int64_t c = 0; c < \(columns); c++) partial[c] += (double)line[c];")
    }
    var loop = ParallelLoop(
      kernel: "@KERNEL@",
      arguments: [
        ParallelLoop.Argument(elementType: operandType, name: "in0", isWritten: false),
        ParallelLoop.Argument(elementType: resultType, name: "out", isWritten: true),
      ],
      dimensionPrologue: context.dimensionPrologue(symbolIndex: symbolIndex), extent: rows,
      work: cProduct(input.shape), chunkAlignment: 1)
    loop.taskSlots = true
    loop.extraFields = ["double* partials;"]
    loop.declarations(rangeBody: range, into: &prelude)
    let stackDoubles = KernelSchedule.stackScratchBytes / 8
    loop.dispatch(into: &writer) { run in
      run.line("double partials_on_stack[\(stackDoubles)];")
      run.line("const int on_stack = job.tasks * \(columns) <= \(stackDoubles);")
      run.line(
        "job.partials = on_stack ? partials_on_stack : (double*)malloc((size_t)job.tasks * (size_t)\(columns) * sizeof(double));"
      )
      run.line(
        "if (!job.partials) return lamina_fail(ctx, LAMINA_ERROR_MEMORY, \"cannot allocate partial sums\");"
      )
    }
    writer.block("for (int64_t c = 0; c < \(columns); c++)") { column in
      column.line("double total = 0;")
      column.line(
        "for (int64_t t = 0; t < job.tasks; t++) total += job.partials[t * \(columns) + c];")
      let value = reduction.cFinalize("total", count: rows, type: "double")
      column.line("out[c] = (\(resultType))(\(value));")
    }
    writer.line("if (!on_stack) free(job.partials);")
  }

  /// softmax and log_softmax: outer × axis × inner, three passes over each row (max, sum, write).
  static func emitSoftmax(_ context: KernelContext, into writer: inout CWriter) {
    let input = context.operandTypes[0]
    var axis = context.attributes["axis"]?.intValue ?? -1
    if axis < 0 { axis += input.rank }
    let outer = cProduct(Array(input.shape[..<axis]))
    let length = cDim(input.shape[axis])
    let inner = cProduct(Array(input.shape[(axis + 1)...]))
    let resultType = CExpressionContext.cType(context.resultType.dtype)
    let isLog = context.node.definition?.normalization == .logarithm
    writer.line("const int64_t outer = \(outer), length = \(length), inner = \(inner);")
    writer.block("for (int64_t o = 0; o < outer; o++)") { outerLoop in
      outerLoop.block("for (int64_t j = 0; j < inner; j++)") { body in
        body.line("const int64_t base = o * length * inner + j;")
        emitPeakAndExpSum(
          length: "length", sumName: "total", element: { "in0[base + \($0) * inner]" }, into: &body)
        // Each element is written from its own input only (in place is fine), so the loops vectorize.
        if isLog {
          body.line("const double log_total = log(total);")
          body.line("#pragma omp simd")
          body.line(
            "for (int64_t i = 0; i < length; i++) out[base + i * inner] = (\(resultType))((double)in0[base + i * inner] - peak - log_total);"
          )
        } else {
          body.line("const double scale = 1.0 / total;")
          body.line("#pragma omp simd")
          body.line(
            "for (int64_t i = 0; i < length; i++) out[base + i * inner] = (\(resultType))(lamina_exp((double)in0[base + i * inner] - peak) * scale);"
          )
        }
      }
    }
  }
}
