import LaminaSupport

extension OpRegistry {
  /// Ops that rearrange elements without computing new values: reshaping, broadcasting, joining,
  /// indexing.
  static let shapeOps: [OpDefinition] = [
    OpDefinition(
      "reshape",
      summary:
        "Gives the elements a new shape of the same element count; one dimension may be -1 to infer it.",
      semantics:
        "y = x with shape `shape`, elements in the same row-major order; Π y.shape = Π x.shape as monomials (batch*64 = 64*batch)",
      operands: [OperandSpec("x")],
      attributes: [
        AttributeSpec(
          "shape", .dims, required: true,
          "the new shape; may name symbolic dimensions, and at most one entry may be -1 (inferred)")
      ],
      fusion: .injective,
      c: .alias,
      algebra: AlgebraicProperties(isIdentityWhenTypeUnchanged: true),
      rearrangement: .rowMajorReshape,
      shape: ShapeRule("reshape(x, shape)") { context throws(ShapeError) in
        [try reshapeResult(context)]
      },
      interpret: { context in
        _ = try bindingTargetSymbols(context).checked("reshape")
        return [try reshapedOperand(context, "reshape")]
      }, gradient: reshapeGradient),
    OpDefinition(
      "flatten",
      summary:
        "Merges the axes start_axis...end_axis into one; by default everything but the first (batch) axis.",
      semantics:
        "y.shape = x.shape[..<start] + [Π x.shape[start...end]] + x.shape[end+1...], elements unchanged (like torch.flatten, but start_axis defaults to 1 as Keras Flatten)",
      operands: [OperandSpec("x")],
      attributes: [
        AttributeSpec("start_axis", .int, default: .int(1), "first axis to merge"),
        AttributeSpec("end_axis", .int, default: .int(-1), "last axis to merge (inclusive)"),
      ],
      fusion: .injective,
      c: .alias,
      algebra: AlgebraicProperties(isIdentityWhenTypeUnchanged: true),
      rearrangement: .rowMajorReshape,
      shape: ShapeRule("flatten(x, start_axis, end_axis)") { context throws(ShapeError) in
        [try flattenResult(context)]
      },
      interpret: { context in
        _ = try context.checked("flatten")
        return [try reshapedOperand(context, "flatten")]
      }, gradient: reshapeGradient),
    OpDefinition(
      "broadcast_to",
      summary:
        "Repeats a tensor along axes of size 1 and new leading axes to reach a target shape (numpy rules).",
      semantics:
        "y[i] = x[j], aligning axes from the right: j_d = 0 where x.shape[d] = 1, else the matching index of i",
      operands: [OperandSpec("x")],
      attributes: [
        AttributeSpec(
          "shape", .dims, required: true,
          "the target shape: at least x's rank; each x dimension, aligned from the right, equals it or is 1"
        )
      ],
      fusion: .broadcast,
      c: .kernel(.broadcastCopy),
      algebra: AlgebraicProperties(isIdentityWhenTypeUnchanged: true),
      rearrangement: .broadcast,
      shape: ShapeRule("broadcast_to(x, shape)") { context throws(ShapeError) in
        [try broadcastToResult(context)]
      },
      interpret: { context in
        _ = try bindingTargetSymbols(context).checked("broadcast_to")
        let operand = context.operands[0]
        let shape = context.results[0].shape
        return [gathered(operand, broadcastIndexMap(from: operand.shape, to: shape), shape: shape)]
      },
      // ∂/∂x_j = Σ of g over the positions that read x_j: the autodiff pass sums a gradient of the
      // broadcast shape back to the operand's
      gradient: { _, inputs in [inputs.resultGradient] }),
    OpDefinition(
      "concat",
      summary: "Joins tensors along an existing axis.",
      semantics:
        "y = [inputs_0, inputs_1, …] along axis; every other dimension must match; y.shape[axis] = Σ inputs_k.shape[axis]",
      operands: [OperandSpec("inputs", variadic: true)],
      attributes: [AttributeSpec("axis", .int, default: .int(0), "the axis to join along")],
      fusion: .injective,
      c: .kernel(.concatenate),
      concatenation: Concatenation(axisAttribute: "axis", defaultAxis: 0),
      shape: ShapeRule("concat(inputs, axis)") { context throws(ShapeError) in
        [try concatPlan(context).result]
      },
      interpret: { context in
        let axis = try concatPlan(try context.checked("concat")).axis
        let outerCount = context.operands[0].shape[..<axis].reduce(1, *)
        // Row-major order: for each position before the axis, one contiguous block from every input.
        let sizes = context.operands.map { $0.shape[axis...].reduce(1, *) }
        var picks: [(source: Int, index: Int)] = []
        for outer in 0..<outerCount {
          for (source, size) in sizes.enumerated() {
            picks += ((outer * size)..<((outer + 1) * size)).map { (source, $0) }
          }
        }
        return [
          gathered(
            context.operands, picks, dtype: context.results[0].dtype,
            shape: context.results[0].shape)
        ]
      },
      // ∂/∂inputs_k = the piece of g where inputs_k was placed: g[..., offset_k:offset_k + size_k]
      gradient: { builder, inputs throws(ShapeError) in
        let result = builder.type(of: inputs.result)
        var axis = inputs.attributes["axis"]?.intValue ?? 0
        if axis < 0 { axis += result.rank }
        var offset = 0
        var gradients: [ValueID?] = []
        for operand in inputs.operands {
          guard let size = builder.type(of: operand).shape[axis].staticValue else {
            throw ShapeError(
              "cannot differentiate concat along axis \(axis) of symbolic size \(builder.type(of: operand).shape[axis])",
              help: "concatenate along an axis of static size")
          }
          let index =
            [SliceIndex](repeating: .all, count: axis) + [
              .range(start: offset, stop: offset + size, step: 1)
            ]
          gradients.append(
            builder.wants(operand)
              ? try builder.op("slice", [inputs.resultGradient], ["index": .slices(index)]) : nil)
          offset += size
        }
        return gradients
      }),
    OpDefinition(
      "slice",
      summary:
        "Basic python/numpy indexing: an integer drops an axis, a range start:stop:step keeps it; missing trailing entries take whole axes.",
      semantics:
        "y = x[index_0, index_1, …] with python semantics (negative positions count from the end, range bounds clamp); on a symbolic axis only `:`, an integer (checked at run time), or a range with non-negative static start and stop and a positive step",
      operands: [OperandSpec("x")],
      attributes: [
        AttributeSpec(
          "index", .slices, required: true,
          "one entry per leading axis, as written between brackets")
      ],
      fusion: .injective,
      c: .kernel(.slice),
      rearrangement: .selection, window: { attributes, shape in sliceWindow(attributes, shape) },
      shape: ShapeRule("slice(x, index)") { context throws(ShapeError) in [try sliceResult(context)]
      },
      interpret: { context in
        // The shape rule on the concrete shape checks integer indices on symbolic axes; the result
        // shape is compared below, where the message can say which range fell short.
        let checked = try context.checked("slice", comparingShapes: false)
        let operand = context.operands[0]
        let entries = sliceEntries(checked, rank: operand.rank)
        var selections: [[Int]] = []
        var keptSizes: [Int] = []
        for (axis, entry) in entries.enumerated() {
          let size = operand.shape[axis]
          switch entry {
          case .index(let index):
            selections.append([index < 0 ? index + size : index])
          case .range(let start, let stop, let step):
            let (first, count) = pythonSlice(start: start, stop: stop, step: step, size: size)
            selections.append((0..<count).map { first + $0 * step })
            keptSizes.append(count)
          }
        }
        let declared = context.results[0].shape
        guard keptSizes == declared else {
          throw InterpretError(
            sliceMismatch(operand: operand, entries: entries, declared: declared))
        }
        let strides = rowMajorStrides(operand.shape)
        var indices: [Int] = []
        // A dropped axis has a selection of one, which leaves the row-major order unchanged.
        forEachCoordinate(selections.map(\.count)) { coordinate in
          var source = 0
          for (axis, index) in coordinate.enumerated() {
            source += selections[axis][index] * strides[axis]
          }
          indices.append(source)
        }
        return [gathered(operand, indices, shape: declared)]
      },
      // ∂/∂x = g placed where the slice read, zeros elsewhere
      gradient: { builder, inputs throws(ShapeError) in
        [
          try builder.op(
            "slice_backward", [inputs.resultGradient],
            [
              "index": inputs.attributes["index"] ?? .slices([]),
              "shape": .dims(builder.type(of: inputs.operands[0]).shape),
            ])
        ]
      }),
    OpDefinition(
      "slice_backward",
      summary:
        "The gradient of slice: a tensor of zeros of shape `shape` with `gradient` written where `slice(·, index)` reads.",
      semantics:
        "y = zeros(shape); y[index] = gradient, so slice(y, index) = gradient (slice positions are distinct, so nothing adds up)",
      operands: [OperandSpec("gradient")],
      attributes: [
        AttributeSpec(
          "index", .slices, required: true, "the index of the slice, as for slice"),
        AttributeSpec(
          "shape", .dims, required: true,
          "the shape of the sliced tensor; slicing it with `index` must give the gradient's shape"),
      ],
      fusion: .injective,
      c: .kernel(.sliceBackward),
      shape: ShapeRule("slice_backward(gradient, index, shape)") { context throws(ShapeError) in
        [try sliceBackwardResult(context)]
      },
      interpret: { context in
        _ = try bindingTargetSymbols(context).checked("slice_backward")
        let shape = context.results[0].shape
        var entries: [SliceIndex] = []
        if case .slices(let given)? = context.attributes["index"] { entries = given }
        entries += Array(repeating: .all, count: Swift.max(0, shape.count - entries.count))
        var selections: [[Int]] = []
        for (axis, entry) in entries.enumerated() {
          let size = shape[axis]
          switch entry {
          case .index(let index):
            let position = index < 0 ? index + size : index
            guard position >= 0, position < size else {
              throw InterpretError(
                "slice_backward: index \(index) is out of range for axis \(axis) of size \(size)")
            }
            selections.append([position])
          case .range(let start, let stop, let step):
            let (first, count) = pythonSlice(start: start, stop: stop, step: step, size: size)
            selections.append((0..<count).map { first + $0 * step })
          }
        }
        let gradient = context.operands[0].doubles()
        guard selections.map(\.count).reduce(1, *) == gradient.count else {
          throw InterpretError(
            "slice_backward: slicing \(shape) does not give the gradient's shape \(context.operands[0].shape)"
          )
        }
        var output = [Double](repeating: 0, count: shape.reduce(1, *))
        let strides = rowMajorStrides(shape)
        var flat = 0
        forEachCoordinate(selections.map(\.count)) { coordinate in
          var target = 0
          for (axis, index) in coordinate.enumerated() {
            target += selections[axis][index] * strides[axis]
          }
          output[target] = gradient[flat]
          flat += 1
        }
        return [context.result(0, output)]
      },
      // linear: ∂/∂gradient = slice(g, index)
      gradient: { builder, inputs throws(ShapeError) in
        [
          try builder.op(
            "slice", [inputs.resultGradient],
            ["index": inputs.attributes["index"] ?? .slices([])])
        ]
      }),
    OpDefinition(
      "squeeze",
      summary: "Removes the given axes, which must have size 1.",
      semantics: "y = x without the listed axes; each must have size 1; elements unchanged",
      operands: [OperandSpec("x")],
      attributes: [AttributeSpec("axes", .ints, required: true, "axes of size 1 to remove")],
      fusion: .injective,
      c: .alias,
      algebra: AlgebraicProperties(isIdentityWhenTypeUnchanged: true),
      rearrangement: .rowMajorReshape,
      shape: ShapeRule("squeeze(x, axes)") { context throws(ShapeError) in
        [try squeezeResult(context)]
      },
      interpret: { context in
        _ = try context.checked("squeeze")
        return [try reshapedOperand(context, "squeeze")]
      }, gradient: reshapeGradient),
    OpDefinition(
      "unsqueeze",
      summary: "Inserts axes of size 1 at the given positions of the result.",
      semantics:
        "y has rank x.rank + len(axes), size 1 at each listed axis (counted in y's rank) and x's dimensions in order elsewhere; elements unchanged",
      operands: [OperandSpec("x")],
      attributes: [
        AttributeSpec("axes", .ints, required: true, "positions of the new axes in the result")
      ],
      fusion: .injective,
      c: .alias,
      algebra: AlgebraicProperties(isIdentityWhenTypeUnchanged: true),
      rearrangement: .rowMajorReshape,
      shape: ShapeRule("unsqueeze(x, axes)") { context throws(ShapeError) in
        [try unsqueezeResult(context)]
      },
      interpret: { context in
        _ = try context.checked("unsqueeze")
        return [try reshapedOperand(context, "unsqueeze")]
      }, gradient: reshapeGradient),
  ]

