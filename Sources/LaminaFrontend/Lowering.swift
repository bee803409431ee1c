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

  var graph: Graph
  var diagnostics = DiagnosticBag()
  /// The innermost scope. It is stored, not computed from a stack, so a binding added to it updates
  /// its dictionary in place: a computed accessor would copy the scope (and its dictionary) on every
  /// change, which made lowering quadratic in the number of `let`s.
  var scope = Scope(prefix: "")
  /// The scopes of the block calls being expanded around the current one, outermost first.
  var outerScopes: [Scope] = []
  let blocks: [String: BlockDecl]
  let layers: [String: LayerDefinition]
  /// The layers' names in table order, for deterministic suggestions.
  let layerNames: [String]
  let optimizers: [OptimizerDefinition]
  /// The blocks being expanded, outermost first, to catch recursion.
  var blockStack: [String] = []
  var freezePatterns: [(pattern: String, location: SourceLocation)] = []
  /// Every `freeze` pattern of the model, collected before its statements lower: layers declared
  /// before the `freeze` statement need them too.
  var modelFreezePatterns: [String] = []
  /// Outputs and losses the model declares, including ones whose expression failed, so a failed loss
  /// is not reported again as a missing one.
  var declaredExposedNames: Set<String> = []

  /// Blocks and repeats expand inline; past this many nodes a model is surely a mistake (and would take
  /// minutes to build).
  static let maximumNodes = 1_000_000

  /// Lowers one model of a program. Returns the graph when there were no errors, and all diagnostics.
  ///
  /// `layers` and `optimizers` are the tables calls are checked against; tests pass their own to
  /// exercise option kinds no built-in uses yet.
  public static func lower(
    _ model: ModelDecl, in program: SourceProgram, sourcePath: String,
    layers: [LayerDefinition] = LayerRegistry.all,
    optimizers: [OptimizerDefinition] = OptimizerRegistry.all
  ) -> (graph: Graph?, diagnostics: [Diagnostic]) {
    var diagnostics = DiagnosticBag()
    let layerTable = Dictionary(
      layers.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    var blocks: [String: BlockDecl] = [:]
    for block in program.blocks {
      if let existing = blocks[block.name] {
        diagnostics.error(
          "block \(block.name) is defined twice", at: block.location,
          notes: [.init("first defined here", at: existing.location)])
      } else if layerTable[block.name] != nil || OpRegistry.definition(block.name) != nil {
        diagnostics.error(
          "block \(block.name) has the name of a built-in function", at: block.location)
      } else {
        blocks[block.name] = block
      }
    }
    var lowering = Lowering(
      graph: Graph(name: model.name, sourceFile: sourcePath), blocks: blocks, layers: layerTable,
      layerNames: layers.map(\.name),
      optimizers: optimizers, diagnostics: diagnostics)
    lowering.lowerModel(model)
    let graph = lowering.diagnostics.hasErrors ? nil : lowering.graph
    return (graph, lowering.diagnostics.diagnostics)
  }

  init(
    graph: Graph, blocks: [String: BlockDecl], layers: [String: LayerDefinition],
    layerNames: [String], optimizers: [OptimizerDefinition], diagnostics: DiagnosticBag
  ) {
    self.graph = graph
    self.blocks = blocks
    self.layers = layers
    self.layerNames = layerNames
    self.optimizers = optimizers
    self.diagnostics = diagnostics
  }

  // MARK: Models

  mutating func lowerModel(_ model: ModelDecl) {
    scope = Scope(prefix: "")
    outerScopes = []
    recordDefinitions(model.statements)
    modelFreezePatterns = model.statements.compactMap { statement in
      guard case .freeze(let pattern, _) = statement, case .string(let text) = pattern.kind else {
        return nil
      }
      return text
    }
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

  mutating func lowerModelStatement(_ statement: Statement) {
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
  mutating func lowerSharedStatement(_ statement: Statement) {
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

}
