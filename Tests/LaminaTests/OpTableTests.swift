import Foundation
import Lamina
import Testing

// Every expected value below is worked out by hand (or is a closed form such as ln 2 or Φ(1)), never by
// running the formula under test a second time.

/// The symbolic batch dimension used throughout.
private let batch = Dim(symbol: "batch")

private func f32(_ shape: Dim...) -> TensorType { TensorType(.f32, shape) }
private func f64(_ shape: Dim...) -> TensorType { TensorType(.f64, shape) }
private func i32(_ shape: Dim...) -> TensorType { TensorType(.i32, shape) }

/// A tensor of `dtype` (f64 unless given) from values listed in row-major order.
private func tensor(_ shape: [Int], _ values: [Double], _ dtype: DType = .f64) -> Tensor {
  Tensor(dtype: dtype, shape: shape, doubles: values)
}

/// The single result type of an op on symbolic types.
private func infer(
  _ op: String, _ operands: [TensorType], _ attributes: [String: Attribute] = [:]
) throws -> TensorType {
  let definition = try #require(OpRegistry.definition(op))
  let types = try definition.inferTypes(operands: operands, attributes: attributes).types
  try #require(types.count == 1)
  return types[0]
}

/// The message and help of the shape error an op raises, or a description of what it returned instead.
private func shapeError(
  _ op: String, _ operands: [TensorType], _ attributes: [String: Attribute] = [:]
) throws -> String {
  let definition = try #require(OpRegistry.definition(op))
  do {
    let types = try definition.inferTypes(operands: operands, attributes: attributes).types
    return "no error; inferred \(types)"
  } catch {
    return error.message + (error.help.map { " (help: \($0))" } ?? "")
  }
}

/// Runs an op's interpreter kernel on concrete tensors.
///
/// The result type comes from the shape rule on the concrete shapes unless `result` is given (for
/// symbolic attributes, whose sizes only the caller knows). Attributes are passed as given, without
/// defaults, as a kernel must fill those in itself.
private func run(
  _ op: String, _ operands: [Tensor], _ attributes: [String: Attribute] = [:],
  result: (dtype: DType, shape: [Int])? = nil
) throws -> Tensor {
  let definition = try #require(OpRegistry.definition(op))
  var results: [(dtype: DType, shape: [Int])] = []
  if let result {
    results = [result]
  } else {
    let types = operands.map { TensorType($0.dtype, $0.shape.map { Dim($0) }) }
    for type in try definition.inferTypes(operands: types, attributes: attributes).types {
      results.append((type.dtype, try type.shape.map { try #require($0.staticValue) }))
    }
  }
  let outputs = try definition.interpret(
    InterpretContext(operands: operands, attributes: attributes, results: results))
  try #require(outputs.count == 1)
  return outputs[0]
}

/// The message of the interpreter error an op raises, or a description of what it returned instead.
private func interpretError(
  _ op: String, _ operands: [Tensor], _ attributes: [String: Attribute] = [:],
  result: (dtype: DType, shape: [Int])? = nil
) throws -> String {
  do {
    return "no error; got \(try run(op, operands, attributes, result: result))"
  } catch let error as InterpretError {
    return error.message
  }
}

/// Checks a tensor's shape and values, within `tolerance` of each expected value.
private func expectValues(
  _ actual: Tensor, _ shape: [Int], _ expected: [Double], tolerance: Double = 1e-12,
  sourceLocation: Testing.SourceLocation = #_sourceLocation
) {
  #expect(actual.shape == shape, sourceLocation: sourceLocation)
  let values = actual.doubles()
  #expect(
    values.count == expected.count, "\(values) vs \(expected)", sourceLocation: sourceLocation)
  for (value, wanted) in zip(values, expected) {
    #expect(
      value.isFinite && Swift.abs(value - wanted) <= tolerance, "\(values) vs \(expected)",
      sourceLocation: sourceLocation)
  }
}

@Suite("Op table")
struct OpTableTests {
  @Test("every op is documented and registered once")
  func documentation() throws {
    #expect(Set(OpRegistry.names).count == OpRegistry.names.count)
    for op in OpRegistry.all {
      #expect(!op.summary.isEmpty, "\(op.name) has no summary")
      #expect(!op.semantics.isEmpty, "\(op.name) has no semantics")
      #expect(!op.shape.description.isEmpty, "\(op.name) has no shape rule description")
    }
    for name in [
      "matmul", "transpose", "permute", "sum", "mean", "max", "softmax", "log_softmax", "reshape",
      "flatten", "broadcast_to", "concat", "slice", "squeeze", "unsqueeze", "mse", "cross_entropy",
      "binary_cross_entropy_with_logits", "l2",
    ] {
      #expect(OpRegistry.definition(name) != nil, "\(name) is missing")
    }
    #expect(
      try #require(OpRegistry.definition("concat")).signature == "concat(inputs...) {axis: int = 0}"
    )
    #expect(
      try #require(OpRegistry.definition("sum")).signature
        == "sum(x) {axes: ints?, keepdims: bool = false}")
  }

  @Test("a kernel called with a result type that does not match throws instead of trapping")
  func malformedKernelCall() throws {
    let a = tensor([2, 2], [1, 2, 3, 4])
    let message = try interpretError("matmul", [a, a], result: (.f64, [3]))
    #expect(message.contains("but the result was declared f64[3]"), "\(message)")
    let inner = try interpretError("matmul", [a, tensor([3], [1, 2, 3])], result: (.f64, [2]))
    #expect(inner.contains("inner dimensions do not match"), "\(inner)")
    let missing = try interpretError("reshape", [a], result: (.f64, [4]))
    #expect(missing.contains("needs the attribute 'shape'"), "\(missing)")
  }
}

