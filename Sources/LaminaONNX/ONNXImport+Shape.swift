import LaminaSupport

extension ONNXTranslators {
  /// Shape ops, constants and the import-time shape computations (`Shape`-`Gather`-`Concat`-
  /// `Reshape` chains fold to a `reshape` whose shape names the symbolic dimensions).
  static let shapeTranslators: [ONNXTranslator] = [
    ONNXTranslator(["Constant"], translateConstant),
    ONNXTranslator(["ConstantOfShape"], translateConstantOfShape),
    ONNXTranslator(["Shape"], translateShape),
    ONNXTranslator(["Reshape"], translateReshape),
    ONNXTranslator(["Flatten"], translateFlatten),
    ONNXTranslator(["Transpose"], translateTranspose),
    ONNXTranslator(["Concat"], translateConcat),
    ONNXTranslator(["Squeeze"]) { try squeeze(&$0, unsqueeze: false) },
    ONNXTranslator(["Unsqueeze"]) { try squeeze(&$0, unsqueeze: true) },
    ONNXTranslator(["Slice"], translateSlice),
    ONNXTranslator(["Split"], translateSplit),
    ONNXTranslator(["Expand"], translateExpand),
  ]

  /// numpy broadcasting of the input to the shape input (whose entries may be 1 where the input's
  /// are larger) as `broadcast_to`.
  @Sendable static func translateExpand(_ context: inout ONNXNodeContext) throws -> [ImportedValue]
  {
    let x = try context.tensor(0)
    guard let dims = try context.input(1).staticDims else {
      throw context.error("the shape (input 1) must be known at import time")
    }
    let shape = try context.broadcast(x.shape, dims)
    if shape == x.shape { return [.tensor(x)] }
    let texts = try shape.map { dim -> String in
      guard let text = dim.lamText else {
        throw context.error("cannot write the shape \(shape) for broadcast_to")
      }
      return text
    }
    return [
      context.emit(
        "broadcast_to(\(x.name), shape: [\(texts.joined(separator: ", "))])", shape: shape,
        dtype: x.dtype)
    ]
  }

  @Sendable static func translateConstant(_ context: inout ONNXNodeContext) throws
    -> [ImportedValue]
  {
    if let tensor = try context.tensorAttribute("value") { return [.constant(tensor)] }
    if let attribute = context.node.attribute("value_float") {
      return [.constant(Tensor(shape: [], scalars: [attribute.float]))]
    }
    if let values = context.floats("value_floats"), context.hasAttribute("value_floats") {
      return [.constant(Tensor(shape: [values.count], scalars: values))]
    }
    if let attribute = context.node.attribute("value_int") {
      return [.constant(Tensor(shape: [], scalars: [attribute.int]))]
    }
    if let attribute = context.node.attribute("value_ints") {
      return [.constant(Tensor(shape: [attribute.ints.count], scalars: attribute.ints))]
    }
    throw context.error("Constant without a tensor, float or integer value")
  }

  /// A tensor of the shape given by input 0 filled with `value`: known at import time, so it
  /// becomes a parameter of its full shape where the model computes with it.
  @Sendable static func translateConstantOfShape(_ context: inout ONNXNodeContext) throws
    -> [ImportedValue]
  {
    var fill = Tensor(shape: [], scalars: [Float(0)])
    if let value = try context.tensorAttribute("value") {
      guard value.count == 1 else { throw context.error("value must have one element") }
      fill = value.reshaped([])!
    }
    guard let shape = try context.input(0).staticIntegers else {
      // A shape with a symbolic dimension (a batch) has no full-shape parameter: the value is a
      // one-element parameter broadcast to the shape at run time.
      guard let dims = try context.input(0).staticDims else {
        throw context.error("the shape (input 0) must be known at import time")
      }
      let texts = try dims.map { dim -> String in
        guard let text = dim.lamText else {
          throw context.error("cannot write the shape \(dims) for broadcast_to")
        }
        return text
      }
      let value = try context.writer.declareParameter(
        hint: "\(context.node.outputs[0])_value", fill, onnxName: nil)
      return [
        context.emit(
          "broadcast_to(\(value.name), shape: [\(texts.joined(separator: ", "))])", shape: dims,
          dtype: fill.dtype)
      ]
    }
    guard shape.allSatisfy({ $0 >= 0 }), Tensor.byteCount(fill.dtype, shape) != nil else {
      throw context.error("invalid shape \(shape)")
    }
    do {
      try Tensor.checkAllocation(fill.dtype, shape, of: "ConstantOfShape's result")
    } catch {
      throw context.error("\(error)")
    }
    // Filled in place: the light models make hundreds of megabytes of weights this way.
    var tensor = Tensor(zeros: fill.dtype, shape: shape)
    fill.withUnsafeBytes { element in
      tensor.withUnsafeMutableBytes { bytes in
        guard bytes.count > 0, element.contains(where: { $0 != 0 }) else { return }
        let base = bytes.baseAddress!
        base.copyMemory(from: element.baseAddress!, byteCount: element.count)
        // Doubling copies: a few dozen memcpy calls however large the tensor.
        var filled = element.count
        while filled < bytes.count {
          let chunk = min(filled, bytes.count - filled)
          base.advanced(by: filled).copyMemory(from: base, byteCount: chunk)
          filled += chunk
        }
      }
    }
    return [.constant(tensor)]
  }

