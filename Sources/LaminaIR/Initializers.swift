import Foundation
import LaminaSupport

/// A way to fill a parameter with its first values, deterministic from a seed.
public struct InitializerDefinition: Sendable {
  public var name: String
  public var summary: String
  public var arguments: [AttributeSpec]
  /// Values for a parameter of `shape`, drawn from `generator`.
  public var generate:
    @Sendable (_ shape: [Int], _ arguments: [String: Attribute], _ generator: inout SeededGenerator)
      ->
      [Double]

  public init(
    _ name: String, _ summary: String, arguments: [AttributeSpec] = [],
    generate: @escaping @Sendable ([Int], [String: Attribute], inout SeededGenerator) -> [Double]
  ) {
    self.name = name
    self.summary = summary
    self.arguments = arguments
    self.generate = generate
  }

  /// The signature as the language reference shows it: `uniform(lo: float = -0.05, hi: float = 0.05)`.
  public var signature: String {
    let list = arguments.map { spec in
      "\(spec.name): \(spec.kind.rawValue)" + (spec.defaultValue.map { " = \($0)" } ?? "")
    }
    return "\(name)(\(list.joined(separator: ", ")))"
  }
}

/// Fan-in and fan-out of a weight, which scale the Glorot and He initializers.
///
/// Rank 2 weights are `[in, out]` (they multiply as `x @ w`); rank 1 has fan-in = fan-out = its size;
/// higher ranks follow PyTorch's convolution layout `[out, in, k...]`, scaled by the kernel size.
/// `fan_in:` and `fan_out:` arguments override the rule.
public func fans(of shape: [Int], arguments: [String: Attribute]) -> (fanIn: Double, fanOut: Double)
{
  var fanIn: Int
  var fanOut: Int
  switch shape.count {
  case 0:
    (fanIn, fanOut) = (1, 1)
  case 1:
    (fanIn, fanOut) = (shape[0], shape[0])
  case 2:
    (fanIn, fanOut) = (shape[0], shape[1])
  default:
    let receptive = shape.dropFirst(2).reduce(1, *)
    (fanIn, fanOut) = (shape[1] * receptive, shape[0] * receptive)
  }
  if let value = arguments["fan_in"]?.intValue { fanIn = value }
  if let value = arguments["fan_out"]?.intValue { fanOut = value }
  return (Double(max(fanIn, 1)), Double(max(fanOut, 1)))
}

/// Every initializer a `param` declaration or layer can name.
public enum InitializerRegistry {
  private static let fanArguments = [
    AttributeSpec("fan_in", .int, "overrides the fan-in taken from the shape"),
    AttributeSpec("fan_out", .int, "overrides the fan-out taken from the shape"),
  ]

