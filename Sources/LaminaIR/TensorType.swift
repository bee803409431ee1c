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
