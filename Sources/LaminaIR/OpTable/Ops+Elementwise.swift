import Foundation
import LaminaSupport

extension OpRegistry {
  /// Arithmetic with numpy broadcasting, and unary math.
  static let elementwiseOps: [OpDefinition] = [
    binary(
      "add", "Adds two tensors elementwise, with broadcasting.", "y = a + b",
      c: { "\($0.operands[0]) + \($0.operands[1])" }, interpret: { $0 + $1 }),
    binary(
      "sub", "Subtracts b from a elementwise, with broadcasting.", "y = a - b",
      c: { "\($0.operands[0]) - \($0.operands[1])" }, interpret: { $0 - $1 }),
    binary(
      "mul", "Multiplies two tensors elementwise, with broadcasting.", "y = a * b",
      c: { "\($0.operands[0]) * \($0.operands[1])" }, interpret: { $0 * $1 }),
    binary(
      "div",
      "Divides a by b elementwise, with broadcasting; integer division truncates toward zero.",
      "y = a / b",
      c: { c in
        // Integer division by zero traps in C; the interpreter reports it, compiled code yields 0.
        c.isFloatingPoint
          ? "\(c.operands[0]) / \(c.operands[1])"
          : "(\(c.operands[1]) != 0 ? \(c.operands[0]) / \(c.operands[1]) : 0)"
      }, interpret: { $0 / $1 }),
    binary(
      "pow", "Raises a to the power b elementwise, with broadcasting.", "y = a ^ b",
      floatOnly: true,
      c: { "\($0.math("pow"))(\($0.operands[0]), \($0.operands[1]))" },
      interpret: { Foundation.pow($0, $1) }),
    // NaN in either operand gives NaN, as in numpy and PyTorch (C's fmax would drop it).
    binary(
      "maximum", "The larger of a and b elementwise, with broadcasting; NaN if either is NaN.",
      "y = max(a, b)",
      c: { c in
        let (a, b) = (c.operands[0], c.operands[1])
        return "((\(b) >= \(a) || \(b) != \(b)) ? \(b) : \(a))"
      }, interpret: { a, b in b.isNaN || b >= a ? b : a }),
    binary(
      "minimum", "The smaller of a and b elementwise, with broadcasting; NaN if either is NaN.",
      "y = min(a, b)",
      c: { c in
        let (a, b) = (c.operands[0], c.operands[1])
        return "((\(b) < \(a) || \(b) != \(b)) ? \(b) : \(a))"
      }, interpret: { a, b in b.isNaN || b < a ? b : a }),
    unary(
      "neg", "Negates each element.", "y = -x", c: { "-\($0.operands[0])" }, interpret: { -$0 }),
    unary(
      "abs", "Absolute value of each element.", "y = |x|",
      c: { c in
        c.isFloatingPoint
          ? "\(c.math("fabs"))(\(c.operands[0]))"
          : "(\(c.operands[0]) < 0 ? -\(c.operands[0]) : \(c.operands[0]))"
      }, interpret: { Swift.abs($0) }),
    unary(
      "exp", "e to the power of each element.", "y = e^x", floatOnly: true,
      c: { "\($0.math("exp"))(\($0.operands[0]))" }, interpret: { Foundation.exp($0) }),
    unary(
      "log", "Natural logarithm of each element.", "y = ln(x)", floatOnly: true,
      c: { "\($0.math("log"))(\($0.operands[0]))" }, interpret: { Foundation.log($0) }),
    unary(
      "sqrt", "Square root of each element.", "y = √x", floatOnly: true,
      c: { "\($0.math("sqrt"))(\($0.operands[0]))" }, interpret: { $0.squareRoot() }),
  ]

  /// An elementwise op of two broadcasting operands.
  static func binary(
    _ name: String, _ summary: String, _ semantics: String, floatOnly: Bool = false,
    c: @escaping @Sendable (CExpressionContext) -> String,
    interpret body: @escaping @Sendable (Double, Double) -> Double
  ) -> OpDefinition {
    OpDefinition(
      name, summary: summary, semantics: semantics, operands: [OperandSpec("a"), OperandSpec("b")],
      fusion: .broadcast,
      c: .expression(c),
      shape: ShapeRule("broadcast(a, b)") { context throws(ShapeError) in
        let type = try broadcastResult(context)
        if floatOnly { try context.requireFloat(type) }
        return [type]
      },
      interpret: { context in
        let isInteger = context.results[0].dtype.isInteger
        if isInteger && name == "div", context.operands[1].doubles().contains(0) {
          throw InterpretError("div: integer division by zero")
        }
        return [
          interpretBroadcasting(context) { arguments in
            let value = body(arguments[0], arguments[1])
            return isInteger ? value.rounded(.towardZero) : value
          }
        ]
      })
  }

  /// Checks an elementwise op's attributes beyond their kinds (an allowed set of strings, say).
  typealias AttributeValidation = @Sendable (ShapeContext) throws(ShapeError) -> Void

  /// An elementwise op of one operand, optionally with scalar attributes.
  static func unary(
    _ name: String, _ summary: String, _ semantics: String, floatOnly: Bool = false,
    attributes: [AttributeSpec] = [], validate: AttributeValidation? = nil,
    c: @escaping @Sendable (CExpressionContext) -> String,
    interpret body: @escaping @Sendable (Double) -> Double
  ) -> OpDefinition {
    unary(
      name, summary, semantics, floatOnly: floatOnly, attributes: attributes, validate: validate,
      c: c, withAttributes: { value, _ in body(value) })
  }

  /// An elementwise op of one operand whose body reads the node's attributes.
  ///
  /// `validate` runs in the shape rule and again before interpreting, so a kernel never sees attribute
  /// values its body does not handle.
  static func unary(
    _ name: String, _ summary: String, _ semantics: String, floatOnly: Bool = false,
    attributes: [AttributeSpec] = [], validate: AttributeValidation? = nil,
    c: @escaping @Sendable (CExpressionContext) -> String,
    withAttributes body: @escaping @Sendable (Double, [String: Attribute]) -> Double
  ) -> OpDefinition {
    OpDefinition(
      name, summary: summary, semantics: semantics, operands: [OperandSpec("x")],
      attributes: attributes, fusion: .elementwise, c: .expression(c),
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
        return [context.result(0, context.operands[0].doubles().map { body($0, attributes) })]
      })
  }
}
