/// One dimension of a tensor type: a product of an integer and named symbols.
///
/// Static dimensions are plain integers (`64`). Symbolic ones name a size known only at run time
/// (`batch`); they stay symbolic through every pass and become arguments of compiled code. Flattening or
/// concatenating can multiply them (`32*batch`), so a dimension is kept as a monomial: a factor times a
/// sorted list of symbols. Sums of different symbols are not representable, and ops that would need one
/// report it.
public struct Dim: Hashable, Sendable, CustomStringConvertible, Comparable {
  public var factor: Int
  /// Symbol names, sorted, repeated for powers (`batch*batch`).
  public var symbols: [String]

  public init(_ value: Int) {
    factor = value
    symbols = []
  }

  public init(symbol: String) {
    factor = 1
    symbols = [symbol]
  }

  public init(factor: Int, symbols: [String]) {
    self.factor = factor
    self.symbols = factor == 0 ? [] : symbols.sorted()
  }

  /// The integer value when no symbols are involved.
  public var staticValue: Int? { symbols.isEmpty ? factor : nil }
  public var isStatic: Bool { symbols.isEmpty }

  public static func * (lhs: Dim, rhs: Dim) -> Dim {
    Dim(factor: lhs.factor * rhs.factor, symbols: lhs.symbols + rhs.symbols)
  }

  /// Exact division; nil when `rhs` does not divide `self` (`batch / 3`, `64 / batch`).
  public func divided(by rhs: Dim) -> Dim? {
    guard rhs.factor != 0, factor % rhs.factor == 0 else { return nil }
    var remaining = symbols
    for symbol in rhs.symbols {
      guard let index = remaining.firstIndex(of: symbol) else { return nil }
      remaining.remove(at: index)
    }
    return Dim(factor: factor / rhs.factor, symbols: remaining)
  }

  /// The sum when both share the same symbols (`batch + batch = 2*batch`); nil otherwise.
  public func adding(_ rhs: Dim) -> Dim? {
    guard symbols == rhs.symbols else { return nil }
    return Dim(factor: factor + rhs.factor, symbols: symbols)
  }

  /// The concrete size once every symbol is bound; nil when a symbol is unbound. A product past
  /// `Int.max` gives `Int.max`, which no tensor can have, so allocating it fails with a message.
  public func evaluate(_ bindings: [String: Int]) -> Int? {
    var value = factor
    for symbol in symbols {
      guard let bound = bindings[symbol] else { return nil }
      let (product, overflow) = value.multipliedReportingOverflow(by: bound)
      value = overflow ? Int.max : product
    }
    return value
  }

  /// `64`, `batch`, `32*batch`.
  public var description: String {
    if symbols.isEmpty { return String(factor) }
    let product = symbols.joined(separator: "*")
    return factor == 1 ? product : "\(factor)*\(product)"
  }

  public static func < (lhs: Dim, rhs: Dim) -> Bool { lhs.description < rhs.description }
}

extension Dim: ExpressibleByIntegerLiteral {
  public init(integerLiteral value: Int) { self.init(value) }
}

extension Array where Element == Dim {
  /// The number of elements as a dimension expression.
  public var product: Dim { reduce(Dim(1), *) }
}
