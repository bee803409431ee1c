import Foundation
import Lamina
import LaminaFrontend
import Testing

/// The one argument binder that checks calls of ops, layers, optimizers and initializers, and the
/// layer table's declared option kinds and defaults. The bad-model corpus holds the same errors as
/// files (`layer_*.lam`, `op_*.lam`, `optimizer_*.lam`); these tests add what needs tables of their own:
/// option kinds no built-in layer uses yet, and a required hyperparameter.
@Suite struct ArgumentBinderTests {
  /// A convolution-like layer whose expansion reports the options it was given, so a test sees
  /// exactly what the binder bound, defaults included.
  static let probe = LayerDefinition(
    "probe", summary: "Reports its bound options.",
    options: [
      LayerOptionSpec("filters", .integer, required: true, "output channels"),
      LayerOptionSpec("kernel", .integers(lengths: [2]), default: .integer(3), "window size"),
      LayerOptionSpec(
        "padding", .anyOf([.integers(lengths: [2, 4]), .oneOf(["same", "valid"])]),
        default: .string("valid"), "padding per side, or a rule"),
      LayerOptionSpec("rate", .number, default: .number(0.5), "a fraction"),
      LayerOptionSpec("bias", .bool, default: .bool(true), "add a bias"),
      LayerOptionSpec(
        "init", .initializer, default: .initializer(Initializer("he_uniform")), "initializer"),
      LayerOptionSpec("activation", .oneOf(["relu", "tanh"]), "an activation"),
      LayerOptionSpec("states", .tensors, "tensors of the model"),
    ]
  ) { builder throws(ShapeError) in
    let bound = builder.options.keys.sorted().map { "\($0)=\(describe(builder.options[$0]!))" }
    throw ShapeError("bound " + bound.joined(separator: " "))
  }

  /// An optimizer with a required hyperparameter, which no built-in optimizer has.
  static let lion = OptimizerDefinition(
    "lion", "Test optimizer.",
    [
      AttributeSpec("lr", .float, required: true, "learning rate"),
      AttributeSpec("beta", .float, default: .float(0.9), "decay"),
    ])

  /// The kind-tagged form of an option, so `[3]` and `3` are told apart.
  static func describe(_ option: LayerOption) -> String {
    switch option {
    case .integer(let value): "int:\(value)"
    case .number(let value): "number:\(value)"
    case .string(let value): "string:\(value)"
    case .bool(let value): "bool:\(value)"
    case .initializer(let value): "init:\(value)"
    case .integers(let values): "ints:\(values)"
    case .tensors(let values): "tensors:\(values)"
    }
  }

  struct Lowered {
    var graph: Graph?
    var diagnostics: [Diagnostic]
    var text: String

    var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }

