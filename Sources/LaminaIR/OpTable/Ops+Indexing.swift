import LaminaSupport

extension OpRegistry {
  /// Picking elements by index along an axis (numpy's `take`), padding and tiling, with their
  /// gradients.
  ///
  /// `gather` and `gather_rows` both pick along axis 0 by integer ids, and stay two ops because their
  /// negative ids differ: `gather` wraps them (numpy, ONNX), while `gather_rows` (the embedding's
  /// lookup) reports one as an error, as PyTorch's embedding does, since a negative token id is a
  /// data bug there.
  static let indexingOps: [OpDefinition] =
    [gatherDefinition, scatterAddDefinition, tileDefinition]
    + [padDefinition, padBackwardDefinition]

  // MARK: gather

  static let gatherDefinition = OpDefinition(
    "gather",
    summary:
      "Picks slices of x along `axis` by integer indices (numpy's take, ONNX Gather): the indices' shape takes the place of that axis. A negative index counts from the end; one outside -n..<n is an error at run time that names the indices (the `input` attribute), the position and the value.",
    semantics:
      "y[a…, i…, b…] = x[a…, wrap(indices[i…]), b…]; x [A…, n, B…] with axis at n, wrap(k) = k + n if k < 0, y [A…, I…, B…]",
    operands: [OperandSpec("x"), OperandSpec("indices")],
    attributes: [
      AttributeSpec("axis", .int, default: .int(0), "the axis indexed"),
      AttributeSpec(
        "input", .string, "the name of the value the indices come from, for the out-of-range error"),
    ],
    fusion: .opaque,
    c: .kernel(.gather),
    shape: ShapeRule("x.shape[..<axis] + indices.shape + x.shape[axis+1...], dtype(x)") {
      context throws(ShapeError) in
      let (x, indices) = (context.operands[0], context.operands[1])
      try checkIds(context, indices)
      guard x.rank >= 1 else { throw ShapeError("gather needs x of rank 1 or more, got \(x)") }
      let axis = try context.axis(context.int("axis") ?? 0, rank: x.rank, operand: "x")
      return [
        TensorType(
          x.dtype, Array(x.shape[..<axis]) + indices.shape + Array(x.shape[(axis + 1)...]))
      ]
    },
    interpret: { context in
      let shapeContext = try context.checked("gather")
      let (x, indices) = (context.operands[0], context.operands[1])
      let axis = try shapeContext.axis(shapeContext.int("axis") ?? 0, rank: x.rank)
      let layout = AxisLayout(x.shape, axis: axis)
      let positions = try wrappedIndices(
        integerValues(indices), shape: indices.shape, size: layout.size, op: "gather",
        input: context.attributes["input"]?.stringValue)
      var picks: [Int] = []
      picks.reserveCapacity(layout.outer * positions.count * layout.inner)
      for outer in 0..<layout.outer {
        for index in positions {
          let start = (outer * layout.size + index) * layout.inner
          picks.append(contentsOf: start..<(start + layout.inner))
        }
      }
      return [gathered(x, picks, shape: context.results[0].shape)]
    },
    // ∂/∂x: each result slice's gradient added where its index picked it; indices have none
    gradient: { builder, inputs throws(ShapeError) in
      let (x, indices) = (inputs.operands[0], inputs.operands[1])
      guard builder.wants(x) else { return [nil, nil] }
      let xType = builder.type(of: x)
      var axis = inputs.attributes["axis"]?.intValue ?? 0
      if axis < 0 { axis += xType.rank }
      guard let size = xType.shape[axis].staticValue else {
        throw ShapeError(
          "gather: the gradient needs a static size on the gathered axis, got \(xType)")
      }
      var attributes: [String: Attribute] = ["axis": .int(axis), "size": .int(size)]
      attributes["input"] = inputs.attributes["input"]
      return [try builder.op(Ops.scatterAdd, [inputs.resultGradient, indices], attributes), nil]
    })