  /// The input's shape: a static vector where its dims are known, symbolic dims otherwise.
  @Sendable static func translateShape(_ context: inout ONNXNodeContext) throws -> [ImportedValue] {
    let shape = try context.input(0).shape
    var start = try context.int("start", default: 0)
    var end = try context.int("end", default: shape.count)
    if start < 0 { start += shape.count }
    if end < 0 { end += shape.count }
    start = min(max(start, 0), shape.count)
    end = min(max(end, start), shape.count)
    return [ImportedValue.shapeValue(Array(shape[start..<end]), scalar: false)]
  }

  /// Gather of a value known at import time with static indices (shape chains), or nil.
  public static func gatherStatic(_ context: ONNXNodeContext) throws -> ImportedValue? {
    let data = try context.input(0)
    let indicesValue = try context.input(1)
    guard data.isStatic, let indices = indicesValue.staticIntegers else { return nil }
    let axis = try context.normalizedAxis(try context.int("axis", default: 0), rank: data.rank)
    if case .dims(let dims, _) = data {
      let picked = try indices.map { index -> ImportedDim in
        let resolved = index < 0 ? index + dims.count : index
        guard resolved >= 0, resolved < dims.count else {
          throw context.error("index \(index) is out of range for \(dims.count) dims")
        }
        return dims[resolved]
      }
      guard indicesValue.rank <= 1 else { return nil }
      return ImportedValue.shapeValue(picked, scalar: indicesValue.rank == 0)
    }
    guard case .constant(let tensor) = data else { return nil }
    let size = tensor.shape[axis]
    let outer = tensor.shape[..<axis].reduce(1, *)
    let inner = tensor.shape[(axis + 1)...].reduce(1, *)
    let values = tensor.doubles()
    var result: [Double] = []
    for row in 0..<outer {
      for index in indices {
        let resolved = index < 0 ? index + size : index
        guard resolved >= 0, resolved < size else {
          throw context.error("index \(index) is out of range for axis size \(size)")
        }
        let base = (row * size + resolved) * inner
        result += values[base..<(base + inner)]
      }
    }
    let shape =
      Array(tensor.shape[..<axis]) + (indicesValue.shape.map { $0.staticValue ?? 1 })
      + Array(tensor.shape[(axis + 1)...])
    if tensor.dtype == .i64 {
      // Through Double would round integers past 2^53; gather the integers themselves.
      let integers = tensor.scalars(as: Int64.self)
      var picked: [Int64] = []
      for row in 0..<outer {
        for index in indices {
          let base = (row * size + (index < 0 ? index + size : index)) * inner
          picked += integers[base..<(base + inner)]
        }
      }
      return .constant(Tensor(shape: shape, scalars: picked))
    }
    return .constant(Tensor(dtype: tensor.dtype, shape: shape, doubles: result))
  }

