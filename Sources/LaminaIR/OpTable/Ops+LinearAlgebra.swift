import LaminaSupport

extension OpRegistry {
  /// Matrix products and axis permutations.
  static let linearAlgebraOps: [OpDefinition] = [
    OpDefinition(
      "matmul",
      summary:
        "Matrix product with numpy semantics: batched over leading axes with broadcasting, and 1-D operands taken as vectors.",
      semantics:
        "y[..., i, j] = Σ_k a[..., i, k] · b[..., k, j]; a 1-D a is a row vector [1, k] and a 1-D b a column vector [k, 1], and the added axis is removed from the result; leading (batch) axes broadcast. Any dtype; integer products are exact for values below 2^53 and then truncated to the dtype.",
      operands: [OperandSpec("a"), OperandSpec("b")],
      attributes: [
        AttributeSpec(
          "transpose_a", .bool, default: .bool(false),
          "use a with its last two axes swapped (the GEMM reads it transposed; nothing is copied)"),
        AttributeSpec("transpose_b", .bool, default: .bool(false), "likewise for b"),
      ],
      fusion: .matmulLike,
      c: .kernel(.matrixProduct),
      // 2-D products run through the blocked GEMM, which hands each finished block to an epilogue.
      epilogue: EpilogueProducer { operands, result in
        operands.count == 2 && result.dtype.isFloatingPoint && result.rank == 2
          && operands.allSatisfy { $0.rank == 2 }
      },
      operandTransposeAttributes: ["transpose_a", "transpose_b"],
      shape: ShapeRule("matmul(a, b)") { context throws(ShapeError) in
        [try matmulPlan(context).result]
      },
      interpret: { context in
        let plan = try matmulPlan(try context.checked("matmul"))
        let concrete = { (dims: [Dim]) in dims.map { $0.staticValue ?? 0 } }
        let batch = concrete(plan.batch)
        let aBatch = concrete(plan.aBatch)
        let bBatch = concrete(plan.bBatch)
        let (rows, inner, columns) = (
          plan.rows.staticValue ?? 0, plan.inner.staticValue ?? 0, plan.columns.staticValue ?? 0
        )
        if context.results[0].dtype.isInteger {
          return [try interpretIntegerMatmul(context, plan: plan)]
        }
        let a = context.operands[0].doubles()
        let b = context.operands[1].doubles()
        // Which matrix of each operand every batch position reads, after broadcasting.
        let aMatrices = broadcastIndexMap(from: aBatch, to: batch)
        let bMatrices = broadcastIndexMap(from: bBatch, to: batch)
        var output: [Double] = []
        output.reserveCapacity(aMatrices.count * rows * columns)
        for position in 0..<aMatrices.count {
          let aBase = aMatrices[position] * rows * inner
          let bBase = bMatrices[position] * inner * columns
          for row in 0..<rows {
            for column in 0..<columns {
              var total = 0.0
              for k in 0..<inner {
                // A transposed operand is stored [k, rows] (a) or [columns, k] (b).
                let aElement =
                  plan.transposeA ? a[aBase + k * rows + row] : a[aBase + row * inner + k]
                let bElement =
                  plan.transposeB ? b[bBase + column * inner + k] : b[bBase + k * columns + column]
                total += aElement * bElement
              }
              output.append(total)
            }
          }
        }
        // Removing a vector's added axis of size 1 leaves the row-major order unchanged.
        return [context.result(0, output)]
      },
      gradient: matmulGradient),
    OpDefinition(
      "transpose",
      summary:
        "Swaps the last two axes, or reorders all axes when `perm` is given (then the same as `permute`).",
      semantics:
        "without perm: y[..., j, i] = x[..., i, j]; with perm: y.shape[d] = x.shape[perm[d]]",
      operands: [OperandSpec("x")],
      attributes: [
        AttributeSpec(
          "perm", .ints, "result axis d is operand axis perm[d]; absent swaps the last two axes")
      ],
      fusion: .injective,
      c: .kernel(.permute),
      rearrangement: .permutation,
      permutation: { attributes, rank in
        guard let perm = attributes["perm"]?.intsValue else {
          return rank >= 2 ? Array(0..<(rank - 2)) + [rank - 1, rank - 2] : nil
        }
        return normalizedPermutation(perm, rank: rank)
      },
      shape: ShapeRule("transpose(x, perm?)") { context throws(ShapeError) in
        [permuted(context.operands[0], by: try transposePermutation(context))]
      },
      interpret: { context in
        let checked = try context.checked("transpose")
        return [interpretPermute(context, permutation: try transposePermutation(checked))]
      },
      // ∂/∂x transpose(x) = transpose back: swap the last two axes again, or permute by the inverse
      gradient: { builder, inputs throws(ShapeError) in
        guard let perm = inputs.attributes["perm"]?.intsValue else {
          return [try builder.op("transpose", [inputs.resultGradient])]
        }
        return [try builder.op("permute", [inputs.resultGradient], ["perm": .ints(inverse(perm))])]
      }),
    OpDefinition(
      "permute",
      summary: "Reorders the axes of a tensor.",
      semantics: "y[i_0, …, i_{r-1}] = x[j] where j[perm[d]] = i_d; y.shape[d] = x.shape[perm[d]]",
      operands: [OperandSpec("x")],
      attributes: [
        AttributeSpec(
          "perm", .ints, required: true,
          "a permutation of the axes 0..<rank (negative axes count from the end); result axis d is operand axis perm[d]"
        )
      ],
      fusion: .injective,
      c: .kernel(.permute),
      rearrangement: .permutation,
      permutation: { attributes, rank in
        attributes["perm"]?.intsValue.flatMap { normalizedPermutation($0, rank: rank) }
      },
      shape: ShapeRule("permute(x, perm)") { context throws(ShapeError) in
        [permuted(context.operands[0], by: try permutation(context))]
      },
      interpret: { context in
        let checked = try context.checked("permute")
        return [interpretPermute(context, permutation: try permutation(checked))]
      },
      // ∂/∂x permute(x, perm) = permute(g, inverse(perm))
      gradient: { builder, inputs throws(ShapeError) in
        let perm = inputs.attributes["perm"]?.intsValue ?? []
        return [try builder.op("permute", [inputs.resultGradient], ["perm": .ints(inverse(perm))])]
      }),
  ]

