import LaminaIR
import LaminaSupport

extension LayerBuilder {
  /// Runs `body` once per step along the leading axis of `sequences`, as one `scan` node.
  ///
  /// `body` receives this builder and its arguments: the carried values as the step sees them,
  /// one step of each sequence (the leading axis removed), and `invariants`; it adds the step's
  /// ops through the builder (`op`, `param`) and returns the carried values' next values (same
  /// types as `initial`) and any per-step outputs. Values from outside the body that it reads
  /// (parameters it creates, earlier results) become loop-invariant operands automatically.
  ///
  /// Returns the final carried values and each per-step output stacked along a new leading axis.
  /// Sequences are time-major (`[time, batch, ...]`): transpose `[batch, time, ...]` first.
  public mutating func scan(
    initial: [ValueID], sequences: [ValueID], invariants: [ValueID] = [], reverse: Bool = false,
    body: (
      inout LayerBuilder, _ carried: [ValueID], _ steps: [ValueID], _ invariants: [ValueID]
    ) throws(ShapeError) -> (carried: [ValueID], outputs: [ValueID])
  ) throws(ShapeError) -> (final: [ValueID], stacked: [ValueID]) {
    let layout = ScanLayout(
      carried: initial.count, sequences: sequences.count, invariants: invariants.count,
      reverse: reverse)
    guard !sequences.isEmpty else { throw ShapeError("scan needs at least one sequence") }
    let operands = initial + sequences + invariants
    let arguments = graph.makeScanArguments(
      operands: operands, layout: layout, prefix: "\(scopeName).step", location: location)
    let mark = graph.nodes.count
    let stepResults = try body(
      &self, Array(arguments[layout.carriedRange]), Array(arguments[layout.sequenceRange]),
      Array(arguments[layout.invariantRange]))
    guard stepResults.carried.count == initial.count else {
      throw ShapeError(
        "\(scopeName): the step gives \(stepResults.carried.count) carried value(s) for \(initial.count)"
      )
    }
    for (next, start) in zip(stepResults.carried, initial) where type(of: next) != type(of: start) {
      throw ShapeError(
        "\(scopeName): the step turns carried state \(type(of: start)) into \(type(of: next))",
        help: "the carried state must keep its type from step to step")
    }
    let results = try graph.finishScan(
      bodyFrom: mark, operands: operands, layout: layout, arguments: arguments,
      results: stepResults.carried + stepResults.outputs, location: location)
    return (Array(results[..<initial.count]), Array(results[initial.count...]))
  }

  /// `x` `[batch, time, ...]` as `[time, batch, ...]` (and back: the same swap).
  public mutating func swapBatchAndTime(_ x: ValueID) throws(ShapeError) -> ValueID {
    let rank = type(of: x).rank
    return try op(Ops.permute.name, [x], ["perm": .ints([1, 0] + Array(2..<rank))])
  }

  /// Checks a recurrent layer's input `[batch, time, features]` and returns its feature count.
  func recurrentFeatures(_ layer: String) throws(ShapeError) -> Int {
    let type = type(of: inputs[0])
    guard type.rank == 3 else {
      throw ShapeError(
        "\(layer) needs a sequence input [batch, time, features], got \(type)",
        help: type.rank == 2
          ? "a single feature per step: reshape to [batch, time, 1]; token ids: embedding(...) first"
          : nil)
    }
    guard type.dtype.isFloatingPoint else {
      throw ShapeError(
        "\(layer) needs a floating-point input, got \(type)",
        help: "token ids go through embedding(vocab:, dim:) first")
    }
    guard let features = type.shape[2].staticValue else {
      throw ShapeError("\(layer) needs a static feature size (the last axis), got \(type)")
    }
    return features
  }
}

extension LayerRegistry {
  /// Recurrent layers, each one `scan` over time.
  static let recurrentLayers: [LayerDefinition] = [rnnLayer]

  /// The Elman layer is the one-gate case of the gated recurrence: the same parameters, input
  /// projection before the loop (with both biases), `bidirectional` and `lengths`.
  private static let rnnLayer = LayerDefinition(
    "rnn",
    summary:
      "Elman recurrent layer over [batch, time, features] (PyTorch RNN, one layer): h_t = activation(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh), with weight_ih [units, features], weight_hh [units, units], bias_ih and bias_hh [units], all uniform in ±1/√units; bidirectional adds the same with _reverse. return: \"sequence\" gives every h_t [batch, time, units], \"last\" the final h [batch, units]. initial: [h0] (or h0) gives the starting state [batch, units] (zeros without it). The steps run as one loop (a scan node), not unrolled.",
    options: rnnOptions
  ) { builder throws(ShapeError) in
    let activation = builder.string("activation") ?? "tanh"
    return try builder.gatedRecurrence("rnn", gates: 1, stateCount: 1, biasHHBeforeLoop: true) {
      step, projected, state, weightHH, _, _ throws(ShapeError) in
      let recurrent = try step.op(
        Ops.matmul.name, [state[0], weightHH], ["transpose_b": .bool(true)])
      return [try step.op(activation, [try step.op(Ops.add.name, [projected, recurrent])])]
    }
  }

  /// The gated layers' options, with the nonlinearity after `units`.
  private static let rnnOptions: [LayerOptionSpec] = {
    var options = LayerBuilder.gatedRecurrentOptions("rnn", gates: 1, initial: "[h0]")
    options.insert(
      LayerOptionSpec(
        "activation", .oneOf(["tanh", "relu"]), default: .string("tanh"),
        "the nonlinearity (PyTorch's nonlinearity)"),
      at: 1)
    return options
  }()
}
