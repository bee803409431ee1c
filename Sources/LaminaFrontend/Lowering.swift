import LaminaIR
import LaminaSupport

/// Turns a parsed model into a typed graph (the role of MLIR Toy's MLIRGen).
///
/// Statements run top to bottom. Every node gets its type from the op table as it is built, because
/// layers need their input's shape to size their parameters; the `shape-inference` pass applies the
/// same rules to graphs that come from IR text. Blocks are instantiated per call with a fresh parameter
/// scope. All problems are collected as diagnostics; an expression that failed yields a poisoned value
/// so one mistake is reported once, not again by every use.
public struct Lowering {
  /// A value while lowering: a tensor in the graph, or a compile-time value.
  enum Value {
    case tensor(ValueID)
    case integer(Int)
    case number(Double)
    case string(String)
    case bool(Bool)
    case list([Value])
    /// A block or layer bound without its tensor inputs (`let critic = Critic(units: 8)`): calling it
    /// applies the same parameters each time (weight sharing).
    case instance(Instance)
    /// An error was already reported for the expression that made this.
    case poisoned

    var kindDescription: String {
      switch self {
      case .tensor: "a tensor"
      case .integer: "an integer"
      case .number: "a number"
      case .string: "a string"
      case .bool: "a boolean"
      case .list: "a list"
      case .instance(let instance): "an instance of \(instance.kindName)"
      case .poisoned: "an invalid value"
      }
    }
  }

  /// A block or layer with its options fixed and its parameters named once, callable many times.
  struct Instance {
    enum Kind {
      case block(BlockDecl)
      case layer(LayerDefinition)
    }
    var kind: Kind
    /// The options as written at creation, applied again at every call.
    var configuration: [Argument]
    /// The qualified scope of the shared parameters (`critic`, `dense_2`).
    var scopeName: String

    var kindName: String {
      switch kind {
      case .block(let block): "block \(block.name)"
      case .layer(let layer): "layer \(layer.name)"
      }
    }
  }

  struct Binding {
    var value: Value
    var location: SourceLocation
    var used = false
    /// Unused lets warn; block parameters and model inputs are reported separately.
    var warnsWhenUnused: Bool
    var kind: String
  }

  struct Scope {
    /// Qualified name of the block instance (`residual_3`); empty at model level.
    var prefix: String
    var bindings: [String: Binding] = [:]
    /// Names the scope's statements define, with where, to explain use-before-definition.
    var laterDefinitions: [String: SourceLocation] = [:]
    /// The expressions of those definitions, to tell a cycle from a simple misordering.
    var laterExpressions: [String: Expr] = [:]
    /// The name the statement being lowered defines (`a` while lowering `let a = ...`).
    var defining: String?
    var instanceCounters: [String: Int] = [:]
    /// True while an instance is called again: its parameters exist and are shared, not created.
    var sharesParameters = false

    func qualified(_ name: String) -> String { prefix.isEmpty ? name : "\(prefix).\(name)" }
  }

  private var graph: Graph
  private var diagnostics = DiagnosticBag()
  private var scopes: [Scope] = []
  private let blocks: [String: BlockDecl]
  /// The blocks being expanded, outermost first, to catch recursion.
  private var blockStack: [String] = []
  private var freezePatterns: [(pattern: String, location: SourceLocation)] = []
  /// Outputs and losses the model declares, including ones whose expression failed, so a failed loss
  /// is not reported again as a missing one.
  private var declaredExposedNames: Set<String> = []

  /// Blocks and repeats expand inline; past this many nodes a model is surely a mistake (and would take
  /// minutes to build).
  static let maximumNodes = 1_000_000

  /// Lowers one model of a program. Returns the graph when there were no errors, and all diagnostics.
  public static func lower(_ model: ModelDecl, in program: SourceProgram, sourcePath: String) -> (
    graph: Graph?, diagnostics: [Diagnostic]
  ) {
    var blocks: [String: BlockDecl] = [:]
    var lowering = Lowering(graph: Graph(name: model.name, sourceFile: sourcePath), blocks: [:])
    for block in program.blocks {
      if let existing = blocks[block.name] {
        lowering.diagnostics.error(
          "block \(block.name) is defined twice", at: block.location,
          notes: [.init("first defined here", at: existing.location)])
      } else if LayerRegistry.definition(block.name) != nil
        || OpRegistry.definition(block.name) != nil
      {
        lowering.diagnostics.error(
          "block \(block.name) has the name of a built-in function", at: block.location)
      } else {
        blocks[block.name] = block
      }
    }
    lowering = Lowering(graph: lowering.graph, blocks: blocks, diagnostics: lowering.diagnostics)
    lowering.lowerModel(model)
    let graph = lowering.diagnostics.hasErrors ? nil : lowering.graph
    return (graph, lowering.diagnostics.diagnostics)
  }

  private init(
    graph: Graph, blocks: [String: BlockDecl], diagnostics: DiagnosticBag = DiagnosticBag()
  ) {
    self.graph = graph
    self.blocks = blocks
    self.diagnostics = diagnostics
  }

  private var scope: Scope {
    get { scopes[scopes.count - 1] }
    set { scopes[scopes.count - 1] = newValue }
  }

  // MARK: Models

