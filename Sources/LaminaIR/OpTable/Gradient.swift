import LaminaSupport

/// What a gradient rule sees: the node, and the gradient of the loss with respect to its result.
public struct GradientInputs: Sendable {
  public var node: Node
  /// ∂loss/∂result, of the result's type.
  public var resultGradient: ValueID

  public init(node: Node, resultGradient: ValueID) {
    self.node = node
    self.resultGradient = resultGradient
  }

  public var operands: [ValueID] { node.operands }
  public var result: ValueID { node.result }
  public var attributes: [String: Attribute] { node.attributes }
}

/// A reverse-mode rule: the gradient with respect to each operand (nil: none, as for integer labels),
/// built as IR from the result's gradient. Rules may return gradients of a broadcast shape; the
/// autodiff pass sums them back to each operand's shape.
public typealias GradientRule =
  @Sendable (inout GradientBuilder, GradientInputs) throws(ShapeError) -> [ValueID?]

/// An op's decomposition: the results of `node` computed by simpler ops, which the rule adds
/// through `builder` (the same builder gradient rules use), one value per result, of the same types.
public typealias DecompositionRule =
  @Sendable (inout GradientBuilder, Node) throws(ShapeError) -> [ValueID]

/// Builds the IR of gradient computations: each new node gets its type from the op table at once.
public struct GradientBuilder {
  public var graph: Graph
  /// The source location of the node being differentiated; gradient nodes keep it.
  public var location: SourceLocation

  public init(graph: Graph, location: SourceLocation) {
    self.graph = graph
    self.location = location
  }

  public func type(of value: ValueID) -> TensorType { graph.type(of: value) }

  /// Adds a node applying its shape rule, and returns its result.
  public mutating func op(
    _ op: String, _ operands: [ValueID], _ attributes: [String: Attribute] = [:]
  )
    throws(ShapeError) -> ValueID
  {
    try graph.addInferredNode(op, operands, attributes: attributes, location: location)
  }

  /// Adds a node of the op `handle` refers to, applying its shape rule, and returns its result.
  public mutating func op(
    _ handle: OpHandle, _ operands: [ValueID], _ attributes: [String: Attribute] = [:]
  ) throws(ShapeError) -> ValueID {
    try op(handle.name, operands, attributes)
  }

  /// A scalar constant of `like`'s dtype.
  public mutating func constant(_ value: Double, like: ValueID) -> ValueID {
    let dtype = graph.type(of: like).dtype
    return graph.addNode(
      "constant", [], attributes: ["value": .float(value), "dtype": .dtype(dtype)],
      type: .scalar(dtype),
      location: location)
  }

  public mutating func add(_ a: ValueID, _ b: ValueID) throws(ShapeError) -> ValueID {
    try op("add", [a, b])
  }
  /// `a + b`, two contributions to one gradient. When both are `slice_backward`s into the same
  /// shape whose indexes differ on one axis only, in adjacent ranges of step 1 (the gate blocks a
  /// recurrent cell slices from one product), their sum is the `slice_backward` of their gradients
  /// joined by one `concat` over the union of the ranges, and the `concat` alone once the ranges
  /// cover the tensor: one copy per piece instead of zero-filled tensors added up.
  public mutating func accumulate(_ a: ValueID, _ b: ValueID) throws(ShapeError) -> ValueID {
    if let joined = try joinedSliceGradients(a, b) { return joined }
    return try add(a, b)
  }

  /// The `slice_backward` (its gradient, full index and shape) that computes `value`, if one does.
  private func sliceGradient(_ value: ValueID) -> (
    gradient: ValueID, index: [SliceIndex], shape: [Dim]
  )? {
    guard let node = graph.nodes.last(where: { $0.results == [value] }),
      node.is(Ops.sliceBackward), node.operands.count == 1,
      let shape = node.attributes["shape"]?.dimsValue
    else { return nil }
    var index: [SliceIndex] = []
    if case .slices(let given)? = node.attributes["index"] { index = given }
    guard index.count <= shape.count else { return nil }
    index += Array(repeating: .all, count: shape.count - index.count)
    return (node.operands[0], index, shape)
  }