@Suite("Elementwise and activation ops")
struct ElementwiseTests {
  @Test func addBroadcasts() throws {
    #expect(try infer("add", [f32(batch, 3), f32(3)]) == f32(batch, 3))
    #expect(try infer("add", [f32(batch, 1), f32(1, 5)]) == f32(batch, 5))
    #expect(try shapeError("add", [f32(batch, 3), f32(4)]).contains("do not broadcast"))
    let sum = try run("add", [tensor([2, 3], [1, 2, 3, 4, 5, 6]), tensor([3], [10, 20, 30])])
    expectValues(sum, [2, 3], [11, 22, 33, 14, 25, 36])
    let column = try run("add", [tensor([2, 1], [1, 2]), tensor([1, 3], [10, 20, 30])])
    expectValues(column, [2, 3], [11, 21, 31, 12, 22, 32])
  }

  @Test func relu() throws {
    expectValues(try run("relu", [tensor([4], [-2, -0.5, 0, 3])]), [4], [0, 0, 0, 3])
  }

  @Test func geluExactAndTanh() throws {
    // gelu(x) = x Φ(x); Φ(1) = 0.8413447460685429, Φ(-1) = 1 - Φ(1).
    let exact = try run("gelu", [tensor([3], [-1, 0, 1])])
    expectValues(exact, [3], [-0.15865525393145707, 0, 0.8413447460685429], tolerance: 1e-15)
    // tanh form at 1: ½ (1 + tanh(√(2/π) · 1.044715)) = 0.8411919906082768 (PyTorch: 0.84119).
    let tanh = try run("gelu", [tensor([3], [-1, 0, 1])], ["approximate": .string("tanh")])
    expectValues(tanh, [3], [-0.15880800939172324, 0, 0.8411919906082768], tolerance: 1e-12)
  }

  @Test func geluRejectsUnknownApproximation() throws {
    let message = try shapeError("gelu", [f32(batch, 4)], ["approximate": .string("erf")])
    #expect(
      message.contains("gelu: approximate must be \"none\" or \"tanh\", got \"erf\""), "\(message)")
    let atRunTime = try interpretError(
      "gelu", [tensor([1], [1])], ["approximate": .string("fast")], result: (.f64, [1]))
    #expect(atRunTime.contains("approximate must be"), "\(atRunTime)")
  }

  @Test func softplusIsStableForLargeInputs() throws {
    // softplus(1000) = 1000 + ln(1 + e^-1000) = 1000 in double precision; softplus(-1000) = e^-1000 ≈ 0.
    let values = try run("softplus", [tensor([3], [1000, -1000, 0])])
    expectValues(values, [3], [1000, 0, M_LN2], tolerance: 1e-15)
  }
}

@Suite("Linear algebra ops")
struct LinearAlgebraTests {
  @Test func matmulShapes() throws {
    #expect(try infer("matmul", [f32(batch, 64), f32(64, 10)]) == f32(batch, 10))
    #expect(try infer("matmul", [f32(2, 1, 3, 4), f32(5, 4, 6)]) == f32(2, 5, 3, 6))
    #expect(try infer("matmul", [f32(batch, 3, 4), f32(4)]) == f32(batch, 3))
    #expect(try infer("matmul", [f32(4), f32(batch, 4, 5)]) == f32(batch, 5))
    #expect(try infer("matmul", [f32(4), f32(4)]) == f32())
    #expect(try infer("matmul", [i32(2, 3), i32(3, 2)]) == i32(2, 2))
  }

