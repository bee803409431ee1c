import LaminaIR
import LaminaSupport

/// `max_pool2d`, `avg_pool2d`, their gradients, and `global_avg_pool2d`, one NCHW plane (n, c) at a
/// time, the planes shared among the threads.
///
/// The forward kernels reduce each output row's window rows into a row buffer whose padding columns
/// hold the identity, then the windows along it, in vectorized loops with the window unrolled (its
/// size, stride and dilation are constants): no window is clipped (`Plan.emitRowBuffered`). The
/// backward kernels (and a forward on rows too long for the buffer) run the windows that lie inside
/// the input (interior rows and columns) in one vectorized loop over the output columns, and the
/// windows clipped by the padding or by ceil mode in a scalar loop with bounds checks. Maxima follow
/// PyTorch: a later element replaces the maximum when it is larger or NaN, so ties keep the first
/// and a NaN wins.
enum PoolingKernels {
  /// Columns up to which a forward pool reduces its window rows into a row on the stack first
  /// (`Plan.emitRowBuffered`): 16 KiB of f32.
  static let rowBufferLimit = 4096

  /// Output columns whose argmax a backward chunk holds on the stack.
  static let backwardChunk = 256

  /// `omp simd` before a loop of constant trip count; clang would otherwise unroll it completely
  /// before its loop vectorizer runs (and its SLP vectorizer leaves the strided window reads scalar).
  static func vectorLoopPragmas(into writer: inout CWriter) {
    writer.line("#pragma omp simd")
    writer.line("#if defined(__clang__)")
    writer.line("#pragma clang loop unroll(disable) /* vectorize, do not unroll */")
    writer.line("#endif")
  }

  /// What the emitters share: the windows, the element type and the plane count.
  struct Plan {
    var windows: PoolingWindows
    var type: String
    /// N · C as a C expression.
    var planes: String
    var isMaximum: Bool
    var includePad: Bool

    init(_ context: KernelContext, input: TensorType, isMaximum: Bool) {
      guard
        let windows = try? PoolingWindows(
          op: context.node.op, attributes: context.attributes,
          inputHeight: input.shape[2].staticValue ?? 0, inputWidth: input.shape[3].staticValue ?? 0)
      else {
        preconditionFailure("\(context.node.op): the verifier passed windows the op rejects")
      }
      self.windows = windows
      type = CExpressionContext.cType(input.dtype)
      planes = cProduct(Array(input.shape.prefix(2)))
      self.isMaximum = isMaximum
      includePad = context.attributes["count_include_pad"]?.boolValue ?? true
    }

    /// The work that sets a forward pool's task count: every output reads its whole window (an
    /// avg pool over 1024 7x7 planes, 50176 outputs, is 450k additions, not 50k elements: on one
    /// thread it took 91 µs).
    func forwardWork(_ context: KernelContext) -> String {
      "\(cProduct(context.resultType.shape)) * \(height.kernel * width.kernel)"
    }
    var height: PoolingAxis { windows.height }
    var width: PoolingAxis { windows.width }

    /// Whether some output rows and columns have their whole window inside the input.
    var hasInterior: Bool { !height.interior.isEmpty && !width.interior.isEmpty }

    /// The constants the loops read, named as the comments say.
    func constants(into body: inout CWriter) {
      body.line(
        "/* \(height.input)x\(width.input) planes pooled to \(height.output)x\(width.output): kernel \(height.kernel)x\(width.kernel), stride \(height.stride)x\(width.stride), dilation \(height.dilation)x\(width.dilation), padding [\(height.padBefore), \(width.padBefore), \(height.padAfter), \(width.padAfter)] (top, left, bottom, right)\(isMaximum ? "" : includePad ? ", padding counted" : ", padding not counted") */"
      )
      body.line(
        "const int64_t H = \(height.input), W = \(width.input), OH = \(height.output), OW = \(width.output);"
      )
      body.line(
        "const int64_t KH = \(height.kernel), KW = \(width.kernel), SH = \(height.stride), SW = \(width.stride), DH = \(height.dilation), DW = \(width.dilation);"
      )
      body.line(
        "const int64_t PT = \(height.padBefore), PL = \(width.padBefore), PB = \(height.padAfter), PR = \(width.padAfter);"
      )
      body.line("(void)KH; (void)KW; (void)DH; (void)DW; (void)PB; (void)PR;")
    }

