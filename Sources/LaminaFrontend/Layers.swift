import LaminaIR
import LaminaSupport

/// A value a layer call receives for one of its named options.
public enum LayerOption: Sendable {
  case integer(Int)
  case number(Double)
  case string(String)
  case bool(Bool)
  case initializer(Initializer)
}

/// One named option of a layer (`units: Int`, `init: he_uniform()`).
public struct LayerOptionSpec: Sendable {
  public enum Kind: String, Sendable {
    case integer = "Int"
    case number = "Float"
    case string = "String"
    case bool = "Bool"
    case initializer = "Initializer"
  }
  public var name: String
  public var kind: Kind
  public var isRequired: Bool
  public var summary: String

  public init(_ name: String, _ kind: Kind, required: Bool = false, _ summary: String) {
    self.name = name
    self.kind = kind
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
  public let options: [String: LayerOption]
  /// True when a shared instance is called again: parameters that exist are reused, not created.
  public let sharesParameters: Bool

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

  public static let all: [LayerDefinition] = [
    LayerDefinition(
      "dense",
      summary:
        "Fully connected layer: y = x @ weight + bias, with weight [in, units] and bias [units] (Keras Dense; PyTorch Linear stores weight transposed).",
      options: [
        LayerOptionSpec("units", .integer, required: true, "output features"),
        LayerOptionSpec("init", .initializer, "weight initializer (default glorot_uniform())"),
        LayerOptionSpec("bias", .bool, "add a bias (default true)"),
        LayerOptionSpec("bias_init", .initializer, "bias initializer (default zeros())"),
        LayerOptionSpec(
          "activation", .string, "apply an activation: \(activations.joined(separator: ", "))"),
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
        "weight", TensorType(type.dtype, [Dim(features), Dim(units)]),
        builder.initializer("init") ?? Initializer("glorot_uniform"))
      var y = try builder.op("matmul", [x, weight])
      if builder.bool("bias") ?? true {
        let bias = try builder.param(
          "bias", TensorType(type.dtype, [Dim(units)]),
          builder.initializer("bias_init") ?? Initializer("zeros"))
        y = try builder.op("add", [y, bias])
      }
      if let activation = builder.string("activation") {
        guard activations.contains(activation) else {
          throw ShapeError(
            "dense: unknown activation '\(activation)' (valid: \(activations.joined(separator: ", ")))"
          )
        }
        y = try builder.op(activation, [y])
      }
      return y
    }
  ]

  public static func definition(_ name: String) -> LayerDefinition? {
    all.first { $0.name == name }
  }
}