  /// The target shape of a Reshape: 0 copies the input's dim (unless `allowzero`), -1 takes the rest.
  static func reshapeTarget(
    _ context: ONNXNodeContext, input: [ImportedDim], entries: [ImportedDim], allowZero: Bool
  ) throws -> [ImportedDim] {
    var result: [ImportedDim?] = []
    for (index, entry) in entries.enumerated() {
      if entry.staticValue == 0, !allowZero {
        guard index < input.count else {
          throw context.error("shape entry \(index) is 0 but the input has rank \(input.count)")
        }
        result.append(input[index])
      } else if entry.staticValue == -1 {
        result.append(nil)
      } else if let value = entry.staticValue, value <= 0 {
        throw context.error("shape \(entries) has entry \(value)")
      } else {
        result.append(entry)
      }
    }
    guard let total = ImportedDim.product(input) else { throw context.error("shape too large") }
    let unknown = result.indices.filter { result[$0] == nil }
    guard unknown.count <= 1 else { throw context.error("shape \(entries) has more than one -1") }
    guard let known = ImportedDim.product(result.compactMap { $0 }) else {
      throw context.error("shape too large")
    }
    if let position = unknown.first {
      guard let rest = total.divided(by: known) else {
        throw context.error(
          "cannot reshape \(input) to \(entries): \(known) does not divide \(total)")
      }
      result[position] = rest
    } else if known != total {
      throw context.error("cannot reshape \(input) (\(total) elements) to \(entries)")
    }
    return result.map { $0! }
  }

  @Sendable static func translateReshape(_ context: inout ONNXNodeContext) throws
    -> [ImportedValue]
  {
    let x = try context.input(0)
    let entries: [ImportedDim]
    if context.opset < 5 {
      entries = (context.ints("shape") ?? []).map { ImportedDim($0) }
    } else {
      guard let dims = try context.input(1).staticDims else {
        throw context.error("the shape (input 1) must be known at import time")
      }
      entries = dims
    }
    let allowZero = try context.int("allowzero", default: 0) != 0
    let target = try reshapeTarget(context, input: x.shape, entries: entries, allowZero: allowZero)
    return [try reshaped(&context, x, to: target)]
  }

  /// `x` with a new shape: at import time for static values, a `reshape` otherwise.
  static func reshaped(
    _ context: inout ONNXNodeContext, _ x: ImportedValue, to target: [ImportedDim]
  )
    throws -> ImportedValue
  {
    switch x {
    case .constant(let tensor):
      guard let shape = target.map(\.staticValue) as? [Int], let result = tensor.reshaped(shape)
      else { throw context.error("cannot reshape a constant to \(target)") }
      return .constant(result)
    case .dims(let dims, _):
      guard target.count <= 1 else { throw context.error("reshape of a shape value to \(target)") }
      return .dims(dims, scalar: target.isEmpty)
    case .tensor(let expression):
      if expression.shape == target { return x }
      return context.emit(
        "reshape(\(expression.name), shape: \(try context.reshapeText(target)))", shape: target,
        dtype: expression.dtype)
    }
  }

  @Sendable static func translateFlatten(_ context: inout ONNXNodeContext) throws
    -> [ImportedValue]
  {
    let x = try context.input(0)
    var axis = try context.int("axis", default: 1)
    if axis < 0 { axis += x.rank }
    guard axis >= 0, axis <= x.rank else { throw context.error("axis out of range") }
    guard let rows = ImportedDim.product(x.shape[..<axis]),
      let columns = ImportedDim.product(x.shape[axis...])
    else { throw context.error("shape too large") }
    return [try reshaped(&context, x, to: [rows, columns])]
  }

  @Sendable static func translateTranspose(_ context: inout ONNXNodeContext) throws
    -> [ImportedValue]
  {
    let x = try context.tensor(0)
    let perm = context.ints("perm") ?? Array((0..<x.rank).reversed())
    guard perm.count == x.rank, Set(perm) == Set(0..<x.rank) else {
      throw context.error("perm \(perm) is not a permutation of \(x.rank) axes")
    }
    if perm == Array(0..<x.rank) { return [.tensor(x)] }
    return [
      context.emit(
        "permute(\(x.name), perm: \(context.list(perm)))", shape: perm.map { x.shape[$0] },
        dtype: x.dtype)
    ]
  }

