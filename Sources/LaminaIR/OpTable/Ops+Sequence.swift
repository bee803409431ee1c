import LaminaSupport

extension OpRegistry {
  /// Ops of padded batches of sequences (the recurrent layers' `lengths:`).
  static let sequenceOps: [OpDefinition] = [
    OpDefinition(
      "sequence_mask",
      summary:
        "Which steps of each row of a padded batch are real: 1 for the first lengths[n] steps of row n, 0 after, time-major. A length below 0 or above the number of steps is an error at run time that names the lengths (the `input` attribute), the position and the value.",
      semantics:
        "y[t, n, 0] = 1 if t < lengths[n] else 0; lengths integer [N] with values in 0...steps, y [steps, N, 1]",
      operands: [OperandSpec("lengths")],
      attributes: [
        AttributeSpec("steps", .dims, required: true, "the time axis: one dimension, [time]"),
        AttributeSpec("dtype", .dtype, default: .dtype(.f32), "element type of the result"),
        AttributeSpec(
          "input", .string, "the name of the value the lengths come from, for the run-time error"),
      ],
      fusion: .opaque,
      c: .kernel(.sequenceMask),
      shape: ShapeRule("[steps, N, 1] of dtype, lengths [N]") { context throws(ShapeError) in
        let lengths = context.operands[0]
        guard lengths.dtype.isInteger, lengths.rank == 1 else {
          throw ShapeError(
            "sequence_mask: lengths must be an integer vector [batch], got \(lengths)",
            help: "declare them as input lengths: i32[batch]")
        }
        guard let steps = context.attributes["steps"]?.dimsValue, steps.count == 1 else {
          throw ShapeError(
            "sequence_mask: steps must be one dimension ([time]), got \(context.attributes["steps"]?.description ?? "nothing")"
          )
        }
        guard case .dtype(let dtype)? = context.attributes["dtype"], dtype.isFloatingPoint else {
          throw ShapeError("sequence_mask: dtype must be f32 or f64")
        }
        return [TensorType(dtype, [steps[0], lengths.shape[0], Dim(1)])]
      },
      interpret: { context in
        // The steps attribute may name a symbol, bound only in the result's concrete shape.
        _ = try context.checked("sequence_mask", comparingShapes: false)
        let lengths = integerValues(context.operands[0])
        let steps = context.results[0].shape[0]
        let input = context.attributes["input"]?.stringValue
        for (position, length) in lengths.enumerated() where length < 0 || length > Int64(steps) {
          throw InterpretError(
            sequenceLengthMessage(
              length: length, position: position, steps: steps, input: input))
        }
        var values: [Double] = []
        values.reserveCapacity(steps * lengths.count)
        for step in 0..<steps {
          for length in lengths { values.append(Int64(step) < length ? 1 : 0) }
        }
        return [context.result(0, values)]
      })
  ]

  /// The run-time error of a length outside `0...steps`; the C kernel prints the same words.
  public static func sequenceLengthMessage(
    length: Int64, position: Int, steps: Int, input: String?
  ) -> String {
    "sequence_mask: length \(length) at position [\(position)] of \(lengthsDescription(input: input)) is outside 0...\(steps) (the number of time steps)"
  }

  /// How the run-time error names the lengths: `'lengths'`, or `the lengths` without a name.
  public static func lengthsDescription(input: String?) -> String {
    guard let input, !input.isEmpty else { return "the lengths" }
    return "'\(input)'"
  }
}
