import LaminaIR
import LaminaSupport

/// What a gated recurrent layer's step computes from the hoisted input projection of one step
/// (`x_t W_ihᵀ + b_ih`, [batch, gates·units]) and the carried state, with the direction's
/// hidden-to-hidden weight and bias: the next state (h first).
typealias RecurrentCell =
  (
    _ step: inout LayerBuilder, _ projected: ValueID, _ state: [ValueID], _ weightHH: ValueID,
    _ biasHH: ValueID, _ units: Int
  ) throws(ShapeError) -> [ValueID]

extension LayerBuilder {
  /// The options every gated recurrent layer takes besides `units`.
  static func gatedRecurrentOptions(_ layer: String, gates: Int, initial: String)
    -> [LayerOptionSpec]
  {
    [
      LayerOptionSpec("units", .integer, required: true, "hidden state size"),
      LayerOptionSpec(
        "return", .oneOf(["sequence", "last"]), default: .string("sequence"),
        "every step's hidden state [batch, time, units], or each row's last one [batch, units]"),
      LayerOptionSpec(
        "bidirectional", .bool, default: .bool(false),
        "also run the sequence backwards (parameters with the suffix _reverse); the directions are concatenated on the last axis"
      ),
      LayerOptionSpec(
        "lengths", .tensors,
        "i32[batch]: each row's length in a padded batch; later steps keep the state and output zeros"
      ),
      LayerOptionSpec("initial", .tensors, "the starting state \(initial) (zeros by default)"),
      LayerOptionSpec(
        "init", .initializer,
        default: .initializer(Initializer("recurrent_uniform", ["gates": .int(gates)])),
        "initializer of every weight and bias (PyTorch's: uniform ±1/√units)"),
      LayerOptionSpec("name", .string, "scope name of the layer's parameters (default \(layer)_N)"),
    ]
  }