    /// `const T* x0 = x + (r0 + 0 * DH) * W;` for each window row (`prefix` `dx` for writes).
    func windowRows(_ base: String, _ prefix: String, written: Bool, into body: inout CWriter) {
      for a in 0..<height.kernel {
        body.line(
          "\(written ? "" : "const ")\(type)* \(prefix)\(a) = \(base) + (r0 + \(a * height.dilation)) * W;"
        )
      }
    }

    /// The vectorized loop over the interior columns of a row, `body` computing column `j`.
    ///
    /// When each column's result is stored, not added (`idempotent`), it runs in blocks of one
    /// vector (16 floats under AVX-512, 8 otherwise; 8 or 4 on rows too short for that), the last
    /// block overlapping the one before: every block is one full vector, and no scalar remainder
    /// loop runs (on the 14 or 10 columns of LeNet's maps, that remainder cost more than the vector
    /// part). Otherwise one loop with the compiler's remainder.
    func interiorColumns(
      idempotent: Bool, columns: Range<Int>? = nil, into writer: inout CWriter,
      _ body: (inout CWriter) -> Void
    ) {
      let (first, end) = (
        (columns ?? width.interior).lowerBound, (columns ?? width.interior).upperBound
      )
      let count = end - first
      guard idempotent, count >= 4 else {
        PoolingKernels.vectorLoopPragmas(into: &writer)
        writer.block("for (int64_t j = \(first); j < \(end); j++)", body)
        return
      }
      let block =
        count >= 16 ? "(LAMINA_VECTOR_BYTES >= 64 ? 16 : 8)" : count >= 8 ? "8" : "4"
      writer.line(
        "/* blocks of one vector of columns; the last overlaps the one before (results are stored, so computing a column twice is harmless) */"
      )
      writer.block("for (int64_t j0 = \(first); j0 < \(end); j0 += \(block))") { blocks in
        blocks.line(
          "const int64_t start = j0 + \(block) <= \(end) ? j0 : \(end) - \(block);")
        PoolingKernels.vectorLoopPragmas(into: &blocks)
        blocks.block("for (int64_t j = start; j < start + \(block); j++)", body)
      }
    }

    /// The interior test of an output row `i`.
    var interiorRow: String {
      "i >= \(height.interior.lowerBound) && i < \(height.interior.upperBound)"
    }

    /// The first line of the scalar loop over the clipped windows of row `i`: it skips the interior
    /// columns of an interior row, which the vectorized loop computed.
    func skipInterior(into body: inout CWriter) {
      guard hasInterior else { return }
      body.line(
        "if (interior_row && j == \(width.interior.lowerBound)) { j = \(width.interior.upperBound - 1); continue; }"
      )
    }

    /// Loops over the positions of window (i, j) inside the input (`r`, `c`), for the scalar code.
    /// The caller declares the window's first column `c0` first.
    func clippedWindow(into body: inout CWriter, _ visit: (inout CWriter) -> Void) {
      body.block("for (int64_t a = 0; a < KH; a++)") { rows in
        rows.line("const int64_t r = r0 + a * DH;")
        rows.line("if (r < 0 || r >= H) continue;")
        rows.block("for (int64_t b = 0; b < KW; b++)") { columns in
          columns.line("const int64_t c = c0 + b * DW;")
          columns.line("if (c < 0 || c >= W) continue;")
          visit(&columns)
        }
      }
    }

