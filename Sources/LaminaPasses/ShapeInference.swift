import LaminaIR
import LaminaSupport

/// Gives every value in the graph a fully known tensor type.
///
/// Visits nodes in order and applies each op's shape rule from the op table, filling in result types
/// that are missing (IR written by hand may omit them) and checking those that are present. Attributes
/// get their defaults spelled out. The frontend applies the same rules as it builds the graph, so on a
/// graph fresh from a model this pass finds nothing to change.
/// - Precondition: nodes are in topological order.
/// - Postcondition: every value has a type.
/// - Throws: diagnostics at the node's source location when a rule rejects its operands.
///
///     %y = matmul(%x, %w)      →      %y = matmul(%x, %w) : f32[batch, 128]
public struct ShapeInference: GraphPass {
  public static let name = "shape-inference"
  public static let summary = "Infers the type of every value from the op table's shape rules."

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    for index in graph.nodes.indices {
      var node = graph.nodes[index]
      if node.hasRegion {
        inferRegion(&node, in: &graph, context: &context)
      } else if node.op == Node.fusedOp {
        // A fused node (IR read back after fusion) types its members; its results are theirs.
        for member in node.body.indices { infer(&node.body[member], in: &graph, context: &context) }
      } else {
        infer(&node, in: &graph, context: &context)
      }
      graph.nodes[index] = node
    }
    try context.diagnostics.throwIfErrors()
  }

  /// Types a region's arguments from the node's operands, then its body, then the node.
  private func inferRegion(_ node: inout Node, in graph: inout Graph, context: inout PassContext) {
    guard let layout = node.scanLayout else {
      infer(&node, in: &graph, context: &context)
      return
    }
    let operandTypes = node.operands.compactMap { graph[$0].type }
    if operandTypes.count == node.operands.count,
      node.regionArguments.count == node.operands.count
    {
      for (argument, type) in zip(
        node.regionArguments, layout.argumentTypes(operands: operandTypes))
      where graph[argument].type == nil {
        graph.setType(type, of: argument)
      }
    }
    for member in node.body.indices {
      if node.body[member].hasRegion {
        inferRegion(&node.body[member], in: &graph, context: &context)
      } else if node.body[member].op == Node.fusedOp {
        for inner in node.body[member].body.indices {
          infer(&node.body[member].body[inner], in: &graph, context: &context)
        }
      } else {
        infer(&node.body[member], in: &graph, context: &context)
      }
    }
    infer(&node, in: &graph, context: &context)
  }

  /// Applies the node's shape rule: fills in its attributes' defaults and its results' types.
  private func infer(_ node: inout Node, in graph: inout Graph, context: inout PassContext) {
    guard let definition = OpRegistry.definition(node.op) else {
      let suggestion = closestName(to: node.op, among: OpRegistry.names)
      context.diagnostics.error(
        "unknown op '\(node.op)'", at: node.location,
        help: suggestion.map { "did you mean '\($0)'?" })
      return
    }
    do {
      // Nil: an operand without a type, which already has its own diagnostic.
      guard let typing = try graph.typing(of: node, definition: definition) else { return }
      node.attributes = typing.attributes
      for problem in typing.problems { context.diagnostics.error(problem, at: node.location) }
      guard typing.types.count == node.results.count else { return }
      for (result, type) in zip(node.results, typing.types) { graph.setType(type, of: result) }
    } catch {
      context.diagnostics.error(error.message, at: node.location, help: error.help)
    }
  }
}