  /// `perm` with negative axes made non-negative, when it is a permutation of `0..<rank`.
  static func normalizedPermutation(_ perm: [Int], rank: Int) -> [Int]? {
    guard perm.count == rank else { return nil }
    let normalized = perm.map { $0 < 0 ? $0 + rank : $0 }
    return Set(normalized) == Set(0..<rank) ? normalized : nil
  }

  /// The inverse of a permutation of 0..<count (negative entries count from the end): result axis d
  /// came from operand axis perm[d], so the inverse sends perm[d] back to d.
  static func inverse(_ perm: [Int]) -> [Int] {
    var inverse = [Int](repeating: 0, count: perm.count)
    for (axis, source) in perm.enumerated() {
      inverse[source < 0 ? source + perm.count : source] = axis
    }
    return inverse
  }

  /// y = a @ b, with a: [..., m, k], b: [..., k, n]:
  ///   ∂/∂a = g @ bᵀ  ([..., m, k]),   ∂/∂b = aᵀ @ g  ([..., k, n]).
  /// A 1-D a is the row [1, k] and a 1-D b the column [k, 1], so g gets the removed axes back first
  /// and the added axis is squeezed from the operand's gradient. Batch axes the operand was
  /// broadcast along are summed by the autodiff pass, except for one matrix b under a batched a,
  /// whose gradient is one product of the stacked rows.
  static let matmulGradient: GradientRule = { builder, inputs throws(ShapeError) in
    var (a, b, g) = (inputs.operands[0], inputs.operands[1], inputs.resultGradient)
    let transposeA = inputs.attributes["transpose_a"]?.boolValue ?? false
    let transposeB = inputs.attributes["transpose_b"]?.boolValue ?? false
    let (aRank, bRank) = (builder.type(of: a).rank, builder.type(of: b).rank)
    if aRank == 1 { a = try builder.op("unsqueeze", [a], ["axes": .ints([0])]) }
    if bRank == 1 { b = try builder.op("unsqueeze", [b], ["axes": .ints([1])]) }
    if bRank == 1 { g = try builder.op("unsqueeze", [g], ["axes": .ints([-1])]) }
    if aRank == 1 { g = try builder.op("unsqueeze", [g], ["axes": .ints([-2])]) }
    var gradients: [ValueID?] = [nil, nil]
    if builder.wants(inputs.operands[0]) {
      // With flags for op(a) = aᵀ and op(b) = bᵀ, the GEMM reads the transposes in place:
      //   ∂a = g @ op(b)ᵀ, or (g @ op(b)ᵀ)ᵀ = op(b) @ gᵀ when a was transposed.
      var gradientA =
        transposeA
        ? try builder.op(
          "matmul", [b, g], ["transpose_a": .bool(transposeB), "transpose_b": .bool(true)])
        : try builder.op("matmul", [g, b], ["transpose_b": .bool(!transposeB)])
      if aRank == 1 { gradientA = try builder.op("squeeze", [gradientA], ["axes": .ints([-2])]) }
      gradients[0] = gradientA
    }
    if builder.wants(inputs.operands[1]), bRank == 2, aRank >= 3, !transposeA {
      // One matrix b under a batched a: ∂b sums aᵀ @ g over the batch, which is one product of the
      // stacked rows, [k, batch·m] @ [batch·m, n], rather than a product per batch element summed.
      let aShape = builder.type(of: a).shape
      let gShape = builder.type(of: g).shape
      let stacked = aShape.dropLast().reduce(Dim(1), *)
      let aRows = try builder.op("reshape", [a], ["shape": .dims([stacked, aShape[aRank - 1]])])
      let gRows = try builder.op(
        "reshape", [g], ["shape": .dims([stacked, gShape[gShape.count - 1]])])
      gradients[1] =
        transposeB
        ? try builder.op("matmul", [gRows, aRows], ["transpose_a": .bool(true)])
        : try builder.op("matmul", [aRows, gRows], ["transpose_a": .bool(true)])
    } else if builder.wants(inputs.operands[1]) {
      //   ∂b = op(a)ᵀ @ g, or gᵀ @ op(a) when b was transposed.
      var gradientB =
        transposeB
        ? try builder.op(
          "matmul", [g, a], ["transpose_a": .bool(true), "transpose_b": .bool(transposeA)])
        : try builder.op("matmul", [a, g], ["transpose_a": .bool(!transposeA)])
      if bRank == 1 { gradientB = try builder.op("squeeze", [gradientB], ["axes": .ints([-1])]) }
      gradients[1] = gradientB
    }
    return gradients
  }

