import LaminaIR
import LaminaSupport

/// A value a layer call receives for one of its named options.
public enum LayerOption: Sendable, Hashable, CustomStringConvertible {
  case integer(Int)
  case number(Double)
  case string(String)
  case bool(Bool)
  case initializer(Initializer)
  /// An option that takes an integer or a list of them (`kernel: 3`, `kernel: [3, 5]`), as written.
  case integers([Int])
  /// An option that takes a tensor or a list of tensors of the model (`lengths: lengths`,
  /// `initial: [h0, c0]`), as values of the graph.
  case tensors([ValueID])

  /// The value as the language writes it, for the reference and for messages.
  public var description: String {
    switch self {
    case .integer(let value): String(value)
    case .number(let value): Attribute.float(value).description
    case .string(let value): Attribute.string(value).description
    case .bool(let value): String(value)
    case .initializer(let value): value.description
    case .integers(let values):
      values.count == 1
        ? String(values[0]) : "[" + values.map(String.init).joined(separator: ", ") + "]"
    case .tensors(let values): values.count == 1 ? "a tensor" : "a list of \(values.count) tensors"
    }
  }
}

/// The kind of value a layer option takes.
///
/// Besides the plain kinds, an option can take "an integer or a list of integers" (a kernel size given
/// once for every spatial axis or once per axis), "one of these words" (`padding: "same"`), or any of
/// several kinds (`padding: 1`, `[1, 2]` or `"valid"`).
public indirect enum LayerOptionKind: Sendable, Hashable, CustomStringConvertible {
  case integer
  case number
  case bool
  case string
  case initializer
  /// An integer, or a list of integers whose length is one of `lengths` (`kernel: 3`, `[3, 5]`).
  case integers(lengths: [Int])
  /// A string that is one of these words.
  case oneOf([String])
  /// A value of any of these kinds, tried in order. An initializer cannot be one of them.
  case anyOf([LayerOptionKind])
  /// A tensor, or a list of tensors (`initial: [h0, c0]`).
  case tensors

  /// The kind as the reference writes it: `Int`, `Int or [Int, Int]`, `"same" or "valid"`.
  public var description: String { written.joinedAsAlternatives() }

  /// What a value of this kind is, for messages: "an integer", "one of \"same\" or \"valid\"".
  public var phrase: String {
    if case .oneOf(let words) = self { return "one of " + words.map(quoted).joinedAsAlternatives() }
    return spoken.joinedAsAlternatives()
  }

  /// The alternatives as the reference writes them, flattened.
  private var written: [String] {
    switch self {
    case .integer: ["Int"]
    case .number: ["Float"]
    case .bool: ["Bool"]
    case .string: ["String"]
    case .initializer: ["Initializer"]
    case .integers(let lengths):
      ["Int"]
        + lengths.filter { $0 != 1 }.map {
          "[" + Array(repeating: "Int", count: $0).joined(separator: ", ") + "]"
        }
    case .oneOf(let words): words.map(quoted)
    case .anyOf(let kinds): kinds.flatMap(\.written)
    case .tensors: ["Tensor", "[Tensor, ...]"]
    }
  }

  /// The alternatives in words, flattened.
  private var spoken: [String] {
    switch self {
    case .integer: ["an integer"]
    case .number: ["a number"]
    case .bool: ["true or false"]
    case .string: ["a string"]
    case .initializer: ["an initializer call like he_uniform()"]
    case .integers(let lengths):
      ["an integer"] + lengths.filter { $0 != 1 }.map { "a list of \($0) integers" }
    case .oneOf(let words): words.map(quoted)
    case .anyOf(let kinds): kinds.flatMap(\.spoken)
    case .tensors: ["a tensor", "a list of tensors"]
    }
  }

  /// A value of this kind for a help line: `dense(units: 64)`.
  public var example: String {
    switch self {
    case .integer: "64"
    case .number: "0.1"
    case .bool: "true"
    case .string: "\"...\""
    case .initializer: "he_uniform()"
    case .integers: "3"
    case .oneOf(let words): words.first.map(quoted) ?? "\"...\""
    case .anyOf(let kinds): kinds.first?.example ?? "..."
    case .tensors: "x"
    }
  }

  /// The kind's value for `value`, or nil when `value` is not of this kind. Initializers are built
  /// from their call by the lowering, not from a value.
  public func accept(_ value: LayerOption) -> LayerOption? {
    switch (self, value) {
    case (.integer, .integer), (.number, .number), (.bool, .bool), (.string, .string),
      (.initializer, .initializer), (.tensors, .tensors):
      return value
    case (.number, .integer(let integer)): return .number(Double(integer))
    case (.integers, .integer(let integer)): return .integers([integer])
    case (.integers(let lengths), .integers(let values)):
      return values.count == 1 || lengths.contains(values.count) ? value : nil
    case (.oneOf(let words), .string(let word)): return words.contains(word) ? value : nil
    case (.anyOf(let kinds), _):
      for kind in kinds {
        if let accepted = kind.accept(value) { return accepted }
      }
      return nil
    default: return nil
    }
  }

  /// Whether the kind takes an initializer call (which is built, not evaluated).
  public var isInitializer: Bool { self == .initializer }
}