  @Test func matmulErrors() throws {
    let inner = try shapeError("matmul", [f32(batch, 64), f32(32, 10)])
    #expect(
      inner.hasPrefix(
        "matmul: inner dimensions do not match: f32[batch, 64] @ f32[32, 10] (64 vs 32)"))
    let symbolic = try shapeError("matmul", [f32(batch, 64), f32(batch, 10)])
    #expect(symbolic.contains("(64 vs batch)"), "\(symbolic)")
    #expect(
      try shapeError("matmul", [f32(2, 3, 4), f32(3, 4, 5)]).contains(
        "batch dimensions do not broadcast"))
    #expect(try shapeError("matmul", [f32(), f32(3)]).contains("rank 1 or more"))
    #expect(try shapeError("matmul", [f32(2, 3), f64(3, 2)]).contains("different dtypes"))
  }

  @Test func matmulValues() throws {
    let a = tensor([2, 2], [1, 2, 3, 4])
    let b = tensor([2, 2], [5, 6, 7, 8])
    // [[1·5 + 2·7, 1·6 + 2·8], [3·5 + 4·7, 3·6 + 4·8]]
    expectValues(try run("matmul", [a, b]), [2, 2], [19, 22, 43, 50])
    // A 2×3 by 3×1 product: [1·1 + 2·2 + 3·3, 4·1 + 5·2 + 6·3].
    let wide = tensor([2, 3], [1, 2, 3, 4, 5, 6])
    expectValues(try run("matmul", [wide, tensor([3, 1], [1, 2, 3])]), [2, 1], [14, 32])
    // Vectors: a row vector times a matrix, a matrix times a column vector, a dot product.
    expectValues(try run("matmul", [tensor([2], [1, 2]), b]), [2], [19, 22])
    expectValues(try run("matmul", [a, tensor([2], [1, 1])]), [2], [3, 7])
    expectValues(try run("matmul", [tensor([2], [1, 2]), tensor([2], [3, 4])]), [], [11])
    // Batch axes broadcast: a [2, 1, 2] against one b [2, 1]: [1·1 + 2·10], [3·1 + 4·10].
    let batched = try run("matmul", [tensor([2, 1, 2], [1, 2, 3, 4]), tensor([2, 1], [1, 10])])
    expectValues(batched, [2, 1, 1], [21, 43])
    // a [1, 1, 2] broadcast against two matrices in b [2, 2, 1].
    let reused = try run(
      "matmul", [tensor([1, 1, 2], [1, 2]), tensor([2, 2, 1], [1, 1, 10, 100])])
    expectValues(reused, [2, 1, 1], [3, 210])
    let integers = try run(
      "matmul", [tensor([1, 2], [1, 2], .i32), tensor([2, 1], [3, 4], .i32)])
    #expect(integers.dtype == .i32)
    expectValues(integers, [1, 1], [11])
  }

  @Test func transposeAndPermuteShapes() throws {
    #expect(try infer("transpose", [f32(batch, 3, 4)]) == f32(batch, 4, 3))
    #expect(
      try infer("transpose", [f32(batch, 3, 4)], ["perm": .ints([2, 0, 1])]) == f32(4, batch, 3))
    #expect(try shapeError("transpose", [f32(5)]).contains("rank 2 or more"))
    #expect(
      try infer("permute", [f32(batch, 3, 4)], ["perm": .ints([2, 0, 1])]) == f32(4, batch, 3))
    #expect(
      try infer("permute", [f32(batch, 3, 4)], ["perm": .ints([-1, 0, 1])]) == f32(4, batch, 3))
    let repeated = try shapeError("permute", [f32(batch, 3, 4)], ["perm": .ints([0, 0, 1])])
    #expect(repeated.contains("name axis 0 twice"), "\(repeated)")
    #expect(
      try shapeError("permute", [f32(batch, 3, 4)], ["perm": .ints([0, 1])]).contains("has rank 3"))
    #expect(
      try shapeError("permute", [f32(batch, 3, 4)], ["perm": .ints([0, 1, 3])]).contains(
        "out of range"))
    #expect(try shapeError("permute", [f32(3, 4)]).contains("needs the attribute 'perm'"))
  }

  @Test func transposeAndPermuteValues() throws {
    let matrix = tensor([2, 3], [1, 2, 3, 4, 5, 6])
    expectValues(try run("transpose", [matrix]), [3, 2], [1, 4, 2, 5, 3, 6])
    // x[i, j, k] = 6i + 2j + k; y[k, i, j] = x[i, j, k].
    let cube = tensor([2, 3, 2], (0..<12).map(Double.init))
    let permuted = try run("permute", [cube], ["perm": .ints([2, 0, 1])])
    expectValues(permuted, [2, 2, 3], [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11])
    let swapped = try run("transpose", [cube])
    // y[i, k, j] = x[i, j, k]
    expectValues(swapped, [2, 2, 3], [0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11])
  }
}

