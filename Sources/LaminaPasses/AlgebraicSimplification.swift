import LaminaIR
import LaminaSupport

/// Removes computations that give back their operand, by algebraic identities.
///
/// - `x * 1`, `1 * x`, `x + 0`, `0 + x`, `x - 0`, `x / 1` → `x` (the 1 or 0 a constant or a
///   broadcast of one). When the other operand broadcasts `x` to a larger shape, the node becomes
///   `broadcast_to(x)` instead. `x * 0` stays: it is NaN when `x` is NaN or infinite. `x + 0` gives
///   `+0` for `x = -0`; the rewrite keeps `-0`, which compares equal.
/// - `neg(neg(x))`, `cast(x)` to `x`'s own dtype, `transpose`/`permute` chains that cancel, and
///   reshapes or broadcasts to `x`'s own type → `x`.
/// - Chains compose: `transpose`/`permute` of `transpose`/`permute` → one `permute`; any chain of
///   `reshape`, `flatten`, `squeeze` and `unsqueeze` (all keep the row-major order) → one `reshape`;
///   `broadcast_to(broadcast_to(x))` → one `broadcast_to`.
///
/// Every use of a removed value — node operands, outputs, losses, gradients and updates — reads `x`
/// instead; outputs and losses keep their names, and a value is only replaced by one of the same
/// type. The nodes left unused go with `dce`.
///
///     %a = neg(%x)
///     %b = neg(%a)            →      %c = relu(%x)
///     %c = relu(%b)
public struct AlgebraicSimplification: GraphPass {
  public static let name = "simplify"
  public static let summary =
    "Applies algebraic identities: x*1, x+0, neg(neg(x)), cancelling transposes and reshapes."

  public init() {}

  /// What a rule does with a node.
  enum Rewrite {
    /// Uses of the node's result read this value instead.
    case replace(ValueID)
    /// The node computes its result another way (fewer nodes in a chain).
    case node(Node)
  }

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    var replacement: [ValueID: ValueID] = [:]
    let producers = graph.producers()
    for index in graph.nodes.indices {
      graph.nodes[index].operands = graph.nodes[index].operands.map { replacement[$0] ?? $0 }
      guard graph.nodes[index].results.count == 1,
        graph.nodes[index].definition?.effects.isPure == true
      else { continue }
      let type = graph.type(of: graph.nodes[index].result)
      // A rewritten node may simplify further (a composed reshape back to the original shape);
      // each step removes a node from a chain, so a few rounds suffice.
      for _ in 0..<4 {
        let node = graph.nodes[index]
        guard let rewrite = Self.rewrite(node, in: graph, producers: producers) else { break }
        switch rewrite {
        case .replace(let value):
          guard graph.type(of: value) == type else { break }
          replacement[node.result] = value
        case .node(let rewritten):
          guard let typed = graph.retyped(rewritten, expecting: [type]) else { break }
          graph.nodes[index] = typed
          continue
        }
        break
      }
    }
    graph.replaceUses(replacement)
  }

  /// The identity or composition that applies to `node`, if any, from its op's traits.
  static func rewrite(_ node: Node, in graph: Graph, producers: [ValueID: Int]) -> Rewrite? {
    guard let definition = node.definition else { return nil }
    let result = graph.type(of: node.result)
    func producer(_ value: ValueID) -> Node? { producers[value].map { graph.nodes[$0] } }
    /// The one number a value holds everywhere, when it is a constant or a broadcast of one.
    func uniformValue(_ value: ValueID) -> Double? {
      guard let node = producer(value) else { return nil }
      if node.is(Ops.constant) {
        guard let number = node.attributes["value"]?.doubleValue else { return nil }
        // Compare the number the constant holds in its dtype (0.1 in f32 is not 0.1).
        return Tensor(dtype: graph.type(of: value).dtype, shape: [], doubles: [number]).doubles()[0]
      }
      if node.definition?.rearrangement == .broadcast { return uniformValue(node.operands[0]) }
      return nil
    }
    /// `x` itself when the node's result has its type, else `x` broadcast to the result's shape.
    func identity(_ x: ValueID) -> Rewrite {
      if graph.type(of: x) == result { return .replace(x) }
      return .node(
        Node(
          op: Ops.broadcastTo.name, operands: [x], attributes: ["shape": .dims(result.shape)],
          results: node.results, location: node.location))
    }
    let algebra = definition.algebra

    // x ⊕ e = x, e ⊕ x = x.
    if node.operands.count == 2, algebra.leftIdentity != nil || algebra.rightIdentity != nil {
      let (a, b) = (node.operands[0], node.operands[1])
      if let neutral = algebra.rightIdentity, uniformValue(b) == neutral { return identity(a) }
      if let neutral = algebra.leftIdentity, uniformValue(a) == neutral { return identity(b) }
      return nil
    }
    // f(f(x)) = x.
    if algebra.isInvolution, node.operands.count == 1 {
      guard let inner = producer(node.operands[0]), inner.op == node.op,
        inner.attributes == node.attributes
      else { return nil }
      return .replace(inner.operands[0])
    }
    guard node.operands.count == 1 else { return nil }
    let x = node.operands[0]
    if algebra.isIdentityWhenTypeUnchanged, graph.type(of: x) == result { return .replace(x) }

    switch definition.rearrangement {
    case .permutation?:
      guard let perm = permutation(of: node, operandRank: graph.type(of: x).rank) else {
        return nil
      }
      if perm == Array(perm.indices) { return .replace(x) }
      guard let inner = producer(x),
        let innerPerm = permutation(of: inner, operandRank: graph.type(of: inner.operands[0]).rank)
      else { return nil }
      // Result axis d is x's axis perm[d], which is the inner operand's axis innerPerm[perm[d]].
      let composed = perm.map { innerPerm[$0] }
      if composed == Array(composed.indices) { return .replace(inner.operands[0]) }
      return .node(
        Node(
          op: Ops.permute.name, operands: [inner.operands[0]],
          attributes: ["perm": .ints(composed)], results: node.results, location: node.location))
    case .rowMajorReshape?:
      guard let inner = producer(x), inner.definition?.rearrangement == .rowMajorReshape else {
        return nil
      }
      let source = inner.operands[0]
      if graph.type(of: source) == result { return .replace(source) }
      return .node(
        Node(
          op: Ops.reshape.name, operands: [source], attributes: ["shape": .dims(result.shape)],
          results: node.results, location: node.location))
    case .broadcast?:
      guard let inner = producer(x), inner.definition?.rearrangement == .broadcast else {
        return nil
      }
      return .node(
        Node(
          op: Ops.broadcastTo.name, operands: [inner.operands[0]], attributes: node.attributes,
          results: node.results, location: node.location))
    default:
      return nil
    }
  }
}