/// A word as the language writes a string: `"same"`.
private func quoted(_ word: String) -> String { Attribute.string(word).description }

extension Array where Element == String {
  /// `a`, `a or b`, `a, b or c`.
  fileprivate func joinedAsAlternatives() -> String {
    count <= 1 ? (first ?? "") : dropLast().joined(separator: ", ") + " or " + last!
  }
}

/// One named option of a layer (`units: Int`, `init: Initializer = glorot_uniform()`), declared the
/// way an op declares its attributes: the binder checks calls against it and fills in the default.
public struct LayerOptionSpec: Sendable {
  public var name: String
  public var kind: LayerOptionKind
  /// Filled in when the option is not given; nil with `isRequired == false` means "absent".
  public var defaultValue: LayerOption?
  public var isRequired: Bool
  public var summary: String

  public init(
    _ name: String, _ kind: LayerOptionKind, default defaultValue: LayerOption? = nil,
    required: Bool = false, _ summary: String
  ) {
    self.name = name
    self.kind = kind
    self.defaultValue = defaultValue
    self.isRequired = required
    self.summary = summary
  }
}

/// What a layer's expansion sees and builds with: its input tensors, its options, and a graph to which
/// it adds parameters (named inside the layer's scope, `head.weight`) and op nodes.
public struct LayerBuilder {
  public internal(set) var graph: Graph
  /// The layer instance's qualified name, the prefix of its parameters (`residual_3.dense_1`).
  public let scopeName: String
  public let location: SourceLocation
  public let inputs: [ValueID]
  /// The options as bound: every option given, plus the declared default of every one not given.
  public let options: [String: LayerOption]
  /// True when a shared instance is called again: parameters that exist are reused, not created.
  public let sharesParameters: Bool
  /// The model's `freeze` patterns, known before any layer expands so a layer can build its frozen
  /// form (a frozen `batch_norm` normalizes with its running statistics and never updates them).
  public var freezePatterns: [String] = []

  /// Whether a `freeze` pattern of the model matches the qualified name `scopeName.name`.
  public func isFrozen(_ name: String) -> Bool {
    let qualified = "\(scopeName).\(name)"
    return freezePatterns.contains { globMatch($0, qualified) }
  }

  public func type(of value: ValueID) -> TensorType { graph.type(of: value) }

  public func int(_ name: String) -> Int? {
    if case .integer(let value)? = options[name] { return value }
    return nil
  }

  public func double(_ name: String) -> Double? {
    switch options[name] {
    case .integer(let value)?: Double(value)
    case .number(let value)?: value
    default: nil
    }
  }

  public func bool(_ name: String) -> Bool? {
    if case .bool(let value)? = options[name] { return value }
    return nil
  }

  public func string(_ name: String) -> String? {
    if case .string(let value)? = options[name] { return value }
    return nil
  }