  // MARK: Reshaping

  /// ∂/∂x of ops that only change the shape: g with x's shape (the row-major order is unchanged).
  static let reshapeGradient: GradientRule = { builder, inputs throws(ShapeError) in
    [
      try builder.op(
        "reshape", [inputs.resultGradient],
        ["shape": .dims(builder.type(of: inputs.operands[0]).shape)])
    ]
  }

  /// `slice_backward`'s result: `shape`, when slicing it with `index` gives the gradient's shape.
  static func sliceBackwardResult(_ context: ShapeContext) throws(ShapeError) -> TensorType {
    let gradient = context.operands[0]
    let shape = context.attributes["shape"]?.dimsValue ?? []
    if let negative = shape.first(where: { $0.factor < 0 }) {
      throw ShapeError(
        "slice_backward: the shape \(describe(shape)) has a negative dimension \(negative)")
    }
    let full = gradient.with(shape: shape)
    let sliced = try sliceResult(
      ShapeContext(
        op: "slice_backward", operands: [full],
        attributes: ["index": context.attributes["index"] ?? .slices([])]))
    guard sliced.shape == gradient.shape else {
      throw ShapeError(
        "slice_backward: slicing \(full) with \(context.attributes["index"]?.description ?? "[]") gives \(sliced), not the gradient's shape \(gradient)",
        help: "shape is the shape of the tensor the slice read from")
    }
    return full
  }

