import LaminaSupport

extension OpRegistry {
  /// Constants and conversions.
  static let miscOps: [OpDefinition] = [
    OpDefinition(
      "constant", summary: "A scalar constant (literals in the model become these).",
      semantics: "y = value", operands: [],
      attributes: [
        AttributeSpec("value", .float, required: true, "the number"),
        AttributeSpec("dtype", .dtype, default: .dtype(.f32), "element type of the result"),
      ],
      fusion: .elementwise,
      c: .expression { c in c.literal(c.attributes["value"]?.doubleValue ?? 0) },
      shape: ShapeRule("scalar of dtype") { context throws(ShapeError) in
        guard case .dtype(let dtype)? = context.attributes["dtype"] else {
          throw ShapeError("constant: missing dtype")
        }
        return [.scalar(dtype)]
      },
      interpret: { context in
        let value = context.double("value") ?? 0
        let dtype = context.results[0].dtype
        // As `cast` converts, and as the C literal is written (CExpressionContext.literal).
        return dtype.isInteger
          ? [integerTensor(dtype, [], [saturatingInteger(value, dtype)])]
          : [context.result(0, [value])]
      }),
    OpDefinition(
      "cast",
      summary:
        "Converts elements to another dtype. Floats to integers truncate toward zero and saturate: NaN gives 0, values past the integer range (infinities too) give its smallest or largest value. Integers to a narrower integer keep the low bits (wrap around, as in numpy); integers and f64 to f32 round to nearest.",
      semantics:
        "y = dtype(x); float to integer: 0 if x is NaN, else clamp(trunc(x), min, max); i64 to i32: x mod 2^32 as two's complement",
      operands: [OperandSpec("x")],
      attributes: [AttributeSpec("dtype", .dtype, required: true, "the new element type")],
      fusion: .elementwise,
      c: .expression(castExpression),
      algebra: AlgebraicProperties(isIdentityWhenTypeUnchanged: true),
      shape: ShapeRule("same(x) with dtype") { context throws(ShapeError) in
        guard case .dtype(let dtype)? = context.attributes["dtype"] else {
          throw ShapeError("cast: missing dtype")
        }
        return [context.operands[0].with(dtype: dtype)]
      },
      interpret: { context in [cast(context.operands[0], to: context.results[0].dtype)] },
      // ∂/∂x cast(x) = 1 between float dtypes (the autodiff pass casts g back to x's dtype);
      // integers have no gradient
      gradient: { builder, inputs throws(ShapeError) in
        let from = builder.type(of: inputs.operands[0]).dtype
        let to = builder.type(of: inputs.result).dtype
        return [from.isFloatingPoint && to.isFloatingPoint ? inputs.resultGradient : nil]
      }),
    OpDefinition(
      "stop_gradient",
      summary:
        "The identity, except that no gradient flows back through it: the autodiff pass treats its result as a constant.",
      semantics: "y = x; ∂y/∂x is taken to be 0", operands: [OperandSpec("x")],
      fusion: .injective,
      c: .alias,
      rearrangement: .identity,
      shape: ShapeRule("same(x)") { context throws(ShapeError) in [context.operands[0]] },
      interpret: { context in [context.operands[0]] },
      // cuts the path: no gradient for x
      gradient: { _, _ in [nil] }),
  ]

  /// The C form of `cast`. A float converted to an integer type it does not fit is undefined
  /// behaviour in C (x86 gives the smallest integer, ARM saturates), so NaN and out-of-range values
  /// are picked out first. Limits are powers of two, exact in f32 and f64: x ≥ 2^31 saturates to the
  /// i32 maximum, x < -2^31 to the minimum (anything between truncates into range).
  static func castExpression(_ c: CExpressionContext) -> String {
    let x = c.operands[0]
    let from = c.operandDTypes[0]
    guard from.isFloatingPoint, c.dtype.isInteger else {
      // Integer to integer and anything to a float: defined in C (narrowing integers keeps the low
      // bits in gcc and clang), and the same as the interpreter's.
      return "(\(c.type))(\(x))"
    }
    let suffix = from == .f32 ? "f" : ""
    let (limit, maximum, minimum) =
      c.dtype == .i32
      ? ("2147483648.0", "2147483647", "(-2147483647 - 1)")
      : (
        "9223372036854775808.0", "INT64_C(9223372036854775807)",
        "(-INT64_C(9223372036854775807) - 1)"
      )
    return
      "(\(x) != \(x) ? 0 : (\(x) >= \(limit)\(suffix) ? \(maximum) : (\(x) < -\(limit)\(suffix) ? \(minimum) : (\(c.type))(\(x)))))"
  }

  /// The interpreter's `cast`, exact: integers are never routed through `Double` (which rounds i64
  /// past 2^53), and floats to integers saturate as `castExpression` does.
  static func cast(_ tensor: Tensor, to dtype: DType) -> Tensor {
    if tensor.dtype == dtype { return tensor }
    switch (tensor.dtype.isInteger, dtype) {
    case (true, .i32), (true, .i64):
      return integerTensor(dtype, tensor.shape, integerValues(tensor))
    case (true, .f32):
      // Directly, not through Double: two roundings could differ from C's one.
      return Tensor(shape: tensor.shape, scalars: integerValues(tensor).map { Float($0) })
    case (true, .f64):
      return Tensor(shape: tensor.shape, scalars: integerValues(tensor).map { Double($0) })
    case (false, .i32), (false, .i64):
      let values = tensor.doubles().map { saturatingInteger($0, dtype) }
      return integerTensor(dtype, tensor.shape, values)
    case (false, _):
      return tensor.converted(to: dtype)
    }
  }
}
