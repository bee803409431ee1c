import Foundation
import LaminaSupport

extension OpRegistry {
  /// Activation functions.
  static let activationOps: [OpDefinition] = [
    unary(
      "relu", "Rectified linear unit.", "y = max(x, 0)",
      // Swift's max(x, 0), spelled out so NaN behaves the same compiled and interpreted.
      c: { c in "(\(c.literal(0)) >= \(c.operands[0]) ? \(c.literal(0)) : \(c.operands[0]))" },
      interpret: { Swift.max($0, 0) }),
    unary(
      "leaky_relu", "ReLU with a small slope for negative inputs.", "y = x if x > 0 else alpha * x",
      floatOnly: true,
      attributes: [AttributeSpec("alpha", .float, default: .float(0.01), "slope for x < 0")],
      c: { c in
        let x = c.operands[0]
        return "(\(x) > 0 ? \(x) : \(c.literal(c.attributes["alpha"]?.doubleValue ?? 0.01)) * \(x))"
      },
      withAttributes: { x, attributes in x > 0 ? x : (attributes["alpha"]?.doubleValue ?? 0.01) * x
      }
    ),
    unary(
      "sigmoid", "Logistic sigmoid.", "y = 1 / (1 + e^-x)", floatOnly: true,
      c: { c in
        let (x, exp, one) = (c.operands[0], c.math("exp"), c.literal(1))
        return
          "(\(x) >= 0 ? \(one) / (\(one) + \(exp)(-\(x))) : \(exp)(\(x)) / (\(one) + \(exp)(\(x))))"
      },
      interpret: { x in
        // Written in two branches so large |x| never overflows exp.
        x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
      }),
    unary(
      "tanh", "Hyperbolic tangent.", "y = tanh(x)", floatOnly: true,
      c: { "\($0.math("tanh"))(\($0.operands[0]))" }, interpret: { Foundation.tanh($0) }),
    unary(
      "gelu",
      "Gaussian error linear unit; `approximate: \"tanh\"` uses the tanh formula (PyTorch's approximate='tanh').",
      "y = x/2 (1 + erf(x/√2)); tanh form: x/2 (1 + tanh(√(2/π) (x + 0.044715 x³)))",
      floatOnly: true,
      attributes: [
        AttributeSpec(
          "approximate", .string, default: .string("none"), "\"none\" (exact, erf) or \"tanh\"")
      ],
      validate: { context throws(ShapeError) in
        let approximate = context.attributes["approximate"]?.stringValue ?? "none"
        guard approximate == "none" || approximate == "tanh" else {
          throw ShapeError(
            "gelu: approximate must be \"none\" or \"tanh\", got \(quoteString(approximate))",
            help: "\"none\" is the exact erf form, \"tanh\" PyTorch's approximate='tanh'")
        }
      },
      c: { c in
        let x = c.operands[0]
        if c.attributes["approximate"]?.stringValue == "tanh" {
          let inner =
            "\(c.literal((2 / Double.pi).squareRoot())) * (\(x) + \(c.literal(0.044715)) * \(x) * \(x) * \(x))"
          return "\(c.literal(0.5)) * \(x) * (\(c.literal(1)) + \(c.math("tanh"))(\(inner)))"
        }
        return
          "\(c.literal(0.5)) * \(x) * (\(c.literal(1)) + \(c.math("erf"))(\(x) * \(c.literal(1 / 2.0.squareRoot()))))"
      },
      withAttributes: { x, attributes in
        if attributes["approximate"]?.stringValue == "tanh" {
          return 0.5 * x
            * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        }
        return 0.5 * x * (1 + Foundation.erf(x / 2.0.squareRoot()))
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
      }),
  ]
}
