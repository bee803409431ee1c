import Foundation
import LaminaSupport

extension OpRegistry {
  /// Ops the optimizer pass uses to build parameter updates.
  static let optimizerOps: [OpDefinition] = [
    OpDefinition(
      "lr_schedule",
      summary:
        "The learning rate of a training step at a step count, by a schedule (with optional linear warm-up).",
      semantics:
        "t = step; constant: lr; step: lr·rate^⌊t/decay_steps⌋; exponential: lr·rate^(t/decay_steps); cosine: lr·½(1 + cos(π·min(t, decay_steps)/decay_steps)); then ×(t+1)/warmup_steps while t < warmup_steps",
      operands: [OperandSpec("step")],
      attributes: [
        AttributeSpec("lr", .float, required: true, "the base learning rate"),
        AttributeSpec(
          "schedule", .string, default: .string("constant"), "constant, step, exponential or cosine"
        ),
        AttributeSpec("warmup_steps", .int, default: .int(0), "steps of linear warm-up (0: none)"),
        AttributeSpec(
          "decay_steps", .int, default: .int(1), "steps per decay, or the length of the cosine"),
        AttributeSpec("decay_rate", .float, default: .float(1), "factor per decay_steps"),
      ],
      fusion: .elementwise,
      c: .expression { c in
        let t = "(double)\(c.operands[0])"
        let lr = formatFloat(c.attributes["lr"]?.doubleValue ?? 0)
        let rate = formatFloat(c.attributes["decay_rate"]?.doubleValue ?? 1)
        let decay = formatFloat(Double(max(1, c.attributes["decay_steps"]?.intValue ?? 1)))
        let warmup = c.attributes["warmup_steps"]?.intValue ?? 0
        let base: String
        switch c.attributes["schedule"]?.stringValue ?? "constant" {
        case "step": base = "\(lr) * pow(\(rate), floor(\(t) / \(decay)))"
        case "exponential": base = "\(lr) * pow(\(rate), \(t) / \(decay))"
        case "cosine":
          base = "\(lr) * 0.5 * (1.0 + cos(3.141592653589793 * fmin(\(t), \(decay)) / \(decay)))"
        default: base = lr
        }
        let warm = warmup > 0 ? " * (\(t) < \(warmup).0 ? (\(t) + 1.0) / \(warmup).0 : 1.0)" : ""
        return "(\(base))\(warm)"
      },
      shape: ShapeRule("scalar") { context throws(ShapeError) in
        let step = context.operands[0]
        guard step.isScalar, step.dtype.isFloatingPoint else {
          throw ShapeError("lr_schedule takes a floating-point scalar step count, got \(step)")
        }
        let schedules = ["constant", "step", "exponential", "cosine"]
        let name = context.attributes["schedule"]?.stringValue ?? "constant"
        guard schedules.contains(name) else {
          throw ShapeError(
            "unknown learning-rate schedule '\(name)' (valid: \(schedules.joined(separator: ", ")))"
          )
        }
        return [step]
      },
      interpret: { context in
        let t = context.operands[0].doubles()[0]
        let lr = context.double("lr") ?? 0
        let rate = context.double("decay_rate") ?? 1
        let decay = Double(max(1, context.int("decay_steps") ?? 1))
        let warmup = Double(context.int("warmup_steps") ?? 0)
        var value: Double
        switch context.attributes["schedule"]?.stringValue ?? "constant" {
        case "step": value = lr * Foundation.pow(rate, (t / decay).rounded(.down))
        case "exponential": value = lr * Foundation.pow(rate, t / decay)
        case "cosine":
          value = lr * 0.5 * (1 + Foundation.cos(Double.pi * Swift.min(t, decay) / decay))
        default: value = lr
        }
        if warmup > 0, t < warmup { value *= (t + 1) / warmup }
        return [context.result(0, [value])]
      })
  ]
}
