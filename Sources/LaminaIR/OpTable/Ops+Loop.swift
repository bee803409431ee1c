import LaminaSupport

extension OpRegistry {
  /// Loops: ops that run a body graph once per step.
  static let loopOps: [OpDefinition] = [
    OpDefinition(
      "scan",
      summary:
        "Runs its body once per step along the leading axis of its sequence operands (XLA's While, JAX's lax.scan): the body reads the carried state, each sequence's slice for the step and the loop-invariant operands, and gives the new carried state and the step's outputs. The results are the final carried state and every step's outputs stacked along a new leading axis.",
      semantics:
        "c = init; for t in 0..<T (T-1 down to 0 when reverse): (c, y_t) = body(c, xs[t], invariants); results = (c, stack(y_t))",
      operands: [OperandSpec("operands", variadic: true)],
      attributes: [
        AttributeSpec(
          "carried", .int, required: true,
          "the number of carried values: the first operands are their initial values"),
        AttributeSpec(
          "sequences", .int, required: true,
          "the number of sequence operands after the carried ones, scanned along their leading axis; the rest are loop-invariant"
        ),
        AttributeSpec(
          "reverse", .bool, default: .bool(false), "run the steps from the last to the first"),
      ],
      fusion: .opaque,
      c: .region(.scan),
      shape: ShapeRule("scan(carried..., sequences..., invariants...)") {
        context throws(ShapeError) in
        try scanResultTypes(context)
      },
      interpret: { _ in
        // The interpreter runs a region node's body itself (it needs the body, not the operands).
        throw InterpretError("internal error: scan is run by the interpreter's region evaluation")
      })
  ]

  /// The result types of a scan: the carried types, then each per-step output with the trip count
  /// in front; checks the body's argument and result types against the operands.
  static func scanResultTypes(_ context: ShapeContext) throws(ShapeError) -> [TensorType] {
    let layout = try ScanLayout(
      attributes: context.attributes, operandCount: context.operands.count)
    guard let region = context.region else {
      throw ShapeError("scan: its body has no types (type the body before the scan)")
    }
    let operands = context.operands
    guard region.arguments.count == operands.count else {
      throw ShapeError(
        "scan: its body takes \(region.arguments.count) argument(s), but the scan has \(operands.count) operand(s)"
      )
    }
    guard region.results.count >= layout.carried else {
      throw ShapeError(
        "scan: its body gives \(region.results.count) result(s), fewer than its \(layout.carried) carried value(s)"
      )
    }
    guard layout.sequences >= 1 else {
      throw ShapeError("scan needs at least one sequence operand: it sets the number of steps")
    }
    var steps: Dim?
    for position in layout.sequenceRange {
      let sequence = operands[position]
      guard let leading = sequence.shape.first else {
        throw ShapeError("scan: sequence operand \(position) is a scalar; it needs a leading axis")
      }
      if let steps, steps != leading {
        throw ShapeError(
          "scan: the sequences have different lengths \(steps) and \(leading) along their leading axis"
        )
      }
      steps = leading
      let slice = TensorType(sequence.dtype, Array(sequence.shape.dropFirst()))
      guard region.arguments[position] == slice else {
        throw ShapeError(
          "scan: body argument \(position) is \(region.arguments[position]), but one step of sequence \(sequence) is \(slice)"
        )
      }
    }
    for position in Array(layout.carriedRange) + Array(layout.invariantRange)
    where region.arguments[position] != operands[position] {
      throw ShapeError(
        "scan: body argument \(position) is \(region.arguments[position]), but its operand is \(operands[position])"
      )
    }
    for position in layout.carriedRange where region.results[position] != operands[position] {
      throw ShapeError(
        "scan: the body's carried result \(position) is \(region.results[position]), but the carried value starts as \(operands[position])",
        help: "the carried state must keep its type from step to step")
    }
    let stacked = region.results.dropFirst(layout.carried).map { type in
      TensorType(type.dtype, [steps!] + type.shape)
    }
    return Array(operands[layout.carriedRange]) + stacked
  }
}

/// How a `scan` node's operands, body arguments, body results and results line up.
///
/// Operands and body arguments: the carried values' initial values (arguments: their value at the
/// step), the sequences (arguments: the step's slice), the loop-invariant values. Body results and
/// node results: the carried values (results: their final value), then the per-step outputs
/// (results: stacked along a new leading axis).
public struct ScanLayout: Sendable, Hashable {
  public var carried: Int
  public var sequences: Int
  public var invariants: Int
  public var reverse: Bool

  public init(carried: Int, sequences: Int, invariants: Int, reverse: Bool) {
    self.carried = carried
    self.sequences = sequences
    self.invariants = invariants
    self.reverse = reverse
  }

  public init(attributes: [String: Attribute], operandCount: Int) throws(ShapeError) {
    guard let carried = attributes["carried"]?.intValue, carried >= 0,
      let sequences = attributes["sequences"]?.intValue, sequences >= 0
    else { throw ShapeError("scan needs non-negative attributes 'carried' and 'sequences'") }
    guard carried + sequences <= operandCount else {
      throw ShapeError(
        "scan: carried (\(carried)) and sequences (\(sequences)) count more operands than the \(operandCount) given"
      )
    }
    self.init(
      carried: carried, sequences: sequences, invariants: operandCount - carried - sequences,
      reverse: attributes["reverse"]?.boolValue ?? false)
  }

  public var carriedRange: Range<Int> { 0..<carried }
  public var sequenceRange: Range<Int> { carried..<(carried + sequences) }
  public var invariantRange: Range<Int> {
    (carried + sequences)..<(carried + sequences + invariants)
  }

  /// The body's argument types for these operand types: a sequence's argument is one step of it.
  public func argumentTypes(operands: [TensorType]) -> [TensorType] {
    operands.enumerated().map { position, type in
      sequenceRange.contains(position) && type.rank > 0
        ? TensorType(type.dtype, Array(type.shape.dropFirst())) : type
    }
  }

  /// The attributes a scan node with this layout carries.
  public var attributes: [String: Attribute] {
    ["carried": .int(carried), "sequences": .int(sequences), "reverse": .bool(reverse)]
  }
}

extension Node {
  /// The layout of a scan node (nil for other nodes or invalid attributes).
  public var scanLayout: ScanLayout? {
    guard definition?.region == .scan else { return nil }
    return try? ScanLayout(attributes: attributes, operandCount: operands.count)
  }
}