@Suite("Reduction ops")
struct ReductionTests {
  @Test func reductionShapes() throws {
    #expect(try infer("sum", [f32(batch, 3, 4)], ["axes": .ints([1])]) == f32(batch, 4))
    #expect(try infer("sum", [f32(batch, 3, 4)], ["axes": .ints([-1])]) == f32(batch, 3))
    #expect(
      try infer("mean", [f32(batch, 3, 4)], ["axes": .ints([1]), "keepdims": .bool(true)])
        == f32(batch, 1, 4))
    #expect(try infer("max", [f32(batch, 3, 4)]) == f32())
    #expect(try infer("sum", [f32(batch, 3)], ["keepdims": .bool(true)]) == f32(1, 1))
    #expect(try infer("sum", [f32(batch, 3)], ["axes": .ints([])]) == f32(batch, 3))
    #expect(try infer("sum", [i32(batch, 3)], ["axes": .int(0)]) == i32(3))
  }

  @Test func reductionErrors() throws {
    let range = try shapeError("sum", [f32(batch, 3, 4)], ["axes": .ints([3])])
    #expect(range.contains("axis 3 is out of range for f32[batch, 3, 4] of rank 3"), "\(range)")
    let repeated = try shapeError("max", [f32(batch, 3, 4)], ["axes": .ints([1, -2])])
    #expect(repeated.contains("name axis 1 twice"), "\(repeated)")
    #expect(try shapeError("mean", [i32(batch, 3)]).contains("floating-point"))
    #expect(try shapeError("sum", [f32(3)], ["axis": .int(0)]).contains("did you mean 'axes'"))
  }

  @Test func reductionValues() throws {
    let x = tensor([2, 3], [1, 2, 3, 4, 5, 6])
    expectValues(try run("sum", [x], ["axes": .ints([0])]), [3], [5, 7, 9])
    expectValues(try run("sum", [x], ["axes": .ints([1])]), [2], [6, 15])
    expectValues(
      try run("sum", [x], ["axes": .ints([1]), "keepdims": .bool(true)]), [2, 1], [6, 15])
    expectValues(try run("sum", [x]), [], [21])
    expectValues(try run("mean", [x], ["axes": .ints([-1])]), [2], [2, 5])
    expectValues(try run("mean", [x]), [], [3.5])
    expectValues(try run("max", [x], ["axes": .ints([0])]), [3], [4, 5, 6])
    expectValues(
      try run("max", [tensor([2, 3], [-1, -7, -3, 2, 9, 0])], ["axes": .ints([1])]), [2], [-1, 9])
    // x[i, j, k] = 4i + 2j + k over [2, 2, 2]; reducing axes 0 and 2 leaves j:
    // j = 0: 0 + 1 + 4 + 5, j = 1: 2 + 3 + 6 + 7.
    let cube = tensor([2, 2, 2], (0..<8).map(Double.init))
    expectValues(try run("sum", [cube], ["axes": .ints([0, 2])]), [2], [10, 18])
    let integers = try run("sum", [tensor([3], [1, 2, 3], .i32)])
    #expect(integers.dtype == .i32)
    expectValues(integers, [], [6])
  }

  @Test func reducingAnEmptyAxis() throws {
    let empty = tensor([2, 0], [])
    expectValues(try run("sum", [empty], ["axes": .ints([1])]), [2], [0, 0])
    let message = try interpretError("max", [empty], ["axes": .ints([1])])
    #expect(
      message.contains("max: cannot reduce over axis 1 of f64[2, 0]: it is empty"), "\(message)")
  }

  @Test func softmaxAndLogSoftmax() throws {
    #expect(try infer("softmax", [f32(batch, 10)]) == f32(batch, 10))
    #expect(try infer("log_softmax", [f32(batch, 10)], ["axis": .int(0)]) == f32(batch, 10))
    #expect(try shapeError("softmax", [i32(batch, 10)]).contains("floating-point"))
    #expect(try shapeError("softmax", [f32(batch, 10)], ["axis": .int(2)]).contains("out of range"))
    #expect(try shapeError("log_softmax", [f32()]).contains("rank 1 or more"))

    // e^0 : e^(ln 3) = 1 : 3, so the probabilities are 1/4 and 3/4.
    let logits = tensor([2], [0, log(3)])
    expectValues(try run("softmax", [logits]), [2], [0.25, 0.75], tolerance: 1e-15)
    expectValues(try run("log_softmax", [logits]), [2], [-log(4), log(0.75)], tolerance: 1e-15)
    // Along axis 0: columns [0, ln 3] and [0, 0].
    let columns = try run("softmax", [tensor([2, 2], [0, 0, log(3), 0])], ["axis": .int(0)])
    expectValues(columns, [2, 2], [0.25, 0.5, 0.75, 0.5], tolerance: 1e-15)
  }

  @Test func softmaxIsStableForLargeLogits() throws {
    // Without subtracting the maximum, e^1000 overflows to infinity and the results are NaN.
    let large = tensor([2, 2], [1000, 1000, 1000, 0])
    expectValues(try run("softmax", [large]), [2, 2], [0.5, 0.5, 1, 0], tolerance: 1e-15)
    expectValues(
      try run("log_softmax", [large]), [2, 2], [-M_LN2, -M_LN2, 0, -1000], tolerance: 1e-12)
    let single = try run("softmax", [tensor([3], [1000, 1000, 1000], .f32)])
    expectValues(single, [3], [1.0 / 3, 1.0 / 3, 1.0 / 3], tolerance: 1e-7)
  }
}