  /// `reshape`'s result: the target with its -1 inferred, when the element counts agree.
  static func reshapeResult(_ context: ShapeContext) throws(ShapeError) -> TensorType {
    let operand = context.operands[0]
    let target = context.attributes["shape"]?.dimsValue ?? []
    let targetText = describe(target)
    var inferredPosition: Int?
    for (position, dim) in target.enumerated() {
      if dim == Dim(-1) {
        guard inferredPosition == nil else {
          throw ShapeError(
            "reshape: the target shape \(targetText) has more than one -1",
            help: "only one dimension can be inferred")
        }
        inferredPosition = position
      } else if dim.factor < 0 {
        throw ShapeError(
          "reshape: the target shape \(targetText) has a negative dimension \(dim)",
          help: "use -1 for the one dimension to infer")
      }
    }
    var others = target
    if let position = inferredPosition { others.remove(at: position) }
    guard let count = checkedProduct(operand.shape), let known = checkedProduct(others) else {
      throw ShapeError("reshape: the element count of \(operand) or \(targetText) is too large")
    }
    var shape = target
    if let position = inferredPosition {
      guard known != Dim(0) else {
        throw ShapeError(
          "reshape: cannot infer the -1 in \(targetText) for \(operand): the other dimensions multiply to 0"
        )
      }
      guard let inferred = count.divided(by: known) else {
        throw ShapeError(
          "reshape: cannot reshape \(operand) to \(targetText): \(count) elements are not divisible by \(known)",
          help: "the other dimensions of the target must divide the element count exactly")
      }
      shape[position] = inferred
    } else if known != count {
      throw ShapeError(
        "reshape: cannot reshape \(operand) (\(count) elements) to \(targetText) (\(known) elements)",
        help: "the element counts must be equal; use -1 for one dimension to infer it")
    }
    return operand.with(shape: shape)
  }

