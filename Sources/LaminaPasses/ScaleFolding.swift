import LaminaIR
import LaminaSupport

/// Moves a chain of per-channel scales and shifts of fixed values after an inference convolution
/// into the convolution's weights and bias: batch norm folded into the convolution before it (as
/// ONNX Runtime's Conv+BatchNormalization fusion and TVM's FoldScaleAxis do).
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
///     %y = conv2d(%x, %w, %b)                  %s = ...  (fixed: kept between calls)
///     %n = sub(%y, %mean)              →       %w.1 = mul(%w, reshape(%s))
///     %z = mul(%n, %scale)                     %z = conv2d(%x, %w.1, %b.1)
public struct ScaleFolding: GraphPass {
  public static let name = "scale-fold"
  public static let summary =
    "Moves per-channel scales and shifts of fixed values after an inference convolution into its weights and bias (batch norm folded into the convolution)."

  public init() {}

  /// One link of a chain: the node, its affine step, and which operand is the chain's value.
  struct Link {
    var index: Int
    var step: AffineStep
    var valuePosition: Int
    var constant: ValueID
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
      guard case .kernel(.convolution)? = node.definition?.c, !training.contains(index),
        node.operands.count == 3, node.results.count == 1,
        fixed.contains(node.operands[1]), fixed.contains(node.operands[2])
      else { continue }
      let type = graph.type(of: node.result)
      let weightType = graph.type(of: node.operands[1])
      guard type.rank == 4, type.dtype.isFloatingPoint, let channels = type.shape[1].staticValue,
        weightType.rank == 4, weightType.shape[0].staticValue == channels
      else { continue }
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
        guard fixed.contains(constant), Self.isPerChannel(graph.type(of: constant), channels, type),
          !(step == .divide && position == 1)
        else { break }
        chain.append(Link(index: next, step: step, valuePosition: position, constant: constant))
        value = link.result
      }
      guard let last = chain.last else { continue }
      // The builder appends to an empty node list, which then holds exactly the new nodes.
      working.nodes = []
      var builder = GradientBuilder(graph: working, location: node.location)
      // The builder's graph alone holds the values from here: appending to them copies nothing
      // (a copy per convolution was most of the pass's time, 120 ms on ResNet-50).
      working = Graph(name: graph.name)
      let folded: ValueID
      do {
        folded = try Self.fold(
          node, chain: chain, channels: channels, builder: &builder)
      } catch {
        // A shape rule refused: leave this convolution as it is. Values the builder made
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

  /// One value per output channel of a `[N, C, H, W]` result, or one value: `[C, 1, 1]`,
  /// `[1, C, 1, 1]`, `[1]`, a scalar, with the result's dtype.
  static func isPerChannel(_ constant: TensorType, _ channels: Int, _ result: TensorType) -> Bool {
    guard constant.dtype == result.dtype, constant.rank <= 4 else { return false }
    var shape = constant.shape.map(\.staticValue)
    while shape.first == 1 { shape.removeFirst() }
    return shape.isEmpty || shape == [channels, 1, 1]
  }

  /// The convolution with the chain's scale `s` in its weights and `s · b + t` as its bias.
  static func fold(
    _ convolution: Node, chain: [Link], channels: Int, builder: inout GradientBuilder
  ) throws(ShapeError) -> ValueID {
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
    var weights = convolution.operands[1]
    var bias = convolution.operands[2]
    if let scale {
      let scaleType = builder.type(of: scale)
      let broadcast =
        scaleType.rank == 0
        ? scale
        : try builder.op(
          Ops.reshape, [scale], ["shape": .dims([Dim(channels), Dim(1), Dim(1), Dim(1)])])
      weights = try builder.mul(weights, broadcast)
      bias = try builder.mul(bias, scale)
    }
    if let shift { bias = try builder.add(bias, shift) }
    return try builder.op(
      convolution.op, [convolution.operands[0], weights, bias], convolution.attributes)
  }
}
