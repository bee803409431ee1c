import LaminaSupport

extension ONNXTranslators {
  /// Arithmetic, activations, Identity, Dropout, Softmax and Cast.
  static let elementwiseTranslators: [ONNXTranslator] = [
    ONNXTranslator(["Add"]) { try binary(&$0, .add) },
    ONNXTranslator(["Sub"]) { try binary(&$0, .subtract) },
    ONNXTranslator(["Mul"]) { try binary(&$0, .multiply) },
    ONNXTranslator(["Div"]) { try binary(&$0, .divide) },
    ONNXTranslator(["Pow"]) { try binary(&$0, .power) },
    ONNXTranslator(["Sum"]) { try variadic(&$0, .add) },
    ONNXTranslator(["Max"]) { try variadic(&$0, .maximum) },
    ONNXTranslator(["Min"]) { try variadic(&$0, .minimum) },
    ONNXTranslator(["Neg"]) { try unary(&$0, "neg") },
    ONNXTranslator(["Abs"]) { try unary(&$0, "abs") },
    ONNXTranslator(["Exp"]) { try unary(&$0, "exp") },
    ONNXTranslator(["Log"]) { try unary(&$0, "log") },
    ONNXTranslator(["Sqrt"]) { try unary(&$0, "sqrt") },
    ONNXTranslator(["Relu"]) { try unary(&$0, "relu") },
    ONNXTranslator(["Sigmoid"]) { try unary(&$0, "sigmoid") },
    ONNXTranslator(["Tanh"]) { try unary(&$0, "tanh") },
    ONNXTranslator(["Softplus"]) { try unary(&$0, "softplus") },
    ONNXTranslator(["Sign"]) { try unary(&$0, "sign") },
    ONNXTranslator(["Reciprocal"]) { context in
      let x = try context.tensor(0)
      guard x.dtype.isFloatingPoint else { throw context.error("Reciprocal of \(x.dtype)") }
      return [context.emit("1 / \(x.name)", shape: x.shape, dtype: x.dtype)]
    },
    ONNXTranslator(["Gelu"]) { context in
      let approximate = context.string("approximate") ?? "none"
      guard approximate == "none" || approximate == "tanh" else {
        throw context.error("approximate \"\(escapedText(approximate))\"")
      }
      return try unary(&context, "gelu", arguments: ", approximate: \"\(approximate)\"")
    },
    ONNXTranslator(["Mean"]) { try variadic(&$0, .add, mean: true) },
    ONNXTranslator(["LeakyRelu"]) { context in
      let alpha = try floatLiteral(context.float("alpha", default: 0.01))
      return try unary(&context, "leaky_relu", arguments: ", alpha: \(alpha)")
    },
    ONNXTranslator(["Identity"]) { context in [try context.input(0)] },
    ONNXTranslator(["Dropout"], translateDropout),
    ONNXTranslator(["Softmax"]) { try softmax(&$0, "softmax") },
    ONNXTranslator(["LogSoftmax"]) { try softmax(&$0, "log_softmax") },
    ONNXTranslator(["Cast"], translateCast),
  ]

  enum BinaryOperation {
    case add, subtract, multiply, divide, power, maximum, minimum

    func expression(_ a: String, _ b: String) -> String {
      switch self {
      case .add: "\(a) + \(b)"
      case .subtract: "\(a) - \(b)"
      case .multiply: "\(a) * \(b)"
      case .divide: "\(a) / \(b)"
      case .power: "pow(\(a), \(b))"
      case .maximum: "maximum(\(a), \(b))"
      case .minimum: "minimum(\(a), \(b))"
      }
    }

    /// The result on dims known at import time (shape arithmetic), or nil.
    func fold(_ a: ImportedDim, _ b: ImportedDim) -> ImportedDim? {
      switch self {
      case .add: return a.plus(b)
      case .subtract:
        guard let x = a.staticValue, let y = b.staticValue else { return nil }
        return ImportedDim(x - y)
      case .multiply: return a.times(b)
      case .divide:
        if let x = a.staticValue, let y = b.staticValue {
          guard y != 0 else { return nil }
          // ONNX integer division truncates toward zero, as Swift's does.
          return ImportedDim(x / y)
        }
        return a.divided(by: b)
      case .maximum:
        guard let x = a.staticValue, let y = b.staticValue else { return nil }
        return ImportedDim(max(x, y))
      case .minimum:
        guard let x = a.staticValue, let y = b.staticValue else { return nil }
        return ImportedDim(min(x, y))
      case .power: return nil
      }
    }
  }

