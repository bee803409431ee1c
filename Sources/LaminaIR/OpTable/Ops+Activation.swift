import Foundation
import LaminaSupport

extension OpRegistry {
  /// Activation functions.
  static let activationOps: [OpDefinition] = [
    unary(
      "relu", "Rectified linear unit.", "y = max(x, 0)",
      algebra: AlgebraicProperties(nonDecreasingOperands: [0], isRectifier: true),
      // Swift's max(x, 0), spelled out so NaN behaves the same compiled and interpreted.
      c: { c in "(\(c.literal(0)) >= \(c.operands[0]) ? \(c.literal(0)) : \(c.operands[0]))" },
      interpret: { Swift.max($0, 0) }, integer: { Swift.max($0, 0) },
      // ∂/∂x max(x, 0) = [x > 0] = sign(y) (0 at x = 0, as in PyTorch)
      gradient: { builder, inputs throws(ShapeError) in
        [try builder.mul(inputs.resultGradient, try builder.op("sign", [inputs.result]))]
      }),
    unary(
      "leaky_relu", "ReLU with a small slope for negative inputs.", "y = x if x > 0 else alpha * x",
      floatOnly: true,
      attributes: [AttributeSpec("alpha", .float, default: .float(0.01), "slope for x < 0")],
      c: { c in
        let x = c.operands[0]
        return "(\(x) > 0 ? \(x) : \(c.literal(c.attributes["alpha"]?.doubleValue ?? 0.01)) * \(x))"
      },
      withAttributes: { x, attributes in x > 0 ? x : (attributes["alpha"]?.doubleValue ?? 0.01) * x
      },
      // ∂/∂x leaky_relu(x) = 1 if x > 0 else alpha = 1 - (1 - alpha)·[0 ≥ x]
      gradient: { builder, inputs throws(ShapeError) in
        let x = inputs.operands[0]
        let alpha = inputs.attributes["alpha"]?.doubleValue ?? 0.01
        let negative = try builder.op("greater_equal", [builder.constant(0, like: x), x])
        let slope = try builder.sub(1, try builder.scale(negative, by: 1 - alpha))
        return [try builder.mul(inputs.resultGradient, slope)]
      }
    ),
    unary(
      "sigmoid", "Logistic sigmoid.", "y = 1 / (1 + e^-x)", floatOnly: true,
      // lamina_sigmoid(f): the two branches below with one exp of -|x| (see CodeGenerator.inlineMath).
      c: { "\($0.math("lamina_sigmoid"))(\($0.operands[0]))" },
      interpret: { x in
        // Written in two branches so large |x| never overflows exp.
        x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
      },
      // ∂/∂x σ(x) = σ(x)(1 - σ(x)) = y(1 - y)
      gradient: { builder, inputs throws(ShapeError) in
        let y = inputs.result
        return [try builder.mul(inputs.resultGradient, try builder.mul(y, try builder.sub(1, y)))]
      }),
    unary(
      "tanh", "Hyperbolic tangent.", "y = tanh(x)", floatOnly: true,
      c: { "\($0.math("tanh"))(\($0.operands[0]))" }, interpret: { Foundation.tanh($0) },
      // ∂/∂x tanh(x) = 1 - y²
      gradient: { builder, inputs throws(ShapeError) in
        let y = inputs.result
        return [try builder.mul(inputs.resultGradient, try builder.sub(1, try builder.mul(y, y)))]
      }),
    unary(
      "gelu",
      "Gaussian error linear unit; `approximate: \"tanh\"` uses the tanh formula (PyTorch's approximate='tanh').",
      "y = x/2 (1 + erf(x/√2)); tanh form: x/2 (1 + tanh(√(2/π) (x + 0.044715 x³)))",
      floatOnly: true,
      attributes: [
        AttributeSpec(
          "approximate", .string, default: .string("none"), "\"none\" (exact, erf) or \"tanh\"")
      ],
      validate: geluValidation,
      c: { c in
        let x = c.operands[0]
        if c.attributes["approximate"]?.stringValue == "tanh" {
          // Written as ½x + ½x·tanh(x (k + k·0.044715 x²)): the same value in fewer dependent
          // multiplies, which is what bounds a vectorized loop of it.
          let half = "\(c.literal(0.5)) * \(x)"
          return "\(half) + \(half) * \(c.math("tanh"))(\(geluTanhArgument(x, c)))"
        }
        return "\(x) * \(normalCDF(x, c))"
      },
      withAttributes: { x, attributes in
        if attributes["approximate"]?.stringValue == "tanh" {
          return 0.5 * x
            * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        }
        // ½(1 + erf(x/√2)) written as ½ erfc(-x/√2), which does not cancel to 0 for x ≪ 0.
        return 0.5 * x * Foundation.erfc(-x / 2.0.squareRoot())
      },
      // ∂/∂x gelu(x) = gelu_grad(x), the same approximation
      gradient: { builder, inputs throws(ShapeError) in
        let derivative = try builder.op(
          "gelu_grad", [inputs.operands[0]],
          ["approximate": inputs.attributes["approximate"] ?? .string("none")])
        return [try builder.mul(inputs.resultGradient, derivative)]
      }
    ),
    unary(
      "gelu_grad",
      "The derivative of gelu, elementwise (its gradient rule uses it); `approximate` as for gelu.",
      "y = Φ(x) + x φ(x) = ½(1 + erf(x/√2)) + x e^(-x²/2)/√(2π); tanh form, with t = tanh(√(2/π) (x + 0.044715 x³)): y = ½(1 + t) + ½ x (1 - t²) √(2/π) (1 + 3·0.044715 x²)",
      floatOnly: true,
      attributes: [
        AttributeSpec(
          "approximate", .string, default: .string("none"), "\"none\" (exact, erf) or \"tanh\"")
      ],
      validate: geluValidation,
      c: { c in
        let x = c.operands[0]
        let (half, one) = (c.literal(0.5), c.literal(1))
        if c.attributes["approximate"]?.stringValue == "tanh" {
          let scale = c.literal((2 / Double.pi).squareRoot())
          let t = "\(c.math("tanh"))(\(geluTanhArgument(x, c)))"
          return
            "(\(half) * (\(one) + \(t)) + \(half) * \(x) * (\(one) - \(t) * \(t)) * \(scale) * (\(one) + \(c.literal(3 * 0.044715)) * \(x) * \(x)))"
        }
        return
          "(\(normalCDF(x, c)) + \(x) * \(c.math("exp"))(\(c.literal(-0.5)) * \(x) * \(x)) * \(c.literal(1 / (2 * Double.pi).squareRoot())))"
      },
      withAttributes: { x, attributes in
        if attributes["approximate"]?.stringValue == "tanh" {
          let scale = (2 / Double.pi).squareRoot()
          let t = Foundation.tanh(scale * (x + 0.044715 * x * x * x))
          return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * scale * (1 + 3 * 0.044715 * x * x)
        }
        return 0.5 * Foundation.erfc(-x / 2.0.squareRoot())
          + x * Foundation.exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
      }
    ),
    unary(
      "softplus", "Smooth approximation of ReLU.", "y = ln(1 + e^x)", floatOnly: true,
      c: { c in
        let x = c.operands[0]
        return
          "(\(x) > 0 ? \(x) : \(c.literal(0))) + \(c.math("log1p"))(\(c.math("exp"))(-\(c.math("fabs"))(\(x))))"
      },
      interpret: { x in
        // max(x, 0) + log1p(e^-|x|) is the same function without overflow.
        Swift.max(x, 0) + Foundation.log1p(Foundation.exp(-Swift.abs(x)))
      },
      // ∂/∂x ln(1 + e^x) = σ(x)
      gradient: { builder, inputs throws(ShapeError) in
        [try builder.mul(inputs.resultGradient, try builder.op("sigmoid", [inputs.operands[0]]))]
      }),
  ]

