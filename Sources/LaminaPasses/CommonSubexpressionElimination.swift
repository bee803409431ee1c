import LaminaIR
import LaminaSupport

/// Computes each distinct expression once: a node with the same op, operands and attributes as an
/// earlier one is dropped and its uses read the earlier result.
///
/// Equal constants merge too. Ops that depend on the execution mode (dropout draws random numbers) are
/// left alone.
///
///     %a = exp(%x)          %a = exp(%x)
///     %b = exp(%x)    →     %c = add(%a, %a)
///     %c = add(%a, %b)
public struct CommonSubexpressionElimination: GraphPass {
  public static let name = "cse"
  public static let summary = "Computes each distinct expression once."

  public init() {}

  struct Key: Hashable {
    var op: String
    var operands: [ValueID]
    var attributes: [String: Attribute]
  }

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    var replacement: [ValueID: ValueID] = [:]
    var seen: [Key: ValueID] = [:]
    var kept: [Node] = []
    for var node in graph.nodes {
      node.operands = node.operands.map { replacement[$0] ?? $0 }
      if !node.body.isEmpty {
        // A fused node (IR read back after fusion) is kept whole: its members are one kernel.
        for member in node.body.indices {
          node.body[member].operands = node.body[member].operands.map { replacement[$0] ?? $0 }
        }
        kept.append(node)
        continue
      }
      // Two draws of random numbers, or two state updates, are different however alike they look.
      guard node.results.count == 1, node.definition?.effects.isPure != false else {
        kept.append(node)
        continue
      }
      let key = Key(op: node.op, operands: node.operands, attributes: node.attributes)
      if let earlier = seen[key], graph[earlier].type == graph[node.result].type {
        replacement[node.result] = earlier
        continue
      }
      seen[key] = node.result
      kept.append(node)
    }
    graph.nodes = kept
    graph.replaceUses(replacement)
  }
}
