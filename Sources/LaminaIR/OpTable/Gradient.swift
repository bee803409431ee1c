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
public typealias GradientRule = @Sendable (inout GradientBuilder, GradientInputs) throws(ShapeError) -> [ValueID?]

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
  public mutating func op(_ op: String, _ operands: [ValueID], _ attributes: [String: Attribute] = [:])
    throws(ShapeError) -> ValueID
  {
    guard let definition = OpRegistry.definition(op) else { throw ShapeError("unknown op \(op)") }
    let (types, resolved) = try definition.inferTypes(
      operands: operands.map { graph.type(of: $0) }, attributes: attributes)
    return graph.addNode(op, operands, attributes: resolved, type: types[0], location: location)
  }

  /// A scalar constant of `like`'s dtype.
  public mutating func constant(_ value: Double, like: ValueID) -> ValueID {
    let dtype = graph.type(of: like).dtype
    return graph.addNode(
      "constant", [], attributes: ["value": .float(value), "dtype": .dtype(dtype)], type: .scalar(dtype),
      location: location)
  }

  public mutating func add(_ a: ValueID, _ b: ValueID) throws(ShapeError) -> ValueID { try op("add", [a, b]) }
  public mutating func sub(_ a: ValueID, _ b: ValueID) throws(ShapeError) -> ValueID { try op("sub", [a, b]) }
  public mutating func mul(_ a: ValueID, _ b: ValueID) throws(ShapeError) -> ValueID { try op("mul", [a, b]) }
  public mutating func div(_ a: ValueID, _ b: ValueID) throws(ShapeError) -> ValueID { try op("div", [a, b]) }
  public mutating func neg(_ a: ValueID) throws(ShapeError) -> ValueID { try op("neg", [a]) }

  /// `value * scalar`.
  public mutating func scale(_ value: ValueID, by factor: Double) throws(ShapeError) -> ValueID {
    try mul(value, constant(factor, like: value))
  }

  /// Sums `gradient` over the axes along which `target`'s type was broadcast, so it has `target`'s
  /// shape: leading axes `target` lacks, and axes where `target` has size 1.
  public mutating func reduce(_ gradient: ValueID, toShapeOf target: TensorType) throws(ShapeError) -> ValueID {
    let shape = graph.type(of: gradient).shape
    if shape == target.shape { return gradient }
    let offset = shape.count - target.rank
    guard offset >= 0 else {
      throw ShapeError("cannot reduce a gradient of shape \(shape) to \(target.shapeDescription)")
    }
    var axes = Array(0..<offset)
    for (axis, dim) in target.shape.enumerated() where dim == Dim(1) && shape[axis + offset] != Dim(1) {
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
