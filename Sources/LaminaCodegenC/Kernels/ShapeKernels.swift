import LaminaIR
import LaminaSupport

/// Ops that move elements: transposes, broadcasting copies, concatenation and slicing.
enum ShapeKernels {
  /// `transpose` and `permute`, split over the thread pool by rows of the result.
  ///
  /// Trailing axes the permutation keeps in place are one contiguous block in both tensors
  /// (ShuffleNet's channel shuffle `[n, g, c, h, w] -> [n, c, g, h, w]` moves blocks of `h * w`
  /// elements), copied with `memcpy`; the axis before them is walked inside a row, and the axes before
  /// that, flattened, are the rows the threads share.
  static func emitPermute(
    _ context: KernelContext, into body: inout CWriter, prelude: inout CWriter,
    symbolIndex: [String: Int]
  ) {
    let input = context.operandTypes[0]
    let rank = input.rank
    var permutation: [Int]
    if let perm = context.attributes["perm"]?.intsValue {
      permutation = perm.map { $0 < 0 ? $0 + rank : $0 }
    } else {
      permutation = Array(0..<rank)
      permutation.swapAt(rank - 1, rank - 2)
    }
    let inputStrides = cStrides(input.shape)
    let resultShape = context.resultType.shape
    // Result axis d walks input axis permutation[d].
    let readStrides = permutation.map { inputStrides[$0] }
    var kept = rank
    while kept > 0 && permutation[kept - 1] == kept - 1 { kept -= 1 }
    let block = cProduct(Array(resultShape[kept...]))
    var range = CWriter()
    if kept == 0 {
      // The identity: one block, split in elements.
      range.line("memcpy(out + begin, in0 + begin, (size_t)(end - begin) * sizeof(*out));")
      GatherKernels.dispatch(
        context, range: range, extent: block, work: block, chunkAlignment: 16, into: &body,
        prelude: &prelude, symbolIndex: symbolIndex)
      return
    }
    // Rows: result axes 0..<kept-1 flattened; in a row, axis kept-1 then the block.
    let rowAxes = Array(0..<(kept - 1))
    let walked = kept - 1
    range.line("const int64_t block = \(block);")
    range.block("for (int64_t row = begin; row < end; row++)") { loop in
      // The row's index on each of its axes, last first, and where it starts in the input.
      loop.line("int64_t rest = row, from = 0;")
      for axis in rowAxes.reversed() where cDim(resultShape[axis]) != "1" {
        loop.line("from += (rest % \(cDim(resultShape[axis]))) * \(readStrides[axis]);")
        loop.line("rest /= \(cDim(resultShape[axis]));")
      }
      loop.line(
        "\(CExpressionContext.cType(context.resultType.dtype))* target = out + row * \(cDim(resultShape[walked])) * block;"
      )
      loop.block("for (int64_t j = 0; j < \(cDim(resultShape[walked])); j++)") { inner in
        if block == "1" {
          inner.line("target[j] = in0[from + j * \(readStrides[walked])];")
        } else {
          inner.line(
            "memcpy(target + j * block, in0 + from + j * \(readStrides[walked]), (size_t)block * sizeof(*out));"
          )
        }
      }
    }
    GatherKernels.dispatch(
      context, range: range, extent: cProduct(Array(resultShape[..<walked])),
      work: cProduct(resultShape), chunkAlignment: 1, into: &body, prelude: &prelude,
      symbolIndex: symbolIndex)
  }

  /// `concat`: each operand's rows copied into place along the axis.
  ///
  /// Where the result is one row (every dimension before the axis is 1), the memory plan may have
  /// had an operand's producer write it straight into its range of the result
  /// (`MemoryPlan.concatPlacements`): the kernel then copies nothing for it, and the entry point
  /// calls no kernel at all when every operand is there. The plan is per entry point while the
  /// kernel is shared, so the kernel checks the pointer.
  static func emitConcat(_ context: KernelContext, into writer: inout CWriter) {
    let result = context.resultType
    var axis = context.attributes["axis"]?.intValue ?? 0
    if axis < 0 { axis += result.rank }
    let outer = cProduct(Array(result.shape[..<axis]))
    writer.line("const int64_t outer = \(outer);")
    writer.line("const int64_t row = \(cProduct(Array(result.shape[axis...])));")
    writer.line("int64_t offset = 0;")
    if outer == "1" {
      writer.line(
        "/* An operand already at its place in out (the memory plan had its producer write it there) is not copied. */"
      )
    }
    for (index, operand) in context.operandTypes.enumerated() {
      let piece = cProduct(Array(operand.shape[axis...]))
      writer.block("") { block in
        block.line("const int64_t piece = \(piece);")
        let copy =
          "for (int64_t o = 0; o < outer; o++) memcpy(out + o * row + offset, in\(index) + o * piece, (size_t)piece * sizeof(*out));"
        if outer == "1" {
          block.line("if (in\(index) != out + offset) \(copy)")
        } else {
          block.line(copy)
        }
        block.line("offset += piece;")
      }
    }
  }