  /// A range entry as static bounds `start..<stop` of an axis of `size`, for step 1 only.
  private func staticRange(_ entry: SliceIndex, size: Dim) -> Range<Int>? {
    guard case .range(let start, let stop, 1) = entry, let size = size.staticValue else {
      return nil
    }
    func bound(_ value: Int?, _ absent: Int) -> Int {
      guard let value else { return absent }
      return value < 0 ? max(0, value + size) : min(value, size)
    }
    let (lower, upper) = (bound(start, 0), bound(stop, size))
    return lower < upper ? lower..<upper : nil
  }

  private mutating func joinedSliceGradients(_ a: ValueID, _ b: ValueID) throws(ShapeError)
    -> ValueID?
  {
    guard let x = sliceGradient(a), let y = sliceGradient(b), x.shape == y.shape,
      type(of: a) == type(of: b),
      type(of: x.gradient).dtype == type(of: y.gradient).dtype,
      // Ranges only (an integer index drops its axis from the gradient).
      (x.index + y.index).allSatisfy({ if case .range = $0 { true } else { false } })
    else { return nil }
    let differing = x.shape.indices.filter { x.index[$0] != y.index[$0] }
    guard differing.count == 1, let axis = differing.first,
      let first = staticRange(x.index[axis], size: x.shape[axis]),
      let second = staticRange(y.index[axis], size: x.shape[axis])
    else { return nil }
    let (low, high, lowRange, highRange) =
      first.upperBound == second.lowerBound
      ? (x, y, first, second) : (y, x, second, first)
    guard lowRange.upperBound == highRange.lowerBound else { return nil }
    // Pieces of a concat along the same axis join the new one directly.
    var pieces: [ValueID] = []
    for gradient in [low.gradient, high.gradient] {
      if let node = graph.nodes.last(where: { $0.results == [gradient] }), node.is(Ops.concat),
        let concatAxis = node.attributes["axis"]?.intValue,
        (concatAxis < 0 ? concatAxis + x.shape.count : concatAxis) == axis
      {
        pieces += node.operands
      } else {
        pieces.append(gradient)
      }
    }
    let joined = try op(Ops.concat, pieces, ["axis": .int(axis)])
    var index = x.index
    index[axis] = .range(start: lowRange.lowerBound, stop: highRange.upperBound, step: 1)
    let whole = x.shape.indices.allSatisfy { dimension in
      staticRange(index[dimension], size: x.shape[dimension]).map {
        $0 == 0..<(x.shape[dimension].staticValue ?? -1)
      } ?? (index[dimension] == .all)
    }
    if whole, type(of: joined) == type(of: a) { return joined }
    return try op(
      Ops.sliceBackward, [joined], ["index": .slices(index), "shape": .dims(x.shape)])
  }

  public mutating func sub(_ a: ValueID, _ b: ValueID) throws(ShapeError) -> ValueID {
    try op("sub", [a, b])
  }
  /// `a * b`; multiplying by a scalar literal 1 (the loss's own gradient) adds no node.
  public mutating func mul(_ a: ValueID, _ b: ValueID) throws(ShapeError) -> ValueID {
    if isOne(a), type(of: a).isScalar, type(of: a).dtype == type(of: b).dtype { return b }
    if isOne(b), type(of: b).isScalar, type(of: b).dtype == type(of: a).dtype { return a }
    return try op("mul", [a, b])
  }
  public mutating func div(_ a: ValueID, _ b: ValueID) throws(ShapeError) -> ValueID {
    try op("div", [a, b])
  }
  public mutating func neg(_ a: ValueID) throws(ShapeError) -> ValueID { try op("neg", [a]) }

  /// `value * scalar`.
  public mutating func scale(_ value: ValueID, by factor: Double) throws(ShapeError) -> ValueID {
    try mul(value, constant(factor, like: value))
  }

