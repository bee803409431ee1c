import LaminaIR
import LaminaSupport

/// Replaces each node of an op that has no kernel of its own (`c: .decomposed`) by the op's
/// decomposition into simpler ops, in place, so fusion sees those ops.
///
/// It runs on the backend's copy of the graph only: the interpreter, autodiff and every other pass
/// see the op as one node (`layer_norm`), and the C backend compiles what fusion makes of its
/// decomposition (one row kernel: mean, variance and normalization).
///
///     %y = layer_norm(%x) {axes = [-1], eps = 1e-5}     %m = mean(%x) {axes = [-1], keepdims = true}
///                                                  →    %c = sub(%x, %m)
///                                                       ...
///                                                       %y.1 = div(%c, %s)
public struct Decomposition: GraphPass {
  public static let name = "decompose"
  public static let summary =
    "Replaces ops the C backend compiles as simpler ops (layer_norm) by their decomposition."

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    guard graph.nodes.contains(where: { $0.definition?.decomposition != nil }) else { return }
    var rebuilt: [Node] = []
    var replacements: [ValueID: ValueID] = [:]
    var working = graph
    for node in graph.nodes {
      guard let rule = node.definition?.decomposition else {
        rebuilt.append(node)
        continue
      }
      // The builder appends to an empty node list, which then holds exactly the new nodes.
      working.nodes = []
      var builder = GradientBuilder(graph: working, location: node.location)
      let values: [ValueID]
      do {
        values = try rule(&builder, node)
      } catch {
        throw Diagnostic.error(
          "cannot decompose \(node.op): \(error.message)", at: node.location)
      }
      working = builder.graph
      guard values.count == node.results.count,
        zip(values, node.results).allSatisfy({ working.type(of: $0) == working.type(of: $1) })
      else {
        throw Diagnostic.error(
          "the decomposition of \(node.op) does not give its result types", at: node.location)
      }
      rebuilt += working.nodes
      for (result, value) in zip(node.results, values) { replacements[result] = value }
    }
    working.nodes = rebuilt
    working.replaceUses(replacements)
    graph = working
  }
}