  static let scatterAddDefinition = OpDefinition(
    "scatter_add",
    summary:
      "The gradient of gather: zeros with `size` along `axis`, except that each slice of the values is added where its index names (indices repeated add up, in position order; negative ones count from the end).",
    semantics:
      "y = zeros([A…, size, B…]); for each a…, i…, b…: y[a…, wrap(indices[i…]), b…] += values[a…, i…, b…]; values [A…, I…, B…]",
    operands: [OperandSpec("values"), OperandSpec("indices")],
    attributes: [
      AttributeSpec("axis", .int, default: .int(0), "the axis indexed (of the result)"),
      AttributeSpec("size", .int, required: true, "the result's size along the axis"),
      AttributeSpec(
        "input", .string, "the name of the value the indices come from, for the out-of-range error"),
    ],
    fusion: .opaque,
    c: .kernel(.scatterAdd),
    shape: ShapeRule("values.shape[..<axis] + [size] + values.shape[axis+indices.rank...]") {
      context throws(ShapeError) in
      let (values, indices) = (context.operands[0], context.operands[1])
      try checkIds(context, indices)
      try context.requireFloat(values, "values operand")
      guard let size = context.int("size"), size >= 1, size <= 1 << 40 else {
        throw ShapeError(
          "scatter_add: size must be between 1 and 2^40, got \(context.attributes["size"]?.description ?? "nothing")"
        )
      }
      let resultRank = values.rank - indices.rank + 1
      guard resultRank >= 1 else {
        throw ShapeError(
          "scatter_add: values \(values) have fewer axes than the indices \(indices.shapeDescription)"
        )
      }
      let axis = try context.axis(context.int("axis") ?? 0, rank: resultRank, operand: "the result")
      let middle = Array(values.shape[axis..<(axis + indices.rank)])
      guard middle == indices.shape else {
        throw ShapeError(
          "scatter_add: values \(values) do not have the indices' shape \(indices.shapeDescription) at axis \(axis)"
        )
      }
      return [
        TensorType(
          values.dtype,
          Array(values.shape[..<axis]) + [Dim(size)]
            + Array(values.shape[(axis + indices.rank)...]))
      ]
    },
    interpret: { context in
      let shapeContext = try context.checked("scatter_add")
      let (values, indices) = (context.operands[0], context.operands[1])
      let resultShape = context.results[0].shape
      let axis = try shapeContext.axis(
        shapeContext.int("axis") ?? 0, rank: resultShape.count)
      let layout = AxisLayout(resultShape, axis: axis)
      let positions = try wrappedIndices(
        integerValues(indices), shape: indices.shape, size: layout.size, op: "scatter_add",
        input: context.attributes["input"]?.stringValue)
      let source = values.doubles()
      var output = [Double](repeating: 0, count: resultShape.reduce(1, *))
      var position = 0
      for outer in 0..<layout.outer {
        for index in positions {
          let start = (outer * layout.size + index) * layout.inner
          for k in 0..<layout.inner { output[start + k] += source[position + k] }
          position += layout.inner
        }
      }
      return [context.result(0, output)]
    },
    // linear in the values: ∂/∂values = gather(g, indices); indices have none
    gradient: { builder, inputs throws(ShapeError) in
      var attributes: [String: Attribute] = ["axis": inputs.attributes["axis"] ?? .int(0)]
      attributes["input"] = inputs.attributes["input"]
      return [
        try builder.op(Ops.gather, [inputs.resultGradient, inputs.operands[1]], attributes), nil,
      ]
    })

  /// The indices as positions along an axis of `size`, negative ones counted from the end, or the
  /// error for the first one outside `-size..<size`.
  static func wrappedIndices(
    _ indices: [Int64], shape: [Int], size: Int, op: String, input: String?
  ) throws(InterpretError) -> [Int] {
    var result: [Int] = []
    result.reserveCapacity(indices.count)
    for (position, index) in indices.enumerated() {
      guard index >= -Int64(size), index < Int64(size) else {
        throw InterpretError(
          "\(op): index \(index) at position \(coordinate(of: position, in: shape)) of \(indicesDescription(input: input)) is outside -\(size)..<\(size)"
        )
      }
      result.append(Int(index < 0 ? index + Int64(size) : index))
    }
    return result
  }