  /// A gated recurrent layer over `[batch, time, features]`: per direction the parameters
  /// `weight_ih [gates·units, features]`, `weight_hh [gates·units, units]`, `bias_ih`, `bias_hh`
  /// (PyTorch's layout and names, without `_l0`), the input projection of every step as one matrix
  /// product before the loop, then one `scan` over time running `cell`.
  /// `biasHHBeforeLoop`: the cell adds `bias_hh` to the whole gate block, so it joins the input
  /// projection before the loop (one add, and one bias-gradient sum, for all steps).
  mutating func gatedRecurrence(
    _ layer: String, gates: Int, stateCount: Int, biasHHBeforeLoop: Bool = false,
    cell: RecurrentCell
  ) throws(ShapeError) -> ValueID {
    // Bounded so that gates·units·units cannot overflow before the parameter size check.
    guard let units = int("units"), units > 0, units <= 1 << 24 else {
      throw ShapeError(
        "\(layer): units must be a positive integer up to 2^24, got \(int("units").map(String.init) ?? "none")"
      )
    }
    let features = try recurrentFeatures(layer)
    let x = inputs[0]
    let inputType = type(of: x)
    let dtype = inputType.dtype
    let (batch, time) = (inputType.shape[0], inputType.shape[1])
    let bound = 1 / Double(units).squareRoot()
    let initializer =
      initializer("init") ?? Initializer("uniform", ["lo": .float(-bound), "hi": .float(bound)])

    // Padded rows: which steps are real, time-major [time, batch, 1]; a length past the time axis
    // is an error at run time.
    var mask: ValueID?
    if let lengths = tensors("lengths") {
      guard lengths.count == 1, type(of: lengths[0]).dtype.isInteger,
        type(of: lengths[0]).shape == [batch]
      else {
        throw ShapeError(
          "\(layer): lengths must be one integer vector [\(batch)] (a length per row), got \(lengths.map { type(of: $0).description }.joined(separator: ", "))",
          help: "declare it as input lengths: i32[batch]")
      }
      mask = try op(
        Ops.sequenceMask.name, lengths,
        [
          "steps": .dims([time]), "dtype": .dtype(dtype),
          "input": .string(graph[lengths[0]].name),
        ])
    }

    let stateType = TensorType(dtype, [batch, Dim(units)])
    var initial: [ValueID] = []
    if let given = tensors("initial") {
      guard given.count == stateCount, given.allSatisfy({ type(of: $0) == stateType }) else {
        throw ShapeError(
          "\(layer): initial must be \(stateCount) state\(stateCount == 1 ? "" : "s") of type \(stateType), got \(given.map { type(of: $0).description }.joined(separator: ", "))",
          help: stateCount == 1 ? "initial: [h0]" : "initial: [h0, c0]")
      }
      initial = given
    } else {
      let zero = try op(Ops.constant.name, [], ["value": .float(0), "dtype": .dtype(dtype)])
      let zeros = try op(Ops.broadcastTo.name, [zero], ["shape": .dims(stateType.shape)])
      initial = Array(repeating: zeros, count: stateCount)
    }

    // Time-major rows [time·batch, features]: every step's input projection is then one 2-D
    // product (its bias adds fused into the GEMM) and its weight gradient one GEMM over all steps,
    // where a [time, batch, features] operand would run a small GEMM per step.
    let timeMajor = try swapBatchAndTime(x)
    let rows = try op(
      Ops.reshape.name, [timeMajor], ["shape": .dims([time * batch, Dim(features)])])
    let directions = bool("bidirectional") == true ? ["", "_reverse"] : [""]
    var finals: [ValueID] = []
    var sequences: [ValueID] = []
    for suffix in directions {
      let width = Dim(gates * units)
      // A shared instance called again: its weights fix the feature size.
      if let existing = graph.value(named: "\(scopeName).weight_ih\(suffix)"),
        let taken = graph.type(of: existing).shape.last?.staticValue, taken != features
      {
        throw ShapeError(
          "\(layer): the input has \(features) features, but the layer's weights take \(taken) (\(scopeName).weight_ih\(suffix) is \(graph.type(of: existing)))",
          help: "a shared layer instance takes inputs of one feature size")
      }
      let weightIH = try param(
        "weight_ih" + suffix, TensorType(dtype, [width, Dim(features)]), initializer)
      let weightHH = try param(
        "weight_hh" + suffix, TensorType(dtype, [width, Dim(units)]), initializer)
      let biasIH = try param("bias_ih" + suffix, TensorType(dtype, [width]), initializer)
      let biasHH = try param("bias_hh" + suffix, TensorType(dtype, [width]), initializer)
      // Every step's input projection at once: one [time·batch, features] × [features, gates·units]
      // product before the loop, in the forward and the backward pass.
      var projected = try op(
        Ops.add.name,
        [try op(Ops.matmul.name, [rows, weightIH], ["transpose_b": .bool(true)]), biasIH])
      if biasHHBeforeLoop { projected = try op(Ops.add.name, [projected, biasHH]) }
      projected = try op(Ops.reshape.name, [projected], ["shape": .dims([time, batch, width])])
      let (final, stacked) = try scan(
        initial: initial, sequences: [projected] + (mask.map { [$0] } ?? []),
        reverse: suffix == "_reverse"
      ) { step, carried, steps, _ throws(ShapeError) in
        let next = try cell(&step, steps[0], carried, weightHH, biasHH, units)
        guard let mask = steps.count > 1 ? steps[1] : nil else { return (next, [next[0]]) }
        // Past a row's length the state stays and the output is zero: s + m (s' - s), m h'.
        var kept: [ValueID] = []
        for (new, old) in zip(next, carried) {
          let change = try step.op(Ops.sub.name, [new, old])
          kept.append(
            try step.op(Ops.add.name, [old, try step.op(Ops.mul.name, [mask, change])]))
        }
        return (kept, [try step.op(Ops.mul.name, [mask, next[0]])])
      }
      finals.append(final[0])
      sequences.append(stacked[0])
    }
    if string("return") == "last" {
      return finals.count == 1
        ? finals[0] : try op(Ops.concat.name, finals, ["axis": .int(-1)])
    }
    let joined =
      sequences.count == 1
      ? sequences[0] : try op(Ops.concat.name, sequences, ["axis": .int(-1)])
    return try swapBatchAndTime(joined)
  }

  /// Columns `index·units ..< (index + 1)·units` of a [batch, gates·units] gate block.
  mutating func gate(_ block: ValueID, _ index: Int, units: Int) throws(ShapeError) -> ValueID {
    try op(
      Ops.slice.name, [block],
      [
        "index": .slices([
          .all, .range(start: index * units, stop: (index + 1) * units, step: 1),
        ])
      ])
  }
}

