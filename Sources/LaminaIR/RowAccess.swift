/// How an operand is read inside a loop over a domain viewed as rows × its last axis, under numpy
/// broadcasting: the fusion pass accepts only operands it can classify, and the C backend indexes
/// them accordingly.
public enum RowAccess: Equatable, Sendable {
  /// The domain's own shape: element `[r, c]`.
  case full
  /// One value per position along the last axis (a bias row, `[C]` or `[1, C]`): element `[c]`.
  case column
  /// One value per row (a row statistic kept as `[R, 1]`): element `[r]`.
  case row
  /// One value for everything.
  case scalar

  /// Nil when the operand broadcasts in a way the row view cannot express.
  public init?(_ shape: [Dim], in domain: [Dim]) {
    if shape.allSatisfy({ $0 == Dim(1) }) {
      self = .scalar
      return
    }
    if shape == domain {
      self = .full
      return
    }
    guard shape.count <= domain.count, let last = domain.last else { return nil }
    let padded = Array(repeating: Dim(1), count: domain.count - shape.count) + shape
    if padded.last == last, padded.dropLast().allSatisfy({ $0 == Dim(1) }) {
      self = .column
      return
    }
    if padded.last == Dim(1), Array(padded.dropLast()) == Array(domain.dropLast()) {
      self = .row
      return
    }
    return nil
  }
}

extension Node {
  /// For a fused `matmul` node: the result whose buffer the GEMM writes the product into before the
  /// epilogue replaces it there (the product itself when it is a result, else the first result of
  /// the product's dtype). The C backend and the memory plan's in-place rules both read it.
  public func fusedMatmulCarrier(in graph: Graph) -> ValueID? {
    guard op == Node.fusedOp, attributes["kind"]?.stringValue == "matmul",
      let product = body.first(where: { $0.op == "matmul" })?.result
    else { return nil }
    if results.contains(product) { return product }
    let dtype = graph.type(of: product).dtype
    return results.first { graph.type(of: $0).dtype == dtype }
  }
}
