import Foundation
import LaminaSupport

extension OpRegistry {
  /// Arithmetic with numpy broadcasting, and unary math.
  static let elementwiseOps: [OpDefinition] = [
    binary(
      "add",
      "Adds two tensors elementwise, with broadcasting; integers wrap around (two's complement).",
      "y = a + b",
      algebra: AlgebraicProperties(
        leftIdentity: 0, rightIdentity: 0, isCheapToRecompute: true, nonDecreasingOperands: [0, 1],
        affine: .add),
      c: { c in
        c.isFloatingPoint
          ? "\(c.operands[0]) + \(c.operands[1])" : c.wrapping(c.operands[0], "+", c.operands[1])
      }, interpret: { $0 + $1 }, integer: { $0 &+ $1 },
      // ∂/∂a (a + b) = 1, ∂/∂b (a + b) = 1
      gradient: { _, inputs in [inputs.resultGradient, inputs.resultGradient] }),
    binary(
      "sub",
      "Subtracts b from a elementwise, with broadcasting; integers wrap around (two's complement).",
      "y = a - b",
      algebra: AlgebraicProperties(
        rightIdentity: 0, isCheapToRecompute: true, nonDecreasingOperands: [0], affine: .subtract),
      c: { c in
        c.isFloatingPoint
          ? "\(c.operands[0]) - \(c.operands[1])" : c.wrapping(c.operands[0], "-", c.operands[1])
      }, interpret: { $0 - $1 }, integer: { $0 &- $1 },
      // ∂/∂a (a - b) = 1, ∂/∂b (a - b) = -1
      gradient: { builder, inputs throws(ShapeError) in
        [inputs.resultGradient, try builder.neg(inputs.resultGradient)]
      }),
    binary(
      "mul",
      "Multiplies two tensors elementwise, with broadcasting; integers wrap around (two's complement).",
      "y = a * b",
      algebra: AlgebraicProperties(
        leftIdentity: 1, rightIdentity: 1, isCheapToRecompute: true, affine: .multiply),
      c: { c in
        c.isFloatingPoint
          ? "\(c.operands[0]) * \(c.operands[1])" : c.wrapping(c.operands[0], "*", c.operands[1])
      }, interpret: { $0 * $1 }, integer: { $0 &* $1 },
      // ∂/∂a (a·b) = b, ∂/∂b (a·b) = a
      gradient: { builder, inputs throws(ShapeError) in
        let (a, b, g) = (inputs.operands[0], inputs.operands[1], inputs.resultGradient)
        return [
          builder.wants(a) ? try builder.mul(g, b) : nil,
          builder.wants(b) ? try builder.mul(g, a) : nil,
        ]
      }),
    binary(
      "div",
      "Divides a by b elementwise, with broadcasting. Integer division truncates toward zero; an integer divided by 0 gives 0 (not an error), and the smallest integer divided by -1 wraps around to itself.",
      "y = a / b; integers: y = trunc(a / b), y = 0 where b = 0, y = a where a = min and b = -1",
      algebra: AlgebraicProperties(rightIdentity: 1, isDivision: true, affine: .divide),
      c: { c in
        // C's integer division traps (SIGFPE) on b = 0 and on min / -1, undefined behaviour both;
        // they are picked out before dividing. An expression has no way to report an error, hence
        // a value for b = 0 (numpy's 0), the same in the interpreter.
        let (a, b) = (c.operands[0], c.operands[1])
        return c.isFloatingPoint
          ? "\(a) / \(b)"
          : "(\(b) == 0 ? \(c.literal(0)) : (\(b) == -1 ? \(c.wrappingNegation(a)) : \(a) / \(b)))"
      }, interpret: { $0 / $1 },
      integer: { a, b in b == 0 ? 0 : b == -1 ? 0 &- a : a / b },
      // ∂/∂a (a/b) = 1/b, ∂/∂b (a/b) = -a/b² = -(1/b)·y
      gradient: { builder, inputs throws(ShapeError) in
        let (a, b, g) = (inputs.operands[0], inputs.operands[1], inputs.resultGradient)
        let gradientA = try builder.div(g, b)
        return [
          builder.wants(a) ? gradientA : nil,
          builder.wants(b)
            ? try builder.neg(try builder.mul(gradientA, inputs.result)) : nil,
        ]
      }),
    binary(
      "pow", "Raises a to the power b elementwise, with broadcasting.", "y = a ^ b",
      floatOnly: true,
      c: { "\($0.math("pow"))(\($0.operands[0]), \($0.operands[1]))" },
      interpret: { Foundation.pow($0, $1) },
      // ∂/∂a a^b = b·a^(b-1), ∂/∂b a^b = a^b·ln(a) = y·ln(a)
      gradient: { builder, inputs throws(ShapeError) in
        let (a, b, g) = (inputs.operands[0], inputs.operands[1], inputs.resultGradient)
        var gradients: [ValueID?] = [nil, nil]
        if builder.wants(a) {
          let power = try builder.op("pow", [a, try builder.sub(b, builder.constant(1, like: b))])
          gradients[0] = try builder.mul(g, try builder.mul(b, power))
        }
        if builder.wants(b) {
          gradients[1] = try builder.mul(
            g, try builder.mul(inputs.result, try builder.op("log", [a])))
        }
        return gradients
      }),
    // NaN in either operand gives NaN, as in numpy and PyTorch (C's fmax would drop it).
    binary(
      "maximum", "The larger of a and b elementwise, with broadcasting; NaN if either is NaN.",
      "y = max(a, b)",
      c: { c in
        let (a, b) = (c.operands[0], c.operands[1])
        return "((\(b) >= \(a) || \(b) != \(b)) ? \(b) : \(a))"
      }, interpret: { a, b in b.isNaN || b >= a ? b : a }, integer: { a, b in b >= a ? b : a },
      // ∂/∂b max(a, b) = [b ≥ a] (b wins ties, as in the forward), ∂/∂a max(a, b) = 1 - [b ≥ a]
      gradient: { builder, inputs throws(ShapeError) in
        let (a, b, g) = (inputs.operands[0], inputs.operands[1], inputs.resultGradient)
        let gradientB = try builder.mul(g, try builder.op("greater_equal", [b, a]))
        return [try builder.sub(g, gradientB), gradientB]
      }),
    binary(
      "minimum", "The smaller of a and b elementwise, with broadcasting; NaN if either is NaN.",
      "y = min(a, b)",
      c: { c in
        let (a, b) = (c.operands[0], c.operands[1])
        return "((\(b) < \(a) || \(b) != \(b)) ? \(b) : \(a))"
      }, interpret: { a, b in b.isNaN || b < a ? b : a }, integer: { a, b in b < a ? b : a },
      // ∂/∂a min(a, b) = [b ≥ a] (a wins ties, as in the forward), ∂/∂b min(a, b) = 1 - [b ≥ a]
      gradient: { builder, inputs throws(ShapeError) in
        let (a, b, g) = (inputs.operands[0], inputs.operands[1], inputs.resultGradient)
        let gradientA = try builder.mul(g, try builder.op("greater_equal", [b, a]))
        return [gradientA, try builder.sub(g, gradientA)]
      }),
    unary(
      "neg",
      "Negates each element; integers wrap around (the smallest integer is its own negation).",
      "y = -x",
      algebra: AlgebraicProperties(isInvolution: true, isCheapToRecompute: true),
      c: { c in c.isFloatingPoint ? "-\(c.operands[0])" : c.wrappingNegation(c.operands[0]) },
      interpret: { -$0 }, integer: { 0 &- $0 },
      // ∂/∂x (-x) = -1
      gradient: { builder, inputs throws(ShapeError) in [try builder.neg(inputs.resultGradient)] }),
    unary(
      "abs",
      "Absolute value of each element; for integers the smallest value, whose absolute value does not fit, stays itself (it wraps around, as in numpy).",
      "y = |x|",
      c: { c in
        let x = c.operands[0]
        return c.isFloatingPoint
          ? "\(c.math("fabs"))(\(x))" : "(\(x) < 0 ? \(c.wrappingNegation(x)) : \(x))"
      }, interpret: { Swift.abs($0) }, integer: { $0 < 0 ? 0 &- $0 : $0 },
      // ∂/∂x |x| = sign(x) (0 at 0)
      gradient: { builder, inputs throws(ShapeError) in
        [try builder.mul(inputs.resultGradient, try builder.op("sign", [inputs.operands[0]]))]
      }),
    unary(
      "exp", "e to the power of each element.", "y = e^x", floatOnly: true,
      c: { "\($0.math("exp"))(\($0.operands[0]))" }, interpret: { Foundation.exp($0) },
      // ∂/∂x e^x = e^x = y
      gradient: { builder, inputs throws(ShapeError) in
        [try builder.mul(inputs.resultGradient, inputs.result)]
      }),
    unary(
      "log", "Natural logarithm of each element.", "y = ln(x)", floatOnly: true,
      c: { "\($0.math("log"))(\($0.operands[0]))" }, interpret: { Foundation.log($0) },
      // ∂/∂x ln(x) = 1/x
      gradient: { builder, inputs throws(ShapeError) in
        [try builder.div(inputs.resultGradient, inputs.operands[0])]
      }),
    unary(
      "sqrt", "Square root of each element.", "y = √x", floatOnly: true,
      c: { "\($0.math("sqrt"))(\($0.operands[0]))" }, interpret: { $0.squareRoot() },
      // ∂/∂x √x = 1/(2√x) = 0.5/y
      gradient: { builder, inputs throws(ShapeError) in
        [try builder.div(try builder.scale(inputs.resultGradient, by: 0.5), inputs.result)]
      }),
    // Comparison and sign: piecewise constant, so they have no gradient (the autodiff pass asks for
    // stop_gradient when a parameter reaches the loss only through them). Gradient rules use them.
    binary(
      "greater_equal",
      "1 where a >= b and 0 elsewhere (also where either is NaN), in the operands' dtype, with broadcasting.",
      "y = 1 if a ≥ b else 0",
      c: { c in "(\(c.operands[0]) >= \(c.operands[1]) ? \(c.literal(1)) : \(c.literal(0)))" },
      interpret: { a, b in a >= b ? 1 : 0 }, integer: { a, b in a >= b ? 1 : 0 }),
    unary(
      "sign", "The sign of each element: -1, 0 or 1 (NaN stays NaN, -0 stays -0).",
      "y = 1 if x > 0, -1 if x < 0, else x",
      c: { c in
        let x = c.operands[0]
        return "(\(x) > 0 ? \(c.literal(1)) : (\(x) < 0 ? \(c.literal(-1)) : \(x)))"
      }, interpret: { x in x > 0 ? 1 : x < 0 ? -1 : x },
      integer: { x in x > 0 ? 1 : x < 0 ? -1 : 0 }),
  ]