  /// How the out-of-range error names the indices: `'ids'`, or `the indices` without a name. The C
  /// kernels print the same words.
  public static func indicesDescription(input: String?) -> String {
    guard let input, !input.isEmpty else { return "the indices" }
    return "'\(input)'"
  }

  // MARK: tile

  static let tileDefinition: OpDefinition = {
    var definition = OpDefinition(
      "tile",
      summary:
        "Repeats x along each axis (ONNX Tile, numpy's tile with one repeat count per axis). The C backend compiles it as a broadcast of x with a new axis before each.",
      semantics: "y[i…] = x[i_d mod n_d …]; y.shape[d] = repeats[d] · x.shape[d]",
      operands: [OperandSpec("x")],
      attributes: [
        AttributeSpec("repeats", .ints, required: true, "copies along each axis (1 or more)")
      ],
      fusion: .opaque,
      c: .decomposed,
      shape: ShapeRule("[repeats[d] · x.shape[d]], dtype(x)") { context throws(ShapeError) in
        let x = context.operands[0]
        let repeats = context.ints("repeats") ?? []
        guard repeats.count == x.rank else {
          throw ShapeError(
            "tile: repeats \(repeats) must give one count per axis of x \(x) (\(x.rank))")
        }
        guard repeats.allSatisfy({ $0 >= 1 && $0 <= 1 << 40 }) else {
          throw ShapeError("tile: repeats must be between 1 and 2^40, got \(repeats)")
        }
        var shape: [Dim] = []
        for (dim, count) in zip(x.shape, repeats) {
          guard let product = checkedProduct([dim, Dim(count)]),
            product.factor <= TensorType.maximumStaticElements
          else { throw ShapeError("tile: \(x) repeated \(repeats) is too large") }
          shape.append(product)
        }
        guard checkedProduct(shape).map({ $0.factor <= TensorType.maximumStaticElements }) == true
        else { throw ShapeError("tile: \(x) repeated \(repeats) is too large") }
        return [TensorType(x.dtype, shape)]
      },
      interpret: { context in
        _ = try context.checked("tile")
        let x = context.operands[0]
        let resultShape = context.results[0].shape
        let strides = rowMajorStrides(x.shape)
        var picks: [Int] = []
        picks.reserveCapacity(resultShape.reduce(1, *))
        forEachCoordinate(resultShape) { coordinate in
          var index = 0
          for axis in coordinate.indices {
            index += (coordinate[axis] % x.shape[axis]) * strides[axis]
          }
          picks.append(index)
        }
        return [gathered(x, picks, shape: resultShape)]
      },
      // ∂/∂x: the sum of the tiles: g seen as [r0, n0, r1, n1, …], summed over the r axes
      gradient: { builder, inputs throws(ShapeError) in
        let x = inputs.operands[0]
        let xType = builder.type(of: x)
        let repeats = inputs.attributes["repeats"]?.intsValue ?? []
        let interleaved = zip(repeats, xType.shape).flatMap { [Dim($0), $1] }
        let split = try builder.op(
          Ops.reshape, [inputs.resultGradient], ["shape": .dims(interleaved)])
        let summed = try builder.op(
          Ops.sum, [split],
          ["axes": .ints(repeats.indices.map { 2 * $0 }), "keepdims": .bool(false)])
        return [summed]
      })
    // x seen as [1, n0, 1, n1, …], broadcast to [r0, n0, r1, n1, …], seen as [r0·n0, r1·n1, …]
    definition.decomposition = { builder, node throws(ShapeError) in
      let x = node.operands[0]
      let xType = builder.type(of: x)
      let repeats = node.attributes["repeats"]?.intsValue ?? []
      let spaced = xType.shape.flatMap { [Dim(1), $0] }
      let interleaved = zip(repeats, xType.shape).flatMap { [Dim($0), $1] }
      let expanded = try builder.op(Ops.reshape, [x], ["shape": .dims(spaced)])
      let copies = try builder.op(Ops.broadcastTo, [expanded], ["shape": .dims(interleaved)])
      return [
        try builder.op(Ops.reshape, [copies], ["shape": .dims(builder.type(of: node.result).shape)])
      ]
    }
    return definition
  }()