  @Sendable static func translateConcat(_ context: inout ONNXNodeContext) throws -> [ImportedValue]
  {
    let inputs = try (0..<context.inputCount).filter { context.hasInput($0) }.map {
      try context.input($0)
    }
    guard let first = inputs.first else { throw context.error("no inputs") }
    guard let axisAttribute = try context.int("axis") else {
      throw context.error("Concat needs an axis")
    }
    let axis = try context.normalizedAxis(axisAttribute, rank: first.rank)
    // Shape vectors concatenate at import time.
    if inputs.allSatisfy({ $0.isStatic && $0.dtype.isInteger && $0.rank == 1 }) {
      return [ImportedValue.shapeValue(inputs.flatMap { $0.staticDims! }, scalar: false)]
    }
    var dtype: DType?
    for value in inputs { if case .tensor(let expression) = value { dtype = expression.dtype } }
    var operands: [TensorExpression] = []
    for index in 0..<context.inputCount where context.hasInput(index) {
      operands.append(try context.tensor(index, dtype: dtype))
    }
    var shape = operands[0].shape
    for operand in operands.dropFirst() {
      guard operand.rank == shape.count, operand.dtype == operands[0].dtype else {
        throw context.error("operands \(operands[0].typeText) and \(operand.typeText)")
      }
      for position in 0..<shape.count where position != axis {
        guard shape[position] == operand.shape[position] else {
          throw context.error(
            "operands \(operands[0].typeText) and \(operand.typeText) differ off axis \(axis)")
        }
      }
      guard let sum = shape[axis].plus(operand.shape[axis]) else {
        throw context.error("cannot add the sizes \(shape[axis]) and \(operand.shape[axis])")
      }
      shape[axis] = sum
    }
    if operands.count == 1 { return [.tensor(operands[0])] }
    return [
      context.emit(
        "concat([\(operands.map(\.name).joined(separator: ", "))], axis: \(axis))", shape: shape,
        dtype: operands[0].dtype)
    ]
  }

  /// Squeeze and Unsqueeze: axes as an attribute before opset 13, an input from it.
  static func squeeze(_ context: inout ONNXNodeContext, unsqueeze: Bool) throws -> [ImportedValue] {
    let x = try context.input(0)
    var axes: [Int]?
    if context.opset >= 13 {
      if context.hasInput(1) { axes = try context.integers(1, "the axes") }
    } else {
      axes = context.ints("axes")
    }
    var target: [ImportedDim]
    var resolved: [Int]
    if unsqueeze {
      guard let axes, !axes.isEmpty else { throw context.error("Unsqueeze needs axes") }
      let rank = x.rank + axes.count
      resolved = try axes.map { try context.normalizedAxis($0, rank: rank) }.sorted()
      guard Set(resolved).count == resolved.count else {
        throw context.error("repeated axes \(axes)")
      }
      target = []
      var source = x.shape.makeIterator()
      for position in 0..<rank {
        target.append(resolved.contains(position) ? ImportedDim(1) : source.next()!)
      }
    } else {
      if let axes, !axes.isEmpty {
        resolved = try axes.map { try context.normalizedAxis($0, rank: x.rank) }.sorted()
        for axis in resolved where x.shape[axis] != ImportedDim(1) {
          throw context.error("cannot squeeze axis \(axis) of size \(x.shape[axis])")
        }
      } else {
        resolved = x.shape.indices.filter { x.shape[$0] == ImportedDim(1) }
      }
      target = x.shape.enumerated().filter { !resolved.contains($0.offset) }.map(\.element)
    }
    if case .tensor(let expression) = x {
      if resolved.isEmpty { return [x] }
      let function = unsqueeze ? "unsqueeze" : "squeeze"
      return [
        context.emit(
          "\(function)(\(expression.name), axes: \(context.list(resolved)))", shape: target,
          dtype: expression.dtype)
      ]
    }
    return [try reshaped(&context, x, to: target)]
  }

  /// A resolved slice of one axis: ONNX's clamping rules, python's slice text.
  struct AxisSlice {
    var text: String
    var count: Int
    var first: Int
    var step: Int
  }

  static func sliceAxis(
    _ context: ONNXNodeContext, start: Int, end: Int, step: Int, size: ImportedDim
  ) throws -> AxisSlice? {
    guard step != 0 else { throw context.error("slice step 0") }
    guard let dim = size.staticValue else {
      // A symbolic axis can only be taken whole.
      if start == 0, step == 1, end >= Int(Int32.max) { return nil }
      throw context.error("slicing the symbolic axis \(size) from \(start) to \(end) by \(step)")
    }
    // A step past the axis takes one element; the size's step says the same.
    let step = min(max(step, -dim), dim)
    if step > 0 {
      let first = min(max(start < 0 ? start + dim : start, 0), dim)
      let last = min(max(end < 0 ? end + dim : end, 0), dim)
      let count = max(0, (last - first + step - 1) / step)
      if first == 0, last == dim, step == 1 { return nil }
      return AxisSlice(
        text: step == 1 ? "\(first):\(last)" : "\(first):\(last):\(step)", count: count,
        first: first, step: step)
    }
    let first = min(max(start < 0 ? start + dim : start, -1), dim - 1)
    let last = min(max(end < 0 ? end + dim : end, -1), dim - 1)
    let count = max(0, (first - last + (-step) - 1) / (-step))
    let stop = last < 0 ? "" : String(last)
    return AxisSlice(
      text: first < 0 ? "0:0" : "\(first):\(stop):\(step)", count: count, first: first, step: step)
  }

