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
func broadcastResult(_ context: ShapeContext, dtype: DType? = nil) throws(ShapeError) -> TensorType {
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
  let rankOffset = outputShape.count - shape.count
  let strides = rowMajorStrides(shape)
  var map = [Int](repeating: 0, count: count)
  var coordinate = [Int](repeating: 0, count: outputShape.count)
  for flat in 0..<count {
    var source = 0
    for axis in 0..<shape.count where shape[axis] != 1 {
      source += coordinate[axis + rankOffset] * strides[axis]
    }
    map[flat] = source
    // Advance the row-major coordinate.
    var axis = outputShape.count - 1
    while axis >= 0 {
      coordinate[axis] += 1
      if coordinate[axis] < outputShape[axis] { break }
      coordinate[axis] = 0
      axis -= 1
    }
  }
  return map
}

/// Applies `body` elementwise over operands broadcast to the result shape.
func interpretBroadcasting(_ context: InterpretContext, _ body: ([Double]) -> Double) -> Tensor {
  let outputShape = context.results[0].shape
  let operandValues = context.operands.map { $0.doubles() }
  let maps = context.operands.map { broadcastIndexMap(from: $0.shape, to: outputShape) }
  let count = outputShape.reduce(1, *)
  var output = [Double](repeating: 0, count: count)
  var arguments = [Double](repeating: 0, count: context.operands.count)
  for flat in 0..<count {
    for operand in 0..<operandValues.count { arguments[operand] = operandValues[operand][maps[operand][flat]] }
    output[flat] = body(arguments)
  }
  return context.result(0, output)
}
