import LaminaIR
import LaminaSupport

/// Moves a chain of per-channel scales and shifts of fixed values after an inference convolution
/// or dense layer into its weights and bias: batch norm folded into the layer before it (as ONNX
/// Runtime's Conv+BatchNormalization and Gemm+BatchNormalization fusions and TVM's FoldScaleAxis
/// do).
///
/// After `mode-specialize`, an inference batch norm is `(y - mean) · (gamma / √(var + eps)) +
/// beta` of the convolution's result y, with operands of parameters and state alone; ONNX models
/// often follow it with one more `Mul` and `Add` by per-channel constants. Each of those ops is an
/// affine map of y (`AlgebraicProperties.affine`), so the chain is `s · y + t` per output channel,
/// and `s · conv(x, w, b) + t = conv(x, s · w, s · b + t)`. The new weights and bias are values of
/// parameters alone: the inference entry points compute them once per parameter version
/// (`EntryPoint.keptNodes`), and the convolution keeps its packed weights as it does for a
/// parameter (`ConvolutionSchedule.packsWeightsOnce`). What is left per element is the bias and
/// whatever follows the chain (a relu).
///
/// Applies to a `conv2d` (`.kernel(.convolution)`) no training entry point runs, whose weights
/// and bias are fixed (`Graph.isFixed`), followed by ops each used once, each with an affine
/// trait, the other operand fixed and one value per output channel (`[C, 1, 1]`, `[1, C, 1, 1]`
/// or a scalar), keeping the result's type. Training steps keep every op: there the weights
/// change each step, and their gradients need the convolution's own result.
///
/// A dense layer is a `matmul` (`.kernel(.matrixProduct)`) of any `x` by fixed 2-D weights,
/// whose features are the result's last axis: its chain's constants are `[C]` (or `[1, C]`, a
/// scalar), its own bias add is the chain's first link, and `s · (x·w) + t = x·(w · s) + t`
/// scales the weights' columns (their rows when the product reads them transposed). What is left
/// is one add of `t`, which the product's epilogue runs. A chain without a scale (the layer's
/// bias add, an LSTM's two biases) is left as it is.
///
///     %y = conv2d(%x, %w, %b)                  %s = ...  (fixed: kept between calls)
///     %n = sub(%y, %mean)              →       %w.1 = mul(%w, reshape(%s))
///     %z = mul(%n, %scale)                     %z = conv2d(%x, %w.1, %b.1)
public struct ScaleFolding: GraphPass {
  public static let name = "scale-fold"
  public static let summary =
    "Moves per-channel scales and shifts of fixed values after an inference convolution or dense layer into its weights and bias (batch norm folded into the layer before it)."

  public init() {}

  /// One link of a chain: the node, its affine step, and which operand is the chain's value.
  struct Link {
    var index: Int
    var step: AffineStep
    var valuePosition: Int
    var constant: ValueID

    /// Adds or subtracts its constant (`y + c`, `y - c`): no scale.
    var isShift: Bool { step == .add || (step == .subtract && valuePosition == 0) }
  }

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    let training = Set(
      EntryPoint.all(in: graph).filter { $0.mode == .training }.flatMap {
        $0.schedule(in: graph)
      })
    let fixed = graph.fixedValues()
    // Values read by more than one node or kept past the graph (outputs, updates) end a chain.
    var uses: [ValueID: Int] = [:]
    var user: [ValueID: Int] = [:]
    for (index, node) in graph.nodes.enumerated() {
      for operand in node.operands + node.body.flatMap(\.operands) {
        uses[operand, default: 0] += 1
        user[operand] = index
      }
    }
    let exposed = graph.exposedValues

