import LaminaIR

/// Which results of a node may be computed in the buffer of one of its operands.
///
/// Legal when the kernel reads each operand element at the position it writes (so every element is
/// read before it is overwritten) and the operand has exactly the result's shape and dtype (not
/// broadcast). The memory planner adds the storage conditions: the operand dies at this node, lives
/// in the arena, and no other operand reads the same storage through another value.
public enum InPlace {
  /// Pairs of operand position and result position that may share a buffer, best first.
  public static func candidates(_ node: Node, in graph: Graph) -> [(operand: Int, result: Int)] {
    if let carrier = node.fusedMatmulCarrier(in: graph) {
      return matmulEpilogueCandidates(node, carrier: carrier, in: graph)
    }
    guard readsBeforeWritingEachElement(node) else { return [] }
    var pairs: [(operand: Int, result: Int)] = []
    for (resultPosition, result) in node.results.enumerated() {
      let type = graph.type(of: result)
      for (operandPosition, operand) in node.operands.enumerated()
      where graph.type(of: operand) == type {
        pairs.append((operandPosition, resultPosition))
      }
    }
    return pairs
  }

  /// A fused matmul's epilogue reads each full-shape operand at the position it writes, after the
  /// GEMM is done with that block: a result other than the carrier (which the GEMM fills first) may
  /// take such an operand's buffer, unless the GEMM itself reads that operand. This lets a weight's
  /// optimizer update, computed in its gradient's epilogue, land straight in the weight.
  static func matmulEpilogueCandidates(_ node: Node, carrier: ValueID, in graph: Graph)
    -> [(operand: Int, result: Int)]
  {
    let gemmOperands = Set(node.body.first { $0.op == "matmul" }?.operands ?? [])
    var pairs: [(operand: Int, result: Int)] = []
    for (resultPosition, result) in node.results.enumerated() where result != carrier {
      let type = graph.type(of: result)
      for (operandPosition, operand) in node.operands.enumerated()
      where graph.type(of: operand) == type && !gemmOperands.contains(operand) {
        pairs.append((operandPosition, resultPosition))
      }
    }
    return pairs
  }

  /// Whether the node's kernel computes each result element from the operand elements at the same
  /// position (or broadcast ones), reading them before it writes.
  public static func readsBeforeWritingEachElement(_ node: Node) -> Bool {
    if node.op == Node.fusedOp {
      let kind = node.attributes["kind"]?.stringValue
      return kind == "elementwise" || kind == "update"
    }
    // Only ops emitted as one C expression per element: library kernels may read an operand again
    // after writing (softmax's passes) or write out of order.
    guard let definition = OpRegistry.definition(node.op), case .expression = definition.c else {
      return false
    }
    return definition.fusion == .elementwise || definition.fusion == .broadcast
  }
}
