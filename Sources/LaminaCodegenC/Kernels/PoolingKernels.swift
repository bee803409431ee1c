import LaminaIR
import LaminaSupport

/// `max_pool2d`, `avg_pool2d`, their gradients, and `global_avg_pool2d`, one NCHW plane (n, c) at a
/// time, the planes shared among the threads.
///
/// Within a plane, the output rows whose windows lie inside the input vertically (interior rows) run
/// their interior columns in one vectorized loop over the output columns, the window unrolled (its
/// size, stride and dilation are constants). Windows clipped by the padding or by ceil mode run a
/// scalar loop with bounds checks. Maxima follow PyTorch: a later element replaces the maximum when
/// it is larger or NaN, so ties keep the first and a NaN wins.
enum PoolingKernels {
  /// Columns of one full-vector block of the interior loops (8 floats: one AVX2 vector).
  static let vectorBlock = 8

  /// Input columns up to which a strided max pool takes its window rows' maximum into a row on the
  /// stack first.
  static let rowMaximumLimit = 4096

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
    /// When each column's result is stored, not added (`idempotent`), it runs in blocks of
    /// `vectorBlock` columns, the last block overlapping the one before: every block is one full
    /// vector, and no scalar remainder loop runs (on the 14 or 10 columns of LeNet's maps, that
    /// remainder cost more than the vector part). Otherwise one loop with the compiler's remainder.
    func interiorColumns(
      idempotent: Bool, columns: Range<Int>? = nil, into writer: inout CWriter,
      _ body: (inout CWriter) -> Void
    ) {
      let (first, end) = (
        (columns ?? width.interior).lowerBound, (columns ?? width.interior).upperBound
      )
      let block = PoolingKernels.vectorBlock
      guard idempotent, end - first >= block else {
        PoolingKernels.vectorLoopPragmas(into: &writer)
        writer.block("for (int64_t j = \(first); j < \(end); j++)", body)
        return
      }
      writer.line(
        "/* blocks of \(block) columns; the last overlaps the one before (results are stored, so computing a column twice is harmless) */"
      )
      writer.block("for (int64_t j0 = \(first); j0 < \(end); j0 += \(block))") { blocks in
        blocks.line("const int64_t start = j0 + \(block) <= \(end) ? j0 : \(end - block);")
        PoolingKernels.vectorLoopPragmas(into: &blocks)
        blocks.block("for (int64_t j = start; j < start + \(block); j++)", body)
      }
    }

    /// Input columns [first, end) of a row that the interior windows read, when a max pool strided
    /// along the width takes the window rows' maximum first: nil otherwise (a stride of 1 reads
    /// contiguous vectors already; more than `rowMaximumLimit` columns would not fit the stack).
    var rowMaximumColumns: (Int, Int)? {
      guard isMaximum, width.stride > 1, height.kernel > 1, width.interior.count >= 1 else {
        return nil
      }
      let first = width.interior.lowerBound * width.stride - width.padBefore
      let end =
        (width.interior.upperBound - 1) * width.stride - width.padBefore
        + (width.kernel - 1) * width.dilation + 1
      return end - first <= PoolingKernels.rowMaximumLimit ? (first, end) : nil
    }