    var working = graph
    var removed = Set<Int>()
    var inserted: [Int: [Node]] = [:]
    var replacements: [ValueID: ValueID] = [:]
    for (index, node) in graph.nodes.enumerated() {
      guard !training.contains(index), let layer = Self.layer(node, in: graph, fixed: fixed)
      else { continue }
      let type = graph.type(of: node.result)
      var chain: [Link] = []
      var value = node.result
      while uses[value] == 1, !exposed.contains(value), let next = user[value],
        !training.contains(next)
      {
        let link = graph.nodes[next]
        guard let step = link.definition?.algebra.affine, link.operands.count == 2,
          link.results.count == 1, graph.type(of: link.result) == type,
          link.operands[0] != link.operands[1], let position = link.operands.firstIndex(of: value)
        else { break }
        let constant = link.operands[1 - position]
        guard fixed.contains(constant),
          Self.isPerChannel(graph.type(of: constant), layer.constantShape, type),
          !(step == .divide && position == 1)
        else { break }
        chain.append(Link(index: next, step: step, valuePosition: position, constant: constant))
        value = link.result
      }
      guard let last = chain.last else { continue }
      // A dense layer keeps chains of shifts alone (its bias add, an LSTM's two biases): folding
      // them would only merge adds, and change their rounding.
      if case .dense = layer.kind, chain.allSatisfy(\.isShift) { continue }
      // The builder appends to an empty node list, which then holds exactly the new nodes.
      working.nodes = []
      var builder = GradientBuilder(graph: working, location: node.location)
      // The builder's graph alone holds the values from here: appending to them copies nothing
      // (a copy per convolution was most of the pass's time, 120 ms on ResNet-50).
      working = Graph(name: graph.name)
      let folded: ValueID
      do {
        folded = try Self.fold(
          node, layer: layer, chain: chain, builder: &builder)
      } catch {
        // A shape rule refused: leave this layer as it is. Values the builder made
        // before that stay unused.
        working = builder.graph
        continue
      }
      working = builder.graph
      guard working.type(of: folded) == type else { continue }
      removed.insert(index)
      removed.formUnion(chain.map(\.index))
      inserted[last.index] = working.nodes
      replacements[graph.nodes[last.index].result] = folded
    }
    guard !inserted.isEmpty else { return }
    var rebuilt: [Node] = []
    for (index, node) in graph.nodes.enumerated() {
      if let nodes = inserted[index] { rebuilt += nodes }
      if !removed.contains(index) { rebuilt.append(node) }
    }
    working.nodes = rebuilt
    working.replaceUses(replacements)
    graph = working
  }

  /// A layer whose result a chain may fold into: which kind, and its output channels.
  struct Layer {
    enum Kind {
      /// `conv2d(x, w, b)`: `[N, C, H, W]`, weights `[C, ...]`.
      case convolution
      /// `matmul(x, w)`: `[..., C]`, weights `[K, C]`, or `[C, K]` when `transposed`.
      case dense(transposed: Bool)
    }
    var kind: Kind
    var channels: Int

    /// The shape of a per-channel constant, leading ones dropped.
    var constantShape: [Int] {
      switch kind {
      case .convolution: [channels, 1, 1]
      case .dense: [channels]
      }
    }
  }

  /// The layer `node` is, when a chain after it can fold into its fixed weights (and bias).
  static func layer(_ node: Node, in graph: Graph, fixed: Set<ValueID>) -> Layer? {
    guard let definition = node.definition, node.results.count == 1,
      node.operands.count >= 2, fixed.contains(node.operands[1])
    else { return nil }
    let type = graph.type(of: node.result)
    let weightType = graph.type(of: node.operands[1])
    guard type.dtype.isFloatingPoint, weightType.dtype == type.dtype else { return nil }
    switch definition.c {
    case .kernel(.convolution):
      guard node.operands.count == 3, fixed.contains(node.operands[2]), type.rank == 4,
        let channels = type.shape[1].staticValue, weightType.rank == 4,
        weightType.shape[0].staticValue == channels
      else { return nil }
      return Layer(kind: .convolution, channels: channels)
    case .kernel(.matrixProduct):
      let flags = definition.operandTransposeAttributes
      let transposedA = flags.first.flatMap { $0 }.flatMap { node.attributes[$0]?.boolValue }
      let transposedB = flags.dropFirst().first.flatMap { $0 }.flatMap {
        node.attributes[$0]?.boolValue
      }
      guard node.operands.count == 2, !fixed.contains(node.operands[0]),
        transposedA != true, type.rank >= 2, weightType.rank == 2,
        let channels = type.shape[type.rank - 1].staticValue,
        weightType.shape[transposedB == true ? 0 : 1].staticValue == channels
      else { return nil }
      return Layer(kind: .dense(transposed: transposedB == true), channels: channels)
    default:
      return nil
    }
  }

  /// One value per output channel of the layer's result, or one value (`[C, 1, 1]`,
  /// `[1, C, 1, 1]` or `[1]` after a convolution, `[C]` or `[1, C]` after a dense layer, a
  /// scalar), with the result's dtype.
  static func isPerChannel(_ constant: TensorType, _ shape: [Int], _ result: TensorType) -> Bool {
    guard constant.dtype == result.dtype, constant.rank <= result.rank else { return false }
    var dims = constant.shape.map(\.staticValue)
    while dims.first == 1 { dims.removeFirst() }
    return dims.isEmpty || dims == shape
  }

  /// The layer with the chain's scale `s` in its weights and `s · b + t` as its bias (a dense
  /// layer: `t` added after the product).
  static func fold(
    _ layerNode: Node, layer: Layer, chain: [Link], builder: inout GradientBuilder
  ) throws(ShapeError) -> ValueID {
    let channels = layer.channels
    // Each constant as [C] (or a scalar), so scales and shifts combine per channel.
    func perChannel(_ constant: ValueID) throws(ShapeError) -> ValueID {
      let type = builder.type(of: constant)
      let count = type.shape.reduce(1) { $0 * ($1.staticValue ?? 0) }
      return try builder.op(
        Ops.reshape, [constant], ["shape": .dims(count == 1 ? [] : [Dim(channels)])])
    }
    var scale: ValueID? = nil  // nil: 1
    var shift: ValueID? = nil  // nil: 0
    for link in chain {
      let constant = try perChannel(link.constant)
      switch (link.step, link.valuePosition) {
      case (.add, _):
        if let current = shift {
          shift = try builder.add(current, constant)
        } else {
          shift = constant
        }
      case (.subtract, 0):
        if let current = shift {
          shift = try builder.sub(current, constant)
        } else {
          shift = try builder.neg(constant)
        }
      case (.subtract, _):
        // c - (s·y + t) = (-s)·y + (c - t)
        if let current = scale {
          scale = try builder.neg(current)
        } else {
          scale = builder.constant(-1, like: constant)
        }
        if let current = shift {
          shift = try builder.sub(constant, current)
        } else {
          shift = constant
        }
      case (.multiply, _):
        if let current = scale {
          scale = try builder.mul(current, constant)
        } else {
          scale = constant
        }
        if let current = shift { shift = try builder.mul(current, constant) }
      case (.divide, _):
        if let current = scale {
          scale = try builder.div(current, constant)
        } else {
          scale = try builder.div(builder.constant(1, like: constant), constant)
        }
        if let current = shift { shift = try builder.div(current, constant) }
      }
    }
    var weights = layerNode.operands[1]
    // The scale along the weights' output axis.
    func scaled(_ weights: ValueID, by scale: ValueID, shape: [Int]) throws(ShapeError) -> ValueID {
      let broadcast =
        builder.type(of: scale).rank == 0
        ? scale : try builder.op(Ops.reshape, [scale], ["shape": .dims(shape.map { Dim($0) })])
      return try builder.mul(weights, broadcast)
    }
    switch layer.kind {
    case .convolution:
      var bias = layerNode.operands[2]
      if let scale {
        weights = try scaled(weights, by: scale, shape: [channels, 1, 1, 1])
        bias = try builder.mul(bias, scale)
      }
      if let shift { bias = try builder.add(bias, shift) }
      return try builder.op(
        layerNode.op, [layerNode.operands[0], weights, bias], layerNode.attributes)
    case .dense(let transposed):
      if let scale {
        weights = try scaled(
          weights, by: scale, shape: transposed ? [channels, 1] : [1, channels])
      }
      let product = try builder.op(
        layerNode.op, [layerNode.operands[0], weights], layerNode.attributes)
      guard let shift else { return product }
      return try builder.add(product, shift)
    }
  }
}