  /// `flatten`'s result: the axes start_axis...end_axis replaced by their product.
  static func flattenResult(_ context: ShapeContext) throws(ShapeError) -> TensorType {
    let operand = context.operands[0]
    let startAxis = context.int("start_axis") ?? 1
    let endAxis = context.int("end_axis") ?? -1
    let start: Int
    let end: Int
    do {
      start = try context.axis(startAxis, rank: operand.rank, operand: operand.description)
      end = try context.axis(endAxis, rank: operand.rank, operand: operand.description)
    } catch {
      throw ShapeError(
        error.message,
        help: "flatten keeps axis 0 (the batch) by default; start_axis: 0 flattens every axis")
    }
    guard start <= end else {
      throw ShapeError(
        "flatten: start_axis \(startAxis) comes after end_axis \(endAxis) for \(operand)",
        help: "start_axis must name the same axis as end_axis or an earlier one")
    }
    guard let merged = checkedProduct(Array(operand.shape[start...end])) else {
      throw ShapeError("flatten: the merged size of \(operand) is too large")
    }
    return operand.with(
      shape: Array(operand.shape[..<start]) + [merged] + Array(operand.shape[(end + 1)...]))
  }

  /// `broadcast_to`'s result: the target, when the operand broadcasts to it by numpy's rules.
  static func broadcastToResult(_ context: ShapeContext) throws(ShapeError) -> TensorType {
    let operand = context.operands[0]
    let target = context.attributes["shape"]?.dimsValue ?? []
    let targetText = describe(target)
    if let negative = target.first(where: { $0.factor < 0 }) {
      throw ShapeError(
        "broadcast_to: the target shape \(targetText) has a negative dimension \(negative)")
    }
    guard target.count >= operand.rank else {
      throw ShapeError(
        "broadcast_to: cannot broadcast \(operand) to \(targetText): the target has fewer axes (\(target.count) vs \(operand.rank))",
        help:
          "broadcasting can add leading axes but never remove axes; use sum or squeeze to remove them"
      )
    }
    for axis in 0..<operand.rank {
      let dim = operand.shape[axis]
      let wanted = target[target.count - operand.rank + axis]
      guard dim == wanted || dim == Dim(1) else {
        let problem = wanted == Dim(1) ? "cannot shrink to 1" : "is neither \(wanted) nor 1"
        throw ShapeError(
          "broadcast_to: cannot broadcast \(operand) to \(targetText): axis \(axis) has size \(dim), which \(problem)",
          help: "axes align from the right; each operand dimension must equal the target's or be 1")
      }
    }
    return operand.with(shape: target)
  }

