/// The one table of every op Lamina knows.
///
/// Shape inference, the verifier, the interpreter, the IR parser and the docs generator all read it;
/// none of them switches on op names. Each `Ops+Topic.swift` file contributes one group.
public enum OpRegistry {
  /// Every op, in the order the reference lists them.
  public static let all: [OpDefinition] =
    elementwiseOps + activationOps + linearAlgebraOps + reductionOps + shapeOps + lossOps + miscOps
    + optimizerOps

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
