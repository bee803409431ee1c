import LaminaSupport

/// numpy broadcasting of two shapes: align from the right; equal dims match, a 1 stretches.
public func broadcastShapes(_ a: [Dim], _ b: [Dim]) -> [Dim]? {
  let rank = max(a.count, b.count)
  var result: [Dim] = []
  for offset in (0..<rank).reversed() {
    let dimA = offset < a.count ? a[a.count - 1 - offset] : Dim(1)
    let dimB = offset < b.count ? b[b.count - 1 - offset] : Dim(1)
    if dimA == dimB || dimB == Dim(1) {
      result.append(dimA)
    } else if dimA == Dim(1) {
      result.append(dimB)
    } else {
      return nil
    }
  }
  return result
}

/// The shape rule of broadcasting elementwise ops: the operands broadcast, and share a dtype.
func broadcastResult(_ context: ShapeContext, dtype: DType? = nil) throws(ShapeError) -> TensorType
{
  let common = try context.commonDType()
  var shape = context.operands[0].shape
  for operand in context.operands.dropFirst() {
    guard let next = broadcastShapes(shape, operand.shape) else {
      throw ShapeError(
        "\(context.op): shapes \(context.operands.map(\.description).joined(separator: " and ")) do not broadcast",
        help: "trailing dimensions must be equal or 1")
    }
    shape = next
  }
  return TensorType(dtype ?? common, shape)
}

/// Row-major strides of a concrete shape.
public func rowMajorStrides(_ shape: [Int]) -> [Int] {
  var strides = [Int](repeating: 1, count: shape.count)
  var running = 1
  for axis in stride(from: shape.count - 1, through: 0, by: -1) {
    strides[axis] = running
    running *= shape[axis]
  }
  return strides
}

/// Maps each flat index of `outputShape` to the flat index of an operand broadcast to it.
func broadcastIndexMap(from shape: [Int], to outputShape: [Int]) -> [Int] {
  let count = outputShape.reduce(1, *)
  var map = [Int](repeating: 0, count: count)
  map.withUnsafeMutableBufferPointer { map in
    writeBroadcastIndices(from: shape, to: outputShape, offset: 0, into: map)
  }
  return map
}

/// Writes `offset` plus the flat index of an operand of `shape` broadcast to `outputShape` for each
/// flat index of `outputShape`. Plain loops over buffers: the interpreter runs this for operands of
/// every broadcasting op, in debug builds too.
private func writeBroadcastIndices(
  from shape: [Int], to outputShape: [Int], offset: Int, into map: UnsafeMutableBufferPointer<Int>
) {
  let count = map.count
  if shape == outputShape {
    var flat = 0
    while flat < count {
      map[flat] = offset + flat
      flat += 1
    }
    return
  }
  let rank = outputShape.count
  let rankOffset = rank - shape.count
  // The operand's stride along each result axis: 0 where it is broadcast.
  var strides = [Int](repeating: 0, count: rank)
  for (axis, stride) in rowMajorStrides(shape).enumerated() where shape[axis] != 1 {
    strides[axis + rankOffset] = stride
  }
  var coordinate = [Int](repeating: 0, count: rank)
  strides.withUnsafeBufferPointer { strides in
    outputShape.withUnsafeBufferPointer { outputShape in
      coordinate.withUnsafeMutableBufferPointer { coordinate in
        var source = offset
        var flat = 0
        while flat < count {
          map[flat] = source
          // Advance the row-major coordinate, and the source index with it.
          var axis = rank - 1
          while axis >= 0 {
            coordinate[axis] += 1
            source += strides[axis]
            if coordinate[axis] < outputShape[axis] { break }
            source -= coordinate[axis] * strides[axis]
            coordinate[axis] = 0
            axis -= 1
          }
          flat += 1
        }
      }
    }
  }
}

