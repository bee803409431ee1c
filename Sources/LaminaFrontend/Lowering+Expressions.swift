import LaminaIR
import LaminaSupport

/// Expressions: names, literals, operators, indexing, and compile-time attribute values.
extension Lowering {
  /// Evaluates the expression of the definition of `name`, so a use of `name` inside is recognized.
  mutating func evaluating(_ expr: Expr, defining name: String) -> Value {
    let outer = scope.defining
    scope.defining = name
    defer { scope.defining = outer }
    return evaluate(expr)
  }

  /// A literal as written, for help lines.
  func literalText(_ expr: Expr) -> String? {
    switch expr.kind {
    case .integer(let value): String(value)
    case .float(let value): String(value)
    case .string(let value): "\"\(value)\""
    default: nil
    }
  }

  mutating func evaluate(_ expr: Expr) -> Value {
    switch expr.kind {
    case .name(let name):
      return lookup(name, at: expr.location)
    case .integer(let value):
      return .integer(value)
    case .float(let value):
      return .number(value)
    case .string(let value):
      return .string(value)
    case .list(let elements):
      return .list(elements.map { evaluate($0) })
    case .negate(let operand):
      switch evaluate(operand) {
      case .integer(let value):
        let (negated, overflow) = 0.subtractingReportingOverflow(value)
        guard !overflow else {
          diagnostics.error("integer overflow in -(\(value))", at: expr.location)
          return .poisoned
        }
        return .integer(negated)
      case .number(let value): return .number(-value)
      case .tensor(let value): return emit("neg", [value], at: expr.location)
      case .poisoned: return .poisoned
      case let other:
        diagnostics.error("cannot negate \(other.kindDescription)", at: expr.location)
        return .poisoned
      }
    case .binary(let op, let lhsExpr, let rhsExpr):
      return lowerBinary(op, evaluate(lhsExpr), evaluate(rhsExpr), at: expr.location)
    case .index(let baseExpr, let items):
      return lowerIndex(evaluate(baseExpr), items, at: expr.location)
    case .call(let callee, let calleeLocation, let arguments):
      return lowerCall(callee, calleeLocation: calleeLocation, arguments, at: expr.location)
    }
  }

  mutating func lowerBinary(
    _ op: BinaryOperator, _ lhs: Value, _ rhs: Value, at location: SourceLocation
  )
    -> Value
  {
    switch (lhs, rhs) {
    case (.poisoned, _), (_, .poisoned):
      return .poisoned
    case (.integer(let a), .integer(let b)) where op != .divide && op != .matmul:
      let (value, overflow): (Int, Bool) =
        switch op {
        case .add: a.addingReportingOverflow(b)
        case .subtract: a.subtractingReportingOverflow(b)
        default: a.multipliedReportingOverflow(by: b)
        }
      if overflow {
        diagnostics.error("integer overflow in \(a) \(op.rawValue) \(b)", at: location)
        return .poisoned
      }
      return .integer(value)
    case (.integer, .integer), (.integer, .number), (.number, .integer), (.number, .number):
      guard op != .matmul else {
        diagnostics.error("'@' needs tensors on both sides", at: location)
        return .poisoned
      }
      let a = number(lhs)!
      let b = number(rhs)!
      switch op {
      case .add: return .number(a + b)
      case .subtract: return .number(a - b)
      case .multiply: return .number(a * b)
      default:
        guard b != 0 else {
          diagnostics.error("division by zero", at: location)
          return .poisoned
        }
        return .number(a / b)
      }
    case (.tensor(let a), .tensor(let b)):
      return emit(op.op, [a, b], at: location)
    case (.tensor(let a), .integer), (.tensor(let a), .number):
      guard op != .matmul else {
        diagnostics.error("'@' needs tensors on both sides; use * to scale", at: location)
        return .poisoned
      }
      return emit(op.op, [a, constant(number(rhs)!, like: a, at: location)], at: location)
    case (.integer, .tensor(let b)), (.number, .tensor(let b)):
      guard op != .matmul else {
        diagnostics.error("'@' needs tensors on both sides; use * to scale", at: location)
        return .poisoned
      }
      return emit(op.op, [constant(number(lhs)!, like: b, at: location), b], at: location)
    default:
      diagnostics.error(
        "cannot apply '\(op.rawValue)' to \(lhs.kindDescription) and \(rhs.kindDescription)",
        at: location)
      return .poisoned
    }
  }

