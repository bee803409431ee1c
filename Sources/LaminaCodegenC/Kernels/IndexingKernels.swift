import LaminaIR
import LaminaSupport

/// `gather` along any axis and its gradient `scatter_add`, and `pad` and its gradient.
///
/// The gather kernels check every index on the calling thread before any element moves, so an index
/// outside `-n..<n` is reported through the entry point's error (naming the indices, the position and
/// the value) and never read or written out of bounds.
enum IndexingKernels {
  /// `out[o, p, :] = in0[o, wrap(in1[p]), :]` with x seen as [outer, n, inner]; the rows (o, p)
  /// split across the thread pool, each a vectorized copy.
  static func emitGather(
    _ context: KernelContext, into body: inout CWriter, prelude: inout CWriter,
    symbolIndex: [String: Int]
  ) {
    let x = context.operandTypes[0]
    let indices = context.operandTypes[1]
    let axis = normalizedAxis(context, rank: x.rank)
    let type = CExpressionContext.cType(x.dtype)
    let layout = cLayout(x.shape, axis: axis)
    body.line("const int64_t positions = \(cProduct(indices.shape));")
    emitIndexCheck(context, indices: indices, size: layout.size, wrapsNegative: true, into: &body)
    var range = CWriter()
    range.line("const int64_t positions = \(cProduct(indices.shape));")
    range.line("const int64_t axis_size = \(layout.size), inner = \(layout.inner);")
    range.block("for (int64_t r = begin; r < end; r++)") { loop in
      loop.line("const int64_t o = r / positions;")
      loop.line("int64_t index = (int64_t)in1[r % positions];")
      loop.line("if (index < 0) index += axis_size;")
      loop.line("const \(type)* source = in0 + (o * axis_size + index) * inner;")
      loop.line("\(type)* target = out + r * inner;")
      loop.line("#pragma omp simd")
      loop.line("for (int64_t k = 0; k < inner; k++) target[k] = source[k];")
    }
    GatherKernels.dispatch(
      context, range: range, extent: "\(layout.outer) * positions",
      work: cProduct(context.resultType.shape), chunkAlignment: 1, into: &body,
      prelude: &prelude, symbolIndex: symbolIndex)
  }

  /// `out = 0; out[o, wrap(in1[p]), :] += in0[o, p, :]` for every (o, p) in order.
  static func emitScatterAdd(
    _ context: KernelContext, into body: inout CWriter, prelude: inout CWriter,
    symbolIndex: [String: Int]
  ) {
    let indices = context.operandTypes[1]
    let result = context.resultType
    let layout = cLayout(result.shape, axis: normalizedAxis(context, rank: result.rank))
    emitScatterAdd(
      context, indices: indices, layout: layout, wrapsNegative: true,
      work: cProduct(indices.shape + result.shape), into: &body, prelude: &prelude,
      symbolIndex: symbolIndex)
  }

  /// `out = 0; out[o, in1[p], :] += in0[o, p, :]` for every (o, p) in order, with the result seen as
  /// `layout` ([outer, size, inner]); a negative index counts from the end when `wrapsNegative`
  /// (`scatter_add`), else it is outside (`scatter_add_rows`' ids). The threads split the inner
  /// columns, so no two write the same element and the sums do not depend on the thread count.
  static func emitScatterAdd(
    _ context: KernelContext, indices: TensorType,
    layout: (outer: String, size: String, inner: String), wrapsNegative: Bool, work: String,
    into body: inout CWriter, prelude: inout CWriter, symbolIndex: [String: Int]
  ) {
    let type = CExpressionContext.cType(context.resultType.dtype)
    body.line("const int64_t positions = \(cProduct(indices.shape));")
    emitIndexCheck(
      context, indices: indices, size: layout.size, wrapsNegative: wrapsNegative, into: &body)
    body.line("const int64_t inner = \(layout.inner);")
    var range = CWriter()
    range.line("const int64_t positions = \(cProduct(indices.shape));")
    range.line(
      "const int64_t outer = \(layout.outer), axis_size = \(layout.size), inner = \(layout.inner);")
    range.block("for (int64_t row = 0; row < outer * axis_size; row++)") { clear in
      clear.line("\(type)* target = out + row * inner;")
      clear.line("#pragma omp simd")
      clear.line("for (int64_t k = begin; k < end; k++) target[k] = 0;")
    }
    range.block("for (int64_t o = 0; o < outer; o++)") { outer in
      outer.block("for (int64_t p = 0; p < positions; p++)") { loop in
        loop.line("int64_t index = (int64_t)in1[p];")
        if wrapsNegative { loop.line("if (index < 0) index += axis_size;") }
        loop.line("const \(type)* source = in0 + (o * positions + p) * inner;")
        loop.line("\(type)* target = out + (o * axis_size + index) * inner;")
        loop.line("#pragma omp simd")
        loop.line("for (int64_t k = begin; k < end; k++) target[k] += source[k];")
      }
    }
    // Chunks of 16 columns: whole cache lines of f32, so threads never share one inside a row.
    GatherKernels.dispatch(
      context, range: range, extent: "inner", work: work, chunkAlignment: 16, into: &body,
      prelude: &prelude, symbolIndex: symbolIndex)
  }

