import LaminaIR
import LaminaSupport

/// `conv2d`, `conv_transpose2d` and `conv2d_backward_weight`: calls into `lamina_conv.h`, which
/// computes them as im2col / col2im around the runtime's packed, multi-threaded GEMM. The kernel
/// states the convolution's sizes as a `lamina_conv2d_geometry` literal and makes one call.
///
/// `conv2d` and `conv_transpose2d` produce for an epilogue: they hand every finished block of their
/// NCHW result, seen as the matrix `[batch · channels · height, width]` (the fused kernel's row
/// view), to the fused group's epilogue, after adding their bias.
enum ConvolutionKernels {
  static func emit(_ context: KernelContext, into writer: inout CWriter) {
    emitCall(
      context.node, in: context.graph, operands: context.node.operands.indices.map { "in\($0)" },
      destination: "out", epilogue: "NULL", into: &writer)
  }

  /// The geometry of a convolution node, from its types and attributes.
  static func geometry(of node: Node, in graph: Graph) throws(ShapeError) -> ConvolutionGeometry {
    let operands = node.operands.map { graph.type(of: $0) }
    switch node.definition?.c {
    case .kernel(.convolutionTranspose)?:
      return try OpRegistry.convTranspose2dGeometry(
        operands: operands, attributes: node.attributes)
    case .kernel(.convolutionWeightGradient)?:
      return try OpRegistry.conv2dBackwardWeightGeometry(
        operands: operands, attributes: node.attributes)
    default:
      return try OpRegistry.conv2dGeometry(operands: operands, attributes: node.attributes)
    }
  }

  /// The schedule of a forward convolution's kernel: the node's own (whether its weights are
  /// fixed can decide it), else the geometry's. The kernel and the derive call of its weights
  /// (`deriveCall`) must agree on it.
  static func forwardSchedule(of node: Node, _ geometry: ConvolutionGeometry, in graph: Graph)
    -> ConvolutionSchedule
  {
    ConvolutionSchedule(node, in: graph) ?? ConvolutionSchedule(geometry)
  }

  /// The statement packing `weights` into derived slot `slot` as the kernel of `node` (a
  /// convolution, or a fused node it produces for) packs them, with the kernel's own geometry:
  /// for weights that exist only until they are packed (`EntryPoint.transientValues`).
  static func deriveCall(of node: Node, in graph: Graph, slot: Int, weights: String) -> String? {
    let producer = node.op == Node.fusedOp ? node.epilogueProducer : node
    guard let producer, let geometry = try? geometry(of: producer, in: graph) else { return nil }
    let pooling = node.op == Node.fusedOp ? KernelSchedule(node, in: graph)?.pooling : nil
    let suffix = geometry.dtype == .f32 ? "f32" : "f64"
    let algorithm = forwardSchedule(of: producer, geometry, in: graph).cConstant
    let literal = literal(geometry, algorithm: algorithm, pooling: pooling)
    return
      "status = lamina_conv2d_derive_\(suffix)(ctx, \(slot), &(const lamina_conv2d_geometry)\(literal), \(weights));"
  }

  /// `{batch, in_channels, ..., algorithm, pool...}`: a `lamina_conv2d_geometry` initializer;
  /// `algorithm` is a `LAMINA_CONV_ALGORITHM_*` constant (the forward convolution's schedule),
  /// `pooling` the max pool the forward kernel writes instead of its result.
  static func literal(
    _ g: ConvolutionGeometry, algorithm: String = "LAMINA_CONV_ALGORITHM_AUTO",
    pooling: KernelSchedule.Pooling? = nil
  ) -> String {
    var fields = [
      cDim(g.batch), String(g.inChannels), String(g.inHeight), String(g.inWidth),
      String(g.outChannels), String(g.outHeight), String(g.outWidth), String(g.kernel[0]),
      String(g.kernel[1]), String(g.stride[0]), String(g.stride[1]), String(g.padding[0]),
      String(g.padding[1]), String(g.dilation[0]), String(g.dilation[1]), String(g.groups),
      algorithm,
    ]
    if let pooling {
      fields += (pooling.kernel + pooling.stride).map(String.init)
    }
    return "{" + fields.joined(separator: ", ") + "}"
  }

