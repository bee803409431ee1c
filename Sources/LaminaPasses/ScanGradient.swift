import LaminaIR
import LaminaSupport

extension Autodiff {
  /// Backpropagation through time: the gradient of a `scan` is a scan running the other way whose
  /// body is the derivative of the forward body.
  ///
  /// The backward scan carries the gradient of the carried state (starting from the final carried
  /// values' gradients) and one accumulator per loop-invariant operand that needs a gradient
  /// (starting at zero); it reads each step's output gradients and the residuals: the forward
  /// values the derivative needs, which the forward scan saves as extra stacked outputs (the
  /// carried state at each step's start, intermediates like `tanh`'s result). Sequence
  /// gradients come out stacked. Nothing of the forward body is computed twice.
  ///
  ///     %h, %hs = scan(%h0, %xs, %w)            %dh0, %dw, %dxs = scan(%dh, 0, %dhs, %xs, %res, %w)
  ///       {carried = 1, sequences = 1}   →        {carried = 2, sequences = 3, reverse = true}
  /// - Returns: the gradient of each operand (nil where none is wanted).
  static func scanGradient(
    nodeIndex: Int, resultGradients: [ValueID?], wanted: [Bool], builder: inout GradientBuilder
  ) throws -> [ValueID?] {
    let forward = builder.graph.nodes[nodeIndex]
    guard let layout = forward.scanLayout else {
      throw Diagnostic.error("invalid scan node", at: forward.location)
    }
    let location = forward.location
    func type(_ value: ValueID) -> TensorType { builder.graph.type(of: value) }
    func floating(_ value: ValueID) -> Bool { type(value).dtype.isFloatingPoint }
    do {
      let carriedArguments = Array(forward.regionArguments[layout.carriedRange])
      let sequenceArguments = Array(forward.regionArguments[layout.sequenceRange])
      let invariantArguments = Array(forward.regionArguments[layout.invariantRange])
      let outputCount = forward.regionResults.count - layout.carried

      // The backward scan's carried values: the carried state's gradient (float carried values),
      // then an accumulator per invariant whose gradient is wanted.
      let differentiableCarried = layout.carriedRange.filter { floating(forward.operands[$0]) }
      let accumulated = layout.invariantRange.filter { wanted[$0] }
      var initial: [ValueID] = []
      for position in differentiableCarried {
        initial.append(
          try resultGradients[position] ?? zeros(like: forward.operands[position], &builder))
      }
      for position in accumulated {
        initial.append(try zeros(like: forward.operands[position], &builder))
      }
      // Sequences: the output gradients that exist (an output nobody differentiates adds nothing).
      let seededOutputs = (0..<outputCount).filter {
        resultGradients[layout.carried + $0] != nil
          && floating(forward.regionResults[layout.carried + $0])
      }
      var sequences = seededOutputs.map { resultGradients[layout.carried + $0]! }
      let prefix = "grad.\(builder.graph[forward.results[0]].name).step"
      var arguments: [ValueID] = initial.map { value in
        let stepType = type(value)
        return builder.graph.makeValue(name: prefix, type: stepType, location: location)
      }
      for value in sequences {
        let stepType = TensorType(type(value).dtype, Array(type(value).shape.dropFirst()))
        arguments.append(builder.graph.makeValue(name: prefix, type: stepType, location: location))
      }
      let carriedGradientArguments = Array(arguments[0..<differentiableCarried.count])
      let accumulatorArguments = Array(arguments[differentiableCarried.count..<initial.count])
      let outputGradientArguments = Array(arguments[initial.count...])

      // The body: the forward body's derivative, seeded by the carried and output gradients.
      let mark = builder.graph.nodes.count
      var adjoints: [ValueID: ValueID] = [:]
      func seed(_ value: ValueID, _ gradient: ValueID) throws(ShapeError) {
        if let existing = adjoints[value] {
          adjoints[value] = try builder.add(existing, gradient)
        } else {
          adjoints[value] = gradient
        }
      }
      for (argument, position) in zip(carriedGradientArguments, differentiableCarried) {
        try seed(forward.regionResults[position], argument)
      }
      for (argument, output) in zip(outputGradientArguments, seededOutputs) {
        try seed(forward.regionResults[layout.carried + output], argument)
      }
      var targets = Set(differentiableCarried.map { carriedArguments[$0] })
      for position in layout.sequenceRange where wanted[position] {
        targets.insert(sequenceArguments[position - layout.carried])
      }
      for position in accumulated {
        targets.insert(invariantArguments[position - layout.invariantRange.lowerBound])
      }
      var dependsOnTarget = targets
      for node in forward.body
      where !node.is(Ops.stopGradient) && node.operands.contains(where: dependsOnTarget.contains) {
        dependsOnTarget.formUnion(node.results)
      }
      try sweep(
        forward.body.reversed().map { (index: nil, node: $0) }, adjoints: &adjoints,
        dependsOnTarget: dependsOnTarget, builder: &builder)
      func gradient(of argument: ValueID) throws(ShapeError) -> ValueID {
        if let gradient = adjoints[argument] { return gradient }
        return try zeros(like: argument, &builder)
      }
      var carriedResults: [ValueID] = []
      for position in differentiableCarried {
        carriedResults.append(try gradient(of: carriedArguments[position]))
      }
      for (accumulator, position) in zip(accumulatorArguments, accumulated) {
        let argument = invariantArguments[position - layout.invariantRange.lowerBound]
        carriedResults.append(
          adjoints[argument] == nil
            ? accumulator : try builder.add(accumulator, adjoints[argument]!))
      }
      let wantedSequences = layout.sequenceRange.filter { wanted[$0] }
      var outputResults: [ValueID] = []
      for position in wantedSequences {
        outputResults.append(try gradient(of: sequenceArguments[position - layout.carried]))
      }

      // Residuals: forward values the derivative reads become sequences (stacked by the forward
      // scan) or invariants of the backward scan.
      var defined = Set(arguments)
      for node in builder.graph.nodes[mark...] { defined.formUnion(node.results) }
      let forwardValues = Set(forward.regionArguments + forward.body.flatMap(\.results))
      var invariants: [ValueID] = []
      var invariantArgumentsBackward: [ValueID] = []
      var residualArguments: [ValueID: ValueID] = [:]
      var forwardNode = builder.graph.nodes[nodeIndex]
      func residual(_ value: ValueID) -> ValueID {
        guard forwardValues.contains(value), !defined.contains(value) else { return value }
        if let argument = residualArguments[value] { return argument }
        let argument = builder.graph.makeValue(
          name: builder.graph[value].name + ".saved", type: type(value), location: location)
        residualArguments[value] = argument
        if let position = sequenceArguments.firstIndex(of: value) {
          sequences.append(forward.operands[layout.carried + position])
          arguments.append(argument)
        } else if let position = invariantArguments.firstIndex(of: value) {
          invariants.append(forward.operands[layout.invariantRange.lowerBound + position])
          invariantArgumentsBackward.append(argument)
        } else {
          // Saved by the forward scan: an extra per-step output (reused when it is one already).
          let stacked: ValueID
          if let output = forwardNode.regionResults.dropFirst(layout.carried).firstIndex(of: value)
          {
            stacked = forwardNode.results[output]
          } else {
            let stepType = type(value)
            let steps = type(forward.operands[layout.sequenceRange.lowerBound]).shape[0]
            stacked = builder.graph.makeValue(
              name: builder.graph[value].name + ".saved",
              type: TensorType(stepType.dtype, [steps] + stepType.shape), location: location)
            forwardNode.regionResults.append(value)
            forwardNode.results.append(stacked)
          }
          sequences.append(stacked)
          arguments.append(argument)
        }
        return argument
      }
      for index in mark..<builder.graph.nodes.count {
        builder.graph.nodes[index].operands = builder.graph.nodes[index].operands.map(residual)
      }
      carriedResults = carriedResults.map(residual)
      outputResults = outputResults.map(residual)
      builder.graph.nodes[nodeIndex] = forwardNode

      let backwardLayout = ScanLayout(
        carried: initial.count, sequences: sequences.count, invariants: invariants.count,
        reverse: !layout.reverse)
      let results = try builder.graph.finishScan(
        bodyFrom: mark, operands: initial + sequences + invariants, layout: backwardLayout,
        arguments: arguments + invariantArgumentsBackward,
        results: carriedResults + outputResults, location: location)

      var gradients = [ValueID?](repeating: nil, count: forward.operands.count)
      for (offset, position) in differentiableCarried.enumerated() where wanted[position] {
        gradients[position] = results[offset]
      }
      for (offset, position) in accumulated.enumerated() {
        gradients[position] = results[differentiableCarried.count + offset]
      }
      for (offset, position) in wantedSequences.enumerated() {
        gradients[position] = results[initial.count + offset]
      }
      return gradients
    } catch let error as ShapeError {
      throw Diagnostic.error("gradient of scan: \(error.message)", at: location)
    }
  }

  /// Zeros of `value`'s type.
  private static func zeros(like value: ValueID, _ builder: inout GradientBuilder)
    throws(ShapeError) -> ValueID
  {
    let zero = builder.constant(0, like: value)
    let shape = builder.type(of: value).shape
    return shape.isEmpty ? zero : try builder.op(Ops.broadcastTo, [zero], ["shape": .dims(shape)])
  }
}
