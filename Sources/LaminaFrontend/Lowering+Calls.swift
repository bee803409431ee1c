import LaminaIR
import LaminaSupport

/// Calls: which table a callee comes from (block, `repeat`, layer, op), and op calls.
extension Lowering {
  mutating func lowerCall(
    _ callee: String, calleeLocation: SourceLocation, _ arguments: [Argument],
    at location: SourceLocation
  ) -> Value {
    if let block = blocks[callee] {
      return callBlock(block, arguments: arguments, at: location)
    }
    if callee == "repeat" { return lowerRepeat(arguments, at: location) }
    if callee == "scan" { return lowerScan(arguments, at: location) }
    if let layer = layers[callee] {
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
    if optimizers.contains(where: { $0.name == callee }) {
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
      OpRegistry.names + layerNames + blocks.keys.sorted() + ["repeat", "scan"]
    diagnostics.error(
      "unknown function '\(callee)'", at: calleeLocation,
      help: closestName(to: callee, among: candidates).map { "did you mean '\($0)'?" })
    return .poisoned
  }

  /// An op from the op table: positional tensors fill operands, the rest become attributes.
  mutating func callOp(_ op: OpDefinition, _ arguments: [Argument], at location: SourceLocation)
    -> Value
  {
    let bound = bindArguments(arguments, to: opSignature(op), at: location)
    if bound.failed { return .poisoned }
    // Literal operands take the dtype of the first tensor operand.
    let firstTensor = bound.tensors.lazy.compactMap {
      if case .tensor(let id) = $0.value { id } else { nil }
    }.first
    var operands: [ValueID] = []
    for (value, valueLocation) in bound.tensors {
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
    return emit(op.name, operands, attributes: bound.attributes, at: location)
  }

  /// Operands positionally or by their names; attributes by label, or positionally once the operands
  /// are complete (`leaky_relu(x, 0.2)`). Extra operands are left to the op's own count check.
  func opSignature(_ op: OpDefinition) -> CallSignature {
    CallSignature(
      callee: op.name, noun: "argument", slots: op.attributes.map(ArgumentSlot.init(attribute:)),
      maximumTensors: op.operandCount.upperBound,
      tensorLabels: op.operands.filter { !$0.isVariadic }.map(\.name),
      spreadsLists: op.operands.last?.isVariadic == true, fillsSlotsPositionally: true,
      keepsExtraPositionals: true, signature: op.signature)
  }
}
