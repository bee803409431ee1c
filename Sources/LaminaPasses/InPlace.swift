import LaminaIR

/// Which results of a node may be computed in the buffer of one of its operands, from the op
/// table's memory effects.
///
/// Legal when the op's effect on the operand says the kernel reads each of its elements at the
/// position it writes, before writing (`OperandEffect.resultMayAlias`), and the operand has exactly
/// the result's shape and dtype (not broadcast). For a fused node the group's kind says it
/// (`FusedKind.readsEachElementBeforeWriting`), and an epilogue group follows its producer's block
/// order. The memory planner adds the storage conditions: the operand dies at this node, lives in
/// the arena, and no other operand reads the same storage through another value.
public enum InPlace {
  /// Pairs of operand position and result position that may share a buffer, best first.
  public static func candidates(_ node: Node, in graph: Graph) -> [(operand: Int, result: Int)] {
    if let carrier = node.fusedEpilogueCarrier(in: graph) {
      return epilogueCandidates(node, carrier: carrier, in: graph)
    }
    var pairs: [(operand: Int, result: Int)] = []
    for (resultPosition, result) in node.results.enumerated() {
      let type = graph.type(of: result)
      for (operandPosition, operand) in node.operands.enumerated()
      where resultMayAlias(node, operand: operandPosition) && graph.type(of: operand) == type {
        pairs.append((operandPosition, resultPosition))
      }
    }
    return pairs
  }

  /// A fused epilogue reads each full-shape operand at the position it writes, after the producer
  /// is done with that block: a result other than the carrier (which the producer fills first) may
  /// take such an operand's buffer, unless the producer itself reads that operand. This lets a
  /// weight's optimizer update, computed in its gradient's epilogue, land straight in the weight.
  static func epilogueCandidates(_ node: Node, carrier: ValueID, in graph: Graph)
    -> [(operand: Int, result: Int)]
  {
    let producerOperands = Set(node.epilogueProducer?.operands ?? [])
    var pairs: [(operand: Int, result: Int)] = []
    for (resultPosition, result) in node.results.enumerated() where result != carrier {
      let type = graph.type(of: result)
      for (operandPosition, operand) in node.operands.enumerated()
      where graph.type(of: operand) == type && !producerOperands.contains(operand) {
        pairs.append((operandPosition, resultPosition))
      }
    }
    return pairs
  }

  /// Whether the node's kernel reads operand `position` element by element at the positions it
  /// writes its results, before writing them.
  public static func resultMayAlias(_ node: Node, operand position: Int) -> Bool {
    if let kind = node.fusedKind { return kind.readsEachElementBeforeWriting }
    guard let definition = node.definition else { return false }
    return definition.effect(ofOperand: position).resultMayAlias
  }
}
