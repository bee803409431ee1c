import LaminaSupport

/// The type of an IR value: an element dtype and a shape whose dimensions may be symbolic.
///
/// Printed as in models: `f32[batch, 64]`; a scalar is `f32[]`.
public struct TensorType: Hashable, Sendable, CustomStringConvertible {
  public var dtype: DType
  public var shape: [Dim]

  public init(_ dtype: DType, _ shape: [Dim]) {
    self.dtype = dtype
    self.shape = shape
  }

  public static func scalar(_ dtype: DType) -> TensorType { TensorType(dtype, []) }

  public var rank: Int { shape.count }
  public var isScalar: Bool { shape.isEmpty }
  public var elementCount: Dim { shape.product }

  /// The most elements a tensor may have not counting its symbolic dimensions: 2^40 (4 TiB of f32).
  ///
  /// Sizes in a model are user input (`broadcast_to(x, shape: [9223372036854775807, batch])`); with
  /// this bound, the static part of every size, times a dtype's width, and sums and products of such
  /// sizes in shape rules and the memory plan stay far from overflowing `Int`.
  public static let maximumStaticElements = 1 << 40

  /// The product of the static dimensions (symbols count as 1); nil when it passes
  /// `maximumStaticElements` (or overflows `Int` on the way).
  public var boundedStaticElementCount: Int? {
    var product = 1
    for dim in shape {
      let (value, overflow) = product.multipliedReportingOverflow(by: dim.factor)
      guard !overflow, value <= TensorType.maximumStaticElements else { return nil }
      product = value
    }
    return product
  }
  /// Symbols used anywhere in the shape, in order of first use.
  public var symbols: [String] {
    var seen: [String] = []
    for dim in shape {
      for symbol in dim.symbols where !seen.contains(symbol) { seen.append(symbol) }
    }
    return seen
  }

  public func with(dtype: DType) -> TensorType { TensorType(dtype, shape) }
  public func with(shape: [Dim]) -> TensorType { TensorType(dtype, shape) }

  /// The concrete shape once symbols are bound; nil when one is unbound.
  public func concreteShape(_ bindings: [String: Int]) -> [Int]? {
    var result: [Int] = []
    for dim in shape {
      guard let value = dim.evaluate(bindings) else { return nil }
      result.append(value)
    }
    return result
  }

  public var shapeDescription: String {
    "[" + shape.map(\.description).joined(separator: ", ") + "]"
  }
  public var description: String { "\(dtype)\(shapeDescription)" }
}
