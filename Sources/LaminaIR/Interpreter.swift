import LaminaSupport

/// The reference interpreter: evaluates a typed graph on tensors, one node at a time.
///
/// Written for obvious correctness, not speed: every op's kernel in the op table computes in `Double`
/// and rounds to the result dtype. Compiled code, fusion and memory planning are all tested against it.
public struct Interpreter: Sendable {
  public let graph: Graph

  public init(graph: Graph) { self.graph = graph }

  /// Computes the named outputs or losses (or any value, by its IR name).
  ///
  /// Only the nodes the requested values need are evaluated, so inputs they do not need (the label at
  /// inference) may be omitted; inputs given but not needed are ignored.
  /// - Throws: `RunError` for missing, unknown or mis-shaped inputs and parameters; `InterpretError`
  ///   from a kernel (an out-of-range label, say).
  /// - Parameter mode: `.training` when evaluating a training step (ops like dropout then train).
  public func run(
    inputs: [String: Tensor], parameters: [String: Tensor], outputs requested: [String],
    mode: ExecutionMode = .inference
  ) throws -> [String: Tensor] {
    var targets: [ValueID] = []
    for name in requested {
      guard let value = graph.exposedValue(named: name) ?? graph.value(named: name) else {
        let known = (graph.outputs + graph.losses).map(\.name)
        throw RunError(
          "the model has no output named '\(name)' (it has \(known.joined(separator: ", ")))")
      }
      targets.append(value)
    }
    let needed = graph.nodesNeeded(for: targets)
    let neededValues = Set(needed.flatMap { graph.nodes[$0].operands } + targets)

    var environment: [ValueID: Tensor] = [:]
    var declared: [(name: String, type: TensorType, tensor: Tensor)] = []
    for input in graph.inputs where neededValues.contains(input.value) {
      let info = graph[input.value]
      guard let tensor = inputs[info.name] else {
        throw RunError("missing input '\(info.name)' (\(graph.type(of: input.value)))")
      }
      declared.append((info.name, graph.type(of: input.value), tensor))
    }
    let bindings = try ShapeBinding.bind(
      declared.map { entry in
        let signature = ModelSignature.Entry(
          name: entry.name, dtype: entry.type.dtype.rawValue,
          shape: entry.type.shape.map(\.description))
        return (signature, entry.tensor)
      }, kind: "input")
    for entry in declared {
      environment[graph.value(named: entry.name)!] = try ShapeBinding.conform(
        entry.tensor, to: entry.type.dtype, name: entry.name, kind: "input")
    }
    // Optimizer and model state are supplied like parameters, by name.
    let stored =
      graph.params.map { ($0.value, "parameter") } + graph.states.map { ($0.value, "state") }
    for (value, kind) in stored where neededValues.contains(value) {
      let param = (value: value, kind: kind)
      let info = graph[param.value]
      guard let tensor = parameters[info.name] else {
        throw RunError("missing \(param.kind) '\(info.name)' (\(graph.type(of: param.value)))")
      }
      let type = graph.type(of: param.value)
      guard tensor.shape == type.concreteShape([:]) else {
        throw RunError(
          "\(param.kind) '\(info.name)': expected \(type), got \(tensor.typeDescription)")
      }
      environment[param.value] = try ShapeBinding.conform(
        tensor, to: type.dtype, name: info.name, kind: param.kind)
    }

    try evaluate(
      needed.map { graph.nodes[$0] }, environment: &environment, bindings: bindings, mode: mode)
    var output: [String: Tensor] = [:]
    for (name, value) in zip(requested, targets) {
      guard let tensor = environment[value] else {
        throw RunError("'\(name)' is not computed by this graph (a pass removed it as unused)")
      }
      output[name] = tensor
    }
    return output
  }