  /// The pieces of a matrix product, with 1-D operands already promoted to matrices.
  struct MatmulPlan {
    /// Leading axes of each operand (before broadcasting) and of the result (after).
    var aBatch: [Dim]
    var bBatch: [Dim]
    var batch: [Dim]
    var rows: Dim
    var inner: Dim
    var columns: Dim
    var result: TensorType
    var transposeA = false
    var transposeB = false
  }

  /// Checks a matmul's operands and works out the batch, matrix and result shapes.
  static func matmulPlan(_ context: ShapeContext) throws(ShapeError) -> MatmulPlan {
    let (a, b) = (context.operands[0], context.operands[1])
    let dtype = try context.commonDType()
    guard a.rank >= 1, b.rank >= 1 else {
      throw ShapeError(
        "matmul: operands must have rank 1 or more, got \(a) @ \(b)",
        help: "to scale by a scalar, use mul")
    }
    let transposeA = context.bool("transpose_a") ?? false
    let transposeB = context.bool("transpose_b") ?? false
    if (transposeA && a.rank < 2) || (transposeB && b.rank < 2) {
      throw ShapeError("matmul: a transposed operand needs rank 2 or more, got \(a) @ \(b)")
    }
    // numpy promotes a vector to a matrix for the product and removes the added axis afterwards.
    var aMatrix = a.rank == 1 ? [Dim(1)] + a.shape : a.shape
    var bMatrix = b.rank == 1 ? b.shape + [Dim(1)] : b.shape
    if transposeA { aMatrix.swapAt(aMatrix.count - 1, aMatrix.count - 2) }
    if transposeB { bMatrix.swapAt(bMatrix.count - 1, bMatrix.count - 2) }
    let rows = aMatrix[aMatrix.count - 2]
    let inner = aMatrix[aMatrix.count - 1]
    let columns = bMatrix[bMatrix.count - 1]
    guard inner == bMatrix[bMatrix.count - 2] else {
      throw ShapeError(
        "matmul: inner dimensions do not match: \(a) @ \(b) (\(inner) vs \(bMatrix[bMatrix.count - 2]))",
        help:
          "the last axis of a must equal the second-to-last axis of b (the only axis of a 1-D b)")
    }
    let aBatch = Array(aMatrix.dropLast(2))
    let bBatch = Array(bMatrix.dropLast(2))
    guard let batch = broadcastShapes(aBatch, bBatch) else {
      throw ShapeError(
        "matmul: batch dimensions do not broadcast: \(a) @ \(b) ([\(aBatch.map(\.description).joined(separator: ", "))] vs [\(bBatch.map(\.description).joined(separator: ", "))])",
        help: "leading axes must be equal or 1 when aligned from the right")
    }
    var resultShape = batch
    if a.rank > 1 { resultShape.append(rows) }
    if b.rank > 1 { resultShape.append(columns) }
    return MatmulPlan(
      aBatch: aBatch, bBatch: bBatch, batch: batch, rows: rows, inner: inner, columns: columns,
      result: TensorType(dtype, resultShape), transposeA: transposeA, transposeB: transposeB)
  }