  /// Fails with the first index outside `-size..<size` (`0..<size`, an id, unless
  /// `wrapsNegative`), its position written as coordinates of the indices' shape (`[1, 3]`), as the
  /// interpreter writes it.
  static func emitIndexCheck(
    _ context: KernelContext, indices: TensorType, size: String, wrapsNegative: Bool,
    into body: inout CWriter
  ) {
    let input = context.attributes["input"]?.stringValue
    let description =
      wrapsNegative
      ? OpRegistry.indicesDescription(input: input) : OpRegistry.idsDescription(input: input)
    // The name is user text: a string literal passed to %s, never part of the format. `@` is
    // escaped too, so no name can spell the kernel-name placeholder.
    let name = CText.stringLiteral(description).replacingOccurrences(of: "@", with: "\\100")
    let strides = cStrides(indices.shape)
    let coordinates = indices.shape.indices.map { axis in
      let quotient = strides[axis] == "1" ? "p" : "p / \(strides[axis])"
      return axis == 0
        ? "(long long)(\(quotient))" : "(long long)(\(quotient) % \(cDim(indices.shape[axis])))"
    }
    let (noun, range, lowest) =
      wrapsNegative ? ("index", "-%lld..<%lld", "-checked_size") : ("id", "0..<%lld", "0")
    let format =
      "\(context.node.op): \(noun) %lld at position ["
      + coordinates.map { _ in "%lld" }.joined(separator: ", ")
      + "] of %s is outside \(range)"
    let bounds = (wrapsNegative ? ["(long long)checked_size"] : []) + ["(long long)checked_size"]
    body.line("const int64_t checked_size = \(size);")
    body.block("for (int64_t p = 0; p < positions; p++)") { loop in
      loop.line("const int64_t index = (int64_t)in1[p];")
      loop.line(
        "if (index < \(lowest) || index >= checked_size) return lamina_fail(ctx, LAMINA_ERROR_INDEX, \"\(format)\", (long long)index, "
          + (coordinates + [name] + bounds).joined(separator: ", ") + ");")
    }
  }