  @Sendable static func translateSlice(_ context: inout ONNXNodeContext) throws -> [ImportedValue] {
    let x = try context.input(0)
    let starts: [Int]
    let ends: [Int]
    var axes: [Int]?
    var steps: [Int]?
    if context.opset < 10 {
      guard let s = context.ints("starts"), let e = context.ints("ends") else {
        throw context.error("starts and ends are required")
      }
      (starts, ends, axes) = (s, e, context.ints("axes"))
    } else {
      starts = try context.integers(1, "the starts")
      ends = try context.integers(2, "the ends")
      if context.hasInput(3) { axes = try context.integers(3, "the axes") }
      if context.hasInput(4) { steps = try context.integers(4, "the steps") }
    }
    let resolvedAxes = try (axes ?? Array(0..<starts.count)).map {
      try context.normalizedAxis($0, rank: x.rank)
    }
    let resolvedSteps = steps ?? Array(repeating: 1, count: starts.count)
    guard ends.count == starts.count, resolvedAxes.count == starts.count,
      resolvedSteps.count == starts.count
    else { throw context.error("starts, ends, axes and steps differ in length") }
    var slices: [Int: AxisSlice] = [:]
    var shape = x.shape
    for (index, axis) in resolvedAxes.enumerated() {
      guard slices[axis] == nil else { throw context.error("axis \(axis) sliced twice") }
      if let slice = try sliceAxis(
        context, start: starts[index], end: ends[index], step: resolvedSteps[index],
        size: x.shape[axis])
      {
        guard slice.count > 0 else {
          throw context.error("the slice of axis \(axis) is empty, which Lamina cannot hold")
        }
        slices[axis] = slice
        shape[axis] = ImportedDim(slice.count)
      }
    }
    if slices.isEmpty { return [x] }
    if case .tensor = x {
    } else if let dims = x.staticDims, x.rank == 1, let slice = slices[0] {
      let picked = (0..<slice.count).map { dims[slice.first + $0 * slice.step] }
      return [ImportedValue.shapeValue(picked, scalar: false)]
    }
    let tensor = try context.tensor(0)
    let last = slices.keys.max()!
    let index = (0...last).map { slices[$0]?.text ?? ":" }.joined(separator: ", ")
    return [context.emit("\(tensor.name)[\(index)]", shape: shape, dtype: tensor.dtype)]
  }

  @Sendable static func translateSplit(_ context: inout ONNXNodeContext) throws -> [ImportedValue] {
    let x = try context.tensor(0)
    let axis = try context.normalizedAxis(try context.int("axis", default: 0), rank: x.rank)
    guard let size = x.shape[axis].staticValue else {
      throw context.error("Split of the symbolic axis \(x.shape[axis])")
    }
    let outputs = context.node.outputs.count
    var sizes: [Int]
    if context.opset >= 13, context.hasInput(1) {
      sizes = try context.integers(1, "the split sizes")
    } else if let split = context.ints("split"), context.opset < 13 {
      sizes = split
    } else {
      let parts = try context.int("num_outputs", default: outputs)
      guard parts >= 1 else { throw context.error("num_outputs \(parts)") }
      let chunk = (size + parts - 1) / parts
      sizes = (0..<parts).map { min(chunk, max(size - $0 * chunk, 0)) }
    }
    guard sizes.count == outputs, sizes.allSatisfy({ $0 >= 1 && $0 <= size }),
      sizes.reduce(0, +) == size
    else {
      throw context.error(
        "split sizes \(sizes) do not divide axis \(axis) of size \(size) into \(outputs) outputs")
    }
    var results: [ImportedValue] = []
    var start = 0
    for (output, part) in sizes.enumerated() {
      var shape = x.shape
      shape[axis] = ImportedDim(part)
      let index = (0...axis).map { $0 == axis ? "\(start):\(start + part)" : ":" }.joined(
        separator: ", ")
      results.append(
        context.emit("\(x.name)[\(index)]", shape: shape, dtype: x.dtype, output: output))
      start += part
    }
    return results
  }
}