  private mutating func lowerModel(_ model: ModelDecl) {
    scopes = [Scope(prefix: "")]
    recordDefinitions(model.statements)
    for statement in model.statements { lowerModelStatement(statement) }
    applyFreezes()
    if declaredExposedNames.isEmpty {
      diagnostics.error(
        "model \(model.name) has no output or loss", at: model.location,
        help: "add `output name = expression` or `loss = expression`")
    }
    if !graph.trainSteps.isEmpty || !graph.losses.isEmpty {
      for step in graph.trainSteps where !declaredExposedNames.contains(step.lossName) {
        let losses = graph.losses.map(\.name)
        diagnostics.error(
          "training step '\(step.name)' minimizes '\(step.lossName)', but the model has no such loss",
          at: step.location,
          help: losses.isEmpty
            ? "define it with `loss \(step.lossName == "loss" ? "" : "\(step.lossName) ")= expression`"
            : "the model's losses are \(losses.joined(separator: ", ")); choose one with \(step.optimizer)(loss: \(losses[0]), ...)"
        )
      }
    }
    // Uses inside failed expressions may not have been seen; warnings would be noise then.
    if !diagnostics.hasErrors { reportUnused() }
    graph.renumberTemporaries()
  }

  private mutating func recordDefinitions(_ statements: [Statement]) {
    for statement in statements {
      if let name = statement.definedName, scope.laterDefinitions[name] == nil {
        scope.laterDefinitions[name] = statement.location
        scope.laterExpressions[name] = statement.definingExpression
      }
    }
  }

  private mutating func lowerModelStatement(_ statement: Statement) {
    switch statement {
    case .input(let name, let typeExpr, let location):
      guard declareName(name, at: location) else { return }
      guard let type = lowerType(typeExpr, allowSymbols: true, what: "input \(name)") else {
        bind(name, .poisoned, at: location, kind: "input")
        return
      }
      let value = graph.addInput(name: name, type: type, location: location)
      bind(name, .tensor(value), at: location, kind: "input")
    case .param, .let:
      lowerSharedStatement(statement)
    case .output(let name, let valueExpr, let location):
      declaredExposedNames.insert(name)
      if graph.outputs.contains(where: { $0.name == name }) {
        diagnostics.error("output '\(name)' is defined twice", at: location)
        return
      }
      let value: Value
      if let valueExpr {
        guard declareName(name, at: location) else { return }
        value = evaluating(valueExpr, defining: name)
        bind(name, value, at: location, kind: "output", warnsWhenUnused: false)
      } else {
        value = lookup(name, at: location)
      }
      guard
        let tensor = requireTensor(
          value, at: valueExpr?.location ?? location, what: "output \(name)")
      else { return }
      nameIfTemporary(tensor, name)
      graph.outputs.append(NamedValue(name: name, value: tensor))
    case .loss(let name, let valueExpr, let location):
      declaredExposedNames.insert(name)
      if graph.losses.contains(where: { $0.name == name }) {
        diagnostics.error("loss '\(name)' is defined twice", at: location)
        return
      }
      let value = evaluate(valueExpr)
      guard let tensor = requireTensor(value, at: valueExpr.location, what: "the loss") else {
        return
      }
      let type = graph.type(of: tensor)
      guard type.isScalar, type.dtype.isFloatingPoint else {
        diagnostics.error(
          "the loss must be a floating-point scalar, got \(type)", at: valueExpr.location,
          help: type.isScalar
            ? "gradients need floating-point values; convert it with cast(..., dtype: f32)"
            : "reduce it with mean(...) or sum(...)")
        return
      }
      nameIfTemporary(tensor, name)
      graph.losses.append(NamedValue(name: name, value: tensor))
      if scope.bindings[name] == nil {
        bind(name, .tensor(tensor), at: location, kind: "loss", warnsWhenUnused: false)
      }
    case .train(let name, let optimizerExpr, let location):
      lowerTrain(name: name, optimizerExpr, at: location)
    case .freeze(let patternExpr, let location):
      guard case .string(let pattern) = patternExpr.kind else {
        diagnostics.error(
          "freeze takes a quoted parameter name pattern like \"encoder.*\"",
          at: patternExpr.location)
        return
      }
      freezePatterns.append((pattern, location))
    case .return(_, let location):
      diagnostics.error(
        "'return' is only allowed in a block", at: location,
        help: "a model exposes values with `output name = expression`")
    }
  }

  /// Statements that mean the same in a model and in a block: `param` and `let`.
  private mutating func lowerSharedStatement(_ statement: Statement) {
    switch statement {
    case .param(let name, let typeExpr, let initializerExpr, let location):
      guard declareName(name, at: location) else { return }
      guard let type = lowerType(typeExpr, allowSymbols: false, what: "parameter \(name)") else {
        bind(name, .poisoned, at: location, kind: "parameter")
        return
      }
      var initializer = Initializer(type.rank >= 2 ? "glorot_uniform" : "zeros")
      if let initializerExpr {
        guard let lowered = lowerInitializer(initializerExpr) else {
          bind(name, .poisoned, at: location, kind: "parameter")
          return
        }
        initializer = lowered
      }
      let qualified = scope.qualified(name)
      if let existing = graph.value(named: qualified) {
        // A shared instance called again uses the parameter its first call made.
        if scope.sharesParameters, graph.param(for: existing) != nil,
          graph.type(of: existing) == type
        {
          bind(name, .tensor(existing), at: location, kind: "parameter")
          return
        }
        diagnostics.error("parameter name \(qualified) is already taken", at: location)
        return
      }
      let value = graph.addParam(
        name: qualified, type: type, initializer: initializer, location: location)
      bind(name, .tensor(value), at: location, kind: "parameter")
    case .let(let name, let valueExpr, let location):
      guard declareName(name, at: location) else { return }
      let value = evaluating(valueExpr, defining: name)
      if case .tensor(let tensor) = value { nameIfTemporary(tensor, scope.qualified(name)) }
      bind(name, value, at: location, kind: "let", warnsWhenUnused: true)
    default:
      break
    }
  }