  /// Evaluates `nodes` in order, adding their results to `environment`.
  func evaluate(
    _ nodes: [Node], environment: inout [ValueID: Tensor], bindings: [String: Int],
    mode: ExecutionMode
  ) throws {
    // A fused node computes what its members compute, one after another.
    let steps = nodes.flatMap { node in node.op == Node.fusedOp ? node.body : [node] }
    for node in steps {
      guard let definition = OpRegistry.definition(node.op) else {
        throw RunError("unknown op '\(node.op)'")
      }
      var results: [(dtype: DType, shape: [Int])] = []
      for result in node.results {
        let type = graph.type(of: result)
        guard let shape = type.concreteShape(bindings) else {
          throw RunError("cannot evaluate the shape \(type) of %\(graph[result].name)")
        }
        try Tensor.checkAllocation(type.dtype, shape, of: "%\(graph[result].name)")
        results.append((type.dtype, shape))
      }
      if definition.region != nil {
        let values = try runScan(
          node, environment: &environment, bindings: bindings, mode: mode, results: results)
        for (result, value) in zip(node.results, values) { environment[result] = value }
        continue
      }
      let operands = node.operands.map { environment[$0]! }
      let context = InterpretContext(
        operands: operands, attributes: node.attributes, results: results, mode: mode)
      let values: [Tensor]
      do {
        values = try definition.interpret(context)
      } catch let error as InterpretError {
        throw InterpretError("\(node.location): \(error.message)")
      }
      for (result, (value, expected)) in zip(node.results, zip(values, results)) {
        // A kernel that disagrees with its shape rule is a bug in the op table, not in the model.
        guard value.shape == expected.shape, value.dtype == expected.dtype else {
          throw InterpretError(
            "internal error: \(node.op) produced \(value.typeDescription), its shape rule says \(expected)"
          )
        }
        environment[result] = value
      }
    }
  }

  /// Runs a scan: its body once per step, the carried values passed on, the outputs stacked.
  private func runScan(
    _ node: Node, environment: inout [ValueID: Tensor], bindings: [String: Int],
    mode: ExecutionMode, results: [(dtype: DType, shape: [Int])]
  ) throws -> [Tensor] {
    guard let layout = node.scanLayout else { throw RunError("invalid scan node") }
    let operands = node.operands.map { environment[$0]! }
    let steps = operands[layout.sequenceRange.lowerBound].shape[0]
    var carried = Array(operands[layout.carriedRange])
    let outputCount = node.regionResults.count - layout.carried
    var stacked = (0..<outputCount).map { output in
      let shape = results[layout.carried + output].shape
      return [UInt8](
        repeating: 0, count: shape.reduce(1, *) * results[layout.carried + output].dtype.byteSize)
    }
    for step in 0..<steps {
      let t = layout.reverse ? steps - 1 - step : step
      var local = environment
      for (position, argument) in node.regionArguments.enumerated() {
        if layout.carriedRange.contains(position) {
          local[argument] = carried[position]
        } else if layout.sequenceRange.contains(position) {
          local[argument] = operands[position].step(t)
        } else {
          local[argument] = operands[position]
        }
      }
      try evaluate(node.body, environment: &local, bindings: bindings, mode: mode)
      for position in layout.carriedRange {
        carried[position] = local[node.regionResults[position]]!
      }
      for output in 0..<outputCount {
        let value = local[node.regionResults[layout.carried + output]]!
        value.withUnsafeBytes { bytes in
          let offset = t * bytes.count
          for index in 0..<bytes.count { stacked[output][offset + index] = bytes[index] }
        }
      }
    }
    let outputs = (0..<outputCount).map { output in
      let result = results[layout.carried + output]
      return stacked[output].withUnsafeBytes { bytes in
        Tensor(dtype: result.dtype, shape: result.shape, bytes: bytes)!
      }
    }
    return carried + outputs
  }
}

extension Tensor {
  /// The slice at `index` of the leading axis.
  func step(_ index: Int) -> Tensor {
    let shape = Array(self.shape.dropFirst())
    return withUnsafeBytes { bytes in
      let size = bytes.count / max(self.shape[0], 1)
      return Tensor(
        dtype: dtype, shape: shape,
        bytes: UnsafeRawBufferPointer(rebasing: bytes[(index * size)..<((index + 1) * size)]))!
    }
  }
}
