import Foundation
import LaminaSupport

extension OpRegistry {
  /// Ops that draw random numbers.
  static let randomOps: [OpDefinition] = [dropout]

  /// `dropout(x, seed, step) {rate, stream}`: inverted dropout in a training step, the identity at
  /// inference. The generator's seed and step counter are operands (model state the layer creates),
  /// so the mask is a function of the node's inputs: the interpreter and the C kernel draw the same
  /// one, and the gradient (the same op on the result's gradient, same stream) applies it again.
  static let dropout = OpDefinition(
    "dropout",
    summary:
      "Inverted dropout: in a training step each element is zeroed with probability `rate` and the others scaled by 1/(1 - rate); at inference the identity. The mask comes from Philox-4x32-10 keyed by `seed`, at counter (element / 4, `stream`, `step`), the same in the interpreter and compiled code.",
    semantics:
      "training: y_i = x_i · (keep_i ? 1/(1 - rate) : 0), keep_i = philox(seed; i/4, stream, step)[i mod 4] ≥ ⌊rate · 2^32⌋; inference: y = x",
    operands: [OperandSpec("x"), OperandSpec("seed"), OperandSpec("step")],
    attributes: [
      AttributeSpec(
        "rate", .float, required: true, "the probability of zeroing an element, in [0, 1)"),
      AttributeSpec(
        "stream", .int, default: .int(0),
        "the node's stream id: different dropout nodes draw different masks"),
    ],
    fusion: .opaque,
    c: .kernel(.dropout),
    effects: [.dependsOnMode, .drawsRandomNumbers],
    shape: ShapeRule("same(x); seed, step: i64[]") { context throws(ShapeError) in
      let x = context.operands[0]
      try context.requireFloat(x)
      for (position, name) in [(1, "seed"), (2, "step")] {
        let operand = context.operands[position]
        guard operand == .scalar(.i64) else {
          throw ShapeError("dropout: \(name) must be i64[] (the generator's state), got \(operand)")
        }
      }
      _ = try dropoutRate(context.double("rate"))
      guard let stream = context.int("stream"), stream >= 0, stream <= Int(UInt32.max) else {
        throw ShapeError(
          "dropout: stream must be between 0 and \(UInt32.max), got \(context.int("stream") ?? -1)")
      }
      return [x]
    },
    interpret: { context in
      let x = context.operands[0]
      let values = x.doubles()
      guard context.mode == .training else { return [context.result(0, values)] }
      let rate = try dropoutRate(context.double("rate"))
      guard values.count < DropoutStream.elementLimit else {
        throw InterpretError(
          "dropout: \(x.typeDescription) has \(values.count) elements; the generator's counter covers below 2^34"
        )
      }
      let stream = DropoutStream(
        seed: UInt64(bitPattern: Int64(integerValues(context.operands[1])[0])),
        step: UInt64(bitPattern: Int64(integerValues(context.operands[2])[0])),
        stream: UInt32(context.int("stream") ?? 0), rate: rate)
      // The scale rounded to the dtype first, as the C kernel's literal: a product of two floats
      // is exact in Double, so rounding it once gives C's float product bit for bit.
      let scale = Tensor(scalar: dropoutScale(rate: rate), dtype: x.dtype).doubles()[0]
      let keeps = stream.keeps(count: values.count)
      return [context.result(0, values.indices.map { values[$0] * (keeps[$0] ? scale : 0) })]
    },
    // ∂/∂x: the same mask and scale, which the same node drawing on the result's gradient applies.
    gradient: { builder, inputs throws(ShapeError) in
      let operands = inputs.operands
      let masked = try builder.op(
        Ops.dropout, [inputs.resultGradient, operands[1], operands[2]], inputs.attributes)
      return [masked, nil, nil]
    })

  /// The rate, checked to be in [0, 1).
  static func dropoutRate(_ rate: Double?) throws(ShapeError) -> Double {
    guard let rate, rate >= 0, rate < 1 else {
      throw ShapeError(
        "dropout: rate must be at least 0 and below 1, got \(rate.map { formatFloat($0) } ?? "none")",
        help: "rate is the probability of zeroing an element: dropout(rate: 0.25)")
    }
    return rate
  }

  /// 1/(1 - rate), the scale of kept elements.
  public static func dropoutScale(rate: Double) -> Double { 1 / (1 - rate) }
}

/// The model's random generator: two scalars of model state that every `dropout` node reads, created
/// by the first dropout layer. `random.seed` keys the generator (the training seed: `Trainer.fit` and
/// `lamina train --seed` set it); `random.step` counts training steps, advanced by one in every step,
/// so each step draws new masks and a checkpoint resume continues the exact stream.
public enum RandomGenerator {
  public static let seedName = "random.seed"
  public static let stepName = "random.step"
}
