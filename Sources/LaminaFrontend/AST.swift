import LaminaSupport

/// A parsed `.lam` file: models and reusable blocks, in source order.
public struct SourceProgram: Sendable {
  public var models: [ModelDecl] = []
  public var blocks: [BlockDecl] = []
  public init() {}
}

/// `model Name { statements }`.
public struct ModelDecl: Sendable {
  public var name: String
  public var statements: [Statement]
  public var location: SourceLocation
}

/// `block Name(x, units: Int) { statements; return expr }`: a reusable piece of a model whose
/// parameters get a fresh scope per call.
public struct BlockDecl: Sendable {
  public var name: String
  public var parameters: [BlockParameter]
  public var statements: [Statement]
  public var location: SourceLocation
}

/// One parameter of a block: a tensor (no type) or a compile-time value (`units: Int = 64`).
public struct BlockParameter: Sendable {
  public enum Kind: String, Sendable {
    case tensor
    case int = "Int"
    case float = "Float"
    case bool = "Bool"
    case string = "String"
  }
  public var name: String
  public var kind: Kind
  public var defaultValue: Expr?
  public var location: SourceLocation
}

/// A type as written: `f32[batch, 64]`.
public struct TypeExpr: Sendable {
  public var dtype: String
  public var dims: [DimExpr]
  public var location: SourceLocation
}

/// One dimension as written: an integer or a name.
public enum DimExpr: Sendable {
  case literal(Int, SourceLocation)
  case name(String, SourceLocation)
}

/// A statement of a model or block body.
public enum Statement: Sendable {
  case input(name: String, type: TypeExpr, location: SourceLocation)
  case param(name: String, type: TypeExpr, initializer: Expr?, location: SourceLocation)
  case `let`(name: String, value: Expr, location: SourceLocation)
  /// `output probs = expr`, or `output y` exposing an existing name.
  case output(name: String, value: Expr?, location: SourceLocation)
  /// `loss = expr` or `loss name = expr`.
  case loss(name: String, value: Expr, location: SourceLocation)
  /// `train [name] with optimizer(args)`.
  case train(name: String?, optimizer: Expr, location: SourceLocation)
  /// `freeze "pattern"`: the parameters whose names match get no updates.
  case freeze(pattern: Expr, location: SourceLocation)
  case `return`(value: Expr, location: SourceLocation)

  public var location: SourceLocation {
    switch self {
    case .input(_, _, let location), .param(_, _, _, let location), .let(_, _, let location),
      .output(_, _, let location), .loss(_, _, let location), .train(_, _, let location),
      .freeze(_, let location), .return(_, let location):
      location
    }
  }

  /// The keyword the statement starts with.
  public var keyword: String {
    switch self {
    case .input: "input"
    case .param: "param"
    case .let: "let"
    case .output: "output"
    case .loss: "loss"
    case .train: "train"
    case .freeze: "freeze"
    case .return: "return"
    }
  }

  /// The expression that computes the value the statement defines, if any.
  public var definingExpression: Expr? {
    switch self {
    case .let(_, let value, _): value
    case .output(_, let value, _): value
    default: nil
    }
  }

  /// The name the statement defines, if any.
  public var definedName: String? {
    switch self {
    case .input(let name, _, _), .param(let name, _, _, _), .let(let name, _, _): name
    case .output(let name, let value, _): value == nil ? nil : name
    default: nil
    }
  }
}

/// An expression, with the source span it covers.
public struct Expr: Sendable {
  public indirect enum Kind: Sendable {
    case name(String)
    case integer(Int)
    case float(Double)
    case string(String)
    case list([Expr])
    case binary(BinaryOperator, Expr, Expr)
    case negate(Expr)
    case call(callee: String, calleeLocation: SourceLocation, arguments: [Argument])
    case index(Expr, [IndexItem])
  }
  public var kind: Kind
  public var location: SourceLocation

  public init(_ kind: Kind, at location: SourceLocation) {
    self.kind = kind
    self.location = location
  }
}

extension Expr {
  /// Whether the expression reads `name` anywhere inside.
  public func mentions(_ name: String) -> Bool {
    switch kind {
    case .name(let other): other == name
    case .integer, .float, .string: false
    case .list(let elements): elements.contains { $0.mentions(name) }
    case .binary(_, let lhs, let rhs): lhs.mentions(name) || rhs.mentions(name)
    case .negate(let operand): operand.mentions(name)
    case .call(_, _, let arguments): arguments.contains { $0.value.mentions(name) }
    case .index(let base, let items):
      base.mentions(name)
        || items.contains { item in
          switch item {
          case .index(let expr): expr.mentions(name)
          case .range(let start, let stop, let step):
            [start, stop, step].contains { $0?.mentions(name) ?? false }
          }
        }
    }
  }
}

/// An argument of a call: `x` or `units: 64`.
public struct Argument: Sendable {
  public var label: String?
  public var value: Expr
  public var location: SourceLocation
}

/// One item between indexing brackets: `0`, `-1`, `1:4`, `:`, `::2`.
public enum IndexItem: Sendable {
  case index(Expr)
  case range(start: Expr?, stop: Expr?, step: Expr?)
}

public enum BinaryOperator: String, Sendable {
  case add = "+"
  case subtract = "-"
  case multiply = "*"
  case divide = "/"
  case matmul = "@"

  /// The IR op the operator lowers to.
  public var op: String {
    switch self {
    case .add: "add"
    case .subtract: "sub"
    case .multiply: "mul"
    case .divide: "div"
    case .matmul: "matmul"
    }
  }
}