    /// Columns of the row buffer of `emitRowBuffered`: from the left padding's first to the end of
    /// the last window (past the right padding in ceil mode), so every window reads inside it.
    var rowBufferLength: Int {
      Swift.max(width.padBefore + width.input, (width.output - 1) * width.stride + width.span)
    }

    /// Whether the forward pools through a row buffer (`emitRowBuffered`): every case but rows
    /// too long for the stack.
    var usesRowBuffer: Bool {
      height.output > 0 && width.output > 0 && rowBufferLength <= PoolingKernels.rowBufferLimit
    }

    /// A forward pool that clips no window: each output row first reduces its window rows inside
    /// the input into a row buffer, column by column (contiguous vectors), whose padding columns
    /// hold the identity (-infinity for the maximum, 0 for the sum); then each output column
    /// reduces its window's columns of that row. Rows and columns at the edges run the same
    /// vectorized loops as the interior ones (the scalar loop with bounds checks this replaced ran
    /// a 14x14 plane's last row and column: most of the time of Inception's stride-2 pools), and
    /// the window rows are read once, not once per overlapping window.
    ///
    /// Rows are reduced a band at a time (a whole plane when it fits `rowBufferLimit`) before
    /// their windows read them back: read right after it was stored, at other offsets, a row
    /// stalls on store forwarding (row by row, the 14x14 average pools took 36 us, not 15).
    ///
    /// The maximum is the same value as the windows' element by element (a NaN still wins, only
    /// the order of the comparisons changes); a sum may round differently. An average multiplies
    /// by the reciprocals of its window's row and column counts instead of dividing: a vector
    /// division costs several of the window's additions.
    func emitRowBuffered(_ context: KernelContext, into range: inout CWriter) {
      let length = rowBufferLength
      let band = Swift.max(1, Swift.min(height.output, PoolingKernels.rowBufferLimit / length))
      let identity = isMaximum ? "-INFINITY" : "(\(type))0"
      range.line(
        "/* output rows in bands of \(band): each row's window rows reduced per column into its row of m (\(isMaximum ? "the largest" : "the total") of the rows inside the input; the padding columns hold \(isMaximum ? "-infinity" : "zeros")), then each window's columns of it */"
      )
      range.line("const int64_t band = \(band), length = \(length);")
      range.line("\(type) m[\(band * length)]; /* band rows of columns -PL ..< length - PL */")
      range.block("for (int64_t t = 0; t < band; t++)") { fill in
        fill.line("for (int64_t c = 0; c < PL; c++) m[t * length + c] = \(identity);")
        fill.line("for (int64_t c = PL + W; c < length; c++) m[t * length + c] = \(identity);")
      }
      if !isMaximum {
        func counts(_ axis: PoolingAxis) -> String {
          (0..<axis.output).map {
            String(includePad ? axis.paddedCount($0) : axis.positions($0).count)
          }.joined(separator: ", ")
        }
        range.line("static const \(type) row_counts[\(height.output)] = {\(counts(height))};")
        range.line("static const \(type) column_counts[\(width.output)] = {\(counts(width))};")
        range.line("\(type) inverse_column_counts[\(width.output)];")
        range.line(
          "for (int64_t j = 0; j < OW; j++) inverse_column_counts[j] = (\(type))1 / column_counts[j];"
        )
      }
      func combine(_ element: String, into writer: inout CWriter) {
        writer.line(
          isMaximum
            ? "v = (\(element) > v || \(element) != \(element)) ? \(element) : v;"
            : "v += \(element);")
      }
      let clippedRows = { (writer: inout CWriter) in
        writer.line("/* the window rows inside the input */")
        writer.line("int rows = 0;")
        writer.block("for (int64_t a = 0; a < KH; a++)") { rows in
          rows.line("const int64_t r = r0 + a * DH;")
          rows.line("if (r < 0 || r >= H) continue;")
          rows.line("const \(self.type)* x0 = x + r * W;")
          rows.block("if (rows++ == 0)") { first in
            self.interiorColumns(idempotent: true, columns: 0..<self.width.input, into: &first) {
              $0.line("row[j] = x0[j];")
            }
          }
          rows.block("else") { next in
            // A maximum taken twice is the same maximum; a sum added twice is not.
            self.interiorColumns(
              idempotent: self.isMaximum, columns: 0..<self.width.input, into: &next
            ) { columns in
              columns.line("\(self.type) v = row[j];")
              combine("x0[j]", into: &columns)
              columns.line("row[j] = v;")
            }
          }
        }
        writer.line("if (rows == 0) for (int64_t c = 0; c < W; c++) row[c] = \(identity);")
      }
      let windows = { (writer: inout CWriter) in
        self.interiorColumns(idempotent: true, columns: 0..<self.width.output, into: &writer) {
          columns in
          columns.line("const int64_t c = j * SW;")
          columns.line("\(self.type) v = m_row[c];")
          for b in 1..<Swift.max(self.width.kernel, 1) {
            combine("m_row[c + \(b * self.width.dilation)]", into: &columns)
          }
          columns.line(
            self.isMaximum
              ? "y_row[j] = v;" : "y_row[j] = v * (row_inverse * inverse_column_counts[j]);")
        }
      }
      range.block("for (int64_t plane = begin; plane < end; plane++)") { planeLoop in
        planeLoop.line("const \(type)* x = in0 + plane * H * W;")
        planeLoop.line("\(type)* y = out + plane * OH * OW;")
        // The whole band is reduced before its windows read it: a row's windows read back
        // vectors just stored at other offsets, which cannot be forwarded from the stores.
        planeLoop.block("for (int64_t i0 = 0; i0 < OH; i0 += band)") { bandLoop in
          bandLoop.line("const int64_t i1 = i0 + band < OH ? i0 + band : OH;")
          bandLoop.block("for (int64_t i = i0; i < i1; i++)") { rowLoop in
            rowLoop.line("const int64_t r0 = i * SH - PT; /* the window's first input row */")
            rowLoop.line("\(type)* const row = m + (i - i0) * length + PL; /* input column 0 */")
            if height.interior.isEmpty {
              clippedRows(&rowLoop)
            } else {
              rowLoop.block("if (\(interiorRow))") { interior in
                interior.line("/* every window row lies inside the input */")
                windowRows("x", "x", written: false, into: &interior)
                interiorColumns(idempotent: true, columns: 0..<width.input, into: &interior) {
                  columns in
                  columns.line("\(type) v = x0[j];")
                  for a in 1..<Swift.max(height.kernel, 1) { combine("x\(a)[j]", into: &columns) }
                  columns.line("row[j] = v;")
                }
              }
              rowLoop.block("else", clippedRows)
            }
          }
          bandLoop.block("for (int64_t i = i0; i < i1; i++)") { rowLoop in
            rowLoop.line("const \(type)* const m_row = m + (i - i0) * length;")
            rowLoop.line("\(type)* y_row = y + i * OW;")
            if !isMaximum {
              rowLoop.line("const \(type) row_inverse = (\(type))1 / row_counts[i];")
            }
            // Stride 2, windows of 2 or 3 (SqueezeNet's and ResNet's 3x3 stride-2 pools): the
            // runtime's permutes on AVX-512 (lamina_math.h), where the loop gathers every other
            // element.
            if isMaximum, type == "float", width.stride == 2, width.dilation == 1,
              [2, 3].contains(width.kernel)
            {
              rowLoop.block(
                "if (!lamina_max_pool_stride2_f32(m_row, length, \(width.kernel), y_row, OW))",
                windows)
            } else {
              windows(&rowLoop)
            }
          }
        }
      }
    }