  /// Integer values known at import time (shape arithmetic) computed at import time.
  static func foldIntegers(_ a: ImportedValue, _ b: ImportedValue, _ operation: BinaryOperation)
    -> ImportedValue?
  {
    guard a.dtype.isInteger, b.dtype.isInteger, let x = a.staticDims, let y = b.staticDims,
      a.rank <= 1, b.rank <= 1
    else { return nil }
    guard x.count == y.count || x.count == 1 || y.count == 1 else { return nil }
    var result: [ImportedDim] = []
    for index in 0..<max(x.count, y.count) {
      guard
        let value = operation.fold(x[x.count == 1 ? 0 : index], y[y.count == 1 ? 0 : index])
      else { return nil }
      result.append(value)
    }
    return ImportedValue.shapeValue(result, scalar: a.rank == 0 && b.rank == 0)
  }

  static func binary(_ context: inout ONNXNodeContext, _ operation: BinaryOperation) throws
    -> [ImportedValue]
  {
    let a = try context.input(0)
    var b = try context.input(1)
    if a.isStatic, b.isStatic, let folded = foldIntegers(a, b, operation) { return [folded] }
    var bName = context.node.inputs[1]
    // Before opset 7, `broadcast: 1` with `axis` aligns the second operand at that axis of the first.
    if context.opset < 7, try context.int("broadcast", default: 0) == 1,
      let axis = try context.int("axis")
    {
      let start = axis < 0 ? axis + a.rank : axis
      let trailing = a.rank - start - b.rank
      guard start >= 0, trailing >= 0 else {
        throw context.error("legacy broadcast of \(b.shape) at axis \(axis) of \(a.shape)")
      }
      let shape = b.shape + Array(repeating: ImportedDim(1), count: trailing)
      switch b {
      case .constant(let tensor):
        b = .constant(tensor.reshaped(tensor.shape + Array(repeating: 1, count: trailing))!)
        bName += "_aligned"
      case .tensor(let expression):
        b = .tensor(try context.reshape(expression, to: shape))
      case .dims:
        throw context.error("legacy broadcast of a shape value")
      }
    }
    // A static operand takes the computed one's dtype (an exponent, a scale).
    let dtype: DType? =
      if case .tensor(let expression) = a {
        expression.dtype
      } else if case .tensor(let expression) = b {
        expression.dtype
      } else { nil }
    let left = try context.tensor(0, dtype: dtype)
    let right: TensorExpression
    if bName == context.node.inputs[1] {
      right = try context.tensor(1, dtype: dtype)
    } else {
      right = try context.materialize(b, name: bName, dtype: dtype)
    }
    guard left.dtype == right.dtype else {
      throw context.error("operands of types \(left.dtype) and \(right.dtype)")
    }
    let shape = try context.broadcast(left.shape, right.shape)
    return [
      context.emit(
        operation.expression(left.name, right.name), shape: shape, dtype: left.dtype)
    ]
  }

  /// Sum, Max, Min and (with `mean`) Mean of one or more operands, broadcasting.
  static func variadic(
    _ context: inout ONNXNodeContext, _ operation: BinaryOperation, mean: Bool = false
  ) throws -> [ImportedValue] {
    guard context.inputCount >= 1 else { throw context.error("needs at least one input") }
    if context.inputCount == 1 { return [try context.input(0)] }
    var dtype: DType?
    for index in 0..<context.inputCount {
      if case .tensor(let expression) = try context.input(index) {
        dtype = expression.dtype
        break
      }
    }
    var operands: [TensorExpression] = []
    for index in 0..<context.inputCount { operands.append(try context.tensor(index, dtype: dtype)) }
    var expression = operands[0].name
    var shape = operands[0].shape
    for operand in operands.dropFirst() {
      guard operand.dtype == operands[0].dtype else {
        throw context.error("operands of types \(operands[0].dtype) and \(operand.dtype)")
      }
      expression = operation.expression(expression, operand.name)
      shape = try context.broadcast(shape, operand.shape)
    }
    if mean {
      guard operands[0].dtype.isFloatingPoint else { throw context.error("Mean of integers") }
      expression = "(\(expression)) / \(operands.count)"
    }
    return [context.emit(expression, shape: shape, dtype: operands[0].dtype)]
  }