  /// An elementwise op of two broadcasting operands.
  static func binary(
    _ name: String, _ summary: String, _ semantics: String, floatOnly: Bool = false,
    algebra: AlgebraicProperties = .none, c: @escaping @Sendable (CExpressionContext) -> String,
    interpret body: @escaping @Sendable (Double, Double) -> Double,
    integer integerBody: (@Sendable (Int64, Int64) -> Int64)? = nil,
    gradient: GradientRule? = nil
  ) -> OpDefinition {
    precondition(floatOnly || integerBody != nil, "\(name) takes integers: give its integer body")
    return OpDefinition(
      name, summary: summary, semantics: semantics, operands: [OperandSpec("a"), OperandSpec("b")],
      fusion: .broadcast,
      c: .expression(c), algebra: algebra,
      shape: ShapeRule("broadcast(a, b)") { context throws(ShapeError) in
        let type = try broadcastResult(context)
        if floatOnly { try context.requireFloat(type) }
        return [type]
      },
      interpret: { context in
        // Integers are computed exactly, in Int64 wrapped to the dtype's width (see integerTensor).
        if context.results[0].dtype.isInteger, let integerBody {
          return [interpretBroadcastingIntegers(context) { integerBody($0[0], $0[1]) }]
        }
        return [interpretBroadcasting(context) { body($0[0], $0[1]) }]
      }, gradient: gradient)
  }

