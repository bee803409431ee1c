import LaminaSupport

/// One dimension of an imported tensor: a number, or a product of a number and symbolic dimensions
/// (`N`, `3*N` after a flatten). Symbols are kept sorted so equal products compare equal.
public struct ImportedDim: Hashable, Sendable, CustomStringConvertible {
  public var factor: Int
  public var symbols: [String]

  public init(_ value: Int) {
    factor = value
    symbols = []
  }

  public init(symbol: String) {
    factor = 1
    symbols = [symbol]
  }

  init(factor: Int, symbols: [String]) {
    self.factor = factor
    self.symbols = symbols.sorted()
  }

  /// The size when it is a number.
  public var staticValue: Int? { symbols.isEmpty ? factor : nil }

  /// How `.lam` can write it in a shape attribute: a number or a single symbol; nil for a product.
  public var lamText: String? {
    if symbols.isEmpty { return String(factor) }
    if symbols.count == 1, factor == 1 { return symbols[0] }
    return nil
  }

  public var description: String {
    if symbols.isEmpty { return String(factor) }
    return (factor == 1 ? [] : [String(factor)]).joined() + (factor == 1 ? "" : "*")
      + symbols.joined(separator: "*")
  }

  /// The product, or nil when it overflows the sizes a tensor may have.
  public func times(_ other: ImportedDim) -> ImportedDim? {
    let (product, overflow) = factor.multipliedReportingOverflow(by: other.factor)
    guard !overflow, product <= 1 << 40 else { return nil }
    return ImportedDim(factor: product, symbols: symbols + other.symbols)
  }

  /// The exact quotient, or nil when `other` does not divide this.
  public func divided(by other: ImportedDim) -> ImportedDim? {
    guard other.factor != 0, factor % other.factor == 0 else { return nil }
    var remaining = symbols
    for symbol in other.symbols {
      guard let index = remaining.firstIndex(of: symbol) else { return nil }
      remaining.remove(at: index)
    }
    return ImportedDim(factor: factor / other.factor, symbols: remaining)
  }

  /// The sum, when both are numbers or multiples of the same symbols.
  public func plus(_ other: ImportedDim) -> ImportedDim? {
    guard symbols == other.symbols else { return nil }
    let (sum, overflow) = factor.addingReportingOverflow(other.factor)
    guard !overflow else { return nil }
    return ImportedDim(factor: sum, symbols: symbols)
  }

  /// The product of `dims`.
  public static func product(_ dims: some Collection<ImportedDim>) -> ImportedDim? {
    var result = ImportedDim(1)
    for dim in dims {
      guard let next = result.times(dim) else { return nil }
      result = next
    }
    return result
  }
}

/// A tensor the `.lam` file computes: its name there, shape and element type.
public struct TensorExpression: Sendable {
  public var name: String
  public var shape: [ImportedDim]
  public var dtype: DType
  public var rank: Int { shape.count }

  public init(name: String, shape: [ImportedDim], dtype: DType) {
    self.name = name
    self.shape = shape
    self.dtype = dtype
  }

  /// The `.lam` type, `f32[N, 3, 224, 224]`.
  public var typeText: String {
    "\(dtype)[\(shape.map { $0.lamText ?? $0.description }.joined(separator: ", "))]"
  }
}

/// What an ONNX value is while importing: a tensor of the `.lam` model, or a value known at import
/// time (initializers, `Constant`s, shapes and what is computed from them).
public enum ImportedValue: Sendable {
  /// Computed by the model.
  case tensor(TensorExpression)
  /// Known at import time. Integers (shapes, axes, indices) are i64.
  case constant(Tensor)
  /// A 1-D (or, with `scalar`, 0-D) integer vector known at import time up to symbolic dimensions:
  /// a `Shape` of a tensor with a dynamic batch, and what `Gather`, `Concat`, `Unsqueeze` make of it.
  case dims([ImportedDim], scalar: Bool)

  /// A shape-like integer vector value, normalized: all-static dims become a constant tensor.
  static func shapeValue(_ dims: [ImportedDim], scalar: Bool) -> ImportedValue {
    if dims.allSatisfy({ $0.staticValue != nil }) {
      let values = dims.map { Int64($0.staticValue!) }
      return .constant(Tensor(shape: scalar ? [] : [values.count], scalars: values))
    }
    return .dims(dims, scalar: scalar)
  }

  /// The value's shape when it is known as numbers and symbols.
  public var shape: [ImportedDim] {
    switch self {
    case .tensor(let expression): expression.shape
    case .constant(let tensor): tensor.shape.map { ImportedDim($0) }
    case .dims(let dims, let scalar): scalar ? [] : [ImportedDim(dims.count)]
    }
  }

  public var rank: Int { shape.count }

  public var dtype: DType {
    switch self {
    case .tensor(let expression): expression.dtype
    case .constant(let tensor): tensor.dtype
    case .dims: .i64
    }
  }

  /// True when the value is known at import time.
  public var isStatic: Bool {
    if case .tensor = self { return false }
    return true
  }

  /// The elements as dims (numbers or symbolic) when the value is a static integer vector or scalar.
  public var staticDims: [ImportedDim]? {
    switch self {
    case .tensor: return nil
    case .dims(let dims, _): return dims
    case .constant(let tensor):
      guard tensor.dtype.isInteger, tensor.rank <= 1 else { return nil }
      return tensor.converted(to: .i64).scalars(as: Int64.self).map {
        ImportedDim(Int(clamping: $0))
      }
    }
  }

  /// The elements as integers when the value is a static integer vector or scalar with no symbol.
  public var staticIntegers: [Int]? {
    guard case .constant(let tensor) = self, tensor.dtype.isInteger else { return nil }
    return tensor.converted(to: .i64).scalars(as: Int64.self).map { Int(clamping: $0) }
  }
}