@Suite("Shape ops")
struct ShapeOpTests {
  @Test func reshapeShapes() throws {
    #expect(
      try infer("reshape", [f32(batch, 8, 8)], ["shape": .dims([batch, -1])]) == f32(batch, 64))
    #expect(
      try infer("reshape", [f32(batch, 8, 8)], ["shape": .dims([-1, 8])]) == f32(8 * batch, 8))
    #expect(try infer("reshape", [f32(batch, 8)], ["shape": .dims([2, -1])]) == f32(2, 4 * batch))
    #expect(
      try infer("reshape", [f32(batch, 64)], ["shape": .dims([batch, 4, 16])]) == f32(batch, 4, 16))
    #expect(try infer("reshape", [f32(2, 3)], ["shape": .ints([3, 2])]) == f32(3, 2))
  }

  @Test func reshapeErrors() throws {
    let count = try shapeError("reshape", [f32(batch, 8, 8)], ["shape": .dims([batch, 60])])
    #expect(count.contains("(64*batch elements) to [batch, 60] (60*batch elements)"), "\(count)")
    let divisible = try shapeError("reshape", [f32(batch, 10)], ["shape": .dims([-1, 3])])
    #expect(divisible.contains("10*batch elements are not divisible by 3"), "\(divisible)")
    let symbol = try shapeError("reshape", [f32(4, 8)], ["shape": .dims([-1, batch])])
    #expect(symbol.contains("32 elements are not divisible by batch"), "\(symbol)")
    let twice = try shapeError("reshape", [f32(4, 8)], ["shape": .dims([-1, -1])])
    #expect(twice.contains("more than one -1"), "\(twice)")
    #expect(
      try shapeError("reshape", [f32(4, 8)], ["shape": .dims([-2, -16])]).contains(
        "negative dimension"))
    #expect(
      try shapeError("reshape", [f32(4, 0)], ["shape": .dims([0, -1])]).contains("multiply to 0"))
    let huge = try shapeError(
      "reshape", [f32(4, 8)], ["shape": .dims([99_999_999_999, 99_999_999_999])])
    #expect(huge.contains("too large"), "\(huge)")
  }

  @Test func reshapeValues() throws {
    let x = tensor([2, 3], [1, 2, 3, 4, 5, 6])
    expectValues(try run("reshape", [x], ["shape": .dims([3, -1])]), [3, 2], [1, 2, 3, 4, 5, 6])
    // A symbolic target: the declared result supplies batch = 2.
    let images = tensor([2, 2, 2], (0..<8).map(Double.init))
    let flat = try run("reshape", [images], ["shape": .dims([batch, -1])], result: (.f64, [2, 4]))
    expectValues(flat, [2, 4], (0..<8).map(Double.init))
    let wrong = try interpretError(
      "reshape", [images], ["shape": .dims([batch, 3])], result: (.f64, [2, 3]))
    #expect(wrong.contains("cannot reshape f64[2, 2, 2]"), "\(wrong)")
  }

  @Test func flatten() throws {
    #expect(try infer("flatten", [f32(batch, 4, 4)]) == f32(batch, 16))
    #expect(try infer("flatten", [f32(batch, 4, 4)], ["start_axis": .int(0)]) == f32(16 * batch))
    #expect(
      try infer("flatten", [f32(batch, 2, 3, 4)], ["start_axis": .int(1), "end_axis": .int(2)])
        == f32(batch, 6, 4))
    #expect(try infer("flatten", [f32(batch, 5)]) == f32(batch, 5))
    let vector = try shapeError("flatten", [f32(batch)])
    #expect(
      vector.contains("axis 1 is out of range") && vector.contains("start_axis: 0"), "\(vector)")
    let reversed = try shapeError(
      "flatten", [f32(batch, 2, 3)], ["start_axis": .int(2), "end_axis": .int(1)])
    #expect(reversed.contains("start_axis 2 comes after end_axis 1"), "\(reversed)")
    expectValues(try run("flatten", [tensor([2, 1, 2], [1, 2, 3, 4])]), [2, 2], [1, 2, 3, 4])
  }

  @Test func broadcastTo() throws {
    #expect(try infer("broadcast_to", [f32(3)], ["shape": .dims([batch, 3])]) == f32(batch, 3))
    #expect(
      try infer("broadcast_to", [f32(batch, 1)], ["shape": .dims([batch, 4])]) == f32(batch, 4))
    let mismatch = try shapeError("broadcast_to", [f32(3)], ["shape": .dims([4])])
    #expect(mismatch.contains("axis 0 has size 3, which is neither 4 nor 1"), "\(mismatch)")
    #expect(
      try shapeError("broadcast_to", [f32(2, 3)], ["shape": .dims([3])]).contains("fewer axes"))
    // numpy's broadcast_to is one-directional: a 3 does not shrink to a 1.
    let shrink = try shapeError("broadcast_to", [f32(3)], ["shape": .dims([1])])
    #expect(shrink.contains("axis 0 has size 3, which cannot shrink to 1"), "\(shrink)")

    expectValues(
      try run("broadcast_to", [tensor([3], [1, 2, 3])], ["shape": .dims([2, 3])]), [2, 3],
      [1, 2, 3, 1, 2, 3])
    expectValues(
      try run("broadcast_to", [tensor([2, 1], [1, 2])], ["shape": .dims([2, 3])]), [2, 3],
      [1, 1, 1, 2, 2, 2])
    let symbolic = try run(
      "broadcast_to", [tensor([2], [5, 6])], ["shape": .dims([batch, 2])], result: (.f64, [3, 2]))
    expectValues(symbolic, [3, 2], [5, 6, 5, 6, 5, 6])
  }

  @Test func concat() throws {
    #expect(
      try infer("concat", [f32(batch, 3), f32(batch, 5)], ["axis": .int(1)]) == f32(batch, 8))
    #expect(try infer("concat", [f32(batch, 3), f32(batch, 3)]) == f32(2 * batch, 3))
    #expect(
      try infer("concat", [f32(batch, 3), f32(batch, 3)], ["axis": .int(-1)]) == f32(batch, 6))
    #expect(try infer("concat", [f32(batch, 3)]) == f32(batch, 3))
    let mixed = try shapeError("concat", [f32(batch, 3), f32(4, 3)])
    #expect(mixed.contains("would be batch + 4, which Lamina cannot represent"), "\(mixed)")
    let other = try shapeError("concat", [f32(batch, 3), f32(batch, 5)])
    #expect(other.contains("axis 1 differs") && other.contains("along axis 1?"), "\(other)")
    #expect(
      try shapeError("concat", [f32(batch, 3), f32(batch, 3, 1)]).contains("different ranks"))
    #expect(try shapeError("concat", [f32(3), f64(3)]).contains("different dtypes"))
    #expect(try shapeError("concat", []).contains("at least 1 operand"))

    let rows = try run("concat", [tensor([1, 2], [1, 2]), tensor([2, 2], [3, 4, 5, 6])])
    expectValues(rows, [3, 2], [1, 2, 3, 4, 5, 6])
    let columns = try run(
      "concat",
      [tensor([2, 1], [1, 2]), tensor([2, 2], [3, 4, 5, 6]), tensor([2, 1], [7, 8])],
      ["axis": .int(1)])
    expectValues(columns, [2, 4], [1, 3, 4, 7, 2, 5, 6, 8])
  }

  @Test func sliceShapes() throws {
    let sequence = f32(batch, 7, 16)
    #expect(
      try infer("slice", [sequence], ["index": .slices([.all, .index(-1), .all])]) == f32(batch, 16)
    )
    #expect(
      try infer("slice", [sequence], ["index": .slices([.all, .index(-1)])]) == f32(batch, 16))
    #expect(try infer("slice", [sequence], ["index": .slices([.index(0)])]) == f32(7, 16))
    let x = f32(batch, 7)
    func sliced(_ start: Int?, _ stop: Int?, _ step: Int = 1) throws -> TensorType {
      try infer(
        "slice", [x], ["index": .slices([.all, .range(start: start, stop: stop, step: step)])])
    }
    #expect(try sliced(2, 5) == f32(batch, 3))
    #expect(try sliced(nil, nil, -1) == f32(batch, 7))
    #expect(try sliced(nil, nil, 2) == f32(batch, 4))  // 0, 2, 4, 6
    #expect(try sliced(5, 2) == f32(batch, 0))
    #expect(try sliced(-3, nil) == f32(batch, 3))
    #expect(try sliced(1, 100) == f32(batch, 6))
    #expect(try sliced(5, 1, -2) == f32(batch, 2))  // 5, 3
    #expect(try sliced(-100, 3) == f32(batch, 3))
    #expect(try sliced(nil, -8, -1) == f32(batch, 7))  // 6 down to 0
    // A static range of a symbolic axis has a static size.
    #expect(
      try infer("slice", [x], ["index": .slices([.range(start: 0, stop: 4, step: 1)])]) == f32(4, 7)
    )
    #expect(
      try infer("slice", [x], ["index": .slices([.range(start: 1, stop: 8, step: 3)])]) == f32(3, 7)
    )
    #expect(
      try infer("slice", [x], ["index": .slices([.range(start: 0, stop: nil, step: 1)])])
        == f32(batch, 7))
  }

  @Test func sliceErrors() throws {
    let x = f32(batch, 7, 16)
    let index = try shapeError("slice", [x], ["index": .slices([.all, .index(7)])])
    #expect(
      index.contains("slice: index 7 is out of range for axis 1 of size 7 in f32[batch, 7, 16]"),
      "\(index)")
    #expect(
      try shapeError("slice", [x], ["index": .slices([.all, .index(-8)])]).contains("out of range"))
    let reversed = try shapeError(
      "slice", [x], ["index": .slices([.range(start: nil, stop: nil, step: -1)])])
    #expect(
      reversed.contains("negative step -1") && reversed.contains("symbolic axis 0"), "\(reversed)")
    let negative = try shapeError(
      "slice", [x], ["index": .slices([.range(start: -2, stop: nil, step: 1)])])
    #expect(negative.contains("needs non-negative bounds and an explicit stop"), "\(negative)")
    let open = try shapeError(
      "slice", [x], ["index": .slices([.range(start: 2, stop: nil, step: 1)])])
    #expect(open.contains("explicit stop"), "\(open)")
    let step = try shapeError(
      "slice", [x], ["index": .slices([.all, .range(start: 0, stop: 4, step: 0)])])
    #expect(step.contains("step 0"), "\(step)")
    let many = try shapeError("slice", [f32(3, 4)], ["index": .slices([.all, .all, .index(0)])])
    #expect(many.contains("too many indices"), "\(many)")
  }

  @Test func sliceValues() throws {
    // x[i, j] = 4i + j over [3, 4].
    let x = tensor([3, 4], (0..<12).map(Double.init))
    func sliced(_ entries: [SliceIndex]) throws -> Tensor {
      try run("slice", [x], ["index": .slices(entries)])
    }
    expectValues(try sliced([.index(1)]), [4], [4, 5, 6, 7])
    expectValues(try sliced([.all, .index(-1)]), [3], [3, 7, 11])
    expectValues(try sliced([.index(2), .index(0)]), [], [8])
    expectValues(
      try sliced([.range(start: nil, stop: nil, step: -1), .range(start: 1, stop: 3, step: 1)]),
      [3, 2],
      [9, 10, 5, 6, 1, 2])
    expectValues(
      try sliced([.range(start: 0, stop: 2, step: 1), .range(start: nil, stop: nil, step: 2)]),
      [2, 2], [0, 2, 4, 6])
    expectValues(try sliced([.index(-1), .range(start: nil, stop: nil, step: -2)]), [2], [11, 9])
    expectValues(try sliced([.range(start: 1, stop: 100, step: 1), .index(0)]), [2], [4, 8])
    expectValues(try sliced([.range(start: 2, stop: 0, step: 1)]), [0, 4], [])
  }

  @Test func sliceOfASymbolicAxisIsCheckedAtRunTime() throws {
    let x = tensor([3, 4], (0..<12).map(Double.init))
    // Typed against f32[batch, 4], index 5 was accepted; with batch = 3 it is out of range.
    let index = try interpretError(
      "slice", [x], ["index": .slices([.index(5)])], result: (.f64, [4]))
    #expect(index.contains("index 5 is out of range for axis 0 of size 3"), "\(index)")
    // [0:4] was typed as 4 rows; python clamps to the 3 there are, which breaks the declared type.
    let short = try interpretError(
      "slice", [x], ["index": .slices([.range(start: 0, stop: 4, step: 1)])],
      result: (.f64, [4, 4]))
    #expect(
      short.contains("0:4 on axis 0 of f64[3, 4] selects 3 elements, but its type promised 4"),
      "\(short)")
    let fits = try run(
      "slice", [x], ["index": .slices([.range(start: 1, stop: 3, step: 1)])],
      result: (.f64, [2, 4]))
    expectValues(fits, [2, 4], [4, 5, 6, 7, 8, 9, 10, 11])
  }

  @Test func squeezeAndUnsqueeze() throws {
    #expect(try infer("squeeze", [f32(batch, 1, 3)], ["axes": .ints([1])]) == f32(batch, 3))
    #expect(try infer("squeeze", [f32(batch, 1, 3, 1)], ["axes": .ints([-1, 1])]) == f32(batch, 3))
    let notOne = try shapeError("squeeze", [f32(batch, 1, 3)], ["axes": .ints([2])])
    #expect(notOne.contains("axis 2 of f32[batch, 1, 3] has size 3, not 1"), "\(notOne)")
    #expect(
      try shapeError("squeeze", [f32(batch, 1, 3)], ["axes": .ints([0])]).contains(
        "has size batch, not 1"))
    #expect(try shapeError("squeeze", [f32(batch, 1)], ["axes": .ints([1, -1])]).contains("twice"))

    #expect(try infer("unsqueeze", [f32(batch, 3)], ["axes": .ints([1])]) == f32(batch, 1, 3))
    #expect(
      try infer("unsqueeze", [f32(batch, 3)], ["axes": .ints([0, -1])]) == f32(1, batch, 3, 1))
    #expect(try infer("unsqueeze", [f32()], ["axes": .ints([0])]) == f32(1))
    #expect(
      try shapeError("unsqueeze", [f32(batch, 3)], ["axes": .ints([4])]).contains("out of range"))

    expectValues(try run("squeeze", [tensor([2, 1], [1, 2])], ["axes": .ints([1])]), [2], [1, 2])
    expectValues(
      try run("unsqueeze", [tensor([2], [1, 2])], ["axes": .ints([0])]), [1, 2], [1, 2])
  }
}

