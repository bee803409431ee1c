import LaminaSupport

/// A compile-time argument of an op or initializer: `axis = -1`, `lr = 0.05`, `shape = [batch, 64]`.
public enum Attribute: Hashable, Sendable, CustomStringConvertible {
  case int(Int)
  case float(Double)
  case bool(Bool)
  case string(String)
  case ints([Int])
  case floats([Double])
  /// A shape that may name symbolic dimensions (`reshape`'s target).
  case dims([Dim])
  /// One entry per indexed axis, as written between brackets: `[:, -1, 0:4]`.
  case slices([SliceIndex])
  case dtype(DType)

  public var description: String {
    switch self {
    case .int(let value): String(value)
    case .float(let value): formatFloat(value)
    case .bool(let value): String(value)
    case .string(let value): quoteString(value)
    case .ints(let values): "[" + values.map(String.init).joined(separator: ", ") + "]"
    case .floats(let values): "[" + values.map(formatFloat).joined(separator: ", ") + "]"
    case .dims(let values): "[" + values.map(\.description).joined(separator: ", ") + "]"
    case .slices(let values): "[" + values.map(\.description).joined(separator: ", ") + "]"
    case .dtype(let value): value.rawValue
    }
  }

  /// The kind of value, for diagnostics ("expected an integer, got a string").
  public var kind: AttributeKind {
    switch self {
    case .int: .int
    case .float: .float
    case .bool: .bool
    case .string: .string
    case .ints: .ints
    case .floats: .floats
    case .dims: .dims
    case .slices: .slices
    case .dtype: .dtype
    }
  }

  public var intValue: Int? {
    if case .int(let value) = self { return value }
    return nil
  }

  /// Numbers of either kind as `Double`.
  public var doubleValue: Double? {
    switch self {
    case .int(let value): Double(value)
    case .float(let value): value
    default: nil
    }
  }

  public var boolValue: Bool? {
    if case .bool(let value) = self { return value }
    return nil
  }

  public var stringValue: String? {
    if case .string(let value) = self { return value }
    return nil
  }

  /// A list of integers; a single integer counts as a list of one (`axes: 1`).
  public var intsValue: [Int]? {
    switch self {
    case .ints(let values): values
    case .int(let value): [value]
    case .dims(let dims): dims.allSatisfy(\.isStatic) ? dims.map(\.factor) : nil
    default: nil
    }
  }

  public var dimsValue: [Dim]? {
    switch self {
    case .dims(let values): values
    case .ints(let values): values.map { Dim($0) }
    default: nil
    }
  }

  /// Converts to the kind an attribute spec asks for, when the conversion loses nothing.
  public func coerced(to kind: AttributeKind) -> Attribute? {
    switch (kind, self) {
    case (_, _) where self.kind == kind: self
    case (.float, .int(let value)): .float(Double(value))
    case (.ints, _): intsValue.map(Attribute.ints)
    case (.floats, .ints(let values)): .floats(values.map(Double.init))
    case (.floats, .float(let value)): .floats([value])
    case (.floats, .int(let value)): .floats([Double(value)])
    case (.dims, _): dimsValue.map(Attribute.dims)
    case (.dtype, .string(let name)): DType(rawValue: name).map(Attribute.dtype)
    // An index of integers only (`x[-1]`) prints as `[-1]`, which reads back as a list of integers.
    case (.slices, .ints(let values)): .slices(values.map(SliceIndex.index))
    default: nil
    }
  }
}

/// The kinds of attribute values an op can declare.
public enum AttributeKind: String, Sendable, Hashable, CustomStringConvertible {
  case int, float, bool, string, ints, floats, dims, slices, dtype

  public var description: String {
    switch self {
    case .int: "an integer"
    case .float: "a number"
    case .bool: "true or false"
    case .string: "a string"
    case .ints: "a list of integers"
    case .floats: "a list of numbers"
    case .dims: "a shape"
    case .slices: "an index"
    case .dtype: "a dtype (f32, f64, i32, i64)"
    }
  }
}

/// One axis of an indexing expression: a single index (which drops the axis) or a range.
public enum SliceIndex: Hashable, Sendable, CustomStringConvertible {
  case index(Int)
  /// `start:stop:step`; nil bounds mean the start or end of the axis, negatives count from the end.
  case range(start: Int?, stop: Int?, step: Int)

  public static let all = SliceIndex.range(start: nil, stop: nil, step: 1)

  public var description: String {
    switch self {
    case .index(let value): return String(value)
    case .range(let start, let stop, let step):
      let text = (start.map(String.init) ?? "") + ":" + (stop.map(String.init) ?? "")
      return step == 1 ? text : text + ":\(step)"
    }
  }
}

/// Floats print in the shortest form that reads back to the same `Double`, always with a `.` or
/// exponent so the IR parser knows it is a float.
func formatFloat(_ value: Double) -> String {
  if value.isNaN { return "nan" }
  if value.isInfinite { return value < 0 ? "-inf" : "inf" }
  let text = String(value)
  if text.contains(".") || text.contains("e") { return text }
  return text + ".0"
}

func quoteString(_ value: String) -> String {
  var out = "\""
  for character in value {
    switch character {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    case "\t": out += "\\t"
    default: out.append(character)
    }
  }
  return out + "\""
}