  /// `pad`: the result's rows (every axis but the last) split across the thread pool. A row finds
  /// its source row through the outer axes' mapping (clamped for edge, mirrored for reflect, a
  /// whole row of fill for constant outside), then copies the interior in one vectorized run and
  /// maps only the padded ends.
  static func emitPad(
    _ context: KernelContext, into body: inout CWriter, prelude: inout CWriter,
    symbolIndex: [String: Int]
  ) {
    let x = context.operandTypes[0]
    let result = context.resultType
    let pads = context.attributes["pads"]?.intsValue ?? []
    let mode = context.attributes["mode"]?.stringValue ?? ""
    let fills = mode != "edge" && mode != "reflect"
    let type = CExpressionContext.cType(x.dtype)
    let fill = CExpressionContext(
      operands: [], attributes: [:], dtype: x.dtype, operandDTypes: []
    ).literal(context.attributes["value"]?.doubleValue ?? 0)
    let rank = x.rank
    guard rank > 0 else {
      body.line("out[0] = in0[0];")
      return
    }
    let last = rank - 1
    let strides = cStrides(x.shape)
    let width = cDim(result.shape[last])
    var range = CWriter()
    range.block("for (int64_t r = begin; r < end; r++)") { loop in
      loop.line("int64_t rest = r, offset = 0;")
      loop.line("int inside = 1;")
      loop.line("(void)rest; (void)inside;")
      for axis in (0..<last).reversed() {
        let extent = cDim(result.shape[axis])
        loop.line(
          axis == 0
            ? "int64_t s\(axis) = rest\(pads[axis] == 0 ? "" : " - (\(pads[axis]))");"
            : "int64_t s\(axis) = rest % \(extent)\(pads[axis] == 0 ? "" : " - (\(pads[axis]))");")
        if axis > 0 { loop.line("rest /= \(extent);") }
        if pads[axis] > 0 || pads[rank + axis] > 0 {
          if fills {
            loop.line("if (s\(axis) < 0 || s\(axis) >= \(cDim(x.shape[axis]))) inside = 0;")
          } else {
            mapIndex("s\(axis)", size: x.shape[axis], mode: mode, into: &loop)
          }
        }
        loop.line("offset += s\(axis)\(strides[axis] == "1" ? "" : " * \(strides[axis])");")
      }
      loop.line("\(type)* row = out + r * \(width);")
      if fills {
        loop.block("if (!inside)") { outside in
          outside.line("for (int64_t k = 0; k < \(width); k++) row[k] = \(fill);")
          outside.line("continue;")
        }
      }
      loop.line("const \(type)* source = in0 + offset;")
      let (begin, end) = (pads[last], pads[rank + last])
      let size = cDim(x.shape[last])
      // The interior: result columns whose source column is inside the row.
      let interiorBegin = max(begin, 0)
      let interiorEnd = end >= 0 ? "\(size) + \(begin)" : "\(width)"
      if begin > 0 || end > 0 {
        let padded = fills ? "\(fill)" : "source[s]"
        let map: (inout CWriter) -> Void = { edge in
          edge.line("int64_t s = k - (\(begin));")
          if !fills { mapIndex("s", size: x.shape[last], mode: mode, into: &edge) }
          edge.line("row[k] = \(padded);")
        }
        if begin > 0 { loop.block("for (int64_t k = 0; k < \(begin); k++)", map) }
        if end > 0 { loop.block("for (int64_t k = \(interiorEnd); k < \(width); k++)", map) }
      }
      loop.line("#pragma omp simd")
      loop.line(
        "for (int64_t k = \(interiorBegin); k < \(interiorEnd); k++) row[k] = source[k - (\(begin))];"
      )
    }
    GatherKernels.dispatch(
      context, range: range, extent: cProduct(Array(result.shape.dropLast())),
      work: cProduct(result.shape), chunkAlignment: 1, into: &body, prelude: &prelude,
      symbolIndex: symbolIndex)
  }

  /// Maps `variable`, a source index that may fall outside `0..<size`, into it: clamped (edge) or
  /// mirrored without the edge element, repeatedly (reflect).
  private static func mapIndex(
    _ variable: String, size: Dim, mode: String, into writer: inout CWriter
  ) {
    let n = cDim(size)
    if mode == "edge" {
      writer.line(
        "\(variable) = \(variable) < 0 ? 0 : (\(variable) >= \(n) ? \(n) - 1 : \(variable));")
    } else if size == Dim(1) {
      writer.line("\(variable) = 0;")
    } else {
      writer.block("if (\(variable) < 0 || \(variable) >= \(n))") { mirror in
        mirror.line("const int64_t period = 2 * (\(n) - 1);")
        mirror.line("\(variable) %= period;")
        mirror.line("if (\(variable) < 0) \(variable) += period;")
        mirror.line("if (\(variable) >= \(n)) \(variable) = period - \(variable);")
      }
    }
  }