    /// The column where `fragment` starts on the line that holds it, 1-based.
    func column(of fragment: String) throws -> (line: Int, column: Int) {
      for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false)
        .enumerated()
      {
        if let range = line.range(of: fragment) {
          return (index + 1, line.distance(from: line.startIndex, to: range.lowerBound) + 1)
        }
      }
      throw ExpectationFailure(message: "\(fragment) is not in the source")
    }

    /// The single error, checked to point at `fragment` in the source.
    func onlyError(at fragment: String) throws -> Diagnostic {
      try #require(errors.count == 1, "expected one error, got \(errors.map(\.message))")
      let error = errors[0]
      let expected = try column(of: fragment)
      #expect(
        error.location?.line == expected.line && error.location?.column == expected.column,
        "\(error.message) is at \(String(describing: error.location)), not at \(fragment)")
      return error
    }
  }

  struct ExpectationFailure: Error { var message: String }

  func lower(_ body: String, train: String? = nil) throws -> Lowered {
    var text = "model M {\n  input x: f32[batch, 4]\n"
    if let train {
      text += "  input target: f32[batch, 1]\n  let y = x |> dense(units: 1)\n  output y\n"
      text += "  loss = mse(y, target)\n  train with \(train)\n"
    } else {
      text += "  output y = \(body)\n"
    }
    text += "}\n"
    let source = SourceFile(path: "binder.lam", text: text)
    let (program, parsing) = Parser.parse(source: source)
    try #require(!parsing.hasErrors, "\(parsing.diagnostics)")
    let (graph, diagnostics) = Lowering.lower(
      program.models[0], in: program, sourcePath: source.path,
      layers: LayerRegistry.all + [Self.probe], optimizers: OptimizerRegistry.all + [Self.lion])
    return Lowered(graph: graph, diagnostics: diagnostics, text: text)
  }

  // MARK: Layer options and their defaults

  @Test func layerDefaultsComeFromTheTable() throws {
    let lowered = try lower("probe(x, filters: 8)")
    let message = try lowered.onlyError(at: "probe(").message
    #expect(
      message
        == "bound bias=bool:true filters=int:8 init=init:he_uniform() kernel=ints:[3] padding=string:valid rate=number:0.5"
    )
    // An option without a default stays absent.
    #expect(!message.contains("activation"))
  }

  @Test func givenOptionsAreBoundByKind() throws {
    let message = try lower(
      "probe(x, filters: 8, kernel: [3, 5], padding: [1, 2, 1, 2], rate: 1, bias: false, init: zeros(), activation: \"tanh\")"
    ).onlyError(at: "probe(").message
    #expect(
      message
        == "bound activation=string:tanh bias=bool:false filters=int:8 init=init:zeros() kernel=ints:[3, 5] padding=ints:[1, 2, 1, 2] rate=number:1.0"
    )
    let words = try lower("probe(x, filters: 8, padding: \"same\", kernel: 7)").onlyError(
      at: "probe(")
    #expect(words.message.contains("padding=string:same"), "\(words.message)")
    #expect(words.message.contains("kernel=ints:[7]"), "\(words.message)")
  }

  @Test func denseUsesTheTableDefaults() throws {
    let dense = try #require(LayerRegistry.definition("dense"))
    func declared(_ name: String) throws -> LayerOption? {
      try #require(dense.options.first { $0.name == name }).defaultValue
    }
    guard case .initializer(let weightInit)? = try declared("init"),
      case .initializer(let biasInit)? = try declared("bias_init"),
      case .bool(let hasBias)? = try declared("bias")
    else {
      Issue.record("dense declares no default for init, bias_init or bias")
      return
    }
    let graph = try #require(try lower("dense(x, units: 3)").graph)
    let weight = try #require(graph.value(named: "dense_0.weight"))
    #expect(graph.param(for: weight)?.initializer == weightInit)
    let bias = graph.value(named: "dense_0.bias")
    #expect((bias != nil) == hasBias)
    if let bias { #expect(graph.param(for: bias)?.initializer == biasInit) }

    // Given options replace the defaults.
    let custom = try #require(
      try lower("dense(x, units: 3, bias: \(!hasBias), init: he_normal())").graph)
    let customWeight = try #require(custom.value(named: "dense_0.weight"))
    #expect(custom.param(for: customWeight)?.initializer == Initializer("he_normal"))
    #expect((custom.value(named: "dense_0.bias") != nil) == !hasBias)
  }

  // MARK: Layer binding errors

  @Test func layerUnknownOptionSuggestsTheClosest() throws {
    let error = try lower("probe(x, filter: 8)").onlyError(at: "filter:")
    #expect(error.message == "probe has no option 'filter'")
    #expect(error.help == "did you mean 'filters'?")
  }

  @Test func layerMissingRequiredOption() throws {
    let error = try lower("probe(x, kernel: 3)").onlyError(at: "probe(")
    #expect(error.message == "probe needs the option 'filters' (output channels)")
    #expect(error.help == "add it, as in probe(filters: 64)")
  }

  @Test func layerWrongKinds() throws {
    let text = try lower("probe(x, filters: \"8\")").onlyError(at: "\"8\"")
    #expect(text.message == "probe: 'filters' must be an integer, got \"8\"")
    let long = try lower("probe(x, filters: 8, kernel: [3, 5, 7])").onlyError(at: "[3, 5, 7]")
    #expect(
      long.message == "probe: 'kernel' must be an integer or a list of 2 integers, got [3, 5, 7]")
    let padding = try lower("probe(x, filters: 8, padding: [1, 2, 3])").onlyError(at: "[1, 2, 3]")
    #expect(
      padding.message
        == "probe: 'padding' must be an integer, a list of 2 integers, a list of 4 integers, \"same\" or \"valid\", got [1, 2, 3]"
    )
    let word = try lower("probe(x, filters: 8, padding: \"sme\")").onlyError(at: "\"sme\"")
    #expect(word.help == "did you mean \"same\"?")
    let activation = try lower("probe(x, filters: 8, activation: \"rleu\")").onlyError(
      at: "\"rleu\"")
    #expect(
      activation.message == "probe: 'activation' must be one of \"relu\" or \"tanh\", got \"rleu\"")
    #expect(activation.help == "did you mean \"relu\"?")
    let initializer = try lower("probe(x, filters: 8, init: 3)").onlyError(at: "3)")
    #expect(initializer.message.contains("expected an initializer call"), "\(initializer.message)")
  }

  @Test("an option of tensors takes a tensor or a list of them, as graph values")
  func tensorOptions() throws {
    let one = try lower("probe(x, filters: 8, states: x)").onlyError(at: "probe(").message
    #expect(one.contains("states=tensors:[v0]"), "\(one)")
    let two = try lower("probe(x, filters: 8, states: [x, x * 2])").onlyError(at: "probe(").message
    #expect(two.contains("states=tensors:[v0, v"), "\(two)")
    let number = try lower("probe(x, filters: 8, states: 3)").onlyError(at: "3)")
    #expect(number.message == "probe: 'states' must be a tensor or a list of tensors, got 3")
    let mixed = try lower("probe(x, filters: 8, states: [x, 2])").onlyError(at: "[x, 2]")
    #expect(mixed.message.contains("'states' must be a tensor or a list of tensors"))
  }

  @Test func layerDuplicateOption() throws {
    let lowered = try lower("probe(x, filters: 8, kernel: 3, filters: 4)")
    let error = try lowered.onlyError(at: "filters: 4")
    #expect(error.message == "probe: option 'filters' is given twice")
    let first = try lowered.column(of: "filters: 8")
    #expect(error.notes.first?.location?.column == first.column)
  }

  // MARK: Ops

  @Test func opBindingErrors() throws {
    let unknown = try lower("softmax(x, axs: 0)").onlyError(at: "axs:")
    #expect(unknown.message == "softmax has no argument 'axs'")
    #expect(unknown.help == "did you mean 'axis'?")
    let missing = try lower("reshape(x)").onlyError(at: "reshape(")
    #expect(missing.message.hasPrefix("reshape needs the argument 'shape'"), "\(missing.message)")
    let wrong = try lower("softmax(x, axis: \"last\")").onlyError(at: "\"last\"")
    #expect(wrong.message == "softmax: 'axis' must be an integer, got \"last\"")
    let twice = try lower("softmax(x, axis: 0, axis: 1)").onlyError(at: "axis: 1")
    #expect(twice.message == "softmax: argument 'axis' is given twice")
    let positionalTwice = try lower("leaky_relu(x, 0.2, alpha: 0.1)").onlyError(at: "alpha:")
    #expect(positionalTwice.message == "leaky_relu: argument 'alpha' is given twice")
  }

  @Test func opPositionalAttributesAndDefaults() throws {
    let graph = try #require(try lower("leaky_relu(x, 0.25)").graph)
    let node = try #require(graph.nodes.first { $0.op == "leaky_relu" })
    #expect(node.attributes["alpha"] == .float(0.25))
    let defaulted = try #require(try lower("softmax(x)").graph)
    let softmax = try #require(defaulted.nodes.first { $0.op == "softmax" })
    let declared = try #require(OpRegistry.definition("softmax")?.attributes.first?.defaultValue)
    #expect(softmax.attributes["axis"] == declared)
  }

  // MARK: Optimizers

  @Test func optimizerBindingErrors() throws {
    let unknown = try lower("", train: "adam(bta1: 0.8)").onlyError(at: "bta1:")
    #expect(unknown.message == "adam has no hyperparameter 'bta1'")
    #expect(unknown.help == "did you mean 'beta1'?")
    let alias = try lower("", train: "sgd(learning_rate: 0.1)").onlyError(at: "learning_rate:")
    #expect(alias.help == "did you mean 'lr'?")
    let missing = try lower("", train: "lion(beta: 0.8)").onlyError(at: "lion(")
    #expect(missing.message == "lion needs the hyperparameter 'lr' (learning rate)")
    #expect(missing.help == "add it, as in lion(lr: 0.1)")
    let wrong = try lower("", train: "adam(lr: \"fast\")").onlyError(at: "\"fast\"")
    #expect(wrong.message == "adam: 'lr' must be a number, got \"fast\"")
    let twice = try lower("", train: "adam(lr: 0.1, lr: 0.2)").onlyError(at: "lr: 0.2")
    #expect(twice.message == "adam: hyperparameter 'lr' is given twice")
    let positional = try lower("", train: "adam(0.1)").onlyError(at: "0.1")
    #expect(positional.message == "adam takes labelled arguments only, got a positional one")
    #expect(positional.help == "name it, as in adam(lr: 0.1)")
  }

  @Test func optimizerDefaultsComeFromTheTable() throws {
    let graph = try #require(try lower("", train: "adamw(lr: 0.01)").graph)
    let step = try #require(graph.trainSteps.first)
    let adamw = try #require(OptimizerRegistry.definition("adamw"))
    for spec in adamw.allHyperparameters where spec.name != "lr" {
      #expect(step.attributes[spec.name] == spec.defaultValue, "\(spec.name)")
    }
    #expect(step.attributes["lr"] == .float(0.01))
    let lion = try #require(try lower("", train: "lion(lr: 1)").graph?.trainSteps.first)
    #expect(lion.attributes["beta"] == .float(0.9))
    #expect(lion.attributes["lr"] == .float(1))
  }

  // MARK: The tables themselves

  @Test func everyDeclaredDefaultHasItsKind() {
    for layer in LayerRegistry.all + [Self.probe] {
      var names = Set<String>()
      for option in layer.options {
        #expect(names.insert(option.name).inserted, "\(layer.name) declares \(option.name) twice")
        if let value = option.defaultValue {
          #expect(
            option.kind.accept(value) != nil,
            "\(layer.name).\(option.name): default \(value) is not \(option.kind.phrase)")
          #expect(!option.isRequired, "\(layer.name).\(option.name) is required and has a default")
        }
        // Expansions read initializer options through param(_:_:initializedBy:).
        if option.kind.isInitializer {
          #expect(
            option.defaultValue != nil || option.isRequired,
            "\(layer.name).\(option.name) has no default initializer")
        }
      }
    }
    for optimizer in OptimizerRegistry.all {
      for spec in optimizer.allHyperparameters {
        if let value = spec.defaultValue {
          #expect(value.coerced(to: spec.kind) == value, "\(optimizer.name).\(spec.name)")
        }
      }
    }
  }

  @Test func optionKindsDescribeThemselves() {
    let padding = LayerOptionKind.anyOf([.integers(lengths: [2, 4]), .oneOf(["same", "valid"])])
    #expect(padding.description == "Int, [Int, Int], [Int, Int, Int, Int], \"same\" or \"valid\"")
    #expect(LayerOptionKind.integers(lengths: [2]).description == "Int or [Int, Int]")
    #expect(LayerOptionKind.oneOf(["a", "b"]).phrase == "one of \"a\" or \"b\"")
    #expect(padding.accept(.integer(1)) == .integers([1]))
    #expect(padding.accept(.integers([1, 2])) == .integers([1, 2]))
    #expect(padding.accept(.integers([1, 2, 3])) == nil)
    #expect(padding.accept(.string("same")) == .string("same"))
    #expect(padding.accept(.string("full")) == nil)
    #expect(LayerOptionKind.number.accept(.integer(2)) == .number(2))
    #expect(LayerOptionKind.integer.accept(.number(2)) == nil)
  }
}
