import LaminaSupport

/// The one table of every op Lamina knows.
///
/// Shape inference, the verifier, the interpreter, the IR parser and the docs generator all read it;
/// none of them switches on op names. Each `Ops+Topic.swift` file contributes one group.
public enum OpRegistry {
  /// Every op, in the order the reference lists them.
  public static let all: [OpDefinition] =
    elementwiseOps + activationOps + linearAlgebraOps + reductionOps + shapeOps + lossOps + miscOps
    + optimizerOps + normalizationOps + layerNormOps + randomOps
    + convolutionOps + poolingOps
    + sampleOps
    + embeddingOps
    + sequenceOps
    + loopOps
    + convolution3DOps + pooling3DOps + channelNormalizationOps
    + saturatingActivationOps
    + indexingOps

  private static let byName: [String: OpDefinition] = {
    var table: [String: OpDefinition] = [:]
    for op in all {
      precondition(table[op.name] == nil, "op \(op.name) is defined twice")
      table[op.name] = op
    }
    return table
  }()

  /// The definition of an op, or nil when there is no such op.
  public static func definition(_ name: String) -> OpDefinition? { byName[name] }

  public static var names: [String] { all.map(\.name) }
}

extension Graph {
  /// Appends a node of `op`, typed by its shape rule with its attributes' defaults filled in, and
  /// returns its result. Layers, gradient rules and the optimizer pass build IR through this.
  public mutating func addInferredNode(
    _ op: String, _ operands: [ValueID], attributes: [String: Attribute] = [:],
    location: SourceLocation
  ) throws(ShapeError) -> ValueID {
    guard let definition = OpRegistry.definition(op) else { throw ShapeError("unknown op \(op)") }
    let (types, resolved) = try definition.inferTypes(
      operands: operands.map { type(of: $0) }, attributes: attributes)
    return addNode(op, operands, attributes: resolved, type: types[0], location: location)
  }
}

/// Whether `name` matches `pattern` as a whole, where `*` stands for any run of characters
/// (`"encoder.*"`, `"*.bias"`).
public func globMatch(_ pattern: String, _ name: String) -> Bool {
  let parts = pattern.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
  if parts.count == 1 { return pattern == name }
  var rest = Substring(name)
  guard rest.hasPrefix(parts[0]) else { return false }
  rest = rest.dropFirst(parts[0].count)
  for part in parts.dropFirst().dropLast() where !part.isEmpty {
    guard let range = rest.range(of: part) else { return false }
    rest = rest[range.upperBound...]
  }
  return rest.hasSuffix(parts.last!)
}
