import LaminaIR
import LaminaSupport

/// A matrix product in a loop's body whose right operand is loop-invariant (a recurrent layer's
/// `h @ W_hhᵀ` and, in the backward loop, `g @ W_hh`): the loop packs that operand once before its
/// first step (`lamina_sgemm_pack_b`) and every step's GEMM reads it packed
/// (`lamina_sgemm_packed_b`) instead of repacking it in every call and on every thread. For W5's
/// [32, 128] × [128, 512] step, packing the weight was about a fifth of the product's time.
struct PackedLoopOperand {
  /// The body member that runs the product: the matmul itself, or the fused node it produces for.
  let member: Node
  /// The matmul.
  let product: Node
  /// The position of the right operand among the member's operands (its kernel's `inN`).
  let operandPosition: Int
  /// op(B) is [k, n]; B is stored transposed when `transposeB`.
  let k: Dim
  let n: Dim
  let transposeB: Bool
  let dtype: DType

  var right: ValueID { product.operands[1] }

  /// The products of `scan`'s own body (not of nested loops) that qualify: a 2-D floating-point
  /// GEMM whose right operand is one of the loop's invariants, read by the member only there.
  static func products(in scan: Node, graph: Graph) -> [PackedLoopOperand] {
    guard let layout = scan.scanLayout else { return [] }
    let invariants = Set(layout.invariantRange.map { scan.regionArguments[$0] })
    var found: [PackedLoopOperand] = []
    for member in scan.body where !member.hasRegion {
      let product: Node
      if member.op == Node.fusedOp {
        guard let producer = member.epilogueProducer else { continue }
        product = producer
      } else {
        product = member
      }
      guard case .kernel(.matrixProduct)? = product.definition?.c, product.operands.count == 2,
        product.results.count == 1
      else { continue }
      let (a, b) = (product.operands[0], product.operands[1])
      let bType = graph.type(of: b)
      let resultType = graph.type(of: product.result)
      guard invariants.contains(b), a != b, resultType.dtype == .f32 || resultType.dtype == .f64,
        bType.dtype == resultType.dtype, graph.type(of: a).rank == 2, bType.rank == 2,
        resultType.rank == 2,
        // The member's kernel gets the packed buffer in place of B: nothing else may read B there.
        member.operands.filter({ $0 == b }).count == 1,
        member.body.filter({ $0.operands.contains(b) }).allSatisfy({ $0.results == product.results }
        ),
        member.body.filter({ $0.operands.contains(b) }).count <= 1,
        let position = member.operands.firstIndex(of: b)
      else { continue }
      let transposeB = product.attributes["transpose_b"]?.boolValue ?? false
      found.append(
        PackedLoopOperand(
          member: member, product: product, operandPosition: position,
          k: bType.shape[transposeB ? 1 : 0], n: bType.shape[transposeB ? 0 : 1],
          transposeB: transposeB, dtype: resultType.dtype))
    }
    return found
  }

  /// Every qualifying product of the loops among `nodes` and their nested loops.
  static func products(inLoopsOf nodes: [Node], graph: Graph) -> [PackedLoopOperand] {
    nodes.filter(\.hasRegion).flatMap { scan in
      products(in: scan, graph: graph) + products(inLoopsOf: scan.body, graph: graph)
    }
  }

  /// `s` or `d`: the runtime's GEMM prefix for the element type.
  var gemmLetter: String { dtype == .f32 ? "s" : "d" }

  /// The elements of the packed buffer (`LAMINA_GEMM_PACKED_B_ELEMENTS`).
  var packedElements: String {
    "LAMINA_GEMM_PACKED_B_ELEMENTS((__int128)\(cDim(n)), (__int128)\(cDim(k)), \(dtype.byteSize))"
  }

  /// The statement packing B (at `source`) into `destination`.
  func packStatement(source: String, destination: String) -> String {
    "lamina_\(gemmLetter)gemm_pack_b(\(transposeB ? 1 : 0), \(cDim(k)), \(cDim(n)), \(source), \(transposeB ? cDim(k) : cDim(n)), \(destination));"
  }
}