  /// Sums `gradient` over the axes along which `target`'s type was broadcast, so it has `target`'s
  /// shape: leading axes `target` lacks, and axes where `target` has size 1.
  public mutating func reduce(_ gradient: ValueID, toShapeOf target: TensorType) throws(ShapeError)
    -> ValueID
  {
    let shape = graph.type(of: gradient).shape
    if shape == target.shape { return gradient }
    let offset = shape.count - target.rank
    guard offset >= 0 else {
      throw ShapeError("cannot reduce a gradient of shape \(shape) to \(target.shapeDescription)")
    }
    var axes = Array(0..<offset)
    for (axis, dim) in target.shape.enumerated()
    where dim == Dim(1) && shape[axis + offset] != Dim(1) {
      axes.append(axis + offset)
    }
    var reduced = gradient
    if !axes.isEmpty {
      reduced = try op("sum", [gradient], ["axes": .ints(axes), "keepdims": .bool(true)])
    }
    if graph.type(of: reduced).shape != target.shape {
      reduced = try op("reshape", [reduced], ["shape": .dims(target.shape)])
    }
    return reduced
  }
}

extension GradientBuilder {
  /// True when `value` is the literal 1.
  public func isOne(_ value: ValueID) -> Bool {
    type(of: value).isScalar
      && graph.nodes.contains {
        $0.op == "constant" && $0.results.contains(value)
          && $0.attributes["value"]?.doubleValue == 1
      }
  }

  /// True when `value` is a literal (the result of a `constant` node): rules skip its gradient.
  public func isConstant(_ value: ValueID) -> Bool {
    // Constants are scalars; the type check spares most calls the scan.
    type(of: value).isScalar
      && graph.nodes.contains { $0.op == "constant" && $0.results.contains(value) }
  }

  /// Whether a rule should build the gradient of `operand`: a floating-point value that is not a
  /// literal. (The pass drops gradients it does not need; this only keeps dead nodes out of the graph.)
  public func wants(_ operand: ValueID) -> Bool {
    type(of: operand).dtype.isFloatingPoint && !isConstant(operand)
  }

  /// `literal - value`.
  public mutating func sub(_ literal: Double, _ value: ValueID) throws(ShapeError) -> ValueID {
    try sub(constant(literal, like: value), value)
  }

  /// The reduced axes of a reduction node (`axes` absent: all of them), made non-negative.
  public func reducedAxes(_ attributes: [String: Attribute], rank: Int) -> [Int] {
    guard let axes = attributes["axes"]?.intsValue else { return Array(0..<rank) }
    return axes.map { $0 < 0 ? $0 + rank : $0 }
  }

  /// The shape of a reduction's result with its reduced axes kept as size 1.
  public func keptShape(of type: TensorType, reducing axes: [Int]) -> [Dim] {
    type.shape.enumerated().map { axes.contains($0.offset) ? Dim(1) : $0.element }
  }

  /// Reshapes a reduction's result (or its gradient) to keep the reduced axes with size 1, so it
  /// broadcasts against the reduction's operand.
  public mutating func keepingDims(_ value: ValueID, of operand: TensorType, reducing axes: [Int])
    throws(ShapeError) -> ValueID
  {
    let kept = keptShape(of: operand, reducing: axes)
    if type(of: value).shape == kept { return value }
    return try op("reshape", [value], ["shape": .dims(kept)])
  }

  /// A reduction's result gradient spread back over the reduced axes: `operand`'s shape.
  public mutating func expand(_ gradient: ValueID, to operand: TensorType, reducing axes: [Int])
    throws(ShapeError) -> ValueID
  {
    let kept = try keepingDims(gradient, of: operand, reducing: axes)
    if type(of: kept).shape == operand.shape { return kept }
    return try op("broadcast_to", [kept], ["shape": .dims(operand.shape)])
  }

  /// The number of elements of a shape as a scalar of `like`'s dtype: a literal when the shape is
  /// static, otherwise counted at run time (`sum` of ones), since symbols are only known then.
  public mutating func count(_ shape: [Dim], like: ValueID) throws(ShapeError) -> ValueID {
    if let size = shape.product.staticValue { return constant(Double(size), like: like) }
    let one = constant(1, like: like)
    let ones = try op("broadcast_to", [one], ["shape": .dims(shape)])
    return try op("sum", [ones])
  }
}