  func number(_ value: Value) -> Double? {
    switch value {
    case .integer(let value): Double(value)
    case .number(let value): value
    default: nil
    }
  }

  /// A scalar constant node with the dtype of `other`, so literals adapt to the tensors they meet.
  mutating func constant(_ value: Double, like other: ValueID?, at location: SourceLocation)
    -> ValueID
  {
    let dtype = other.map { graph.type(of: $0).dtype } ?? .f32
    return graph.addNode(
      "constant", [], attributes: ["value": .float(value), "dtype": .dtype(dtype)],
      type: .scalar(dtype),
      location: location)
  }

  mutating func emit(
    _ op: String, _ operands: [ValueID], attributes: [String: Attribute] = [:],
    at location: SourceLocation
  ) -> Value {
    do {
      let result = try graph.addInferredNode(
        op, operands, attributes: attributes, location: location)
      let type = graph.type(of: result)
      guard type.boundedStaticElementCount != nil else {
        diagnostics.error(
          "\(op) would give \(type), too large: its dimensions multiply past 2^40 elements",
          at: location)
        return .poisoned
      }
      return .tensor(result)
    } catch {
      diagnostics.error(error.message, at: location, help: error.help)
      return .poisoned
    }
  }

  mutating func requireTensor(_ value: Value, at location: SourceLocation, what: String)
    -> ValueID?
  {
    switch value {
    case .tensor(let tensor): return tensor
    case .poisoned: return nil
    default:
      diagnostics.error("\(what) must be a tensor, got \(value.kindDescription)", at: location)
      return nil
    }
  }

  mutating func lowerIndex(_ base: Value, _ items: [IndexItem], at location: SourceLocation)
    -> Value
  {
    guard case .tensor(let tensor) = base else {
      if case .poisoned = base { return .poisoned }
      diagnostics.error("only tensors can be indexed, not \(base.kindDescription)", at: location)
      return .poisoned
    }
    var slices: [SliceIndex] = []
    func integer(_ expr: Expr?) -> Int?? {
      guard let expr else { return .some(nil) }
      if case .integer(let value) = evaluate(expr) { return .some(value) }
      diagnostics.error("indices must be integer constants", at: expr.location)
      return nil
    }
    for item in items {
      switch item {
      case .index(let expr):
        guard let value = integer(expr), let value else { return .poisoned }
        slices.append(.index(value))
      case .range(let startExpr, let stopExpr, let stepExpr):
        guard let start = integer(startExpr), let stop = integer(stopExpr),
          let step = integer(stepExpr)
        else {
          return .poisoned
        }
        if step == 0 {
          diagnostics.error("slice step cannot be zero", at: location)
          return .poisoned
        }
        slices.append(.range(start: start, stop: stop, step: step ?? 1))
      }
    }
    return emit("slice", [tensor], attributes: ["index": .slices(slices)], at: location)
  }

  /// A compile-time value for an attribute. Bare names that are not defined read as symbols or words
  /// (`reshape(x, [batch, -1])`, `cast(x, dtype: f64)`).
  mutating func attributeValue(_ expr: Expr) -> Attribute? {
    if case .name(let name) = expr.kind, scope.bindings[name] == nil,
      !["true", "false", "params"].contains(name)
    {
      return .string(name)
    }
    if case .list(let elements) = expr.kind {
      var dims: [Dim] = []
      var numbers: [Double] = []
      var allIntegers = true
      for element in elements {
        if case .name(let name) = element.kind, scope.bindings[name] == nil {
          dims.append(Dim(symbol: name))
          allIntegers = false
          numbers.append(.nan)
          continue
        }
        switch evaluate(element) {
        case .integer(let value):
          dims.append(Dim(value))
          numbers.append(Double(value))
        case .number(let value):
          allIntegers = false
          numbers.append(value)
          dims.append(Dim(0))
        case .poisoned:
          return nil
        case let other:
          diagnostics.error(
            "a list here holds numbers or dimensions, not \(other.kindDescription)",
            at: element.location)
          return nil
        }
      }
      if allIntegers { return .ints(dims.map(\.factor)) }
      if !numbers.contains(where: \.isNaN) { return .floats(numbers) }
      return .dims(dims)
    }
    switch evaluate(expr) {
    case .integer(let value): return .int(value)
    case .number(let value): return .float(value)
    case .string(let value): return .string(value)
    case .bool(let value): return .bool(value)
    case .poisoned: return nil
    case let other:
      diagnostics.error("expected a constant here, got \(other.kindDescription)", at: expr.location)
      return nil
    }
  }
}