/// Applies `body` elementwise over operands broadcast to the result shape.
///
/// Every binary op the interpreter meets runs this loop, in debug builds too (the tests), so it works
/// on buffers with plain loops.
func interpretBroadcasting(_ context: InterpretContext, _ body: ([Double]) -> Double) -> Tensor {
  let outputShape = context.results[0].shape
  let count = outputShape.reduce(1, *)
  let operandCount = context.operands.count
  // The operands' values one after another, and for each operand where each result element reads.
  var values: [Double] = []
  var sources = [Int](repeating: 0, count: operandCount * count)
  sources.withUnsafeMutableBufferPointer { sources in
    for (index, operand) in context.operands.enumerated() {
      let segment = UnsafeMutableBufferPointer(
        rebasing: sources[(index * count)..<((index + 1) * count)])
      writeBroadcastIndices(
        from: operand.shape, to: outputShape, offset: values.count, into: segment)
      values += operand.doubles()
    }
  }
  var output = [Double](repeating: 0, count: count)
  var arguments = [Double](repeating: 0, count: operandCount)
  values.withUnsafeBufferPointer { values in
    sources.withUnsafeBufferPointer { sources in
      output.withUnsafeMutableBufferPointer { output in
        var flat = 0
        while flat < count {
          var operand = 0
          while operand < operandCount {
            arguments[operand] = values[sources[operand * count + flat]]
            operand += 1
          }
          output[flat] = body(arguments)
          flat += 1
        }
      }
    }
  }
  return context.result(0, output)
}

/// Visits every coordinate of `shape` in row-major order (nothing when a dimension is 0).
func forEachCoordinate(_ shape: [Int], _ body: ([Int]) throws -> Void) rethrows {
  if shape.contains(0) { return }
  var coordinate = [Int](repeating: 0, count: shape.count)
  while true {
    try body(coordinate)
    // Advance like an odometer; finished when the carry falls off the first axis.
    var axis = shape.count - 1
    while axis >= 0 {
      coordinate[axis] += 1
      if coordinate[axis] < shape[axis] { break }
      coordinate[axis] = 0
      axis -= 1
    }
    if axis < 0 { return }
  }
}

/// The flat indices of every line of `shape` along `axis`, each line in order along the axis.
///
/// Softmax and cross-entropy work one line at a time: for `[2, 3]` along axis 1 the lines are
/// `[0, 1, 2]` and `[3, 4, 5]`; along axis 0 they are `[0, 3]`, `[1, 4]` and `[2, 5]`.
func lines(of shape: [Int], along axis: Int) -> [[Int]] {
  let outer = shape[..<axis].reduce(1, *)
  let length = shape[axis]
  let inner = shape[(axis + 1)...].reduce(1, *)
  var result: [[Int]] = []
  for outerIndex in 0..<outer {
    for innerIndex in 0..<inner {
      result.append((0..<length).map { (outerIndex * length + $0) * inner + innerIndex })
    }
  }
  return result
}

extension ShapeContext {
  /// A list of axes in `-rank..<rank`, made non-negative, in the order given; naming an axis twice is an
  /// error (after normalizing, so `[1, -1]` of a rank-2 operand repeats axis 1).
  public func axes(_ axes: [Int], rank: Int, operand: String = "its operand") throws(ShapeError)
    -> [Int]
  {
    var normalized: [Int] = []
    for axis in axes {
      let value = try self.axis(axis, rank: rank, operand: operand)
      guard !normalized.contains(value) else {
        throw ShapeError("\(op): axes \(axes) name axis \(value) twice (for \(operand))")
      }
      normalized.append(value)
    }
    return normalized
  }
}

extension InterpretContext {
  /// Checks a kernel call against the op's own signature and shape rule on the concrete operand shapes,
  /// and returns the shape context a shape rule would see (attribute defaults filled in).
  ///
  /// The interpreter normally runs verified graphs, but kernels are also called on their own (tests,
  /// constant folding), and a malformed call must throw rather than index out of range. Running the
  /// shape rule again is the one validation that cannot drift from the op's definition. With
  /// `comparingShapes` false only the result count and dtypes are compared, for kernels that explain a
  /// shape mismatch themselves (`slice` on a symbolic axis).
  func checked(_ op: String, comparingShapes: Bool = true) throws(InterpretError) -> ShapeContext {
    guard let definition = OpRegistry.definition(op) else {
      throw InterpretError("there is no op named '\(op)'")
    }
    let operandTypes = operands.map { TensorType($0.dtype, $0.shape.map { Dim($0) }) }
    let inferred: (types: [TensorType], attributes: [String: Attribute])
    do {
      inferred = try definition.inferTypes(operands: operandTypes, attributes: attributes)
    } catch {
      throw InterpretError(error.message)
    }
    let declared = results.map { TensorType($0.dtype, $0.shape.map { Dim($0) }) }
    let matches =
      comparingShapes
      ? declared == inferred.types
      : declared.map(\.dtype) == inferred.types.map(\.dtype)
    guard matches else {
      throw InterpretError(
        "\(op): operands \(operandTypes.map(\.description).joined(separator: ", ")) give "
          + "\(inferred.types.map(\.description).joined(separator: ", ")), but the result was declared "
          + (declared.isEmpty ? "as nothing" : declared.map(\.description).joined(separator: ", ")))
    }
    return ShapeContext(op: op, operands: operandTypes, attributes: inferred.attributes)
  }
}