  /// The `perm` attribute checked to be a permutation of the operand's axes, made non-negative.
  static func permutation(_ context: ShapeContext) throws(ShapeError) -> [Int] {
    let operand = context.operands[0]
    let perm = context.ints("perm") ?? []
    guard perm.count == operand.rank else {
      throw ShapeError(
        "\(context.op): perm \(perm) has \(perm.count) entr\(perm.count == 1 ? "y" : "ies") but \(operand) has rank \(operand.rank)",
        help: "perm lists every axis of the operand once, in the new order")
    }
    return try context.axes(perm, rank: operand.rank, operand: operand.description)
  }

  /// `transpose`'s permutation: the given `perm`, or the identity with the last two axes swapped.
  static func transposePermutation(_ context: ShapeContext) throws(ShapeError) -> [Int] {
    if context.attributes["perm"] != nil { return try permutation(context) }
    let operand = context.operands[0]
    guard operand.rank >= 2 else {
      throw ShapeError(
        "transpose: without perm, the operand needs rank 2 or more to swap its last two axes, got \(operand)",
        help: "give perm to reorder axes explicitly; a 1-D tensor is its own transpose")
    }
    return Array(0..<(operand.rank - 2)) + [operand.rank - 1, operand.rank - 2]
  }

  /// The type after reordering axes: result axis d is operand axis `permutation[d]`.
  static func permuted(_ type: TensorType, by permutation: [Int]) -> TensorType {
    type.with(shape: permutation.map { type.shape[$0] })
  }

  /// Integer matmul, exactly: products and sums wrap around (two's complement) at the dtype's width.
  static func interpretIntegerMatmul(_ context: InterpretContext, plan: MatmulPlan) throws -> Tensor
  {
    let concrete = { (dims: [Dim]) in dims.map { $0.staticValue ?? 0 } }
    let batch = concrete(plan.batch)
    let (rows, inner, columns) = (
      plan.rows.staticValue ?? 0, plan.inner.staticValue ?? 0, plan.columns.staticValue ?? 0
    )
    let a = integerValues(context.operands[0])
    let b = integerValues(context.operands[1])
    let aMatrices = broadcastIndexMap(from: concrete(plan.aBatch), to: batch)
    let bMatrices = broadcastIndexMap(from: concrete(plan.bBatch), to: batch)
    var output: [Int64] = []
    output.reserveCapacity(aMatrices.count * rows * columns)
    for position in 0..<aMatrices.count {
      let aBase = aMatrices[position] * rows * inner
      let bBase = bMatrices[position] * inner * columns
      for row in 0..<rows {
        for column in 0..<columns {
          var total: Int64 = 0
          for k in 0..<inner {
            let aElement =
              plan.transposeA ? a[aBase + k * rows + row] : a[aBase + row * inner + k]
            let bElement =
              plan.transposeB ? b[bBase + column * inner + k] : b[bBase + k * columns + column]
            total = total &+ aElement &* bElement
          }
          output.append(total)
        }
      }
    }
    return integerTensor(context.results[0].dtype, context.results[0].shape, output)
  }

  /// Gathers the elements of operand 0 into its permuted order.
  static func interpretPermute(_ context: InterpretContext, permutation: [Int]) -> Tensor {
    let operand = context.operands[0]
    let strides = rowMajorStrides(operand.shape)
    var indices: [Int] = []
    indices.reserveCapacity(operand.count)
    forEachCoordinate(permutation.map { operand.shape[$0] }) { coordinate in
      var source = 0
      for (axis, index) in coordinate.enumerated() { source += index * strides[permutation[axis]] }
      indices.append(source)
    }
    return gathered(operand, indices, shape: context.results[0].shape)
  }
}