@Suite("Loss ops")
struct LossTests {
  @Test func mse() throws {
    #expect(try infer("mse", [f32(batch, 1), f32(batch, 1)]) == f32())
    let mismatch = try shapeError("mse", [f32(batch, 1), f32(batch)])
    #expect(
      mismatch.contains("mse: prediction f32[batch, 1] and target f32[batch] have different shapes")
    )
    #expect(mismatch.contains("does not broadcast"), "\(mismatch)")
    #expect(try shapeError("mse", [i32(3), i32(3)]).contains("floating-point"))
    // ((1 - 1)² + (2 - 4)² + (3 - 0)²) / 3 = 13/3
    let loss = try run("mse", [tensor([3], [1, 2, 3]), tensor([3], [1, 4, 0])])
    expectValues(loss, [], [13.0 / 3], tolerance: 1e-15)
  }

  @Test func crossEntropyShapes() throws {
    #expect(try infer("cross_entropy", [f32(batch, 10), i32(batch)]) == f32())
    #expect(try infer("cross_entropy", [f64(batch, 10, 5), i32(batch, 5)]) == f64())
    let floatLabels = try shapeError("cross_entropy", [f32(batch, 10), f32(batch)])
    #expect(
      floatLabels.contains("labels must be integer class indices, got f32[batch]"), "\(floatLabels)"
    )
    let oneHot = try shapeError("cross_entropy", [f32(batch, 10), i32(batch, 10)])
    #expect(oneHot.contains("expected labels of shape [batch]"), "\(oneHot)")
    #expect(try shapeError("cross_entropy", [f32(10), i32()]).contains("rank 2 or more"))
    #expect(
      try shapeError("cross_entropy", [i32(batch, 10), i32(batch)]).contains("floating-point"))
  }

  @Test func crossEntropyValues() throws {
    // Row 0: softmax [1/4, 3/4], label 1: -ln(3/4). Row 1: [1/2, 1/2], label 0: ln 2.
    // Mean: (ln(4/3) + ln 2) / 2 = ln(8/3) / 2.
    let logits = tensor([2, 2], [0, log(3), 0, 0])
    let labels = tensor([2], [1, 0], .i32)
    expectValues(
      try run("cross_entropy", [logits, labels]), [], [log(8.0 / 3) / 2], tolerance: 1e-15)
    // The same two positions with the class axis in the middle: logits [1, 2 classes, 2 positions].
    let spatial = tensor([1, 2, 2], [0, 0, log(3), 0])
    let spatialLabels = tensor([1, 2], [1, 0], .i32)
    expectValues(
      try run("cross_entropy", [spatial, spatialLabels]), [], [log(8.0 / 3) / 2], tolerance: 1e-15)
  }

  @Test func crossEntropyIsStableForLargeLogits() throws {
    // -log_softmax([1000, 0])[0] = ln(1 + e^-1000) ≈ 0, and [1] = 1000 + ln(1 + e^-1000) ≈ 1000.
    let logits = tensor([2, 2], [1000, 0, 1000, 0], .f32)
    let loss = try run("cross_entropy", [logits, tensor([2], [0, 1], .i32)])
    #expect(loss.dtype == .f32)
    expectValues(loss, [], [500])
  }

  @Test func crossEntropyRejectsLabelsOutOfRange() throws {
    let logits = tensor([2, 3], [0, 0, 0, 0, 0, 0])
    let high = try interpretError("cross_entropy", [logits, tensor([2], [0, 3], .i32)])
    #expect(
      high.contains("label 3 at position [1] is out of range for 3 classes (valid: 0 to 2)"),
      "\(high)")
    let negative = try interpretError("cross_entropy", [logits, tensor([2], [-1, 0], .i32)])
    #expect(negative.contains("label -1 at position [0]"), "\(negative)")
  }

  @Test func binaryCrossEntropyWithLogits() throws {
    #expect(try infer("binary_cross_entropy_with_logits", [f32(batch, 1), f32(batch, 1)]) == f32())
    #expect(
      try shapeError("binary_cross_entropy_with_logits", [f32(batch, 1), f32(batch)]).contains(
        "different shapes"))
    // x = 0: -ln σ(0) = ln 2 whatever the target. x = 2, t = 1: -ln σ(2) = ln(1 + e^-2).
    // x = ±1000 with the matching target: the loss is e^-1000 ≈ 0; x = 1000, t = 0: 1000.
    let loss = try run(
      "binary_cross_entropy_with_logits",
      [tensor([5], [0, 2, 1000, -1000, 1000]), tensor([5], [1, 1, 1, 0, 0])])
    expectValues(loss, [], [(M_LN2 + log(1 + exp(-2.0)) + 1000) / 5], tolerance: 1e-12)
    // Soft targets: x = 0, t = 0.3 is still ln 2.
    let soft = try run("binary_cross_entropy_with_logits", [tensor([1], [0]), tensor([1], [0.3])])
    expectValues(soft, [], [M_LN2], tolerance: 1e-15)
  }

  @Test func l2() throws {
    #expect(try infer("l2", [f32(64, 10), f32(10)]) == f32())
    #expect(try shapeError("l2", [i32(3)]).contains("floating-point"))
    #expect(try shapeError("l2", [f32(3), f64(3)]).contains("different dtypes"))
    // 1² + 2² + 3², with no ½ factor.
    expectValues(try run("l2", [tensor([2], [1, -2]), tensor([1, 1], [3])]), [], [14])
  }
}