/// The product of dimensions, or nil when the factor overflows `Int`.
///
/// `[Dim].product` traps on overflow, and a target shape is user input (`shape: [99999999999, 99999999999]`),
/// so shape rules multiply with this and report the overflow instead.
func checkedProduct(_ dims: [Dim]) -> Dim? {
  var factor = 1
  var symbols: [String] = []
  for dim in dims {
    let (product, overflow) = factor.multipliedReportingOverflow(by: dim.factor)
    if overflow { return nil }
    factor = product
    symbols += dim.symbols
  }
  return Dim(factor: factor, symbols: symbols)
}

// MARK: Exact integers and element moves

// The interpreter computes in `Double`, which holds every i32 but not every i64 (past 2^53 values
// round). Integer ops and ops that only move elements therefore work on the exact values instead.

/// The elements of an integer tensor as `Int64`, exactly.
func integerValues(_ tensor: Tensor) -> [Int64] {
  switch tensor.dtype {
  case .i32: return tensor.scalars(as: Int32.self).map(Int64.init)
  case .i64: return tensor.scalars(as: Int64.self)
  case .f32, .f64: preconditionFailure("integerValues of a \(tensor.dtype) tensor")
  }
}

/// An integer tensor from `Int64` values, each wrapped (two's complement) to the dtype's width: the
/// i32 result of an operation computed in `Int64` is then the one 32-bit wrapping arithmetic gives.
func integerTensor(_ dtype: DType, _ shape: [Int], _ values: [Int64]) -> Tensor {
  switch dtype {
  case .i32: return Tensor(shape: shape, scalars: values.map { Int32(truncatingIfNeeded: $0) })
  case .i64: return Tensor(shape: shape, scalars: values)
  case .f32, .f64: preconditionFailure("integerTensor of dtype \(dtype)")
  }
}

/// Applies `body` elementwise over integer operands broadcast to the result shape, exactly.
func interpretBroadcastingIntegers(_ context: InterpretContext, _ body: ([Int64]) -> Int64)
  -> Tensor
{
  let outputShape = context.results[0].shape
  let operandValues = context.operands.map(integerValues)
  let maps = context.operands.map { broadcastIndexMap(from: $0.shape, to: outputShape) }
  let count = outputShape.reduce(1, *)
  var output = [Int64](repeating: 0, count: count)
  var arguments = [Int64](repeating: 0, count: context.operands.count)
  for flat in 0..<count {
    for operand in 0..<operandValues.count {
      arguments[operand] = operandValues[operand][maps[operand][flat]]
    }
    output[flat] = body(arguments)
  }
  return integerTensor(context.results[0].dtype, outputShape, output)
}

/// A tensor of `shape` whose element i is element `picks[i].index` of `sources[picks[i].source]`,
/// copied byte for byte (exact for every dtype). Every source must have `dtype`.
func gathered(
  _ sources: [Tensor], _ picks: [(source: Int, index: Int)], dtype: DType, shape: [Int]
) -> Tensor {
  var result = Tensor(zeros: dtype, shape: shape)
  let size = dtype.byteSize
  result.withUnsafeMutableBytes { output in
    for (position, pick) in picks.enumerated() {
      sources[pick.source].withUnsafeBytes { input in
        let from = input.baseAddress! + pick.index * size
        (output.baseAddress! + position * size).copyMemory(from: from, byteCount: size)
      }
    }
  }
  return result
}

/// A tensor of `shape` whose element i is element `indices[i]` of `source`, exactly.
func gathered(_ source: Tensor, _ indices: [Int], shape: [Int]) -> Tensor {
  gathered([source], indices.map { (0, $0) }, dtype: source.dtype, shape: shape)
}

/// A float converted to an integer dtype as `cast` defines it: truncated toward zero, NaN giving 0,
/// values past the dtype's range (infinities too) its smallest or largest value.
public func saturatingInteger(_ x: Double, _ dtype: DType) -> Int64 {
  let limit = dtype == .i32 ? 2_147_483_648.0 : 9_223_372_036_854_775_808.0
  if x.isNaN { return 0 }
  if x >= limit { return dtype == .i32 ? Int64(Int32.max) : Int64.max }
  if x < -limit { return dtype == .i32 ? Int64(Int32.min) : Int64.min }
  return Int64(x.rounded(.towardZero))
}