    /// The divisor of a clipped average window, after `clippedWindow` counted its positions.
    var clippedDivisor: String {
      includePad
        ? "(\(type))(((r0 + KH < H + PB ? r0 + KH : H + PB) - r0) * ((c0 + KW < W + PR ? c0 + KW : W + PR) - c0))"
        : "(\(type))count"
    }
  }

  /// `max_pool2d` and `avg_pool2d`.
  static func emitForward(
    _ context: KernelContext, maximum: Bool, into writer: inout CWriter, prelude: inout CWriter
  ) {
    let plan = Plan(context, input: context.operandTypes[0], isMaximum: maximum)
    var range = CWriter()
    plan.constants(into: &range)
    if plan.usesRowBuffer {
      plan.emitRowBuffered(context, into: &range)
      dispatch(
        context, range: range, extent: plan.planes, work: plan.forwardWork(context),
        chunkAlignment: 1, into: &writer, prelude: &prelude)
      return
    }
    // Rows longer than the stack buffer: the interior windows vectorized, the clipped ones scalar.
    range.block("for (int64_t plane = begin; plane < end; plane++)") { planeLoop in
      planeLoop.line("const \(plan.type)* x = in0 + plane * H * W;")
      planeLoop.line("\(plan.type)* y = out + plane * OH * OW;")
      planeLoop.block("for (int64_t i = 0; i < OH; i++)") { rowLoop in
        rowLoop.line("const int64_t r0 = i * SH - PT; /* the window's first input row */")
        rowLoop.line("\(plan.type)* y_row = y + i * OW;")
        if plan.hasInterior {
          rowLoop.line("const int interior_row = \(plan.interiorRow);")
          rowLoop.block("if (interior_row)") { interior in
            interior.line("/* every window of the interior columns lies inside the input */")
            plan.windowRows("x", "x", written: false, into: &interior)
            plan.interiorColumns(idempotent: true, into: &interior) { columns in
              columns.line("const int64_t c = j * SW - PL;")
              var first = true
              for a in 0..<plan.height.kernel {
                for b in 0..<plan.width.kernel {
                  let element = "x\(a)[c + \(b * plan.width.dilation)]"
                  if first {
                    columns.line("\(plan.type) v = \(element);")
                    first = false
                  } else if plan.isMaximum {
                    columns.line(
                      "v = (\(element) > v || \(element) != \(element)) ? \(element) : v;")
                  } else {
                    columns.line("v += \(element);")
                  }
                }
              }
              columns.line(
                plan.isMaximum
                  ? "y_row[j] = v;"
                  : "y_row[j] = v / (\(plan.type))\(plan.height.kernel * plan.width.kernel);")
            }
          }
        } else {
          rowLoop.line("const int interior_row = 0;")
        }
        rowLoop.line("(void)interior_row;")
        rowLoop.line("/* windows clipped by the padding */")
        rowLoop.block("for (int64_t j = 0; j < OW; j++)") { columns in
          plan.skipInterior(into: &columns)
          columns.line("const int64_t c0 = j * SW - PL; /* the window's first input column */")
          if plan.isMaximum {
            columns.line("\(plan.type) m = -INFINITY;")
          } else {
            columns.line("\(plan.type) s = 0;")
            columns.line("int64_t count = 0;")
          }
          plan.clippedWindow(into: &columns) { element in
            element.line("const \(plan.type) v = x[r * W + c];")
            element.line(plan.isMaximum ? "if (v > m || v != v) m = v;" : "s += v; count++;")
          }
          if plan.isMaximum {
            columns.line("y_row[j] = m;")
          } else {
            columns.line("(void)count;")
            columns.line("y_row[j] = s / \(plan.clippedDivisor);")
          }
        }
      }
    }
    dispatch(
      context, range: range, extent: plan.planes, work: plan.forwardWork(context),
      chunkAlignment: 1, into: &writer, prelude: &prelude)
  }