  public func initializer(_ name: String) -> Initializer? {
    if case .initializer(let value)? = options[name] { return value }
    return nil
  }

  /// An option that takes tensors (`lengths: lengths`, `initial: [h0, c0]`): the values given, or
  /// nil when it was not given.
  public func tensors(_ name: String) -> [ValueID]? {
    if case .tensors(let values)? = options[name] { return values }
    return nil
  }

  /// An option that takes an integer or a list of integers, as a list (`3` is `[3]`).
  public func ints(_ name: String) -> [Int]? {
    switch options[name] {
    case .integer(let value)?: [value]
    case .integers(let values)?: values
    default: nil
    }
  }

  /// Adds a parameter named `scopeName.name`, initialized by the initializer option `option`
  /// (`init:`, `bias_init:`), which the layer table gives a default.
  public mutating func param(_ name: String, _ type: TensorType, initializedBy option: String)
    throws(ShapeError) -> ValueID
  {
    guard let initializer = initializer(option) else {
      // Only a layer table entry without a default for `option` gets here; a test checks there is none.
      throw ShapeError("\(scopeName): option '\(option)' gives no initializer")
    }
    return try param(name, type, initializer)
  }

  /// Adds a parameter named `scopeName.name`.
  public mutating func param(_ name: String, _ type: TensorType, _ initializer: Initializer)
    throws(ShapeError)
    -> ValueID
  {
    let qualified = "\(scopeName).\(name)"
    // The same bound as for a `param` declaration; a layer's size comes from options like units.
    let elements = type.shape.reduce((1, false)) { product, dim in
      let (value, overflow) = product.0.multipliedReportingOverflow(by: dim.staticValue ?? 1)
      return (value, product.1 || overflow)
    }
    guard !elements.1, elements.0 <= 1 << 40 else {
      throw ShapeError("parameter \(qualified) would be \(type), too large: past 2^40 elements")
    }
    if let existing = graph.value(named: qualified) {
      // A shared instance called again uses the parameter its first call made.
      if sharesParameters, graph.param(for: existing) != nil, graph.type(of: existing) == type {
        return existing
      }
      throw ShapeError(
        "parameter name \(qualified) is already taken",
        help: "give the layer another name with name:")
    }
    return graph.addParam(name: qualified, type: type, initializer: initializer, location: location)
  }

  /// Adds model state named `scopeName.name` (`batch_norm_0.running_mean`): a value kept between
  /// calls that no optimizer owns, saved with the weights. A shared instance called again gets the
  /// state its first call made. Give it its value after a training step with `updateState`.
  public mutating func state(_ name: String, _ type: TensorType, _ initializer: Initializer)
    throws(ShapeError) -> ValueID
  {
    let qualified = "\(scopeName).\(name)"
    if let existing = graph.value(named: qualified) {
      if sharesParameters, graph.state(for: existing)?.isModelState == true,
        graph.type(of: existing) == type
      {
        return existing
      }
      throw ShapeError(
        "state name \(qualified) is already taken", help: "give the layer another name with name:")
    }
    guard type.concreteShape([:]) != nil else {
      throw ShapeError("state \(qualified) needs a static shape, got \(type)")
    }
    return graph.addState(
      name: qualified, type: type, initializer: initializer, step: nil, location: location)
  }

  /// Registers the value model state takes after a training step: every training step whose loss
  /// computation runs the node defining `trigger` applies it (every step when `trigger` is nil).
  /// A state has one rule: a shared instance called again keeps its first call's.
  public mutating func updateState(_ state: ValueID, to value: ValueID, when trigger: ValueID?)
    throws(ShapeError)
  {
    guard graph.state(for: state)?.isModelState == true else {
      throw ShapeError("%\(graph[state].name) is not model state")
    }
    guard graph.type(of: state) == graph.type(of: value) else {
      throw ShapeError(
        "state \(graph[state].name) is \(graph.type(of: state)), its update \(graph.type(of: value))"
      )
    }
    if graph.stateUpdates.contains(where: { $0.target == state }) { return }
    graph.stateUpdates.append(StateUpdate(target: state, value: value, trigger: trigger))
  }

