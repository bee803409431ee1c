import LaminaIR
import LaminaSupport

/// Removes nodes whose results nothing uses.
///
/// A value is live when an output, a loss, a gradient declaration or an update names it, or a live
/// node reads it. Gradient rules build the gradients of every operand, inputs included; this pass
/// drops the ones no parameter needs.
///
///     %0 = matmul(%grad.h, %w) : f32[batch, 3]   (∂loss/∂x, unused)   →   (removed)
public struct DeadCodeElimination: GraphPass {
  public static let name = "dce"
  public static let summary = "Removes nodes whose results nothing uses."

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    var live = graph.exposedValues
    var keep = [Bool](repeating: false, count: graph.nodes.count)
    for index in graph.nodes.indices.reversed() {
      let node = graph.nodes[index]
      // A node writing state outlives its results.
      guard
        node.results.contains(where: live.contains)
          || node.definition?.effects.contains(.writesState) == true
      else { continue }
      keep[index] = true
      live.formUnion(node.operands)
      if node.hasRegion { graph.nodes[index] = Self.pruningBody(of: node) }
    }
    graph.nodes = graph.nodes.indices.filter { keep[$0] }.map { graph.nodes[$0] }
  }

  /// A loop node without the body nodes its results do not need (gradient rules build the
  /// gradients of every operand, inside a loop's body too).
  static func pruningBody(of node: Node) -> Node {
    var node = node
    var live = Set(node.regionResults)
    var kept: [Node] = []
    for member in node.body.reversed() {
      guard
        member.results.contains(where: live.contains)
          || member.definition?.effects.contains(.writesState) == true
      else { continue }
      live.formUnion(member.operands)
      kept.append(member.hasRegion ? pruningBody(of: member) : member)
    }
    node.body = kept.reversed()
    return node
  }
}