  public static let all: [InitializerDefinition] = [
    InitializerDefinition("zeros", "All zeros.") { shape, _, _ in
      Array(repeating: 0, count: shape.reduce(1, *))
    },
    InitializerDefinition("ones", "All ones.") { shape, _, _ in
      Array(repeating: 1, count: shape.reduce(1, *))
    },
    InitializerDefinition(
      "constant", "Every element set to `value`.",
      arguments: [AttributeSpec("value", .float, required: true)]
    ) { shape, arguments, _ in
      Array(repeating: arguments["value"]?.doubleValue ?? 0, count: shape.reduce(1, *))
    },
    InitializerDefinition(
      "uniform", "Uniform on [lo, hi).",
      arguments: [
        AttributeSpec("lo", .float, default: .float(-0.05)),
        AttributeSpec("hi", .float, default: .float(0.05)),
      ]
    ) { shape, arguments, generator in
      let lo = arguments["lo"]?.doubleValue ?? -0.05
      let hi = arguments["hi"]?.doubleValue ?? 0.05
      return (0..<shape.reduce(1, *)).map { _ in lo + (hi - lo) * generator.nextUnit() }
    },
    InitializerDefinition(
      "recurrent_uniform",
      "Uniform on ±1/√hidden, hidden = the first dimension divided by gates: PyTorch's RNN, LSTM and GRU initialization (gates 1, 4, 3) for weight_ih [gates·hidden, in], weight_hh and the biases.",
      arguments: [AttributeSpec("gates", .int, default: .int(1))]
    ) { shape, arguments, generator in
      let gates = max(1, arguments["gates"]?.intValue ?? 1)
      let hidden = max(1, (shape.first ?? 1) / gates)
      let bound = 1 / Double(hidden).squareRoot()
      return (0..<shape.reduce(1, *)).map { _ in -bound + 2 * bound * generator.nextUnit() }
    },
    InitializerDefinition(
      "normal", "Normal with the given mean and standard deviation.",
      arguments: [
        AttributeSpec("mean", .float, default: .float(0)),
        AttributeSpec("std", .float, default: .float(0.05)),
      ]
    ) { shape, arguments, generator in
      let mean = arguments["mean"]?.doubleValue ?? 0
      let std = arguments["std"]?.doubleValue ?? 0.05
      return (0..<shape.reduce(1, *)).map { _ in mean + std * generator.nextNormal() }
    },
    InitializerDefinition(
      "glorot_uniform", "Glorot (Xavier) uniform: U(-a, a), a = √(6 / (fan_in + fan_out)).",
      arguments: fanArguments
    ) { shape, arguments, generator in
      let (fanIn, fanOut) = fans(of: shape, arguments: arguments)
      let limit = (6 / (fanIn + fanOut)).squareRoot()
      return (0..<shape.reduce(1, *)).map { _ in limit * (2 * generator.nextUnit() - 1) }
    },
    InitializerDefinition(
      "glorot_normal", "Glorot (Xavier) normal: N(0, 2 / (fan_in + fan_out)).",
      arguments: fanArguments
    ) { shape, arguments, generator in
      let (fanIn, fanOut) = fans(of: shape, arguments: arguments)
      let std = (2 / (fanIn + fanOut)).squareRoot()
      return (0..<shape.reduce(1, *)).map { _ in std * generator.nextNormal() }
    },
    InitializerDefinition(
      "he_uniform", "He (Kaiming) uniform for ReLU layers: U(-a, a), a = √(6 / fan_in).",
      arguments: fanArguments
    ) { shape, arguments, generator in
      let limit = (6 / fans(of: shape, arguments: arguments).fanIn).squareRoot()
      return (0..<shape.reduce(1, *)).map { _ in limit * (2 * generator.nextUnit() - 1) }
    },
    InitializerDefinition(
      "he_normal", "He (Kaiming) normal for ReLU layers: N(0, 2 / fan_in).", arguments: fanArguments
    ) { shape, arguments, generator in
      let std = (2 / fans(of: shape, arguments: arguments).fanIn).squareRoot()
      return (0..<shape.reduce(1, *)).map { _ in std * generator.nextNormal() }
    },
  ]

  public static func definition(_ name: String) -> InitializerDefinition? {
    all.first { $0.name == name }
  }

  public static var names: [String] { all.map(\.name) }
}

extension Graph {
  /// The initial value of every state tensor, optimizer and model state (their initializers need
  /// no randomness).
  public func initialState(seed: UInt64 = 0) throws -> [String: Tensor] {
    var result: [String: Tensor] = [:]
    for state in states {
      let info = self[state.value]
      guard let type = info.type, let shape = type.concreteShape([:]),
        let definition = InitializerRegistry.definition(state.initializer.name)
      else {
        throw Diagnostic.error("state \(info.name) cannot be initialized", at: info.location)
      }
      var generator = SeededGenerator(seed: seed, stream: info.name)
      result[info.name] = Tensor(
        dtype: type.dtype, shape: shape,
        doubles: definition.generate(shape, state.initializer.arguments, &generator))
    }
    return result
  }

  /// The initial value of every model state tensor (state no optimizer owns).
  public func initialModelState() throws -> [String: Tensor] {
    let names = Set(modelStates.map { self[$0.value].name })
    return try initialState().filter { names.contains($0.key) }
  }

  /// The initial value of every parameter, drawn from its initializer.
  ///
  /// Each parameter's values come from a stream keyed by its name under `seed`, so adding or removing a
  /// layer leaves the other parameters' initial values unchanged. Parameters must have static shapes.
  public func initialParameters(seed: UInt64) throws -> [String: Tensor] {
    var result: [String: Tensor] = [:]
    for param in params {
      let info = self[param.value]
      guard let type = info.type, let shape = type.concreteShape([:]) else {
        throw Diagnostic.error(
          "parameter \(info.name) needs a static shape to be initialized", at: info.location)
      }
      guard let definition = InitializerRegistry.definition(param.initializer.name) else {
        throw Diagnostic.error(
          "unknown initializer '\(param.initializer.name)' for parameter \(info.name)",
          at: info.location)
      }
      var generator = SeededGenerator(seed: seed, stream: info.name)
      let values = definition.generate(shape, param.initializer.arguments, &generator)
      result[info.name] = Tensor(dtype: type.dtype, shape: shape, doubles: values)
    }
    return result
  }
}