  private mutating func lowerTrain(name: String?, _ expr: Expr, at location: SourceLocation) {
    guard case .call(let callee, let calleeLocation, let arguments) = expr.kind else {
      diagnostics.error(
        "expected an optimizer call like sgd(lr: 0.1) after 'with'", at: expr.location)
      return
    }
    guard let optimizer = OptimizerRegistry.definition(callee) else {
      diagnostics.error(
        "unknown optimizer '\(callee)'", at: calleeLocation,
        help: closestName(to: callee, among: OptimizerRegistry.all.map(\.name)).map {
          "did you mean '\($0)'?"
        }
          ?? "the optimizers are \(OptimizerRegistry.all.map(\.name).joined(separator: ", "))")
      return
    }
    let stepName = name ?? "train"
    if let first = graph.trainSteps.first(where: { $0.name == stepName }) {
      diagnostics.error(
        "training step '\(stepName)' is defined twice", at: location,
        notes: [.init("first defined here", at: first.location)],
        help: "name each step: train generator with adam(...)")
      return
    }
    var attributes: [String: Attribute] = [:]
    var ok = true
    for argument in arguments {
      guard let label = argument.label else {
        let first = optimizer.allHyperparameters[0].name
        diagnostics.error(
          "\(callee) takes labelled arguments only, got a positional one", at: argument.location,
          help: "name it, as in \(callee)(\(first): \(literalText(argument.value) ?? "..."))")
        ok = false
        continue
      }
      guard let spec = optimizer.allHyperparameters.first(where: { $0.name == label }) else {
        // Keras and PyTorch spell the learning rate out.
        let suggestion =
          label == "learning_rate"
          ? "lr" : closestName(to: label, among: optimizer.allHyperparameters.map(\.name))
        diagnostics.error(
          "\(callee) has no hyperparameter '\(label)'", at: argument.location,
          help: suggestion.map { "did you mean '\($0)'?" }
            ?? "it takes \(optimizer.allHyperparameters.map(\.name).joined(separator: ", "))")
        ok = false
        continue
      }
      // `loss: d_loss` names a loss; it is not evaluated.
      if label == "loss", case .name(let lossName) = argument.value.kind {
        attributes[label] = .string(lossName)
        continue
      }
      guard let attribute = attributeValue(argument.value) else {
        ok = false
        continue
      }
      guard let coerced = attribute.coerced(to: spec.kind) else {
        diagnostics.error(
          "\(callee): '\(label)' must be \(spec.kind), got \(attribute)",
          at: argument.value.location)
        ok = false
        continue
      }
      attributes[label] = coerced
    }
    for spec in optimizer.hyperparameters where attributes[spec.name] == nil {
      if let value = spec.defaultValue { attributes[spec.name] = value }
    }
    if attributes["loss"] == nil { attributes["loss"] = .string("loss") }
    if ok {
      graph.trainSteps.append(
        TrainStep(name: stepName, optimizer: callee, attributes: attributes, location: location))
    }
  }

  private mutating func applyFreezes() {
    for (pattern, location) in freezePatterns {
      var matched = false
      for index in graph.params.indices
      where globMatch(pattern, graph[graph.params[index].value].name) {
        graph.params[index].trainable = false
        matched = true
      }
      if !matched {
        diagnostics.warning(
          "freeze \"\(pattern)\" matches no parameter", at: location,
          help: "`lamina dump --params` lists the parameter names")
      }
    }
  }

  private mutating func reportUnused() {
    for (name, binding) in scope.bindings.sorted(by: {
      $0.value.location.line < $1.value.location.line
    })
    where !binding.used {
      if binding.warnsWhenUnused || binding.kind == "input" {
        diagnostics.warning("\(binding.kind) '\(name)' is never used", at: binding.location)
      }
    }
  }

  // MARK: Names

  /// Checks that `name` is not yet defined in this scope.
  private mutating func declareName(_ name: String, at location: SourceLocation) -> Bool {
    if let existing = scope.bindings[name] {
      diagnostics.error(
        "'\(name)' is already defined", at: location,
        notes: [.init("previous definition is here", at: existing.location)])
      return false
    }
    if name == "params" {
      diagnostics.error("'params' is reserved: it means all parameters of the model", at: location)
      return false
    }
    return true
  }

  private mutating func bind(
    _ name: String, _ value: Value, at location: SourceLocation, kind: String,
    warnsWhenUnused: Bool = false
  ) {
    scope.bindings[name] = Binding(
      value: value, location: location, warnsWhenUnused: warnsWhenUnused, kind: kind)
  }

  private mutating func lookup(_ name: String, at location: SourceLocation) -> Value {
    if scope.bindings[name] != nil {
      scope.bindings[name]!.used = true
      return scope.bindings[name]!.value
    }
    switch name {
    case "params":
      return .list(graph.params.filter(\.trainable).map { .tensor($0.value) })
    case "true": return .bool(true)
    case "false": return .bool(false)
    default: break
    }
    if let later = scope.laterDefinitions[name] {
      if name == scope.defining {
        diagnostics.error(
          "'\(name)' is used in its own definition", at: location,
          help:
            "a value cannot depend on itself; to compute a new value from an old one, give it a new name"
        )
      } else {
        let isCycle =
          scope.defining.map { scope.laterExpressions[name]?.mentions($0) ?? false } ?? false
        diagnostics.error(
          "'\(name)' is used before its definition", at: location,
          notes: [.init("'\(name)' is defined here", at: later)],
          help: isCycle
            ? "'\(name)' in turn uses '\(scope.defining!)'; two values cannot depend on each other"
            : "definitions run top to bottom; move the definition of '\(name)' above this line")
      }
    } else if OpRegistry.definition(name) != nil || LayerRegistry.definition(name) != nil
      || blocks[name] != nil
    {
      diagnostics.error("'\(name)' is a function; call it, as in \(name)(x)", at: location)
    } else {
      let suggestion = closestName(to: name, among: Array(scope.bindings.keys))
      diagnostics.error(
        "undefined name '\(name)'", at: location, help: suggestion.map { "did you mean '\($0)'?" })
    }
    return .poisoned
  }