  /// `squeeze`'s result: the operand without the listed axes, each of which must have size 1.
  static func squeezeResult(_ context: ShapeContext) throws(ShapeError) -> TensorType {
    let operand = context.operands[0]
    let axes = try context.axes(
      context.ints("axes") ?? [], rank: operand.rank, operand: operand.description)
    for axis in axes where operand.shape[axis] != Dim(1) {
      throw ShapeError(
        "squeeze: axis \(axis) of \(operand) has size \(operand.shape[axis]), not 1",
        help: "only axes of size 1 can be removed; use reshape or sum to change other axes")
    }
    return operand.with(
      shape: operand.shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
  }

  /// `unsqueeze`'s result: axes of size 1 inserted at the listed positions of the result.
  static func unsqueezeResult(_ context: ShapeContext) throws(ShapeError) -> TensorType {
    let operand = context.operands[0]
    let requested = context.ints("axes") ?? []
    let rank = operand.rank + requested.count
    let axes = try context.axes(requested, rank: rank, operand: "the result of rank \(rank)")
    var remaining = operand.shape[...]
    var shape: [Dim] = []
    for axis in 0..<rank {
      if axes.contains(axis) {
        shape.append(1)
      } else if let dim = remaining.popFirst() {
        shape.append(dim)
      }
    }
    return operand.with(shape: shape)
  }

  /// The operand's data under the result's shape, for ops that only change the shape.
  static func reshapedOperand(_ context: InterpretContext, _ op: String) throws -> Tensor {
    let operand = context.operands[0]
    guard let shape = context.results.first?.shape, let result = operand.reshaped(shape) else {
      throw InterpretError(
        "\(op): cannot view \(operand.typeDescription) with the declared result shape")
    }
    return result
  }

  /// The call with the target shape's symbols replaced by the declared result's concrete sizes.
  ///
  /// `reshape` and `broadcast_to` name their target in the `shape` attribute, symbols included, and entry i
  /// of the target is axis i of the result; substituting lets the kernel re-run the shape rule.
  static func bindingTargetSymbols(_ context: InterpretContext) -> InterpretContext {
    guard let target = context.attributes["shape"]?.dimsValue,
      let declared = context.results.first?.shape,
      declared.count == target.count
    else { return context }
    var bound = context
    bound.attributes["shape"] = .dims(
      zip(target, declared).map { dim, size in dim.isStatic ? dim : Dim(size) })
    return bound
  }

  /// A shape as written in attributes: `[batch, -1]`.
  static func describe(_ shape: [Dim]) -> String {
    "[" + shape.map(\.description).joined(separator: ", ") + "]"
  }

  // MARK: Joining

  /// The normalized axis and result type of `concat`.
  static func concatPlan(_ context: ShapeContext) throws(ShapeError) -> (
    axis: Int, result: TensorType
  ) {
    let dtype = try context.commonDType()
    let first = context.operands[0]
    let list = context.operands.map(\.description).joined(separator: ", ")
    guard first.rank >= 1 else {
      throw ShapeError(
        "concat: cannot concatenate scalars: \(list)", help: "unsqueeze them to rank 1 first")
    }
    let axis = try context.axis(
      context.int("axis") ?? 0, rank: first.rank, operand: first.description)
    var total = first.shape[axis]
    for operand in context.operands.dropFirst() {
      guard operand.rank == first.rank else {
        throw ShapeError("concat: operands have different ranks: \(list)")
      }
      for other in 0..<first.rank where other != axis && operand.shape[other] != first.shape[other]
      {
        throw ShapeError(
          "concat: operands must match on every axis but \(axis), and axis \(other) differs: \(list)",
          help: "did you mean to concatenate along axis \(other)?")
      }
      // Dimensions are monomials, so only sizes with the same symbols (or an empty piece) add up.
      let piece = operand.shape[axis]
      guard !total.factor.addingReportingOverflow(piece.factor).overflow else {
        throw ShapeError("concat: the size along axis \(axis) is too large: \(list)")
      }
      guard let sum = piece == Dim(0) ? total : total == Dim(0) ? piece : total.adding(piece) else {
        throw ShapeError(
          "concat: the size along axis \(axis) would be \(total) + \(piece), which Lamina cannot represent: \(list)",
          help:
            "a dimension is a number times symbols (32*batch); the pieces must share their symbols")
      }
      total = sum
    }
    var shape = first.shape
    shape[axis] = total
    return (axis, TensorType(dtype, shape))
  }

  // MARK: Indexing

  /// One entry per axis: the `index` attribute padded with whole-axis ranges.
  static func sliceEntries(_ context: ShapeContext, rank: Int) -> [SliceIndex] {
    guard case .slices(let entries)? = context.attributes["index"] else {
      return Array(repeating: .all, count: rank)
    }
    return entries + Array(repeating: .all, count: max(0, rank - entries.count))
  }

  /// `slice`'s strided window: every entry a range with a positive step, resolved against a static
  /// axis, or the whole of a symbolic one.
  static func sliceWindow(_ attributes: [String: Attribute], _ shape: [Dim])
    -> [WindowAxis]?
  {
    guard case .slices(let given)? = attributes["index"], given.count <= shape.count else {
      return nil
    }
    let entries = given + Array(repeating: SliceIndex.all, count: shape.count - given.count)
    var axes: [WindowAxis] = []
    for (entry, size) in zip(entries, shape) {
      guard case .range(let start, let stop, let step) = entry, step > 0 else { return nil }
      if let size = size.staticValue {
        axes.append(
          WindowAxis(
            start: pythonSlice(start: start, stop: stop, step: step, size: size).first, step: step))
      } else {
        guard entry == .all else { return nil }
        axes.append(WindowAxis(start: 0, step: 1))
      }
    }
    return axes
  }

  /// python's `slice.indices` for a positive or negative step: the first position and how many are taken.
  ///
  /// Bounds are clamped to the axis, so `0:100` of 7 elements takes 7 and `5:2` takes none.
  static func pythonSlice(start: Int?, stop: Int?, step: Int, size: Int) -> (first: Int, count: Int)
  {
    // A negative step walks from size-1 down to position -1 (exclusive).
    let (lower, upper) = step > 0 ? (0, size) : (-1, size - 1)
    func clamp(_ bound: Int?, default value: Int) -> Int {
      guard let bound else { return value }
      return bound < 0 ? Swift.max(bound + size, lower) : Swift.min(bound, upper)
    }
    let first = clamp(start, default: step > 0 ? lower : upper)
    let stop = clamp(stop, default: step > 0 ? upper : lower)
    if step > 0 { return (first, stop > first ? (stop - first - 1) / step + 1 : 0) }
    // (stop - first + 1) / step is (first - stop - 1) / -step without negating step (Int.min).
    return (first, first > stop ? (stop - first + 1) / step + 1 : 0)
  }

  /// `slice`'s result type.
  static func sliceResult(_ context: ShapeContext) throws(ShapeError) -> TensorType {
    let operand = context.operands[0]
    guard case .slices(let given)? = context.attributes["index"] else {
      throw ShapeError("slice: missing index")
    }
    guard given.count <= operand.rank else {
      throw ShapeError(
        "slice: too many indices for \(operand): \(given.count) given, rank \(operand.rank)")
    }
    var shape: [Dim] = []
    for (axis, entry) in sliceEntries(context, rank: operand.rank).enumerated() {
      let dim = operand.shape[axis]
      switch entry {
      case .index(let index):
        // On a symbolic axis the index is checked at run time.
        if let size = dim.staticValue, index < -size || index >= size {
          throw ShapeError(
            "slice: index \(index) is out of range for axis \(axis) of size \(size) in \(operand)",
            help: size == 0 ? "the axis is empty" : "valid indices are \(-size) to \(size - 1)")
        }
      case .range(let start, let stop, let step):
        guard step != 0 else {
          throw ShapeError(
            "slice: step 0 on axis \(axis) of \(operand)", help: "a slice step must not be 0")
        }
        if let size = dim.staticValue {
          shape.append(Dim(pythonSlice(start: start, stop: stop, step: step, size: size).count))
        } else if (start ?? 0) == 0, stop == nil, step == 1 {
          shape.append(dim)
        } else {
          shape.append(try symbolicRangeSize(context, axis: axis, entry: entry))
        }
      }
    }
    return operand.with(shape: shape)
  }

  /// The static size of a range on a symbolic axis; only non-negative static bounds with a positive step
  /// have one that a monomial can express.
  static func symbolicRangeSize(_ context: ShapeContext, axis: Int, entry: SliceIndex)
    throws(ShapeError) -> Dim
  {
    let operand = context.operands[0]
    let dim = operand.shape[axis]
    guard case .range(let start, let stop, let step) = entry else { return dim }
    guard step > 0 else {
      throw ShapeError(
        "slice: negative step \(step) in '\(entry)' on symbolic axis \(axis) (size \(dim)) of \(operand)",
        help: "only axes of static size can be walked backwards")
    }
    let first = start ?? 0
    guard first >= 0, let stop, stop >= 0 else {
      throw ShapeError(
        "slice: '\(entry)' on symbolic axis \(axis) (size \(dim)) of \(operand) needs non-negative bounds and an explicit stop",
        help:
          "the size would depend on \(dim), which Lamina cannot express; slice the whole axis with ':' or give static bounds like 0:4"
      )
    }
    return Dim(stop > first ? (stop - first - 1) / step + 1 : 0)
  }

  /// Why a slice's run-time shape differs from its declared type: a range on a symbolic axis whose static
  /// size promised more elements than the axis has.
  static func sliceMismatch(operand: Tensor, entries: [SliceIndex], declared: [Int]) -> String {
    var resultAxis = 0
    for (axis, entry) in entries.enumerated() {
      guard case .range(let start, let stop, let step) = entry else { continue }
      let count = pythonSlice(start: start, stop: stop, step: step, size: operand.shape[axis]).count
      if resultAxis < declared.count, count != declared[resultAxis] {
        return
          "slice: \(entry) on axis \(axis) of \(operand.typeDescription) selects \(count) element\(count == 1 ? "" : "s"), but its type promised \(declared[resultAxis]); the axis is too short at run time"
      }
      resultAxis += 1
    }
    return "slice: indexing \(operand.typeDescription) does not give the declared shape \(declared)"
  }
}