  static func unary(_ context: inout ONNXNodeContext, _ function: String, arguments: String = "")
    throws -> [ImportedValue]
  {
    let x = try context.tensor(0)
    guard x.dtype.isFloatingPoint || function == "neg" || function == "abs" else {
      throw context.error("\(function) of an \(x.dtype) tensor")
    }
    return [context.emit("\(function)(\(x.name)\(arguments))", shape: x.shape, dtype: x.dtype)]
  }

  @Sendable static func translateDropout(_ context: inout ONNXNodeContext) throws -> [ImportedValue]
  {
    let x = try context.tensor(0)
    var rate = context.float("ratio", default: 0.5)
    if context.opset >= 12, context.hasInput(1) {
      let ratio = try context.constant(1, "the dropout ratio")
      guard ratio.count == 1 else { throw context.error("the ratio must be a scalar") }
      rate = Float(ratio.doubles()[0])
    }
    if context.node.outputs.count > 1, !context.node.outputs[1].isEmpty {
      // The mask output: nothing in an inference graph reads it; a node that does is reported
      // when it finds no value.
    }
    guard rate >= 0, rate < 1 else { throw context.error("dropout ratio \(rate) is not in [0, 1)") }
    return [
      context.emit(
        "dropout(\(x.name), rate: \(try floatLiteral(rate)))", shape: x.shape, dtype: x.dtype)
    ]
  }

  /// Softmax and LogSoftmax. Before opset 13 they flatten the input to 2-D at `axis` (default 1)
  /// and normalize the second axis; from 13 they normalize one axis (default -1).
  static func softmax(_ context: inout ONNXNodeContext, _ function: String) throws
    -> [ImportedValue]
  {
    let x = try context.tensor(0)
    let result: ImportedValue
    if context.opset >= 13 {
      let axis = try context.normalizedAxis(try context.int("axis", default: -1), rank: x.rank)
      result = context.emit(
        "\(function)(\(x.name), axis: \(axis))", shape: x.shape, dtype: x.dtype)
    } else {
      let axis = try context.normalizedAxis(try context.int("axis", default: 1), rank: x.rank)
      if axis == x.rank - 1 {
        result = context.emit("\(function)(\(x.name), axis: -1)", shape: x.shape, dtype: x.dtype)
      } else {
        guard let rows = ImportedDim.product(x.shape[..<axis]),
          let columns = ImportedDim.product(x.shape[axis...])
        else { throw context.error("the shape \(x.shape) is too large") }
        let flat = try context.reshape(x, to: [rows, columns])
        let normalized = context.emitTemporary(
          "\(function)(\(flat.name), axis: -1)", shape: flat.shape, dtype: x.dtype)
        result = context.emit(
          "reshape(\(normalized.name), shape: \(try context.reshapeText(x.shape)))",
          shape: x.shape, dtype: x.dtype)
      }
    }
    if function == "softmax", case .tensor(let output) = result {
      context.writer.softmaxInputs[output.name] = x.name
    }
    return [result]
  }

  /// The dtype of an ONNX element type number, for the types a `.lam` model holds.
  static func dtype(ofONNXType type: Int) -> DType? {
    switch type {
    case 1: .f32
    case 11: .f64
    case 6: .i32
    case 7: .i64
    default: nil
    }
  }

  @Sendable static func translateCast(_ context: inout ONNXNodeContext) throws -> [ImportedValue] {
    let target = try context.int("to", default: 0)
    guard let dtype = dtype(ofONNXType: target) else {
      throw context.error("Cast to \(dataTypeName(target)) is not supported")
    }
    let x = try context.input(0)
    switch x {
    case .dims(let dims, let scalar):
      guard dtype.isInteger else {
        throw context.error("Cast of a shape with symbolic dimensions to \(dtype)")
      }
      return [.dims(dims, scalar: scalar)]
    case .constant(let tensor):
      // Static values stay at i64 so shapes and indices keep their values.
      return [.constant(tensor.converted(to: dtype.isInteger ? .i64 : dtype))]
    case .tensor(let expression):
      if expression.dtype == dtype { return [x] }
      return [
        context.emit(
          "cast(\(expression.name), dtype: \(dtype))", shape: expression.shape, dtype: dtype)
      ]
    }
  }
}