  private mutating func nameIfTemporary(_ value: ValueID, _ name: String) {
    // Numeric names are temporaries; give the value the name the user wrote.
    if graph[value].name.first?.isNumber == true { graph.rename(value, to: name) }
  }

  // MARK: Types

  private mutating func lowerType(_ typeExpr: TypeExpr, allowSymbols: Bool, what: String)
    -> TensorType?
  {
    guard let dtype = DType(rawValue: typeExpr.dtype), dtype != .i64 else {
      var dtypeLocation = typeExpr.location
      dtypeLocation.length = typeExpr.dtype.count
      diagnostics.error(
        "unknown dtype '\(typeExpr.dtype)' in the type of \(what)", at: dtypeLocation,
        help: closestName(to: typeExpr.dtype, among: ["f32", "f64", "i32"]).map {
          "did you mean '\($0)'?"
        }
          ?? "the dtypes are f32, f64 and i32")
      return nil
    }
    var shape: [Dim] = []
    var elements = 1
    for (axis, dim) in typeExpr.dims.enumerated() {
      switch dim {
      case .literal(let value, let location):
        guard value > 0 else {
          diagnostics.error(
            "dimension \(axis) of \(what) has size \(value); sizes must be positive", at: location)
          return nil
        }
        let (product, overflow) = elements.multipliedReportingOverflow(by: value)
        guard !overflow, product <= 1 << 40 else {
          diagnostics.error(
            "\(what) is too large: its dimensions multiply past 2^40 elements", at: location)
          return nil
        }
        elements = product
        shape.append(Dim(value))
      case .name(let name, let location):
        if let binding = scope.bindings[name] {
          scope.bindings[name]!.used = true
          guard case .integer(let value) = binding.value, value > 0 else {
            diagnostics.error(
              "dimension '\(name)' of \(what) is \(binding.value.kindDescription), not a positive integer",
              at: location)
            return nil
          }
          shape.append(Dim(value))
        } else if allowSymbols {
          shape.append(Dim(symbol: name))
        } else {
          diagnostics.error(
            "\(what) must have a static shape, but '\(name)' is a symbolic dimension", at: location,
            help:
              "parameters are created before any batch is seen; use integers or Int block arguments"
          )
          return nil
        }
      }
    }
    return TensorType(dtype, shape)
  }

  /// `he_normal()`, `uniform(-0.1, 0.1)`, `constant(value: 0.5)`.
  private mutating func lowerInitializer(_ expr: Expr) -> Initializer? {
    guard case .call(let callee, let calleeLocation, let arguments) = expr.kind else {
      diagnostics.error(
        "expected an initializer call like he_normal() or zeros()", at: expr.location,
        help: "the initializers are \(InitializerRegistry.names.joined(separator: ", "))")
      return nil
    }
    guard let definition = InitializerRegistry.definition(callee) else {
      diagnostics.error(
        "unknown initializer '\(callee)'", at: calleeLocation,
        help: closestName(to: callee, among: InitializerRegistry.names).map {
          "did you mean '\($0)'?"
        }
          ?? "the initializers are \(InitializerRegistry.names.joined(separator: ", "))")
      return nil
    }
    var values: [String: Attribute] = [:]
    var positional = definition.arguments.makeIterator()
    for argument in arguments {
      let spec: AttributeSpec?
      if let label = argument.label {
        spec = definition.arguments.first { $0.name == label }
      } else {
        spec = positional.next()
      }
      guard let spec else {
        diagnostics.error(
          argument.label.map { "\(callee) has no argument '\($0)'" }
            ?? "\(callee) takes \(definition.arguments.count) argument(s)",
          at: argument.location, help: "the signature is \(definition.signature)")
        return nil
      }
      guard let value = attributeValue(argument.value), let coerced = value.coerced(to: spec.kind)
      else {
        diagnostics.error(
          "\(callee): '\(spec.name)' must be \(spec.kind)", at: argument.value.location)
        return nil
      }
      values[spec.name] = coerced
    }
    for spec in definition.arguments where values[spec.name] == nil {
      if let value = spec.defaultValue {
        values[spec.name] = value
      } else if spec.isRequired {
        diagnostics.error("\(callee) needs the argument '\(spec.name)'", at: expr.location)
        return nil
      }
    }
    return Initializer(callee, values)
  }

  // MARK: Expressions

  /// Evaluates the expression of the definition of `name`, so a use of `name` inside is recognized.
  private mutating func evaluating(_ expr: Expr, defining name: String) -> Value {
    let outer = scope.defining
    scope.defining = name
    defer { scope.defining = outer }
    return evaluate(expr)
  }

  /// A literal as written, for help lines.
  private func literalText(_ expr: Expr) -> String? {
    switch expr.kind {
    case .integer(let value): String(value)
    case .float(let value): String(value)
    case .string(let value): "\"\(value)\""
    default: nil
    }
  }

