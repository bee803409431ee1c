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

  /// Checks that a shared layer called again gets the feature size its weight `name` (`[rows,
  /// features]`) was made for.
  func checkSharedFeatures(_ layer: String, weight name: String, features: Int)
    throws(ShapeError)
  {
    guard let existing = graph.value(named: "\(scopeName).\(name)"),
      graph.param(for: existing) != nil
    else { return }
    let expected = type(of: existing).shape.last?.staticValue
    if let expected, expected != features {
      throw ShapeError(
        "\(layer): the input has \(features) features per step, but \(scopeName).\(name) was made for \(expected)",
        help: "a shared layer takes inputs of the feature size of its first call")
    }
  }

  /// The starting state of a recurrent layer: the `initial:` input given at `position` among the
  /// layer's inputs, checked to be `[batch, units]`, or zeros.
  mutating func recurrentInitialState(
    _ layer: String, units: Int, batch: Dim, dtype: DType, position: Int
  ) throws(ShapeError) -> ValueID {
    let expected = TensorType(dtype, [batch, Dim(units)])
    if position < inputs.count {
      let given = inputs[position]
      guard type(of: given) == expected else {
        throw ShapeError("\(layer): the initial state is \(type(of: given)), expected \(expected)")
      }
      return given
    }
    let zero = try op(Ops.constant.name, [], ["value": .float(0), "dtype": .dtype(dtype)])
    return try op(Ops.broadcastTo.name, [zero], ["shape": .dims(expected.shape)])
  }
}

extension LayerRegistry {
  /// Recurrent layers, each one `scan` over time.
  static let recurrentLayers: [LayerDefinition] = [rnnLayer]

  private static let rnnLayer: LayerDefinition = {
    var layer = LayerDefinition(
      "rnn",
      summary:
        "Elman recurrent layer over [batch, time, features] (PyTorch RNN, one layer): h_t = activation(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh), with weight_ih [units, features], weight_hh [units, units], bias_ih and bias_hh [units], all uniform in ±1/√units. return: \"sequence\" gives every h_t [batch, time, units], \"last\" the final h [batch, units]. initial: [h0] (or h0) gives the starting state [batch, units] (zeros without it). bidirectional: true adds a backward direction (parameters with _reverse; directions concatenated on the last axis); lengths: an i32[batch] of row lengths (later steps keep the state and output zeros). The steps run as one loop (a scan node) per direction, not unrolled.",
      inputCount: 1,
      options: [
        LayerOptionSpec("units", .integer, required: true, "hidden state size"),
        LayerOptionSpec(
          "activation", .oneOf(["tanh", "relu"]), default: .string("tanh"),
          "the nonlinearity (PyTorch's nonlinearity)"),
        LayerOptionSpec(
          "return", .oneOf(["sequence", "last"]), default: .string("sequence"),
          "every step's hidden state, or each row's last one"),
        LayerOptionSpec(
          "bidirectional", .bool, default: .bool(false),
          "also run the sequence backwards (parameters with the suffix _reverse); the directions are concatenated on the last axis"
        ),
        LayerOptionSpec(
          "lengths", .tensors,
          "i32[batch]: each row's length in a padded batch; later steps keep the state and output zeros"
        ),
        LayerOptionSpec(
          "init", .initializer, default: .initializer(Initializer("recurrent_uniform")),
          "initializer of every weight and bias (PyTorch's: uniform on ±1/√units)"),
        LayerOptionSpec("name", .string, "scope name of the layer's parameters (default rnn_N)"),
      ]
    ) { builder throws(ShapeError) in
      guard let units = builder.int("units"), units > 0, units <= 1 << 24 else {
        throw ShapeError(
          "rnn: units must be a positive integer up to 2^24, got \(builder.int("units").map(String.init) ?? "none")"
        )
      }
      let features = try builder.recurrentFeatures("rnn")
      try builder.checkSharedFeatures("rnn", weight: "weight_ih", features: features)
      let x = builder.inputs[0]
      let inputType = builder.type(of: x)
      let dtype = inputType.dtype
      guard builder.inputs.count <= 2 else {
        throw ShapeError(
          "rnn takes one starting state: initial: [h0], got \(builder.inputs.count - 1)")
      }
      let (batch, time) = (inputType.shape[0], inputType.shape[1])
      let h0 = try builder.recurrentInitialState(
        "rnn", units: units, batch: batch, dtype: dtype, position: 1)
      let mask = try builder.recurrentMask("rnn", batch: batch, time: time, dtype: dtype)
      let activation = builder.string("activation") ?? "tanh"
      let timeMajor = try builder.swapBatchAndTime(x)
      let directions = builder.bool("bidirectional") == true ? ["", "_reverse"] : [""]
      var finals: [ValueID] = []
      var sequences: [ValueID] = []
      for suffix in directions {
        let weightIH = try builder.param(
          "weight_ih" + suffix, TensorType(dtype, [Dim(units), Dim(features)]),
          initializedBy: "init")
        let weightHH = try builder.param(
          "weight_hh" + suffix, TensorType(dtype, [Dim(units), Dim(units)]), initializedBy: "init")
        let biasIH = try builder.param(
          "bias_ih" + suffix, TensorType(dtype, [Dim(units)]), initializedBy: "init")
        let biasHH = try builder.param(
          "bias_hh" + suffix, TensorType(dtype, [Dim(units)]), initializedBy: "init")
        // The input projection stays in the step: the hoist pass moves it before the loop.
        let (final, stacked) = try builder.scan(
          initial: [h0], sequences: [timeMajor] + (mask.map { [$0] } ?? []),
          reverse: suffix == "_reverse"
        ) { step, carried, steps, _ throws(ShapeError) in
          let input = try step.op(
            Ops.matmul.name, [steps[0], weightIH], ["transpose_b": .bool(true)])
          let recurrent = try step.op(
            Ops.matmul.name, [carried[0], weightHH], ["transpose_b": .bool(true)])
          let sum = try step.op(
            Ops.add.name,
            [
              try step.op(Ops.add.name, [input, biasIH]),
              try step.op(Ops.add.name, [recurrent, biasHH]),
            ])
          let h = try step.op(activation, [sum])
          return try step.maskedStep(
            next: [h], carried: carried, mask: steps.count > 1 ? steps[1] : nil)
        }
        finals.append(final[0])
        sequences.append(stacked[0])
      }
      if builder.string("return") == "last" {
        return finals.count == 1
          ? finals[0] : try builder.op(Ops.concat.name, finals, ["axis": .int(-1)])
      }
      let joined =
        sequences.count == 1
        ? sequences[0] : try builder.op(Ops.concat.name, sequences, ["axis": .int(-1)])
      return try builder.swapBatchAndTime(joined)
    }
    layer.tensorLabels = ["initial"]
    return layer
  }()
}