  // MARK: pad

  static let padModes = ["constant", "reflect", "edge"]

  static let padAttributes = [
    AttributeSpec(
      "pads", .ints, required: true,
      "the begins of every axis, then the ends (ONNX's order); negative values crop"),
    AttributeSpec(
      "mode", .string, default: .string("constant"),
      "\"constant\" (value), \"reflect\" (mirrored without the edge) or \"edge\" (the edge repeated)"
    ),
  ]

  static let padDefinition = OpDefinition(
    "pad",
    summary:
      "Pads x on each side of each axis (ONNX Pad): with `value` (constant), the mirror image without the edge element (reflect, numpy's 'reflect', repeated for pads longer than the axis) or the edge element (edge). Negative pads crop.",
    semantics:
      "y[o…] = x[s…] with s_d = o_d - pads[d]; outside 0..<n_d: constant gives value, edge clamps s_d, reflect mirrors it (period 2(n_d - 1)); y.shape[d] = n_d + pads[d] + pads[rank + d]",
    operands: [OperandSpec("x")],
    attributes: padAttributes + [
      AttributeSpec("value", .float, default: .float(0), "the fill of constant padding")
    ],
    fusion: .opaque,
    c: .kernel(.pad),
    shape: ShapeRule("[n_d + pads[d] + pads[rank + d]], dtype(x)") { context throws(ShapeError) in
      let x = context.operands[0]
      return [TensorType(x.dtype, try paddedShape(context, x.shape, sign: 1))]
    },
    interpret: { context in
      let shapeContext = try context.checked("pad")
      let x = context.operands[0]
      let pads = shapeContext.ints("pads") ?? []
      let mode = shapeContext.attributes["mode"]?.stringValue ?? "constant"
      let resultShape = context.results[0].shape
      let strides = rowMajorStrides(x.shape)
      let value = context.double("value") ?? 0
      // Padding positions read from one extra element holding the fill, exactly in x's dtype.
      let fill = Tensor(dtype: x.dtype, shape: [1], doubles: [value])
      var picks: [(source: Int, index: Int)] = []
      picks.reserveCapacity(resultShape.reduce(1, *))
      forEachCoordinate(resultShape) { coordinate in
        if let index = padSource(
          coordinate, pads: pads, mode: mode, shape: x.shape, strides: strides)
        {
          picks.append((0, index))
        } else {
          picks.append((1, 0))
        }
      }
      return [gathered([x, fill], picks, dtype: x.dtype, shape: resultShape)]
    },
    // ∂/∂x = pad_backward(g): each result element's gradient added to the element it copied
    gradient: { builder, inputs throws(ShapeError) in
      [
        try builder.op(
          Ops.padBackward, [inputs.resultGradient],
          ["pads": inputs.attributes["pads"]!, "mode": inputs.attributes["mode"]!])
      ]
    })

  static let padBackwardDefinition = OpDefinition(
    "pad_backward",
    summary:
      "The gradient of pad: the unpadded shape, each element the sum of the gradient elements pad copied from it (none for constant fill positions).",
    semantics:
      "y = zeros(n…); for each o…: y[s…] += g[o…] where pad read x[s…] for y[o…]; n_d = g.shape[d] - pads[d] - pads[rank + d]",
    operands: [OperandSpec("g")],
    attributes: padAttributes,
    fusion: .opaque,
    c: .kernel(.padBackward),
    shape: ShapeRule("[g.shape[d] - pads[d] - pads[rank + d]], dtype(g)") {
      context throws(ShapeError) in
      let g = context.operands[0]
      try context.requireFloat(g)
      return [TensorType(g.dtype, try paddedShape(context, g.shape, sign: -1))]
    },
    interpret: { context in
      let shapeContext = try context.checked("pad_backward")
      let g = context.operands[0]
      let pads = shapeContext.ints("pads") ?? []
      let mode = shapeContext.attributes["mode"]?.stringValue ?? "constant"
      let resultShape = context.results[0].shape
      let strides = rowMajorStrides(resultShape)
      let source = g.doubles()
      var output = [Double](repeating: 0, count: resultShape.reduce(1, *))
      var position = 0
      forEachCoordinate(g.shape) { coordinate in
        if let index = padSource(
          coordinate, pads: pads, mode: mode, shape: resultShape, strides: strides)
        {
          output[index] += source[position]
        }
        position += 1
      }
      return [context.result(0, output)]
    },
    // linear: the adjoint of the adjoint is pad itself, with a zero fill
    gradient: { builder, inputs throws(ShapeError) in
      [
        try builder.op(
          Ops.pad, [inputs.resultGradient],
          ["pads": inputs.attributes["pads"]!, "mode": inputs.attributes["mode"]!])
      ]
    })