  /// `max_pool2d_backward`: each window's gradient added at its maximum. The interior columns
  /// find each window's argmax in a vectorized loop, then add the gradient one window element at
  /// a time (for one element the windows' positions differ, so each such loop vectorizes).
  static func emitMaximumBackward(
    _ context: KernelContext, into writer: inout CWriter, prelude: inout CWriter
  ) {
    let plan = Plan(context, input: context.operandTypes[0], isMaximum: true)
    var range = CWriter()
    plan.constants(into: &range)
    range.block("for (int64_t plane = begin; plane < end; plane++)") { planeLoop in
      planeLoop.line("const \(plan.type)* x = in0 + plane * H * W;")
      planeLoop.line("const \(plan.type)* g = in1 + plane * OH * OW;")
      planeLoop.line("\(plan.type)* dx = out + plane * H * W;")
      planeLoop.line("memset(dx, 0, (size_t)(H * W) * sizeof(*dx));")
      planeLoop.block("for (int64_t i = 0; i < OH; i++)") { rowLoop in
        rowLoop.line("const int64_t r0 = i * SH - PT; /* the window's first input row */")
        rowLoop.line("const \(plan.type)* g_row = g + i * OW;")
        if plan.hasInterior {
          rowLoop.line("const int interior_row = \(plan.interiorRow);")
          rowLoop.block("if (interior_row)") { interior in
            plan.windowRows("x", "x", written: false, into: &interior)
            plan.windowRows("dx", "dx", written: true, into: &interior)
            if plan.width.stride >= plan.width.span {
              emitFusedArgmaxScatter(plan, into: &interior)
            } else {
              emitChunkedArgmaxScatter(plan, into: &interior)
            }
          }
        } else {
          rowLoop.line("const int interior_row = 0;")
        }
        rowLoop.line("(void)interior_row;")
        rowLoop.line("/* windows clipped by the padding */")
        rowLoop.block("for (int64_t j = 0; j < OW; j++)") { columns in
          plan.skipInterior(into: &columns)
          columns.line("const int64_t c0 = j * SW - PL; /* the window's first input column */")
          columns.line("\(plan.type) m = -INFINITY;")
          columns.line("int64_t where = -1;")
          plan.clippedWindow(into: &columns) { element in
            element.line("const \(plan.type) v = x[r * W + c];")
            element.line("if (where < 0) where = r * W + c;")
            element.line("if (v > m || v != v) { m = v; where = r * W + c; }")
          }
          columns.line("if (where >= 0) dx[where] += g_row[j];")
        }
      }
    }
    dispatch(
      context, range: range, extent: plan.planes,
      work: cProduct(context.operandTypes[0].shape), chunkAlignment: 1, into: &writer,
      prelude: &prelude)
  }