  /// Checks an elementwise op's attributes beyond their kinds (an allowed set of strings, say).
  typealias AttributeValidation = @Sendable (ShapeContext) throws(ShapeError) -> Void

  /// An elementwise op of one operand, optionally with scalar attributes.
  static func unary(
    _ name: String, _ summary: String, _ semantics: String, floatOnly: Bool = false,
    attributes: [AttributeSpec] = [], validate: AttributeValidation? = nil,
    algebra: AlgebraicProperties = .none,
    c: @escaping @Sendable (CExpressionContext) -> String,
    interpret body: @escaping @Sendable (Double) -> Double,
    integer integerBody: (@Sendable (Int64) -> Int64)? = nil,
    gradient: GradientRule? = nil
  ) -> OpDefinition {
    unary(
      name, summary, semantics, floatOnly: floatOnly, attributes: attributes, validate: validate,
      algebra: algebra, c: c, withAttributes: { value, _ in body(value) }, integer: integerBody,
      gradient: gradient)
  }

  /// An elementwise op of one operand whose body reads the node's attributes.
  ///
  /// `validate` runs in the shape rule and again before interpreting, so a kernel never sees attribute
  /// values its body does not handle.
  static func unary(
    _ name: String, _ summary: String, _ semantics: String, floatOnly: Bool = false,
    attributes: [AttributeSpec] = [], validate: AttributeValidation? = nil,
    algebra: AlgebraicProperties = .none,
    c: @escaping @Sendable (CExpressionContext) -> String,
    withAttributes body: @escaping @Sendable (Double, [String: Attribute]) -> Double,
    integer integerBody: (@Sendable (Int64) -> Int64)? = nil,
    gradient: GradientRule? = nil
  ) -> OpDefinition {
    precondition(floatOnly || integerBody != nil, "\(name) takes integers: give its integer body")
    return OpDefinition(
      name, summary: summary, semantics: semantics, operands: [OperandSpec("x")],
      attributes: attributes, fusion: .elementwise, c: .expression(c), algebra: algebra,
      shape: ShapeRule("same(x)") { context throws(ShapeError) in
        if floatOnly { try context.requireFloat(context.operands[0]) }
        try validate?(context)
        return [context.operands[0]]
      },
      interpret: { context in
        let attributes = context.attributes
        if let validate {
          let types = context.operands.map { TensorType($0.dtype, $0.shape.map { Dim($0) }) }
          do throws(ShapeError) {
            try validate(ShapeContext(op: name, operands: types, attributes: attributes))
          } catch {
            throw InterpretError(error.message)
          }
        }
        if context.results[0].dtype.isInteger, let integerBody {
          let values = integerValues(context.operands[0]).map(integerBody)
          return [integerTensor(context.results[0].dtype, context.results[0].shape, values)]
        }
        return [context.result(0, context.operands[0].doubles().map { body($0, attributes) })]
      }, gradient: gradient)
  }
}