  /// The shape after adding `sign · (begin + end)` pads to each axis; checks the pads and the mode.
  static func paddedShape(_ context: ShapeContext, _ shape: [Dim], sign: Int) throws(ShapeError)
    -> [Dim]
  {
    let pads = context.ints("pads") ?? []
    let mode = context.attributes["mode"]?.stringValue ?? "constant"
    guard padModes.contains(mode) else {
      throw ShapeError(
        "\(context.op): mode must be \"constant\", \"reflect\" or \"edge\", got \(quoteString(mode))"
      )
    }
    let rank = shape.count
    guard pads.count == 2 * rank else {
      throw ShapeError(
        "\(context.op): pads \(pads) must give \(2 * rank) values for rank \(rank): every axis's begin, then every end"
      )
    }
    guard pads.allSatisfy({ Swift.abs($0) <= 1 << 40 }) else {
      throw ShapeError("\(context.op): pads must be within ±2^40, got \(pads)")
    }
    var result: [Dim] = []
    for axis in 0..<rank {
      let change = sign * (pads[axis] + pads[rank + axis])
      guard let size = shape[axis].staticValue else {
        guard pads[axis] == 0, pads[rank + axis] == 0 else {
          throw ShapeError(
            "\(context.op): axis \(axis) has the symbolic size \(shape[axis]); it cannot be padded or cropped"
          )
        }
        result.append(shape[axis])
        continue
      }
      guard size + change >= 1 else {
        throw ShapeError(
          "\(context.op): pads \(pads) leave axis \(axis) of size \(size) with \(size + change) elements"
        )
      }
      result.append(Dim(size + change))
    }
    let unpadded = sign > 0 ? shape : result
    if mode != "constant" {
      // Cropping alone needs no element outside x; padding reflect or edge needs one to copy.
      for axis in 0..<rank where pads[axis] > 0 || pads[rank + axis] > 0 {
        if unpadded[axis] == Dim(0) {
          throw ShapeError("\(context.op): \(mode) padding needs a non-empty axis \(axis)")
        }
      }
    }
    return result
  }

  /// The flat index of the element of x (of `shape`, row-major `strides`) that pad copies to the
  /// result position `coordinate`, or nil for a constant fill.
  static func padSource(
    _ coordinate: [Int], pads: [Int], mode: String, shape: [Int], strides: [Int]
  ) -> Int? {
    var index = 0
    for axis in coordinate.indices {
      let size = shape[axis]
      var source = coordinate[axis] - pads[axis]
      if source < 0 || source >= size {
        switch mode {
        case "edge": source = source < 0 ? 0 : size - 1
        case "reflect":
          if size == 1 {
            source = 0
          } else {
            let period = 2 * (size - 1)
            source %= period
            if source < 0 { source += period }
            if source >= size { source = period - source }
          }
        default: return nil
        }
      }
      index += source * strides[axis]
    }
    return index
  }
}

/// A shape seen as [outer, size, inner] around one axis.
struct AxisLayout {
  var outer: Int
  var size: Int
  var inner: Int

  init(_ shape: [Int], axis: Int) {
    outer = shape[..<axis].reduce(1, *)
    size = shape[axis]
    inner = shape[(axis + 1)...].reduce(1, *)
  }
}