extension LayerRegistry {
  /// LSTM and GRU, each a `scan` over time (see `LayerBuilder.gatedRecurrence`).
  static let gatedRecurrentLayers: [LayerDefinition] = [
    LayerDefinition(
      "lstm",
      summary:
        "Long short-term memory over [batch, time, features] (PyTorch LSTM, one layer; gates i, f, g, o): i = σ(W_ii x + b_ii + W_hi h + b_hi), f = σ(…), g = tanh(…), o = σ(…), c' = f c + i g, h' = o tanh(c'). Parameters weight_ih [4·units, features], weight_hh [4·units, units], bias_ih and bias_hh [4·units], uniform in ±1/√units; bidirectional adds the same with _reverse. initial: [h0, c0].",
      options: LayerBuilder.gatedRecurrentOptions("lstm", gates: 4, initial: "[h0, c0]")
    ) { builder throws(ShapeError) in
      // bias_hh is in the projection: i, f, g, o all add it to the whole block.
      try builder.gatedRecurrence("lstm", gates: 4, stateCount: 2, biasHHBeforeLoop: true) {
        step, projected, state, weightHH, _, units throws(ShapeError) in
        let recurrent = try step.op(
          Ops.matmul.name, [state[0], weightHH], ["transpose_b": .bool(true)])
        let gates = try step.op(Ops.add.name, [projected, recurrent])
        let input = try step.op(Ops.sigmoid.name, [try step.gate(gates, 0, units: units)])
        let forget = try step.op(Ops.sigmoid.name, [try step.gate(gates, 1, units: units)])
        let candidate = try step.op(Ops.tanh.name, [try step.gate(gates, 2, units: units)])
        let output = try step.op(Ops.sigmoid.name, [try step.gate(gates, 3, units: units)])
        let cell = try step.op(
          Ops.add.name,
          [
            try step.op(Ops.mul.name, [forget, state[1]]),
            try step.op(Ops.mul.name, [input, candidate]),
          ])
        let hidden = try step.op(Ops.mul.name, [output, try step.op(Ops.tanh.name, [cell])])
        return [hidden, cell]
      }
    },
    LayerDefinition(
      "gru",
      summary:
        "Gated recurrent unit over [batch, time, features] (PyTorch GRU, one layer; gates r, z, n): r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(…), n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h. Parameters weight_ih [3·units, features], weight_hh [3·units, units], bias_ih and bias_hh [3·units], uniform in ±1/√units; bidirectional adds the same with _reverse. initial: [h0].",
      options: LayerBuilder.gatedRecurrentOptions("gru", gates: 3, initial: "[h0]")
    ) { builder throws(ShapeError) in
      try builder.gatedRecurrence("gru", gates: 3, stateCount: 1) {
        step, projected, state, weightHH, biasHH, units throws(ShapeError) in
        let h = state[0]
        let recurrent = try step.op(
          Ops.add.name,
          [try step.op(Ops.matmul.name, [h, weightHH], ["transpose_b": .bool(true)]), biasHH])
        func sum(_ index: Int, _ step: inout LayerBuilder) throws(ShapeError) -> ValueID {
          try step.op(
            Ops.add.name,
            [
              try step.gate(projected, index, units: units),
              try step.gate(recurrent, index, units: units),
            ])
        }
        let reset = try step.op(Ops.sigmoid.name, [try sum(0, &step)])
        let update = try step.op(Ops.sigmoid.name, [try sum(1, &step)])
        let candidate = try step.op(
          Ops.tanh.name,
          [
            try step.op(
              Ops.add.name,
              [
                try step.gate(projected, 2, units: units),
                try step.op(Ops.mul.name, [reset, try step.gate(recurrent, 2, units: units)]),
              ])
          ])
        // h' = n + z (h - n), which is (1 - z) n + z h.
        let next = try step.op(
          Ops.add.name,
          [
            candidate,
            try step.op(Ops.mul.name, [update, try step.op(Ops.sub.name, [h, candidate])]),
          ])
        return [next]
      }
    },
  ]
}
