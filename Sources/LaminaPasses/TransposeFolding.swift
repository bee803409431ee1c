import LaminaIR
import LaminaSupport

/// Folds a transpose of a matmul operand into the matmul's `transpose_a` / `transpose_b` flag: the
/// GEMM then reads the operand transposed in place, and no transposed copy is made.
///
/// Applies when the operand is a `transpose` or `permute` that swaps exactly the last two axes (of a
/// matrix, or of a batch of matrices), which is what the flags mean; an operand already flagged has
/// its flag toggled. The transpose node stays for its other users, or goes with `dce`.
///
///     %t = transpose(%w)                  →      %y = matmul(%x, %w) {transpose_b = true}
///     %y = matmul(%x, %t)
public struct TransposeFolding: GraphPass {
  public static let name = "transpose-fold"
  public static let summary =
    "Folds transposes of matmul operands into the matmul's transpose_a/transpose_b flags."

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    let producers = graph.producers()
    for index in graph.nodes.indices {
      guard let flags = graph.nodes[index].definition?.operandTransposeAttributes, !flags.isEmpty
      else { continue }
      var node = graph.nodes[index]
      let types = node.results.map { graph.type(of: $0) }
      for (position, flag) in flags.enumerated() {
        guard let flag, position < node.operands.count,
          let producer = producers[node.operands[position]]
        else { continue }
        let transpose = graph.nodes[producer]
        guard transpose.results.count == 1, let source = transpose.operands.first else { continue }
        let rank = graph.type(of: source).rank
        guard rank >= 2,
          permutation(of: transpose, operandRank: rank)
            == Array(0..<(rank - 2)) + [rank - 1, rank - 2]
        else { continue }
        var folded = node
        folded.operands[position] = source
        folded.attributes[flag] = .bool(!(node.attributes[flag]?.boolValue ?? false))
        // The shape rule confirms the product is unchanged before the rewrite is kept.
        if let typed = graph.retyped(folded, expecting: types) { node = typed }
      }
      graph.nodes[index] = node
    }
  }
}