  private mutating func evaluate(_ expr: Expr) -> Value {
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
      case .integer(let value): return .integer(-value)
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

  private mutating func lowerBinary(
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

  private func number(_ value: Value) -> Double? {
    switch value {
    case .integer(let value): Double(value)
    case .number(let value): value
    default: nil
    }
  }

  /// A scalar constant node with the dtype of `other`, so literals adapt to the tensors they meet.
  private mutating func constant(_ value: Double, like other: ValueID?, at location: SourceLocation)
    -> ValueID
  {
    let dtype = other.map { graph.type(of: $0).dtype } ?? .f32
    return graph.addNode(
      "constant", [], attributes: ["value": .float(value), "dtype": .dtype(dtype)],
      type: .scalar(dtype),
      location: location)
  }

  private mutating func emit(
    _ op: String, _ operands: [ValueID], attributes: [String: Attribute] = [:],
    at location: SourceLocation
  ) -> Value {
    do {
      return .tensor(
        try graph.addInferredNode(op, operands, attributes: attributes, location: location))
    } catch {
      diagnostics.error(error.message, at: location, help: error.help)
      return .poisoned
    }
  }

  private mutating func requireTensor(_ value: Value, at location: SourceLocation, what: String)
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

  private mutating func lowerIndex(_ base: Value, _ items: [IndexItem], at location: SourceLocation)
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

  // MARK: Calls

  private mutating func lowerCall(
    _ callee: String, calleeLocation: SourceLocation, _ arguments: [Argument],
    at location: SourceLocation
  ) -> Value {
    if let block = blocks[callee] {
      return callBlock(block, arguments: arguments, at: location)
    }
    if callee == "repeat" { return lowerRepeat(arguments, at: location) }
    if let layer = LayerRegistry.definition(callee) {
      return callLayer(layer, arguments, at: location)
    }
    if let op = OpRegistry.definition(callee) {
      return callOp(op, arguments, at: location)
    }
    if InitializerRegistry.definition(callee) != nil {
      diagnostics.error(
        "\(callee) is an initializer, not a function", at: calleeLocation,
        help:
          "initializers give parameters their starting values: param w: f32[4, 4] = \(callee)(), or dense(units: 8, init: \(callee)())"
      )
      return .poisoned
    }
    if OptimizerRegistry.definition(callee) != nil {
      diagnostics.error(
        "\(callee) is an optimizer, not a function", at: calleeLocation,
        help: "use it in a training step: train with \(callee)(lr: 0.01)")
      return .poisoned
    }
    if let binding = scope.bindings[callee], case .instance(let instance) = binding.value {
      scope.bindings[callee]!.used = true
      return callInstance(instance, arguments, at: location)
    }
    if let binding = scope.bindings[callee] {
      scope.bindings[callee]!.used = true
      diagnostics.error(
        "'\(callee)' is \(binding.value.kindDescription), not a function", at: calleeLocation,
        notes: [.init("'\(callee)' is defined here", at: binding.location)])
      return .poisoned
    }
    // Evaluating the arguments still finds their own mistakes.
    for argument in arguments { _ = evaluate(argument.value) }
    let candidates =
      OpRegistry.names + LayerRegistry.all.map(\.name) + Array(blocks.keys) + ["repeat"]
    diagnostics.error(
      "unknown function '\(callee)'", at: calleeLocation,
      help: closestName(to: callee, among: candidates).map { "did you mean '\($0)'?" })
    return .poisoned
  }

  /// An op from the op table: positional tensors fill operands, the rest become attributes.
  private mutating func callOp(
    _ op: OpDefinition, _ arguments: [Argument], at location: SourceLocation
  ) -> Value {
    var operandValues: [(Value, SourceLocation)] = []
    var attributes: [String: Attribute] = [:]
    var positionalAttributes = op.attributes.makeIterator()
    let takesMoreOperands = { (count: Int) in op.operandCount.upperBound > count }
    var poisoned = false
    for argument in arguments {
      if let label = argument.label {
        if op.operands.contains(where: { $0.name == label && !$0.isVariadic }) {
          operandValues.append((evaluate(argument.value), argument.location))
          continue
        }
        guard op.attributes.contains(where: { $0.name == label }) else {
          let known = op.attributes.map(\.name)
          diagnostics.error(
            known.isEmpty
              ? "\(op.name) takes no labelled arguments, got '\(label)'"
              : "\(op.name) has no argument '\(label)'",
            at: argument.location,
            help: closestName(to: label, among: known).map { "did you mean '\($0)'?" }
              ?? "the signature is \(op.signature)")
          poisoned = true
          continue
        }
        guard
          let attribute = checkedAttribute(
            argument.value, for: op.attributes.first { $0.name == label }!, of: op)
        else {
          poisoned = true
          continue
        }
        attributes[label] = attribute
        continue
      }
      // Literals after the operands are positional attributes (`leaky_relu(x, 0.2)`).
      if !takesMoreOperands(operandValues.count), let spec = positionalAttributes.next() {
        guard let attribute = checkedAttribute(argument.value, for: spec, of: op) else {
          poisoned = true
          continue
        }
        attributes[spec.name] = attribute
        continue
      }
      let value = evaluate(argument.value)
      if case .list(let elements) = value, op.operands.last?.isVariadic == true {
        // A list spreads into a variadic slot: l2(params), concat([a, b]).
        operandValues += elements.map { ($0, argument.location) }
      } else {
        operandValues.append((value, argument.location))
      }
    }
    if poisoned { return .poisoned }
    // Literal operands take the dtype of the first tensor operand.
    let firstTensor = operandValues.lazy.compactMap {
      if case .tensor(let id) = $0.0 { id } else { nil }
    }.first
    var operands: [ValueID] = []
    for (value, valueLocation) in operandValues {
      switch value {
      case .tensor(let id): operands.append(id)
      case .integer, .number:
        operands.append(constant(number(value)!, like: firstTensor, at: valueLocation))
      case .poisoned: return .poisoned
      default:
        diagnostics.error(
          "\(op.name) takes tensors as operands, got \(value.kindDescription)", at: valueLocation,
          help: "the signature is \(op.signature)")
        return .poisoned
      }
    }
    return emit(op.name, operands, attributes: attributes, at: location)
  }

  /// An op's attribute value, checked against its kind here so the error points at the argument.
  private mutating func checkedAttribute(_ expr: Expr, for spec: AttributeSpec, of op: OpDefinition)
    -> Attribute?
  {
    guard let attribute = attributeValue(expr) else { return nil }
    guard attribute.coerced(to: spec.kind) != nil else {
      diagnostics.error(
        "\(op.name): '\(spec.name)' must be \(spec.kind), got \(attribute)", at: expr.location,
        help: "the signature is \(op.signature)")
      return nil
    }
    return attribute
  }

  /// A compile-time value for an attribute. Bare names that are not defined read as symbols or words
  /// (`reshape(x, [batch, -1])`, `cast(x, dtype: f64)`).
  private mutating func attributeValue(_ expr: Expr) -> Attribute? {
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

  /// Expands a layer call. `instanceScope` names the parameters of a shared instance being called.
  private mutating func callLayer(
    _ layer: LayerDefinition, _ arguments: [Argument], at location: SourceLocation,
    instanceScope: String? = nil, leading: Value? = nil
  )
    -> Value
  {
    var inputs: [ValueID] = []
    switch leading {
    case .tensor(let id)?: inputs.append(id)
    case .poisoned?: return .poisoned
    case let other?:
      diagnostics.error(
        "\(layer.name) takes a tensor input, got \(other.kindDescription)", at: location)
      return .poisoned
    case nil: break
    }
    var options: [String: LayerOption] = [:]
    var failed = false
    for argument in arguments {
      guard let label = argument.label else {
        if inputs.count < layer.inputCount {
          switch evaluate(argument.value) {
          case .tensor(let id): inputs.append(id)
          case .poisoned: failed = true
          case let other:
            diagnostics.error(
              "\(layer.name) takes a tensor input, got \(other.kindDescription)",
              at: argument.location)
            failed = true
          }
        } else {
          diagnostics.error(
            "\(layer.name) takes \(layer.inputCount) tensor input(s); name its options, as in units: 64",
            at: argument.location)
          failed = true
        }
        continue
      }
      guard let spec = layer.options.first(where: { $0.name == label }) else {
        diagnostics.error(
          "\(layer.name) has no option '\(label)'", at: argument.location,
          help: closestName(to: label, among: layer.options.map(\.name)).map {
            "did you mean '\($0)'?"
          }
            ?? "its options are \(layer.options.map(\.name).joined(separator: ", "))")
        failed = true
        continue
      }
      if let option = layerOption(argument.value, spec: spec, layer: layer.name) {
        options[label] = option
      } else {
        failed = true
      }
    }
    for spec in layer.options where spec.isRequired && options[spec.name] == nil && !failed {
      diagnostics.error(
        "\(layer.name) needs the option '\(spec.name)' (\(spec.summary))", at: location,
        help: "add it, as in \(layer.name)(\(spec.name): \(spec.kind == .integer ? "64" : "..."))")
      failed = true
    }
    // Options without inputs make an instance, called later with shared parameters.
    if inputs.isEmpty, instanceScope == nil, leading == nil, !failed,
      !arguments.contains(where: { $0.label == nil })
    {
      var name: String?
      if case .string(let given)? = options["name"] { name = given }
      return makeInstance(.layer(layer), arguments, name: name, at: location)
    }
    if inputs.count < layer.inputCount && !failed {
      diagnostics.error(
        "\(layer.name) needs \(layer.inputCount) tensor input(s), got \(inputs.count)", at: location
      )
      failed = true
    }
    if failed { return .poisoned }
    let scopeName: String
    if let instanceScope {
      scopeName = instanceScope
    } else if case .string(let name)? = options["name"] {
      scopeName = scope.qualified(name)
    } else {
      scopeName = scope.qualified(nextInstanceName(layer.name))
    }
    var builder = LayerBuilder(
      graph: graph, scopeName: scopeName, location: location, inputs: inputs, options: options,
      sharesParameters: instanceScope != nil || scope.sharesParameters)
    graph = Graph(name: "")  // the builder owns the graph while it expands
    do {
      let result = try layer.expand(&builder)
      graph = builder.graph
      return .tensor(result)
    } catch {
      graph = builder.graph
      diagnostics.error(error.message, at: location, help: error.help)
      return .poisoned
    }
  }

  private mutating func layerOption(_ expr: Expr, spec: LayerOptionSpec, layer: String)
    -> LayerOption?
  {
    if spec.kind == .initializer {
      return lowerInitializer(expr).map(LayerOption.initializer)
    }
    let value = evaluate(expr)
    switch (spec.kind, value) {
    case (.integer, .integer(let v)): return .integer(v)
    case (.number, .integer(let v)): return .number(Double(v))
    case (.number, .number(let v)): return .number(v)
    case (.string, .string(let v)): return .string(v)
    case (.bool, .bool(let v)): return .bool(v)
    case (_, .poisoned): return nil
    default:
      diagnostics.error(
        "\(layer): \(spec.name) must be \(spec.kind.rawValue), got \(value.kindDescription)",
        at: expr.location)
      return nil
    }
  }

  private mutating func nextInstanceName(_ kind: String) -> String {
    let base = snakeCase(kind)
    let index = scope.instanceCounters[base, default: 0]
    scope.instanceCounters[base] = index + 1
    return "\(base)_\(index)"
  }

  // MARK: Blocks

  /// `repeat(x, n, Block(args))`: n fresh copies of the block, each feeding the next.
  /// Binds a block or layer's options and a scope name, for calls that share parameters.
  ///
  /// The parameters are named after `name:`, else the `let` being defined (`let critic = Critic()`
  /// gives `critic.dense_0.weight`, as a PyTorch module attribute would), else `KIND_N`.
  private mutating func makeInstance(
    _ kind: Instance.Kind, _ arguments: [Argument], name: String?, at location: SourceLocation
  ) -> Value {
    let kindName: String
    switch kind {
    case .block(let block): kindName = block.name
    case .layer(let layer): kindName = layer.name
    }
    let scopeName = scope.qualified(name ?? scope.defining ?? nextInstanceName(kindName))
    if graph.values.contains(where: { $0.name.hasPrefix(scopeName + ".") }) {
      diagnostics.error(
        "the name \(scopeName) is already used by other parameters", at: location,
        help: "give the instance another name with name:")
      return .poisoned
    }
    return .instance(Instance(kind: kind, configuration: arguments, scopeName: scopeName))
  }

  /// Calls a shared instance: the first call creates its parameters, later calls reuse them.
  private mutating func callInstance(
    _ instance: Instance, _ arguments: [Argument], at location: SourceLocation,
    leading: Value? = nil
  ) -> Value {
    if let option = arguments.first(where: { $0.label != nil }) {
      diagnostics.error(
        "an instance is called with its inputs only; its options were fixed when it was made",
        at: option.location)
      return .poisoned
    }
    guard !arguments.isEmpty || leading != nil else {
      diagnostics.error("an instance of \(instance.kindName) needs its tensor inputs", at: location)
      return .poisoned
    }
    switch instance.kind {
    case .block(let block):
      return callBlock(
        block, leading: leading, arguments: arguments + instance.configuration, at: location,
        instanceScope: instance.scopeName)
    case .layer(let layer):
      return callLayer(
        layer, arguments + instance.configuration.filter { $0.label != "name" }, at: location,
        instanceScope: instance.scopeName, leading: leading)
    }
  }

  private mutating func lowerRepeat(_ arguments: [Argument], at location: SourceLocation) -> Value {
    guard arguments.count == 3, arguments.allSatisfy({ $0.label == nil }) else {
      diagnostics.error(
        "repeat takes three arguments: repeat(x, count, Block(options))", at: location)
      return .poisoned
    }
    var current = evaluate(arguments[0].value)
    guard case .integer(let count) = evaluate(arguments[1].value), (0...10_000).contains(count)
    else {
      diagnostics.error(
        "repeat count must be an integer from 0 to 10000", at: arguments[1].location)
      return .poisoned
    }
    let blockExpr = arguments[2].value
    let (blockName, blockArguments): (String, [Argument]) =
      switch blockExpr.kind {
      case .name(let name): (name, [])
      case .call(let callee, _, let arguments): (callee, arguments)
      default: ("", [])
      }
    if case .name(let name) = blockExpr.kind,
      case .instance(let instance)? = scope.bindings[name]?.value
    {
      // One instance applied count times: the copies share its parameters.
      scope.bindings[name]!.used = true
      if case .poisoned = current { return .poisoned }
      for _ in 0..<count {
        current = callInstance(instance, [], at: location, leading: current)
        if case .poisoned = current { return .poisoned }
      }
      return current
    }
    if case .name(let name) = blockExpr.kind, case .poisoned? = scope.bindings[name]?.value {
      return .poisoned
    }
    guard let block = blocks[blockName] else {
      let isBuiltIn =
        LayerRegistry.definition(blockName) != nil || OpRegistry.definition(blockName) != nil
      diagnostics.error(
        "repeat's third argument must be a block, like Residual(units: 64)", at: blockExpr.location,
        help: isBuiltIn
          ? "\(blockName) is a built-in function; wrap it in a block: block Step(x) { return \(blockName)(x, ...) }"
          : closestName(to: blockName, among: Array(blocks.keys)).map { "did you mean '\($0)'?" })
      return .poisoned
    }
    let nodesBefore = graph.nodes.count
    if case .poisoned = current { return .poisoned }
    for copy in 0..<count {
      current = callBlock(block, leading: current, arguments: blockArguments, at: location)
      if case .poisoned = current { return .poisoned }
      // The first copy tells how large all of them will be; stop before building a runaway model.
      if copy == 0 {
        let (total, overflow) = (graph.nodes.count - nodesBefore).multipliedReportingOverflow(
          by: count)
        if overflow || nodesBefore + total > Lowering.maximumNodes {
          diagnostics.error(
            "repeat would make \(overflow ? "too many" : "about \(total)") nodes from \(count) copies of block \(block.name), more than a model may have (\(Lowering.maximumNodes))",
            at: location, help: "use a smaller count; repeats nested inside blocks multiply")
          return .poisoned
        }
      }
    }
    return current
  }

  /// Expands a block call. `instanceScope` names the parameters of a shared instance being called.
  private mutating func callBlock(
    _ block: BlockDecl, leading: Value? = nil, arguments: [Argument], at location: SourceLocation,
    instanceScope: String? = nil
  ) -> Value {
    if let start = blockStack.firstIndex(of: block.name) {
      let through = blockStack[(start + 1)...]
      diagnostics.error(
        "block \(block.name) calls itself\(through.isEmpty ? "" : " through \(through.joined(separator: ", "))")",
        at: location,
        help:
          "blocks are expanded where they are called, so they cannot be recursive; for a chain of copies use repeat(x, n, \(block.name))"
      )
      return .poisoned
    }
    // Each level is a few stack frames of lowering; a chain of blocks this deep is surely generated.
    guard blockStack.count < 64 else {
      diagnostics.error(
        "blocks call each other more than 64 levels deep, down to block \(block.name)",
        at: location,
        help: "flatten the chain of blocks")
      return .poisoned
    }
    guard graph.nodes.count <= Lowering.maximumNodes else {
      diagnostics.error(
        "the model grows past \(Lowering.maximumNodes) nodes while expanding block \(block.name)",
        at: location,
        help: "blocks that call other blocks many times multiply; make fewer calls")
      return .poisoned
    }
    // Match arguments to parameters: positional in order, then labelled.
    var values: [String: Value] = [:]
    var nameOverride: String?
    var positional = block.parameters.makeIterator()
    if let leading, let first = positional.next() { values[first.name] = leading }
    var failed = false
    var argumentLocations: [String: SourceLocation] = [:]
    for argument in arguments {
      if argument.label == "name" && !block.parameters.contains(where: { $0.name == "name" }) {
        if case .string(let name) = argument.value.kind {
          nameOverride = name
          continue
        }
      }
      let parameter: BlockParameter?
      if let label = argument.label {
        parameter = block.parameters.first { $0.name == label }
        if parameter == nil {
          diagnostics.error(
            "block \(block.name) has no parameter '\(label)'", at: argument.location,
            help: closestName(to: label, among: block.parameters.map(\.name)).map {
              "did you mean '\($0)'?"
            })
          failed = true
          continue
        }
      } else {
        parameter = positional.next()
        if parameter == nil {
          diagnostics.error("too many arguments to block \(block.name)", at: argument.location)
          failed = true
          continue
        }
      }
      let parameterValue = evaluate(argument.value)
      if values[parameter!.name] != nil {
        diagnostics.error(
          "parameter '\(parameter!.name)' of \(block.name) is given twice", at: argument.location)
        failed = true
      }
      values[parameter!.name] = parameterValue
      argumentLocations[parameter!.name] = argument.location
    }
    // Options without the tensors make an instance, called later with shared parameters.
    let tensorParameters = block.parameters.filter { $0.kind == .tensor }
    if instanceScope == nil, leading == nil, !failed, !tensorParameters.isEmpty,
      tensorParameters.allSatisfy({ values[$0.name] == nil })
    {
      return makeInstance(.block(block), arguments, name: nameOverride, at: location)
    }
    for parameter in block.parameters where values[parameter.name] == nil {
      if let defaultValue = parameter.defaultValue {
        values[parameter.name] = evaluate(defaultValue)
      } else if !failed {
        diagnostics.error(
          "block \(block.name) needs the argument '\(parameter.name)'", at: location,
          notes: [.init("parameter declared here", at: parameter.location)])
        failed = true
      }
    }
    // Check kinds.
    for parameter in block.parameters {
      guard let value = values[parameter.name] else { continue }
      let ok: Bool =
        switch (parameter.kind, value) {
        case (_, .poisoned): false
        case (.tensor, .tensor), (.int, .integer), (.float, .integer), (.float, .number),
          (.bool, .bool),
          (.string, .string):
          true
        default: false
        }
      if !ok {
        if case .poisoned = value {
        } else {
          diagnostics.error(
            "argument '\(parameter.name)' of \(block.name) must be \(parameter.kind == .tensor ? "a tensor" : parameter.kind.rawValue), got \(value.kindDescription)",
            at: argumentLocations[parameter.name] ?? location,
            notes: [.init("parameter declared here", at: parameter.location)])
        }
        failed = true
      }
    }
    if failed { return .poisoned }

    let prefix = instanceScope ?? scope.qualified(nameOverride ?? nextInstanceName(block.name))
    var newScope = Scope(prefix: prefix)
    newScope.sharesParameters = instanceScope != nil || scope.sharesParameters
    for parameter in block.parameters {
      newScope.bindings[parameter.name] = Binding(
        value: values[parameter.name]!, location: parameter.location, warnsWhenUnused: false,
        kind: "parameter")
    }
    scopes.append(newScope)
    blockStack.append(block.name)
    defer {
      blockStack.removeLast()
      scopes.removeLast()
    }
    recordDefinitions(block.statements)
    var result: Value?
    for statement in block.statements {
      if result != nil {
        diagnostics.error("statements after 'return' never run", at: statement.location)
        break
      }
      switch statement {
      case .param, .let:
        lowerSharedStatement(statement)
      case .return(let valueExpr, _):
        result = evaluate(valueExpr)
      case .input, .output, .loss, .train, .freeze:
        let isInput = statement.keyword == "input"
        let parameterList = (block.parameters.map(\.name) + [statement.definedName ?? "x"]).joined(
          separator: ", ")
        diagnostics.error(
          "'\(statement.keyword)' is only allowed in a model, not in block \(block.name)",
          at: statement.location,
          help: isInput
            ? "a block receives tensors as parameters: block \(block.name)(\(parameterList))"
            : "a block gives its result with `return`; declare outputs, losses and training in the model"
        )
        // Uses of the name are not reported again.
        if let name = statement.definedName, scope.bindings[name] == nil {
          bind(name, .poisoned, at: statement.location, kind: statement.keyword)
        }
      }
    }
    // The last value a block without `return` computes is most likely what it meant to return.
    let lastLet = block.statements.last { if case .let = $0 { true } else { false } }?.definedName
    let bindings = scope.bindings.sorted {
      ($0.value.location.line, $0.value.location.column) < (
        $1.value.location.line, $1.value.location.column
      )
    }
    for (name, binding) in bindings where !binding.used && binding.warnsWhenUnused {
      if result == nil && name == lastLet { continue }
      diagnostics.warning("\(binding.kind) '\(name)' is never used", at: binding.location)
    }
    guard let result else {
      diagnostics.error(
        "block \(block.name) has no 'return'", at: block.location,
        help: lastLet.map { "end it with `return \($0)`" } ?? "end it with `return expression`")
      return .poisoned
    }
    return result
  }
}

/// `Residual` → `residual`, `ConvBlock` → `conv_block`, `dense` → `dense`.
func snakeCase(_ name: String) -> String {
  var out = ""
  for (index, character) in name.enumerated() {
    if character.isUppercase {
      if index > 0 { out += "_" }
      out += character.lowercased()
    } else {
      out.append(character)
    }
  }
  return out
}
