/// Checks tensors given to a model against their declared types and binds the symbolic dimensions.
///
/// Shared by the reference interpreter and the compiled runtime, so both report a wrong input the
/// same way. Declared dimensions are text as in a `ModelSignature`: `"64"`, `"batch"`, `"8*batch"`.
public enum ShapeBinding {
  /// The value of every symbol, bound from dimensions that are a bare symbol; static dimensions and
  /// products are checked against the tensors.
  /// - Parameter kind: what the tensors are, for messages (`input`).
  public static func bind(_ entries: [(entry: ModelSignature.Entry, tensor: Tensor)], kind: String)
    throws -> [String: Int]
  {
    var bindings: [String: Int] = [:]
    var boundBy: [String: String] = [:]
    for (entry, tensor) in entries {
      let (name, type) = (entry.name, entry.typeDescription)
      guard tensor.rank == entry.shape.count else {
        throw RunError(
          "\(kind) '\(name)': expected \(type) (rank \(entry.shape.count)), got \(tensor.typeDescription) (rank \(tensor.rank))"
        )
      }
      for (axis, (dim, actual)) in zip(entry.shape, tensor.shape).enumerated() {
        if let value = Int(dim) {
          guard value == actual else {
            throw RunError(
              "\(kind) '\(name)': expected \(type), got \(tensor.typeDescription) (dimension \(axis) is \(actual), expected \(value))"
            )
          }
        } else if !dim.contains("*") {
          if let bound = bindings[dim], bound != actual {
            throw RunError(
              "\(kind) '\(name)': dimension \(axis) (\(dim)) is \(actual), but \(dim) is \(bound) from '\(boundBy[dim]!)'"
            )
          }
          guard actual > 0 else {
            throw RunError(
              "\(kind) '\(name)': dimension \(axis) (\(dim)) must be at least 1, got \(actual)")
          }
          bindings[dim] = actual
          boundBy[dim] = name
        }
      }
    }
    // Dimensions like `32*batch` are checked once every symbol is bound.
    for (entry, tensor) in entries {
      for (axis, (dim, actual)) in zip(entry.shape, tensor.shape).enumerated() where Int(dim) == nil
      {
        guard let value = ModelSignature.Entry.evaluate(dim, bindings) else {
          throw RunError(
            "\(kind) '\(entry.name)': cannot bind dimension \(axis) (\(dim)) from its size alone")
        }
        guard value == actual else {
          throw RunError(
            "\(kind) '\(entry.name)': dimension \(axis) is \(actual), expected \(dim) = \(value)")
        }
      }
    }
    return bindings
  }

  /// The tensor as the declared dtype: as it is, or an integer tensor of another width (numpy's
  /// default int64 labels) when every value fits.
  public static func conform(_ tensor: Tensor, to dtype: DType, name: String, kind: String) throws
    -> Tensor
  {
    if tensor.dtype == dtype { return tensor }
    if tensor.dtype.isInteger, dtype.isInteger {
      if dtype == .i32, let bad = tensor.doubles().first(where: { abs($0) > Double(Int32.max) }) {
        throw RunError("\(kind) '\(name)': value \(Int(bad)) does not fit in i32")
      }
      return tensor.converted(to: dtype)
    }
    throw RunError(
      "\(kind) '\(name)': expected dtype \(dtype), got \(tensor.dtype) (\(tensor.typeDescription))")
  }
}