  /// The statements computing `node` into `destination`, calling `epilogue` (a
  /// `const lamina_gemm_epilogue*` or `NULL`) on its finished blocks.
  static func emitCall(
    _ node: Node, in graph: Graph, operands: [String], destination: String, epilogue: String,
    pooling: KernelSchedule.Pooling? = nil, into writer: inout CWriter
  ) {
    let geometry: ConvolutionGeometry
    do {
      geometry = try Self.geometry(of: node, in: graph)
    } catch {
      // The verifier ran the same shape rule; a node it accepted always has a geometry.
      writer.line(
        "return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"%s\", \(CText.stringLiteral(error.message)));"
      )
      return
    }
    let suffix = geometry.dtype == .f32 ? "f32" : "f64"
    let (call, purpose): (String, String)
    var algorithm = "LAMINA_CONV_ALGORITHM_AUTO"
    switch node.definition?.c {
    case .kernel(.convolutionWeightGradient)?:
      call =
        "lamina_conv2d_backward_weight_\(suffix)(ctx->pool, &geometry, \(operands[0]), \(operands[1]), \(destination))"
      purpose = "dw = Σ_n dy @ im2col(x)^T"
    case .kernel(.convolutionTranspose)?:
      let biasCount = graph.type(of: node.operands[2]).elementCount.staticValue ?? 1
      call =
        "lamina_conv2d_backward_input_\(suffix)(ctx->pool, &geometry, \(operands[0]), \(operands[1]), \(operands[2]), \(biasCount), \(destination), \(epilogue))"
      purpose = "y = col2im(w^T @ x) + bias, per chunk of images and group"
    default:
      let biasCount = graph.type(of: node.operands[2]).elementCount.staticValue ?? 1
      let arguments =
        "&geometry, \(operands[0]), \(operands[1]), \(operands[2]), \(biasCount), \(destination), \(epilogue)"
      // Weights that are a parameter: packed once per parameter version, in the kernel's slot.
      call =
        DerivedData.keepsDerivedData(node, in: graph)
        ? "lamina_conv2d_forward_derived_\(suffix)(ctx, \(DerivedData.slotParameter), \(arguments))"
        : "lamina_conv2d_forward_\(suffix)(ctx->pool, \(arguments))"
      let schedule = forwardSchedule(of: node, geometry, in: graph)
      algorithm = schedule.cConstant
      switch schedule.algorithm {
      case .im2colGemm: purpose = "y = w @ im2col(x) + bias, per chunk of images and group"
      case .directWidth:
        purpose = "y = conv2d(x, w) + bias, direct, vectors along the output rows"
      case .directChannels:
        purpose = "y = conv2d(x, w) + bias, direct, vectors across the output channels"
      case .depthwise:
        purpose = "y = conv2d(x, w) + bias, depthwise, vectors along the output rows"
      case .winograd2, .winograd4:
        let m = schedule.algorithm.winogradTile ?? 4
        purpose =
          "y = conv2d(x, w) + bias, winograd(\(m)): F(\(m)x\(m), 3x3) tiles, \((m + 2) * (m + 2)) GEMMs over the channels"
      }
    }
    writer.line(
      "/* x [batch, \(geometry.inChannels), \(geometry.inHeight), \(geometry.inWidth)] -> y [batch, \(geometry.outChannels), \(geometry.outHeight), \(geometry.outWidth)] of the convolution; \(purpose) */"
    )
    if let pooling {
      let pooled = graph.type(of: pooling.result).shape.map(cDim).joined(separator: ", ")
      writer.line(
        "/* written as its max pool, windows \(pooling.kernel[0])x\(pooling.kernel[1]) at stride \(pooling.stride[0])x\(pooling.stride[1]): y [\(pooled)] */"
      )
    }
    writer.line(
      "const lamina_conv2d_geometry geometry = \(literal(geometry, algorithm: algorithm, pooling: pooling));"
    )
    // Memory, or (a kernel of weights that exist only until packed) a packed copy out of date.
    let memory = CText.stringLiteral(node.op + ": out of memory for the convolution's columns")
    let stale = CText.stringLiteral(
      node.op + ": its packed weights are out of date, and its weights were freed once packed")
    writer.line("const int conv_status = \(call);")
    writer.line(
      "if (conv_status != 0) return lamina_fail(ctx, conv_status, \"%s\", conv_status == LAMINA_ERROR_MEMORY ? \(memory) : \(stale));"
    )
  }
}

/// The convolution's NCHW result seen as rows (every axis but the last) and columns (the last), as
/// the fused kernel indexes an epilogue's operands.
extension ConvolutionKernels: EpilogueProducerEmitter {
  static func matrixShape(of producer: Node, in graph: Graph) -> (rows: Dim, columns: Dim) {
    let shape = graph.type(of: producer.result).shape
    return (Array(shape.dropLast()).product, shape.last ?? Dim(1))
  }

  static func emitProduce(
    _ producer: Node, in graph: Graph, operand: (ValueID) -> String, destination: String,
    epilogue: String, into body: inout CWriter
  ) {
    emitCall(
      producer, in: graph, operands: producer.operands.map(operand), destination: destination,
      epilogue: epilogue, into: &body)
  }
}

/// The forward convolution writes a max pool of its result (the windows' maxima only) and runs
/// the epilogue on the pooled blocks.
extension ConvolutionKernels: PooledEpilogueProducer {
  static func emitProducePooled(
    _ producer: Node, in graph: Graph, pooling: KernelSchedule.Pooling,
    operand: (ValueID) -> String, destination: String, epilogue: String,
    into body: inout CWriter
  ) {
    emitCall(
      producer, in: graph, operands: producer.operands.map(operand), destination: destination,
      epilogue: epilogue, pooling: pooling, into: &body)
  }
}
