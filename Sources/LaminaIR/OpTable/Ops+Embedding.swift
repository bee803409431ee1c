import LaminaSupport

extension OpRegistry {
  /// Row lookups by integer id (the `embedding` layer) and their gradient.
  static let embeddingOps: [OpDefinition] = [
    OpDefinition(
      "gather_rows",
      summary:
        "Picks rows of a table by integer id: one row per id, in the ids' shape (PyTorch's embedding lookup). An id outside 0..<rows is an error at run time that names the ids (the `input` attribute), the position and the value.",
      semantics:
        "y[i…, f…] = table[ids[i…], f…]; table [V, F…], ids integer [I…] with values in 0..<V, y [I…, F…]",
      operands: [OperandSpec("table"), OperandSpec("ids")],
      attributes: [
        AttributeSpec(
          "input", .string, "the name of the value the ids come from, for the out-of-range error")
      ],
      fusion: .opaque,
      c: .kernel(.gatherRows),
      shape: ShapeRule("ids.shape + table.shape[1...], dtype(table)") {
        context throws(ShapeError) in
        let (table, ids) = (context.operands[0], context.operands[1])
        try checkIds(context, ids)
        guard table.rank >= 1 else {
          throw ShapeError(
            "gather_rows needs a table of rank 1 or more ([rows, features…]), got \(table)")
        }
        return [TensorType(table.dtype, ids.shape + table.shape.dropFirst())]
      },
      interpret: { context in
        _ = try context.checked("gather_rows")
        let (table, ids) = (context.operands[0], context.operands[1])
        let rows = table.shape[0]
        let rowSize = table.shape.dropFirst().reduce(1, *)
        let positions = try checkedRows(
          integerValues(ids), shape: ids.shape, rows: rows, op: "gather_rows",
          input: context.attributes["input"]?.stringValue)
        let picks = positions.flatMap { row in (0..<rowSize).map { row * rowSize + $0 } }
        return [gathered(table, picks, shape: context.results[0].shape)]
      },
      // ∂/∂table: each result row's gradient added to the row its id picked; ids have none
      gradient: { builder, inputs throws(ShapeError) in
        let (table, ids) = (inputs.operands[0], inputs.operands[1])
        guard builder.wants(table) else { return [nil, nil] }
        guard let rows = builder.type(of: table).shape.first?.staticValue else {
          throw ShapeError(
            "gather_rows: the gradient needs a table with a static number of rows, got \(builder.type(of: table))"
          )
        }
        var attributes: [String: Attribute] = ["rows": .int(rows)]
        attributes["input"] = inputs.attributes["input"]
        return [
          try builder.op(Ops.scatterAddRows, [inputs.resultGradient, ids], attributes), nil,
        ]
      }),
    OpDefinition(
      "scatter_add_rows",
      summary:
        "The gradient of gather_rows: a table of `rows` rows, zero except that each row of the operand is added to the row its id names (ids repeated add up, in position order).",
      semantics:
        "y = zeros([rows, F…]); for each position i…: y[ids[i…], f…] += values[i…, f…]; ids integer [I…] with values in 0..<rows, values [I…, F…]",
      operands: [OperandSpec("values"), OperandSpec("ids")],
      attributes: [
        AttributeSpec(
          "rows", .int, required: true, "the number of rows of the result (the table's)"),
        AttributeSpec(
          "input", .string, "the name of the value the ids come from, for the out-of-range error"),
      ],
      fusion: .opaque,
      c: .kernel(.scatterAddRows),
      shape: ShapeRule("[rows] + values.shape[ids.rank...], dtype(values)") {
        context throws(ShapeError) in
        let (values, ids) = (context.operands[0], context.operands[1])
        try checkIds(context, ids)
        guard let rows = context.int("rows"), rows >= 1, rows <= 1 << 40 else {
          throw ShapeError(
            "scatter_add_rows: rows must be between 1 and 2^40, got \(context.attributes["rows"]?.description ?? "nothing")"
          )
        }
        guard values.rank >= ids.rank, Array(values.shape.prefix(ids.rank)) == ids.shape else {
          throw ShapeError(
            "scatter_add_rows: values \(values) do not start with the ids' shape \(ids.shapeDescription)"
          )
        }
        try context.requireFloat(values, "values operand")
        return [TensorType(values.dtype, [Dim(rows)] + values.shape.dropFirst(ids.rank))]
      },
      interpret: { context in
        _ = try context.checked("scatter_add_rows")
        let (values, ids) = (context.operands[0], context.operands[1])
        let rows = context.int("rows") ?? 0
        let rowSize = values.shape.dropFirst(ids.rank).reduce(1, *)
        let positions = try checkedRows(
          integerValues(ids), shape: ids.shape, rows: rows, op: "scatter_add_rows",
          input: context.attributes["input"]?.stringValue)
        let source = values.doubles()
        var output = [Double](repeating: 0, count: rows * rowSize)
        for (position, row) in positions.enumerated() {
          for column in 0..<rowSize {
            output[row * rowSize + column] += source[position * rowSize + column]
          }
        }
        return [context.result(0, output)]
      },
      // linear in the values: ∂/∂values = gather_rows(g, ids); ids have none
      gradient: { builder, inputs throws(ShapeError) in
        var attributes: [String: Attribute] = [:]
        attributes["input"] = inputs.attributes["input"]
        return [
          try builder.op(
            Ops.gatherRows, [inputs.resultGradient, inputs.operands[1]], attributes),
          nil,
        ]
      }),
  ]

  /// Ids must be integers.
  static func checkIds(_ context: ShapeContext, _ ids: TensorType) throws(ShapeError) {
    guard ids.dtype.isInteger else {
      throw ShapeError(
        "\(context.op): ids must be integers, got \(ids)",
        help: "convert them with cast(ids, dtype: i32)")
    }
  }

  /// How the out-of-range error names the ids: `'tokens'`, or `the ids` without a name. The C
  /// kernels print the same words.
  public static func idsDescription(input: String?) -> String {
    guard let input, !input.isEmpty else { return "the ids" }
    return "'\(input)'"
  }

  /// The ids as row indices, or the error for the first one outside `0..<rows`.
  static func checkedRows(
    _ ids: [Int64], shape: [Int], rows: Int, op: String, input: String?
  ) throws(InterpretError) -> [Int] {
    var result: [Int] = []
    result.reserveCapacity(ids.count)
    for (position, id) in ids.enumerated() {
      guard id >= 0, id < Int64(rows) else {
        throw InterpretError(
          "\(op): id \(id) at position \(coordinate(of: position, in: shape)) of \(idsDescription(input: input)) is outside 0..<\(rows)"
        )
      }
      result.append(Int(id))
    }
    return result
  }
}
