import LaminaSupport

extension ONNXTranslators {
  /// Activations beyond the common ones: Elu, Selu, Softsign, HardSigmoid, PRelu and Clip (bounds
  /// are attributes before opset 11 and optional inputs from it).
  static let activationTranslators: [ONNXTranslator] = [
    ONNXTranslator(["Elu"]) { context in
      let alpha = try floatLiteral(context.float("alpha", default: 1))
      return try unary(&context, "elu", arguments: ", alpha: \(alpha)")
    },
    ONNXTranslator(["Selu"]) { context in
      // ONNX's defaults are the float32 values of the self-normalizing constants.
      let alpha = try floatLiteral(context.float("alpha", default: 1.67326319217681884765625))
      let gamma = try floatLiteral(context.float("gamma", default: 1.05070102214813232421875))
      return try unary(&context, "selu", arguments: ", alpha: \(alpha), gamma: \(gamma)")
    },
    ONNXTranslator(["Softsign"]) { try unary(&$0, "softsign") },
    ONNXTranslator(["HardSigmoid"]) { context in
      let alpha = try floatLiteral(context.float("alpha", default: 0.2))
      let beta = try floatLiteral(context.float("beta", default: 0.5))
      return try unary(&context, "hard_sigmoid", arguments: ", alpha: \(alpha), beta: \(beta)")
    },
    ONNXTranslator(["PRelu"], translatePRelu),
    ONNXTranslator(["Clip"], translateClip),
  ]

  /// PRelu: the slope broadcasts to x. Older exporters give a per-channel slope as [C] for an
  /// [N, C, …] input (opset 6 and before allowed it); it is aligned to the channel axis.
  @Sendable static func translatePRelu(_ context: inout ONNXNodeContext) throws -> [ImportedValue] {
    let x = try context.tensor(0)
    guard x.dtype.isFloatingPoint else { throw context.error("PRelu of an \(x.dtype) tensor") }
    var slope = try context.tensor(1, dtype: x.dtype)
    // Before opset 7 the slope is one value or one per channel (axis 1); from 7 it broadcasts.
    let perChannel =
      context.opset < 7 && slope.rank == 1 && slope.shape[0] != ImportedDim(1) && x.rank > 2
    let broadcasts = (try? context.broadcast(x.shape, slope.shape)) == x.shape
    if perChannel || !broadcasts {
      guard slope.rank == 1, x.rank >= 2, slope.shape[0] == x.shape[1] else {
        throw context.error("the slope \(slope.shape) does not broadcast to x \(x.shape)")
      }
      slope = try context.reshape(
        slope, to: [slope.shape[0]] + Array(repeating: ImportedDim(1), count: x.rank - 2))
    }
    return [context.emit("prelu(\(x.name), \(slope.name))", shape: x.shape, dtype: x.dtype)]
  }

  /// Clip: `min` and `max` attributes before opset 11, optional scalar inputs from it. An absent or
  /// infinite bound is no bound.
  @Sendable static func translateClip(_ context: inout ONNXNodeContext) throws -> [ImportedValue] {
    let x = try context.tensor(0)
    guard x.dtype.isFloatingPoint else { throw context.error("Clip of an \(x.dtype) tensor") }
    var bounds: [(name: String, value: Double)] = []
    for (position, name) in ["min", "max"].enumerated() {
      var value: Double?
      if context.opset < 11 {
        value = context.hasAttribute(name) ? Double(context.float(name, default: 0)) : nil
      } else if context.hasInput(position + 1) {
        let bound = try context.constant(position + 1, "the \(name) bound")
        guard bound.count == 1 else { throw context.error("the \(name) bound must be a scalar") }
        value = bound.doubles()[0]
      }
      if let value, value.isFinite { bounds.append((name, value)) }
    }
    if bounds.isEmpty { return [.tensor(x)] }
    // An f32 bound in its shortest f32 form (the value the f32 comparison uses).
    let arguments = try bounds.map { bound in
      let literal =
        x.dtype == .f32 ? try floatLiteral(Float(bound.value)) : try floatLiteral(bound.value)
      return "\(bound.name): \(literal)"
    }
    return [
      context.emit(
        "clip(\(x.name), \(arguments.joined(separator: ", ")))", shape: x.shape, dtype: x.dtype)
    ]
  }
}