  /// The argmax of window `j` in the vectorized loops, as PyTorch picks it: the last NaN if the
  /// window has one, else the first maximum. `e` ends as the element number `a · KW + b`. The NaN
  /// position is tracked apart from the maximum (plain `v > m` selects): one combined condition
  /// (`v > m || v != v`) feeding two selects made gcc's AVX-512 code twice as slow.
  static func argmaxUpdates(_ plan: Plan, into columns: inout CWriter) {
    columns.line("const int64_t c = j * SW - PL;")
    columns.line("\(plan.type) m = x0[c];")
    // Element numbers in the data's type: gcc vectorizes the loop only when they share a width.
    columns.line("\(plan.type) e = 0;")
    columns.line("\(plan.type) nan_e = m != m ? 0 : -1;")
    for a in 0..<plan.height.kernel {
      for b in 0..<plan.width.kernel where a > 0 || b > 0 {
        let element = "x\(a)[c + \(b * plan.width.dilation)]"
        let number = a * plan.width.kernel + b
        columns.line(
          "{ const \(plan.type) v = \(element); e = v > m ? \(number) : e; m = v > m ? v : m; nan_e = v != v ? \(number) : nan_e; }"
        )
      }
    }
    columns.line("e = nan_e >= 0 ? nan_e : e;")
  }

