import Foundation
import LaminaSupport

extension OpRegistry {
  /// SELU's constants as ONNX and PyTorch define them (the float32 values ONNX's defaults hold).
  public static let seluAlpha = 1.67326319217681884765625
  public static let seluGamma = 1.05070102214813232421875

  /// Activations ONNX models use beside the common ones: exponential linear units, softsign,
  /// clipping, hard sigmoid and the learned-slope ReLU. All are C expressions, so they fuse into
  /// elementwise kernels like relu.
  static let saturatingActivationOps: [OpDefinition] = [
    unary(
      "elu", "Exponential linear unit (ONNX Elu, PyTorch ELU).",
      "y = x if x > 0 else alpha (e^x - 1)", floatOnly: true,
      attributes: [
        AttributeSpec("alpha", .float, default: .float(1), "scale of the negative part")
      ],
      c: { c in
        let x = c.operands[0]
        let alpha = c.literal(c.attributes["alpha"]?.doubleValue ?? 1)
        return "(\(x) > 0 ? \(x) : \(alpha) * \(c.math("expm1"))(\(x)))"
      },
      withAttributes: { x, attributes in
        x > 0 ? x : (attributes["alpha"]?.doubleValue ?? 1) * Foundation.expm1(x)
      },
      // ∂/∂x elu(x) = 1 if x > 0 else alpha·e^x = y + alpha: 1 + [0 ≥ x]·(y + alpha - 1)
      gradient: { builder, inputs throws(ShapeError) in
        let alpha = inputs.attributes["alpha"]?.doubleValue ?? 1
        let negativeSlope = try builder.add(
          inputs.result, builder.constant(alpha - 1, like: inputs.result))
        return [
          try builder.mul(
            inputs.resultGradient,
            try onePlusWhereNotPositive(&builder, inputs.operands[0], negativeSlope, one: 1))
        ]
      }),
    unary(
      "selu",
      "Scaled exponential linear unit (ONNX Selu, PyTorch SELU); the defaults are the self-normalizing constants.",
      "y = gamma · (x if x > 0 else alpha (e^x - 1))", floatOnly: true,
      attributes: [
        AttributeSpec("alpha", .float, default: .float(seluAlpha), "scale of the negative part"),
        AttributeSpec("gamma", .float, default: .float(seluGamma), "scale of the whole"),
      ],
      c: { c in
        let x = c.operands[0]
        let alpha = c.attributes["alpha"]?.doubleValue ?? seluAlpha
        let gamma = c.attributes["gamma"]?.doubleValue ?? seluGamma
        return
          "(\(x) > 0 ? \(c.literal(gamma)) * \(x) : \(c.literal(gamma * alpha)) * \(c.math("expm1"))(\(x)))"
      },
      withAttributes: { x, attributes in
        let alpha = attributes["alpha"]?.doubleValue ?? seluAlpha
        let gamma = attributes["gamma"]?.doubleValue ?? seluGamma
        return x > 0 ? gamma * x : gamma * alpha * Foundation.expm1(x)
      },
      // ∂/∂x selu(x) = gamma if x > 0 else gamma·alpha·e^x = y + gamma·alpha:
      // gamma + [0 ≥ x]·(y + gamma·alpha - gamma)
      gradient: { builder, inputs throws(ShapeError) in
        let alpha = inputs.attributes["alpha"]?.doubleValue ?? seluAlpha
        let gamma = inputs.attributes["gamma"]?.doubleValue ?? seluGamma
        let negativeSlope = try builder.add(
          inputs.result, builder.constant(gamma * alpha - gamma, like: inputs.result))
        return [
          try builder.mul(
            inputs.resultGradient,
            try onePlusWhereNotPositive(&builder, inputs.operands[0], negativeSlope, one: gamma))
        ]
      }),
    unary(
      "softsign", "Softsign (ONNX Softsign, PyTorch Softsign).", "y = x / (1 + |x|)",
      floatOnly: true,
      c: { c in
        let x = c.operands[0]
        return "(\(x) / (\(c.literal(1)) + \(c.math("fabs"))(\(x))))"
      },
      interpret: { x in x / (1 + Swift.abs(x)) },
      // ∂/∂x softsign(x) = 1 / (1 + |x|)²
      gradient: { builder, inputs throws(ShapeError) in
        let x = inputs.operands[0]
        let denominator = try builder.add(builder.constant(1, like: x), try builder.op("abs", [x]))
        return [
          try builder.div(inputs.resultGradient, try builder.mul(denominator, denominator))
        ]
      }),
    unary(
      "clip",
      "Limits each element to [min, max] (ONNX Clip, PyTorch clamp); either bound may be left out. NaN stays NaN; with min > max every element is max.",
      "y = min(max(x, min), max)", floatOnly: true,
      attributes: [
        AttributeSpec("min", .float, "the lower bound (none when absent)"),
        AttributeSpec("max", .float, "the upper bound (none when absent)"),
      ],
      c: { c in
        var y = c.operands[0]
        if let low = c.attributes["min"]?.doubleValue {
          y = "(\(y) < \(c.literal(low)) ? \(c.literal(low)) : \(y))"
        }
        if let high = c.attributes["max"]?.doubleValue {
          y = "(\(y) > \(c.literal(high)) ? \(c.literal(high)) : \(y))"
        }
        return y
      },
      withAttributes: { x, attributes in
        var y = x
        if let low = attributes["min"]?.doubleValue, y < low { y = low }
        if let high = attributes["max"]?.doubleValue, y > high { y = high }
        return y
      },
      // ∂/∂x = 1 where min ≤ x ≤ max (bounds included, as PyTorch's clamp), 0 elsewhere
      gradient: { builder, inputs throws(ShapeError) in
        let x = inputs.operands[0]
        var gradient = inputs.resultGradient
        if let low = inputs.attributes["min"]?.doubleValue {
          gradient = try builder.mul(
            gradient, try builder.op("greater_equal", [x, builder.constant(low, like: x)]))
        }
        if let high = inputs.attributes["max"]?.doubleValue {
          gradient = try builder.mul(
            gradient, try builder.op("greater_equal", [builder.constant(high, like: x), x]))
        }
        return [gradient]
      }),
    unary(
      "hard_sigmoid", "Piecewise linear sigmoid (ONNX HardSigmoid; PyTorch's has alpha 1/6).",
      "y = max(0, min(1, alpha x + beta))", floatOnly: true,
      attributes: [
        AttributeSpec("alpha", .float, default: .float(0.2), "slope"),
        AttributeSpec("beta", .float, default: .float(0.5), "offset"),
      ],
      c: { c in
        let alpha = c.attributes["alpha"]?.doubleValue ?? 0.2
        let beta = c.attributes["beta"]?.doubleValue ?? 0.5
        let t = "(\(c.literal(alpha)) * \(c.operands[0]) + \(c.literal(beta)))"
        let (zero, one) = (c.literal(0), c.literal(1))
        return "(\(t) < \(zero) ? \(zero) : (\(t) > \(one) ? \(one) : \(t)))"
      },
      withAttributes: { x, attributes in
        let t =
          (attributes["alpha"]?.doubleValue ?? 0.2) * x + (attributes["beta"]?.doubleValue ?? 0.5)
        return t < 0 ? 0 : t > 1 ? 1 : t
      },
      // ∂/∂x = alpha where 0 < alpha x + beta < 1, else 0: alpha·(1 - [0 ≥ t])·(1 - [t ≥ 1])
      gradient: { builder, inputs throws(ShapeError) in
        let x = inputs.operands[0]
        let alpha = inputs.attributes["alpha"]?.doubleValue ?? 0.2
        let beta = inputs.attributes["beta"]?.doubleValue ?? 0.5
        let t = try builder.add(try builder.scale(x, by: alpha), builder.constant(beta, like: x))
        let belowZero = try builder.op("greater_equal", [builder.constant(0, like: x), t])
        let aboveOne = try builder.op("greater_equal", [t, builder.constant(1, like: x)])
        let inside = try builder.mul(try builder.sub(1, belowZero), try builder.sub(1, aboveOne))
        return [try builder.mul(inputs.resultGradient, try builder.scale(inside, by: alpha))]
      }),
    OpDefinition(
      "prelu",
      summary:
        "ReLU with a learned slope for negative inputs (ONNX PRelu, PyTorch PReLU): the slope broadcasts to x (numpy rules, x's shape wins: ONNX's unidirectional broadcast).",
      semantics: "y = x if x > 0 else slope · x; slope broadcasts to x's shape",
      operands: [OperandSpec("x"), OperandSpec("slope")],
      fusion: .broadcast,
      c: .expression { c in
        let (x, slope) = (c.operands[0], c.operands[1])
        return "(\(x) > 0 ? \(x) : \(slope) * \(x))"
      },
      shape: ShapeRule("same(x); slope broadcasts to x") { context throws(ShapeError) in
        let (x, slope) = (context.operands[0], context.operands[1])
        let type = try broadcastResult(context)
        try context.requireFloat(type)
        guard type.shape == x.shape else {
          throw ShapeError(
            "prelu: slope \(slope) does not broadcast to x \(x) (the result must keep x's shape)",
            help: "give the slope x's trailing dimensions, or 1 where it is shared")
        }
        return [type]
      },
      interpret: { context in
        [interpretBroadcasting(context) { $0[0] > 0 ? $0[0] : $0[1] * $0[0] }]
      },
      // ∂/∂x = 1 if x > 0 else slope = 1 + [0 ≥ x]·(slope - 1); ∂/∂slope = [0 ≥ x]·x (summed back
      // to the slope's shape by the autodiff pass)
      gradient: { builder, inputs throws(ShapeError) in
        let (x, slope, g) = (inputs.operands[0], inputs.operands[1], inputs.resultGradient)
        let notPositive = try builder.op("greater_equal", [builder.constant(0, like: x), x])
        var gradients: [ValueID?] = [nil, nil]
        if builder.wants(x) {
          let slopeMinusOne = try builder.sub(slope, builder.constant(1, like: slope))
          let derivative = try builder.add(
            builder.constant(1, like: x), try builder.mul(notPositive, slopeMinusOne))
          gradients[0] = try builder.mul(g, derivative)
        }
        if builder.wants(slope) {
          gradients[1] = try builder.mul(g, try builder.mul(notPositive, x))
        }
        return gradients
      }),
  ]

  /// `one + [0 ≥ x]·offset`: the derivative of the exponential units, `one` on the positive side.
  private static func onePlusWhereNotPositive(
    _ builder: inout GradientBuilder, _ x: ValueID, _ offset: ValueID, one: Double
  ) throws(ShapeError) -> ValueID {
    let notPositive = try builder.op("greater_equal", [builder.constant(0, like: x), x])
    return try builder.add(builder.constant(one, like: x), try builder.mul(notPositive, offset))
  }
}
