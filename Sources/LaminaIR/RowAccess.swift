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
  /// One value per position along one axis before the last (a per-channel scale `[C, 1, 1]` over
  /// `[N, C, H, W]`): element `[(r / inner) % count]`, where `count` is that axis's size and `inner`
  /// the product of the axes between it and the last.
  case axis(count: Dim, inner: Dim)

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
    let kept = padded.indices.filter { padded[$0] != Dim(1) }
    if kept.count == 1, let axis = kept.first, axis < domain.count - 1,
      padded[axis] == domain[axis]
    {
      self = .axis(
        count: domain[axis], inner: Array(domain[(axis + 1)..<(domain.count - 1)]).product)
      return
    }
    return nil
  }
}