  /// Windows that do not overlap along the row: one loop finds each window's argmax and writes the
  /// gradient (or zero) at every element of the window. No two iterations touch one position, so
  /// the loop vectorizes, the window's columns as interleaved stores. When windows do not overlap
  /// down the column either, each position belongs to one window and is stored, not added.
  static func emitFusedArgmaxScatter(_ plan: Plan, into interior: inout CWriter) {
    let disjoint = plan.height.stride >= plan.height.span
    interior.line(
      disjoint
        ? "/* windows are disjoint: each position takes its window's gradient or zero */"
        : "/* windows overlap down the column only: rows add, a row's windows are disjoint */")
    plan.interiorColumns(idempotent: disjoint, into: &interior) { columns in
      argmaxUpdates(plan, into: &columns)
      columns.line("const \(plan.type) gradient = g_row[j];")
      for a in 0..<plan.height.kernel {
        for b in 0..<plan.width.kernel {
          columns.line(
            "dx\(a)[c + \(b * plan.width.dilation)] \(disjoint ? "=" : "+=") e == \(a * plan.width.kernel + b) ? gradient : (\(plan.type))0;"
          )
        }
      }
    }
  }

  /// Windows that overlap along the row: the argmaxes of a chunk of columns first (vectorized),
  /// then one loop per window element adds the gradient where that element is the argmax (for one
  /// element the windows' positions differ, so each loop vectorizes).
  static func emitChunkedArgmaxScatter(_ plan: Plan, into interior: inout CWriter) {
    let chunk = backwardChunk
    let end = plan.width.interior.upperBound
    interior.block(
      "for (int64_t j0 = \(plan.width.interior.lowerBound); j0 < \(end); j0 += \(chunk))"
    ) { chunkLoop in
      chunkLoop.line("const int64_t j1 = j0 + \(chunk) < \(end) ? j0 + \(chunk) : \(end);")
      chunkLoop.line(
        "\(plan.type) best[\(chunk)]; /* each window's argmax: a * KW + b of its element */")
      chunkLoop.line("#pragma omp simd")
      chunkLoop.block("for (int64_t j = j0; j < j1; j++)") { columns in
        argmaxUpdates(plan, into: &columns)
        columns.line("best[j - j0] = e;")
      }
      for a in 0..<plan.height.kernel {
        for b in 0..<plan.width.kernel {
          chunkLoop.line("#pragma omp simd")
          chunkLoop.line(
            "for (int64_t j = j0; j < j1; j++) dx\(a)[j * SW - PL + \(b * plan.width.dilation)] += best[j - j0] == \(a * plan.width.kernel + b) ? g_row[j] : (\(plan.type))0;"
          )
        }
      }
    }
  }