    /// A max pool's interior row, strided along the width (SqueezeNet's 3x3 windows at stride 2):
    /// the maximum of the window rows per input column first, one pass of contiguous vectors into
    /// a row on the stack, then each output column's maximum over its window's columns of that row
    /// (`height.kernel` times fewer strided reads than the windows element by element). A NaN
    /// still wins and the maximum is the same value: only the order of the comparisons changes.
    func emitRowMaximumFirst(first: Int, end: Int, into writer: inout CWriter) {
      writer.line(
        "/* the window rows' maximum per input column (columns \(first)..<\(end)), then each window's over its columns */"
      )
      writer.line("\(type) m[\(end - first)];")
      PoolingKernels.vectorLoopPragmas(into: &writer)
      writer.block("for (int64_t c = 0; c < \(end - first); c++)") { columns in
        columns.line("\(type) v = x0[c + \(first)];")
        for a in 1..<height.kernel {
          let element = "x\(a)[c + \(first)]"
          columns.line("v = (\(element) > v || \(element) != \(element)) ? \(element) : v;")
        }
        columns.line("m[c] = v;")
      }
      func windows(_ writer: inout CWriter) {
        interiorColumns(idempotent: true, into: &writer) { columns in
          columns.line("const int64_t c = j * SW - PL - \(first);")
          columns.line("\(type) v = m[c];")
          for b in 1..<max(width.kernel, 1) {
            let element = "m[c + \(b * width.dilation)]"
            columns.line("v = (\(element) > v || \(element) != \(element)) ? \(element) : v;")
          }
          columns.line("y_row[j] = v;")
        }
      }
      // Stride 2, windows of 2 or 3 (SqueezeNet's and ResNet's 3x3 stride-2 pools): the runtime's
      // permutes on AVX-512 (lamina_math.h), where the loop above gathers every other element.
      guard type == "float", width.stride == 2, width.dilation == 1, [2, 3].contains(width.kernel)
      else {
        windows(&writer)
        return
      }
      writer.block(
        "if (!lamina_max_pool_stride2_f32(m, \(end - first), \(width.kernel), y_row + \(width.interior.lowerBound), \(width.interior.count)))"
      ) { windows(&$0) }
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

    /// Elements of the padded copy of a plane that the padded path below takes at most: 16 KiB of
    /// f32 (32 of f64) on the stack of whichever thread runs the task, as the convolutions' stack
    /// buffers. ShuffleNet's 58x58 and Inception's 30x30 copies fit.
    static let paddedPlaneLimit = 4096

    /// Whether a plane is pooled from a padded copy of itself (`emitPaddedPlane`): a window
    /// reaches into the padding, none reaches past it (no ceil-mode overhang), it is stride 1
    /// along the width, and the copy is small. Inception's 3x3 windows at stride 1 and padding 1
    /// on 14x14 planes had 52 of their 196 outputs clipped, each a scalar loop with bounds
    /// checks: most of the time of the pool.
    var usesPaddedPlane: Bool {
      let padded = [height, width].allSatisfy { axis in
        (axis.output - 1) * axis.stride + axis.span <= axis.padBefore + axis.input + axis.padAfter
      }
      let hasPadding = [height, width].contains { $0.padBefore > 0 || $0.padAfter > 0 }
      let elements =
        (height.input + height.padBefore + height.padAfter)
        * (width.input + width.padBefore + width.padAfter)
      return padded && hasPadding && width.stride == 1 && elements <= Self.paddedPlaneLimit
    }

    /// A plane pooled from a copy padded with the identity (-infinity for the maximum, 0 for the
    /// sum): every window lies inside it, so each output row is one vectorized loop, and an
    /// average divides by its window's count, the product of a row's and a column's (constants).
    func emitPaddedPlane(into writer: inout CWriter) {
      let (paddedHeight, paddedWidth) = (
        height.input + height.padBefore + height.padAfter,
        width.input + width.padBefore + width.padAfter
      )
      writer.line(
        "/* the plane padded with \(isMaximum ? "-infinity" : "zeros") (\(paddedHeight)x\(paddedWidth)): every window lies inside it */"
      )
      writer.line("\(type) padded[\(paddedHeight * paddedWidth)];")
      writer.line(
        "for (int64_t k = 0; k < \(paddedHeight * paddedWidth); k++) padded[k] = \(isMaximum ? "-INFINITY" : "0");"
      )
      writer.line(
        "for (int64_t r = 0; r < H; r++) memcpy(padded + (r + PT) * \(paddedWidth) + PL, x + r * W, (size_t)W * sizeof(*x));"
      )
      writer.block("for (int64_t i = 0; i < OH; i++)") { rowLoop in
        rowLoop.line("\(type)* y_row = y + i * OW;")
        for a in 0..<height.kernel {
          rowLoop.line(
            "const \(type)* x\(a) = padded + (i * SH + \(a * height.dilation)) * \(paddedWidth);")
        }
        if !isMaximum {
          rowLoop.line("const \(type) row_count = row_counts[i];")
        }
        interiorColumns(idempotent: true, columns: 0..<width.output, into: &rowLoop) { columns in
          var first = true
          for a in 0..<height.kernel {
            for b in 0..<width.kernel {
              let element = "x\(a)[j + \(b * width.dilation)]"
              if first {
                columns.line("\(type) v = \(element);")
                first = false
              } else if isMaximum {
                columns.line("v = (\(element) > v || \(element) != \(element)) ? \(element) : v;")
              } else {
                columns.line("v += \(element);")
              }
            }
          }
          columns.line(
            isMaximum ? "y_row[j] = v;" : "y_row[j] = v / (row_count * column_counts[j]);")
        }
      }
    }

    /// The counts an average divides by, per output row and column: the window's positions inside
    /// the input, or inside the padded input when padding counts.
    func windowCounts(into writer: inout CWriter) {
      func counts(_ axis: PoolingAxis) -> String {
        (0..<axis.output).map { "\(includePad ? axis.paddedCount($0) : axis.positions($0).count)" }
          .joined(separator: ", ")
      }
      writer.line("static const \(type) row_counts[\(height.output)] = {\(counts(height))};")
      writer.line("static const \(type) column_counts[\(width.output)] = {\(counts(width))};")
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
    if plan.usesPaddedPlane {
      if !maximum { plan.windowCounts(into: &range) }
      range.block("for (int64_t plane = begin; plane < end; plane++)") { planeLoop in
        planeLoop.line("const \(plan.type)* x = in0 + plane * H * W;")
        planeLoop.line("\(plan.type)* y = out + plane * OH * OW;")
        plan.emitPaddedPlane(into: &planeLoop)
      }
      dispatch(
        context, range: range, extent: plan.planes, work: plan.forwardWork(context),
        chunkAlignment: 1, into: &writer, prelude: &prelude)
      return
    }
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
            if let (first, end) = plan.rowMaximumColumns {
              plan.emitRowMaximumFirst(first: first, end: end, into: &interior)
            } else {
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
