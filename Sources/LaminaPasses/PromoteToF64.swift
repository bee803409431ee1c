import LaminaIR
import LaminaSupport

/// Rewrites every `f32` value, constant and cast as `f64`.
///
/// Gradient checking evaluates finite differences on this copy of the model: in double precision a
/// central difference is accurate to about 1e-10, so it can judge an f32 gradient to 1e-3 and an f64
/// one to 1e-6.
public struct PromoteToF64: GraphPass {
  public static let name = "promote-to-f64"
  public static let summary = "Computes every f32 value in f64 (for gradient checking)."

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    for index in graph.values.indices {
      let value = ValueID(index)
      if let type = graph[value].type, type.dtype == .f32 {
        graph.setType(type.with(dtype: .f64), of: value)
      }
    }
    func promote(_ node: inout Node) {
      for name in ["dtype"] where node.attributes[name] == .dtype(.f32) {
        node.attributes[name] = .dtype(.f64)
      }
      // Members of fused nodes and loop bodies too.
      for member in node.body.indices { promote(&node.body[member]) }
    }
    for index in graph.nodes.indices { promote(&graph.nodes[index]) }
  }
}