  /// `slice`: the start of each axis is resolved at run time (negative indices count from the end,
  /// and symbolic sizes are only known then); an index out of range is an error, not a read past the end.
  ///
  /// `slice_backward` (`backward`) walks the same positions the other way: the result, of the sliced
  /// tensor's shape, is zeroed, and each gradient element is written where the slice read it.
  static func emitSlice(
    _ context: KernelContext, backward: Bool = false, into writer: inout CWriter
  ) {
    // The tensor the index applies to, and the sliced shape the loops walk.
    let input = backward ? context.resultType : context.operandTypes[0]
    let sliced = backward ? context.operandTypes[0] : context.resultType
    let op = context.node.op
    guard case .slices(let items)? = context.attributes["index"] else { return }
    if backward {
      writer.line("memset(out, 0, (size_t)\(cProduct(input.shape)) * sizeof(*out));")
    }
    let inputStrides = cStrides(input.shape)
    var resultAxis = 0
    var readTerms: [String] = []
    var resultDims: [Dim] = []
    var resultIndices: [String] = []
    for axis in 0..<input.rank {
      let size = cDim(input.shape[axis])
      let item = axis < items.count ? items[axis] : .all
      switch item {
      case .index(let index):
        writer.line("const int64_t start\(axis) = \(index) < 0 ? \(index) + \(size) : \(index);")
        writer.line(
          "if (start\(axis) < 0 || start\(axis) >= \(size)) return lamina_fail(ctx, LAMINA_ERROR_INDEX, \"\(op): index \(index) is out of range for axis \(axis) of size %lld\", (long long)\(size));"
        )
        readTerms.append("start\(axis) * \(inputStrides[axis])")
      case .range(let start, _, let step):
        let count = cDim(sliced.shape[resultAxis])
        // Python's rules: clamp the start into the axis; the result type already fixed the count.
        let defaultStart = step > 0 ? "0" : "\(size) - 1"
        writer.line(
          "int64_t start\(axis) = \(start.map(String.init) ?? defaultStart);")
        if let start, start < 0 { writer.line("start\(axis) += \(size);") }
        writer.line(
          "if (start\(axis) < 0) start\(axis) = \(step > 0 ? "0" : "-1");")
        writer.line(
          "if (start\(axis) >= \(size)) start\(axis) = \(step > 0 ? size : "\(size) - 1");")
        writer.line(
          "if (\(count) > 0 && (start\(axis) + (\(count) - 1) * \(step) < 0 || start\(axis) + (\(count) - 1) * \(step) >= \(size))) return lamina_fail(ctx, LAMINA_ERROR_INDEX, \"\(op): \(item) on axis \(axis) of size %lld selects fewer than the %lld elements its type promised\", (long long)\(size), (long long)\(count));"
        )
        let index = "r\(resultAxis)"
        readTerms.append("(start\(axis) + \(index) * \(step)) * \(inputStrides[axis])")
        resultDims.append(sliced.shape[resultAxis])
        resultIndices.append(index)
        resultAxis += 1
      }
    }
    let outputIndex = cIndex(resultIndices, cStrides(resultDims))
    func nest(_ position: Int, _ writer: inout CWriter) {
      if position == resultDims.count {
        let inputIndex = readTerms.isEmpty ? "0" : readTerms.joined(separator: " + ")
        writer.line(
          backward
            ? "out[\(inputIndex)] = in0[\(outputIndex)];"
            : "out[\(outputIndex)] = in0[\(inputIndex)];")
        return
      }
      writer.block(
        "for (int64_t r\(position) = 0; r\(position) < \(cDim(resultDims[position])); r\(position)++)"
      ) { inner in
        nest(position + 1, &inner)
      }
    }
    nest(0, &writer)
  }

  /// Nested loops `i0, i1, ...` over a shape.
  static func loops(_ shape: [Dim], _ writer: inout CWriter, _ body: (inout CWriter) -> Void) {
    func nest(_ axis: Int, _ writer: inout CWriter) {
      if axis == shape.count { return body(&writer) }
      writer.block("for (int64_t i\(axis) = 0; i\(axis) < \(cDim(shape[axis])); i\(axis)++)") {
        inner in
        nest(axis + 1, &inner)
      }
    }
    nest(0, &writer)
  }
}