  /// Adds an op node, applying its shape rule.
  public mutating func op(
    _ op: String, _ operands: [ValueID], _ attributes: [String: Attribute] = [:]
  )
    throws(ShapeError) -> ValueID
  {
    try graph.addInferredNode(op, operands, attributes: attributes, location: location)
  }
}

/// A layer: a function of the language that creates its own parameters and expands to IR ops.
///
/// Layers live in this one table; CNN, recurrent, normalization and embedding layers are added as
/// entries here, with no change to the parser or lowering.
public struct LayerDefinition: Sendable {
  public var name: String
  public var summary: String
  /// Number of tensor inputs taken positionally.
  public var inputCount: Int
  public var options: [LayerOptionSpec]
  public var expand: @Sendable (inout LayerBuilder) throws(ShapeError) -> ValueID

  public init(
    _ name: String, summary: String, inputCount: Int = 1, options: [LayerOptionSpec],
    expand: @escaping @Sendable (inout LayerBuilder) throws(ShapeError) -> ValueID
  ) {
    self.name = name
    self.summary = summary
    self.inputCount = inputCount
    self.options = options
    self.expand = expand
  }
}

/// Every layer the language offers.
public enum LayerRegistry {
  /// Activations a layer's `activation:` option can name.
  static let activations = ["relu", "sigmoid", "tanh", "gelu", "softplus", "leaky_relu"]

  public static let all: [LayerDefinition] =
    denseLayers + normalizationLayers + layerNormLayers + randomLayers
    + convolutionLayers + poolingLayers
    + embeddingLayers
    + recurrentLayers
    + gatedRecurrentLayers

  /// Fully connected layers.
  static let denseLayers: [LayerDefinition] = [
    LayerDefinition(
      "dense",
      summary:
        "Fully connected layer: y = x @ weight + bias, with weight [in, units] and bias [units] (Keras Dense; PyTorch Linear stores weight transposed).",
      options: [
        LayerOptionSpec("units", .integer, required: true, "output features"),
        LayerOptionSpec(
          "init", .initializer, default: .initializer(Initializer("glorot_uniform")),
          "weight initializer"),
        LayerOptionSpec("bias", .bool, default: .bool(true), "add a bias"),
        LayerOptionSpec(
          "bias_init", .initializer, default: .initializer(Initializer("zeros")), "bias initializer"
        ),
        LayerOptionSpec("activation", .oneOf(activations), "apply an activation"),
        LayerOptionSpec("name", .string, "scope name of the layer's parameters (default dense_N)"),
      ]
    ) { builder throws(ShapeError) in
      let x = builder.inputs[0]
      let type = builder.type(of: x)
      guard let units = builder.int("units"), units > 0 else {
        throw ShapeError("dense: units must be a positive integer")
      }
      guard type.dtype.isFloatingPoint else {
        throw ShapeError(
          "dense needs a floating-point input, got \(type)",
          help:
            "convert it with cast(x, dtype: f32); for integer ids, an embedding is the usual layer")
      }
      guard let features = type.shape.last?.staticValue else {
        throw ShapeError(
          "dense needs an input whose last dimension is static, got \(type)",
          help: "reshape or flatten the input so the feature axis has a fixed size")
      }
      let weight = try builder.param(
        "weight", TensorType(type.dtype, [Dim(features), Dim(units)]), initializedBy: "init")
      var y = try builder.op("matmul", [x, weight])
      if builder.bool("bias") == true {
        let bias = try builder.param(
          "bias", TensorType(type.dtype, [Dim(units)]), initializedBy: "bias_init")
        y = try builder.op("add", [y, bias])
      }
      if let activation = builder.string("activation") {
        y = try builder.op(activation, [y])
      }
      return y
    }
  ]

  public static func definition(_ name: String) -> LayerDefinition? {
    all.first { $0.name == name }
  }
}