  /// `pad_backward`: the result zeroed, then each gradient element added where pad copied it from.
  static func emitPadBackward(_ context: KernelContext, into writer: inout CWriter) {
    let result = context.resultType
    writer.line("memset(out, 0, (size_t)\(cProduct(result.shape)) * sizeof(*out));")
    writer.line("int64_t position = 0;")
    emitPadLoops(
      context, walked: context.operandTypes[0].shape, source: result.shape, into: &writer
    ) { inside, offset in
      inside == nil
        ? "out[\(offset)] += in0[position++];"
        : "if (\(inside!)) out[\(offset)] += in0[position]; position++;"
    }
  }

  /// Nested loops over the padded shape `walked`, computing per axis the source index into the
  /// unpadded shape `source`; `element(inside, offset)` is the innermost statement, with `inside`
  /// nil when no position is a constant fill.
  private static func emitPadLoops(
    _ context: KernelContext, walked: [Dim], source: [Dim], into writer: inout CWriter,
    element: (String?, String) -> String
  ) {
    let pads = context.attributes["pads"]?.intsValue ?? []
    let mode = context.attributes["mode"]?.stringValue ?? ""
    // Any other mode is the constant fill (the op's shape rule allows no other).
    let fills = mode != "edge" && mode != "reflect"
    let rank = source.count
    let strides = cStrides(source)
    var constantAxes = false
    func nest(_ axis: Int, _ writer: inout CWriter) {
      if axis == rank {
        let offset = rank == 0 ? "0" : "offset\(rank - 1)"
        writer.line(element(constantAxes ? "inside\(rank - 1)" : nil, offset))
        return
      }
      writer.block("for (int64_t i\(axis) = 0; i\(axis) < \(cDim(walked[axis])); i\(axis)++)") {
        loop in
        let (begin, end) = (pads[axis], pads[rank + axis])
        let size = cDim(source[axis])
        let previousOffset = axis == 0 ? "" : "offset\(axis - 1) + "
        loop.line("int64_t s\(axis) = i\(axis)\(begin == 0 ? "" : " - (\(begin))");")
        // Only a padded side reads outside the source; cropping alone stays inside.
        if begin > 0 || end > 0 {
          switch mode {
          case "edge":
            loop.line(
              "s\(axis) = s\(axis) < 0 ? 0 : (s\(axis) >= \(size) ? \(size) - 1 : s\(axis));")
          case "reflect":
            if source[axis] == Dim(1) {
              loop.line("s\(axis) = 0;")
            } else {
              loop.line("const int64_t period\(axis) = 2 * (\(size) - 1);")
              loop.line("s\(axis) %= period\(axis);")
              loop.line("if (s\(axis) < 0) s\(axis) += period\(axis);")
              loop.line("if (s\(axis) >= \(size)) s\(axis) = period\(axis) - s\(axis);")
            }
          default:
            let previous = constantAxes ? "inside\(axis - 1) && " : ""
            loop.line("const int inside\(axis) = \(previous)s\(axis) >= 0 && s\(axis) < \(size);")
            // An outside position reads nothing; its index is kept in range anyway.
            loop.line("if (!inside\(axis)) s\(axis) = 0;")
            constantAxes = true
          }
        }
        if constantAxes && !(fills && (begin > 0 || end > 0)) {
          loop.line("const int inside\(axis) = inside\(axis - 1);")
        }
        loop.line(
          "const int64_t offset\(axis) = \(previousOffset)s\(axis)\(strides[axis] == "1" ? "" : " * \(strides[axis])");"
        )
        nest(axis + 1, &loop)
      }
    }
    nest(0, &writer)
  }

  /// The node's `axis` made non-negative.
  private static func normalizedAxis(_ context: KernelContext, rank: Int) -> Int {
    let axis = context.attributes["axis"]?.intValue ?? 0
    return axis < 0 ? axis + rank : axis
  }

  /// A shape seen as [outer, size, inner] around `axis`, as C expressions.
  static func cLayout(_ shape: [Dim], axis: Int) -> (
    outer: String, size: String, inner: String
  ) {
    (cProduct(Array(shape[..<axis])), cDim(shape[axis]), cProduct(Array(shape[(axis + 1)...])))
  }
}