  /// `avg_pool2d_backward`: each window's gradient divided by its divisor, added over the window.
  static func emitAverageBackward(
    _ context: KernelContext, into writer: inout CWriter, prelude: inout CWriter
  ) {
    let plan = Plan(context, input: context.resultType, isMaximum: false)
    var range = CWriter()
    plan.constants(into: &range)
    range.block("for (int64_t plane = begin; plane < end; plane++)") { planeLoop in
      planeLoop.line("const \(plan.type)* g = in0 + plane * OH * OW;")
      planeLoop.line("\(plan.type)* dx = out + plane * H * W;")
      planeLoop.line("memset(dx, 0, (size_t)(H * W) * sizeof(*dx));")
      planeLoop.block("for (int64_t i = 0; i < OH; i++)") { rowLoop in
        rowLoop.line("const int64_t r0 = i * SH - PT; /* the window's first input row */")
        rowLoop.line("const \(plan.type)* g_row = g + i * OW;")
        if plan.hasInterior {
          rowLoop.line("const int interior_row = \(plan.interiorRow);")
          rowLoop.block("if (interior_row)") { interior in
            plan.windowRows("dx", "dx", written: true, into: &interior)
            let divisor = plan.height.kernel * plan.width.kernel
            let columns =
              "for (int64_t j = \(plan.width.interior.lowerBound); j < \(plan.width.interior.upperBound); j++)"
            // Windows that do not overlap along the row write distinct positions in one loop;
            // overlapping ones take one loop per window column.
            if plan.width.stride >= plan.width.span {
              // Disjoint windows store (each position has one window); windows overlapping down
              // the column add, row by row.
              let disjoint = plan.height.stride >= plan.height.span
              plan.interiorColumns(idempotent: disjoint, into: &interior) { loop in
                loop.line("const \(plan.type) share = g_row[j] / (\(plan.type))\(divisor);")
                for a in 0..<plan.height.kernel {
                  for b in 0..<plan.width.kernel {
                    loop.line("dx\(a)[j * SW - PL + \(b)] \(disjoint ? "=" : "+=") share;")
                  }
                }
              }
            } else {
              for a in 0..<plan.height.kernel {
                for b in 0..<plan.width.kernel {
                  interior.line("#pragma omp simd")
                  interior.line(
                    "\(columns) dx\(a)[j * SW - PL + \(b)] += g_row[j] / (\(plan.type))\(divisor);"
                  )
                }
              }
            }
          }
        } else {
          rowLoop.line("const int interior_row = 0;")
        }
        rowLoop.line("(void)interior_row;")
        rowLoop.line("/* windows clipped by the padding */")
        rowLoop.block("for (int64_t j = 0; j < OW; j++)") { columns in
          plan.skipInterior(into: &columns)
          columns.line("const int64_t c0 = j * SW - PL; /* the window's first input column */")
          columns.line("int64_t count = 0;")
          plan.clippedWindow(into: &columns) { element in
            element.line("(void)r; (void)c;")
            element.line("count++;")
          }
          columns.line("(void)count;")
          columns.line("const \(plan.type) share = g_row[j] / \(plan.clippedDivisor);")
          plan.clippedWindow(into: &columns) { element in
            element.line("dx[r * W + c] += share;")
          }
        }
      }
    }
    dispatch(
      context, range: range, extent: plan.planes, work: cProduct(context.resultType.shape),
      chunkAlignment: 1, into: &writer, prelude: &prelude)
  }

  /// `global_avg_pool2d`: each plane summed in double (a vectorized reduction), then divided.
  static func emitGlobalAverage(
    _ context: KernelContext, into writer: inout CWriter, prelude: inout CWriter,
    symbolIndex: [String: Int]
  ) {
    let input = context.operandTypes[0]
    let type = CExpressionContext.cType(context.resultType.dtype)
    var range = CWriter()
    range.line("const int64_t plane_size = \(cProduct(Array(input.shape.suffix(2))));")
    range.block("for (int64_t plane = begin; plane < end; plane++)") { planeLoop in
      planeLoop.line("const \(type)* x = in0 + plane * plane_size;")
      planeLoop.line("double s = 0;")
      planeLoop.line("#pragma omp simd reduction(+:s)")
      planeLoop.line("for (int64_t k = 0; k < plane_size; k++) s += (double)x[k];")
      planeLoop.line("out[plane] = (\(type))(s / (double)plane_size);")
    }
    dispatch(
      context, range: range, extent: cProduct(Array(input.shape.prefix(2))),
      work: cProduct(input.shape), chunkAlignment: 16, into: &writer, prelude: &prelude,
      dimensionPrologue: context.dimensionPrologue(symbolIndex: symbolIndex))
  }

  /// Runs `range` (the loop over planes `begin..<end`) across the thread pool, its task function
  /// written to the prelude.
  static func dispatch(
    _ context: KernelContext, range: CWriter, extent: String, work: String, chunkAlignment: Int,
    into writer: inout CWriter, prelude: inout CWriter, dimensionPrologue: [String] = []
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
    let parallel = ParallelLoop(
      kernel: "@KERNEL@", arguments: arguments,
      dimensionPrologue: dimensionPrologue, extent: extent,
      work: work, chunkAlignment: chunkAlignment)
    parallel.declarations(rangeBody: range, into: &prelude)
    parallel.dispatch(into: &writer)
  }
}
