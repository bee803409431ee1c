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
      interpret: { context in [context.result(0, [context.double("value") ?? 0])] }),
    OpDefinition(
      "cast",
      summary: "Converts elements to another dtype; floats to integers truncate toward zero.",
      semantics: "y = dtype(x)", operands: [OperandSpec("x")],
      attributes: [AttributeSpec("dtype", .dtype, required: true, "the new element type")],
      fusion: .elementwise,
      // C conversions truncate toward zero, as the interpreter does.
      c: .expression { c in "(\(c.type))\(c.operands[0])" },
      algebra: AlgebraicProperties(isIdentityWhenTypeUnchanged: true),
      shape: ShapeRule("same(x) with dtype") { context throws(ShapeError) in
        guard case .dtype(let dtype)? = context.attributes["dtype"] else {
          throw ShapeError("cast: missing dtype")
        }
        return [context.operands[0].with(dtype: dtype)]
      },
      interpret: { context in [context.operands[0].converted(to: context.results[0].dtype)] },
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
}