  /// gelu's and gelu_grad's `approximate` must be "none" or "tanh".
  static let geluValidation: AttributeValidation = { context throws(ShapeError) in
    let approximate = context.attributes["approximate"]?.stringValue ?? "none"
    guard approximate == "none" || approximate == "tanh" else {
      throw ShapeError(
        "\(context.op): approximate must be \"none\" or \"tanh\", got \(quoteString(approximate))",
        help: "\"none\" is the exact erf form, \"tanh\" PyTorch's approximate='tanh'")
    }
  }
}

/// The C expression for gelu's tanh argument √(2/π)(x + 0.044715x³), as x(k + 0.044715k·x²).
private func geluTanhArgument(_ x: String, _ c: CExpressionContext) -> String {
  let scale = (2 / Double.pi).squareRoot()
  return "\(x) * (\(c.literal(scale)) + \(c.literal(scale * 0.044715)) * \(x) * \(x))"
}

/// C for Φ(x), the standard normal CDF that exact gelu and its derivative use: for f32 the inline
/// `lamina_normal_cdff` (vectorizes, and accurate in the far negative tail, where ½(1 + erf(x/√2))
/// cancels to 0), for f64 libm's erfc, as the interpreter computes it.
private func normalCDF(_ x: String, _ c: CExpressionContext) -> String {
  if c.dtype == .f32 { return "lamina_normal_cdff(\(x))" }
  return "\(c.literal(0.5)) * \(c.math("erfc"))(-(\(x)) * \(c.literal(1 / 2.0.squareRoot())))"
}
