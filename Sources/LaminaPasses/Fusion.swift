import LaminaIR
import LaminaSupport

/// Groups nodes that one kernel can compute together into `fused` nodes.
///
/// Memory traffic, not arithmetic, bounds most of a network's non-matmul work, so every value that
/// stays inside a kernel (in registers or one row of L1) instead of making a round trip through
/// memory is a win. Three kinds of group, found greedily in graph order (the forward and the
/// backward graph alike):
/// - `elementwise`: a chain of elementwise ops over the same loop domain, broadcasting operands read
///   through their strides; the optimizer's per-parameter update is such a chain (`update`). A
///   strided window of a larger tensor (`OpDefinition.window`: a slice) that only the chain reads
///   is read in place by the loop instead of copied out first.
/// - `epilogue`: a producer with an epilogue (an op whose `EpilogueProducer` trait accepts the node:
///   a 2-D matmul) and the elementwise ops over its result (bias, activation, residual, the
///   activation's gradient mask), run on each finished block inside the producer's kernel.
/// - `reduction`: reductions over the last axis with their elementwise producers and consumers, one
///   row at a time (layer-norm style mean and variance, normalization by a row statistic).
///
/// A node joins the group of one of its operands' producers when the loop domains agree and joining
/// does not create a cycle between groups (some other operand reached from the group through a node
/// outside it). Values used outside their group become the fused node's results; the rest never get
/// a buffer.
///
///     %1 = matmul(%x, %w)          %h = fused(%x, %w, %b) {kind = "epilogue"} {
///     %2 = add(%1, %b)       →       %1 = matmul(%x, %w)
///     %h = relu(%2)                  %2 = add(%1, %b)
///                                    %h = relu(%2)
///                                  }
public struct Fusion: GraphPass {
  public static let name = "fusion"
  public static let summary =
    "Groups elementwise chains, matmul epilogues and row reductions into fused kernels."

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    // A loop's body is fused as a graph of its own, whose outputs are the body's results.
    for index in graph.nodes.indices where graph.nodes[index].hasRegion {
      graph.nodes[index] = fusingRegion(graph.nodes[index], in: graph)
    }
    var planner = FusionPlanner(graph: graph)
    planner.formGroups()
    graph.nodes = planner.fusedNodes()
  }

  /// `node` with its body (and nested bodies) fused; the body's arguments play the inputs.
  func fusingRegion(_ node: Node, in graph: Graph) -> Node {
    var node = node
    for member in node.body.indices where node.body[member].hasRegion {
      node.body[member] = fusingRegion(node.body[member], in: graph)
    }
    var body = graph
    body.nodes = node.body
    body.outputs = node.regionResults.enumerated().map { position, value in
      NamedValue(name: "yield.\(position)", value: value)
    }
    body.losses = []
    body.gradients = []
    body.assignments = []
    body.stateUpdates = []
    var planner = FusionPlanner(graph: body)
    planner.formGroups()
    node.body = planner.fusedNodes()
    return node
  }
}

struct FusionPlanner {
  let graph: Graph
  /// The node defining each value, for values nodes define.
  var producer: [ValueID: Int] = [:]
  /// The group of each node; every node starts alone.
  var groupOf: [Int]
  var groups: [Group] = []

  struct Group {
    var kind: FusedKind?
    var members: [Int]
    /// The loop domain: the shape every full member has.
    var domain: [Dim]
  }

  /// The nodes reading each value.
  var consumers: [ValueID: [Int]] = [:]
  /// Values the model exposes or a training step writes back: they always get a buffer.
  let exposed: Set<ValueID>
  /// Nodes the outputs and losses need: what inference and evaluation run.
  let forwardNodes: Set<Int>
  /// Nodes the outputs need: what `lamina_forward` runs, with only the inputs they need.
  let outputNodes: Set<Int>

  init(graph: Graph) {
    self.graph = graph
    exposed = Set(
      graph.outputs.map(\.value) + graph.losses.map(\.value) + graph.assignments.map(\.value)
    )
    .union(graph.stateUpdates.flatMap { [$0.value] + ($0.trigger.map { [$0] } ?? []) })
    .union(graph.inferenceSpecializations.map(\.inference))
    // Outputs and losses as either mode computes them (the inference copy, if any, and the values).
    let outputs = graph.outputs.map(\.value)
    let losses = graph.losses.map(\.value)
    let outputValues = outputs + outputs.map(graph.inferenceValue)
    forwardNodes = Set(
      graph.nodesNeeded(for: outputValues + losses + losses.map(graph.inferenceValue)))
    outputNodes = Set(graph.nodesNeeded(for: outputValues))
    for (index, node) in graph.nodes.enumerated() {
      for result in node.results { producer[result] = index }
      for operand in Set(node.operands) { consumers[operand, default: []].append(index) }
    }
    groupOf = Array(graph.nodes.indices)
    groups = graph.nodes.map { node in
      Group(
        kind: nil, members: [], domain: node.results.first.map { graph.type(of: $0).shape } ?? [])
    }
    for index in graph.nodes.indices { groups[index].members = [index] }
  }

  // MARK: Classifying nodes

  func isElementwise(_ node: Node) -> Bool {
    guard node.results.count == 1, let definition = node.definition, definition.effects.isPure,
      definition.fusion == .elementwise || definition.fusion == .broadcast
    else { return false }
    if case .expression = definition.c { return true }
    return false
  }

  /// A producer whose kernel runs an epilogue on each block of its result (a 2-D matmul).
  func isEpilogueProducer(_ node: Node) -> Bool {
    guard node.results.count == 1, let producer = node.definition?.epilogue else { return false }
    return producer.accepts(node.operands.map { graph.type(of: $0) }, graph.type(of: node.result))
  }

  /// A reduction (`sum`, `mean`, `max`) over exactly the last axis of a floating-point tensor.
  func isRowReduction(_ node: Node) -> Bool {
    guard node.definition?.reduction != nil, node.operands.count == 1 else { return false }
    let operand = graph.type(of: node.operands[0])
    guard operand.dtype.isFloatingPoint, operand.rank >= 1,
      let axes = node.attributes["axes"]?.intsValue, axes.count == 1
    else { return false }
    let axis = axes[0] < 0 ? axes[0] + operand.rank : axes[0]
    return axis == operand.rank - 1
  }

  /// A summing reduction (`sum`, `mean`) over every axis but the last of a floating-point tensor of
  /// rank 2 or more: the gradient of a broadcast bias or scale. Each task sums its share of the
  /// rows, and the shares add up: only an additive combine splits that way.
  func isColumnReduction(_ node: Node) -> Bool {
    guard node.definition?.reduction?.combine == .add, node.operands.count == 1 else {
      return false
    }
    let operand = graph.type(of: node.operands[0])
    guard operand.dtype.isFloatingPoint, operand.rank >= 2,
      let axes = node.attributes["axes"]?.intsValue
    else { return false }
    let normalized = Set(axes.map { $0 < 0 ? $0 + operand.rank : $0 })
    return normalized == Set(0..<(operand.rank - 1))
  }

  /// 0: the outputs need the node; 1: only the losses; 2: only a training step (the backward graph).
  func tier(_ index: Int) -> Int {
    outputNodes.contains(index) ? 0 : forwardNodes.contains(index) ? 1 : 2
  }

  /// A node never joins a group that a cheaper entry point runs: `sign(%h)` for ReLU's gradient
  /// would add a store to inference, and `sub(%prediction, %label)` for a loss would make
  /// `lamina_forward` read the label (its signature would then demand it).
  func mayJoin(_ index: Int, _ group: Int) -> Bool {
    groups[group].members.allSatisfy { tier($0) >= tier(index) }
  }

  // MARK: Forming groups

  mutating func formGroups() {
    for (index, node) in graph.nodes.enumerated() {
      if isEpilogueProducer(node) {
        groups[index].kind = .epilogue
        continue
      }
      if isColumnReduction(node), let definer = producer[node.operands[0]] {
        // A gradient's sum over broadcast (leading) axes accumulates inside the loop that computes
        // its operand, one partial row of sums per thread.
        let target = groupOf[definer]
        let domain = graph.type(of: node.operands[0]).shape
        if groups[target].kind == .elementwise, groups[target].domain == domain,
          canJoin(index, target), mayJoin(index, target),
          groups[target].members.allSatisfy({ member in
            graph.nodes[member].operands.allSatisfy { operand in
              RowAccess(graph.type(of: operand).shape, in: domain) != nil
            }
          })
        {
          join(index, target, kind: .elementwise)
          continue
        }
      }
      if isRowReduction(node) {
        let domain = graph.type(of: node.operands[0]).shape
        if let operandProducer = producer[node.operands[0]] {
          let target = groupOf[operandProducer]
          if groups[target].kind == .elementwise || groups[target].kind == .reduction,
            groups[target].domain == domain, mayJoin(index, target), canJoin(index, target),
            !groups[target].members.contains(where: { isColumnReduction(graph.nodes[$0]) }),
            groups[target].members.allSatisfy({ member in
              graph.nodes[member].operands.allSatisfy { operand in
                RowAccess(graph.type(of: operand).shape, in: domain) != nil
              }
            })
          {
            join(index, target, kind: .reduction)
            continue
          }
        }
        groups[index].kind = .reduction
        groups[index].domain = domain
        continue
      }
      if let target = pooledEpilogueTarget(index) {
        join(index, target, kind: .epilogue)
        continue
      }
      guard isElementwise(node) else { continue }
      // Try the groups of the operands' producers: a matmul's epilogue first (it saves a whole
      // pass over the product), then the most recent, among those `mayJoin` allows (`sign(%h)` is
      // pulled into its backward consumer below instead).
      let candidates = Set(node.operands.compactMap { producer[$0] }.map { groupOf[$0] })
        .filter { mayJoin(index, $0) }
        .sorted { left, right in
          let (leftEpilogue, rightEpilogue) = (
            groups[left].kind == .epilogue, groups[right].kind == .epilogue
          )
          return leftEpilogue != rightEpilogue ? leftEpilogue : left > right
        }
      var joined = false
      for target in candidates where fits(node, into: groups[target]) {
        if canJoin(index, target) {
          join(index, target, kind: groups[target].kind ?? .elementwise)
          joined = true
          // The other operands' elementwise groups over the same domain come along: one loop
          // instead of two (a loss gradient's chain and the activation gradient it feeds).
          for other in candidates where other != target {
            if groups[other].kind == .elementwise, groups[target].kind != .reduction,
              groups[other].domain == groups[target].domain,
              !groups[other].members.contains(where: { isColumnReduction(graph.nodes[$0]) }),
              groups[target].kind == .elementwise
                || groups[other].members.allSatisfy({ fits(graph.nodes[$0], into: groups[target]) }),
              // The producer reads its operands before any epilogue runs: a group computing one
              // of them (`tanh(%x)` in `matmul(%a, %w) + 2 * %a`, a square product) stays out.
              !feedsEpilogueProducer(other, of: target),
              // Only groups of one entry point's work merge (no backward work in inference).
              (groups[other].members + groups[target].members).allSatisfy({
                tier($0) == tier(index)
              }),
              canMerge(other, into: target)
            {
              for member in groups[other].members {
                join(member, target, kind: groups[target].kind!)
              }
            }
          }
          break
        }
      }
      if !joined {
        groups[index].kind = .elementwise
        groups[index].domain = graph.type(of: node.result).shape
      }
    }
    pullIntoConsumers()
    pullWindowsIntoConsumers()
  }

  /// The strided window a node reads of its operand (`OpDefinition.window`): a same-rank selection
  /// with static starts and steps.
  func window(_ node: Node) -> [WindowAxis]? {
    guard node.operands.count == 1, node.results.count == 1,
      let rule = node.definition?.window
    else { return nil }
    let operand = graph.type(of: node.operands[0])
    let result = graph.type(of: node.result)
    guard operand.dtype == result.dtype, operand.rank == result.rank,
      let axes = rule(node.attributes, operand.shape), axes.count == operand.rank
    else { return nil }
    return axes
  }

  /// A window of a tensor (a gate's columns of a recurrent cell's `[batch, 4·units]` product)
  /// whose every consumer sits in one elementwise loop over the window's shape moves into that
  /// loop, which reads the window's elements in place: no copy, no buffer.
  mutating func pullWindowsIntoConsumers() {
    for index in graph.nodes.indices.reversed() {
      let node = graph.nodes[index]
      guard groups[groupOf[index]].members == [index], window(node) != nil,
        !exposed.contains(node.result),
        let users = consumers[node.result], let first = users.first
      else { continue }
      let target = groupOf[first]
      guard target != index, groups[target].kind == .elementwise,
        users.allSatisfy({ groupOf[$0] == target }),
        groups[target].domain == graph.type(of: node.result).shape,
        !groups[target].members.contains(where: { isColumnReduction(graph.nodes[$0]) }),
        mayJoin(index, target)
      else { continue }
      join(index, target, kind: .elementwise)
    }
  }

  /// A windowed maximum (max pool) over the result of an epilogue group whose producer can pool
  /// (`EpilogueProducer.poolsWindowMaximum`): the group it may join, so that the producer writes
  /// only the pooled values and the epilogue runs on those (a quarter of the elements for 2x2).
  /// Legal when the pool reads the group's last value and nothing else reads any value of the
  /// group, and every member commutes with the maximum: non-decreasing (`relu`, `add`) in the
  /// group's values, its other operands constant over each window (scalars, per-channel biases).
  /// Windows without padding, dilation or ceil mode.
  func pooledEpilogueTarget(_ index: Int) -> Int? {
    let node = graph.nodes[index]
    guard node.definition?.windowReduction == .maximum, node.operands.count == 1,
      node.results.count == 1, let definer = producer[node.operands[0]]
    else { return nil }
    let target = groupOf[definer]
    let group = groups[target]
    guard group.kind == .epilogue, mayJoin(index, target),
      !group.members.contains(where: { graph.nodes[$0].definition?.windowReduction != nil }),
      let producerIndex = group.members.first(where: { isEpilogueProducer(graph.nodes[$0]) }),
      let producerTrait = graph.nodes[producerIndex].definition?.epilogue,
      producerTrait.poolsWindowMaximum(
        graph.nodes[producerIndex].operands.map { graph.type(of: $0) },
        graph.nodes[producerIndex].attributes)
    else { return nil }
    let input = graph.type(of: node.operands[0])
    guard input.rank == 4, input.shape == group.domain,
      let height = input.shape[2].staticValue, let width = input.shape[3].staticValue,
      let windows = try? PoolingWindows(
        op: node.op, attributes: node.attributes, inputHeight: height, inputWidth: width),
      [windows.height, windows.width].allSatisfy({ axis in
        axis.padBefore == 0 && axis.padAfter == 0 && axis.dilation == 1 && !axis.ceilMode
      })
    else { return nil }
    let members = Set(group.members)
    let values = Set(group.members.flatMap { graph.nodes[$0].results })
    for member in group.members {
      let memberNode = graph.nodes[member]
      for result in memberNode.results {
        // Only the pool reads the group's values: none of them gets a buffer.
        guard !exposed.contains(result) else { return nil }
        let readers = consumers[result] ?? []
        guard readers.allSatisfy({ members.contains($0) || $0 == index }) else { return nil }
        if readers.contains(index) && readers.count > 1 { return nil }
      }
      guard member != producerIndex else { continue }
      let nonDecreasing = memberNode.definition?.algebra.nonDecreasingOperands ?? []
      for (position, operand) in memberNode.operands.enumerated() {
        if values.contains(operand) {
          guard nonDecreasing.contains(position) else { return nil }
        } else {
          // Constant over a window: broadcast along the last two axes.
          guard graph.type(of: operand).shape.suffix(2).allSatisfy({ $0 == Dim(1) }) else {
            return nil
          }
        }
      }
    }
    return canJoin(index, target) ? target : nil
  }

  /// Whether a member of group `other` computes an operand of group `target`'s epilogue producer.
  func feedsEpilogueProducer(_ other: Int, of target: Int) -> Bool {
    guard groups[target].kind == .epilogue else { return false }
    let read = Set(
      groups[target].members.filter { isEpilogueProducer(graph.nodes[$0]) }
        .flatMap { graph.nodes[$0].operands })
    return groups[other].members.contains { member in
      graph.nodes[member].results.contains(where: read.contains)
    }
  }

  /// An elementwise node left alone whose every consumer sits in one group moves into that group:
  /// it reads only values that are in memory anyway, so computing it there saves its own buffer.
  /// No cycle can form: its operands come before it, and the group already waited for it.
  mutating func pullIntoConsumers() {
    for index in graph.nodes.indices.reversed() {
      let node = graph.nodes[index]
      guard groups[groupOf[index]].members == [index], isElementwise(node),
        !exposed.contains(node.result),
        let users = consumers[node.result], let first = users.first
      else { continue }
      let target = groupOf[first]
      guard target != index, users.allSatisfy({ groupOf[$0] == target }),
        fits(node, into: groups[target]),
        // The producer reads its operands from memory before any epilogue runs: a node feeding
        // the matmul itself (`relu(%x)` in `matmul(relu(%x), %w)` with a square product) stays out.
        groups[target].kind != .epilogue
          || !users.contains(where: { isEpilogueProducer(graph.nodes[$0]) })
      else { continue }
      join(index, target, kind: groups[target].kind!)
    }
  }

  /// Whether an elementwise node can be computed in `group`'s loop.
  func fits(_ node: Node, into group: Group) -> Bool {
    guard let kind = group.kind else { return false }
    let shape = graph.type(of: node.result).shape
    switch kind {
    case .elementwise, .update:
      // A column sum of the group is complete only when its loop ends: nothing in the loop reads it.
      let sums = Set(
        group.members.filter { isColumnReduction(graph.nodes[$0]) }.map { graph.nodes[$0].result })
      return shape == group.domain && !shape.isEmpty
        && !node.operands.contains(where: sums.contains)
    case .epilogue:
      // A group ending in a pool its producer writes takes nothing more (see
      // `pooledEpilogueTarget`).
      if group.members.contains(where: { graph.nodes[$0].definition?.windowReduction != nil }) {
        return false
      }
      // The producer stores its result in a result's buffer before the epilogue replaces it: every
      // member keeps the product's dtype (`cast(%x @ %w, dtype: f64)` alone has no f32 result).
      let product = group.members.first { isEpilogueProducer(graph.nodes[$0]) }.map {
        graph.type(of: graph.nodes[$0].result).dtype
      }
      return shape == group.domain && graph.type(of: node.result).dtype == product
        && node.operands.allSatisfy { RowAccess(graph.type(of: $0).shape, in: group.domain) != nil }
    case .reduction:
      let domain = group.domain
      if shape == domain {
        return node.operands.allSatisfy { operand in
          let operandShape = graph.type(of: operand).shape
          guard RowAccess(operandShape, in: domain) != nil else { return false }
          // A row statistic read per element must keep its axis (`[R, 1]`): numpy would broadcast
          // an `[R]` along the columns instead.
          if let definer = producer[operand], group.members.contains(definer) {
            return operandShape.count == domain.count
          }
          return true
        }
      }
      // A row statistic (`var + eps`, `sqrt`): shape of the domain with the last axis 1 or gone.
      let rowShapes = [Array(domain.dropLast()) + [Dim(1)], Array(domain.dropLast())]
      guard rowShapes.contains(shape) else { return false }
      return node.operands.allSatisfy { operand in
        let operandShape = graph.type(of: operand).shape
        return operandShape == shape || operandShape.allSatisfy { $0 == Dim(1) }
      }
    }
  }

  /// The groups producing the operands of `nodes`, other than the groups in `excluded`.
  func producerGroups(of nodes: [Int], excluding excluded: Set<Int>) -> [Int] {
    nodes.flatMap { graph.nodes[$0].operands }.compactMap { producer[$0] }.map { groupOf[$0] }
      .filter { !excluded.contains($0) }
  }

  /// Whether `goal` is reached from `start` going backwards through producers, group by group.
  func reaches(from start: [Int], to goal: Int) -> Bool {
    var visited = Set<Int>()
    var stack = start
    while let group = stack.popLast() {
      if group == goal { return true }
      guard visited.insert(group).inserted else { continue }
      stack += producerGroups(of: groups[group].members, excluding: [group])
    }
    return false
  }

  /// Joining is legal unless another operand of the node depends on the group through a node
  /// outside it (the fused kernel would need its own result before it runs).
  func canJoin(_ node: Int, _ target: Int) -> Bool {
    !reaches(from: producerGroups(of: [node], excluding: [target]), to: target)
  }

  /// Merging two groups is legal when neither reaches the other through a node outside both.
  func canMerge(_ source: Int, into target: Int) -> Bool {
    let both: Set = [source, target]
    return !reaches(from: producerGroups(of: groups[source].members, excluding: both), to: target)
      && !reaches(from: producerGroups(of: groups[target].members, excluding: both), to: source)
  }

  mutating func join(_ node: Int, _ target: Int, kind: FusedKind) {
    let old = groupOf[node]
    groups[old].members.removeAll { $0 == node }
    groupOf[node] = target
    groups[target].members.append(node)
    groups[target].kind = kind
  }

  // MARK: Building fused nodes

  /// The graph's node list with each group of two or more members replaced by one fused node,
  /// in an order where every value is defined before its uses.
  func fusedNodes() -> [Node] {
    var units: [(first: Int, node: Node, group: Int)] = []
    for (id, group) in groups.enumerated() where !group.members.isEmpty {
      let members = group.members.sorted()
      guard members.count > 1, let kind = group.kind else {
        units.append((members[0], graph.nodes[members[0]], id))
        continue
      }
      let memberSet = Set(members)
      var defined = Set<ValueID>()
      var operands: [ValueID] = []
      for member in members {
        for operand in graph.nodes[member].operands
        where !defined.contains(operand) && !operands.contains(operand) {
          operands.append(operand)
        }
        defined.formUnion(graph.nodes[member].results)
      }
      var usedOutside = exposed
      for (index, node) in graph.nodes.enumerated() where !memberSet.contains(index) {
        usedOutside.formUnion(node.operands)
      }
      var results = members.flatMap { graph.nodes[$0].results }.filter(usedOutside.contains)
      let isUpdate = results.contains { value in graph.assignments.contains { $0.value == value } }
      // A weight gradient's GEMM writes the product first into one result's buffer, which the
      // epilogue then replaces. When the results are optimizer updates, each can be written
      // straight over its parameter or state only if none of them is that buffer: the product gets
      // its own (a block in cache when the epilogue reads it) instead of a copy of a whole update
      // at the end of the step.
      if kind == .epilogue, isUpdate,
        let product = members.map({ graph.nodes[$0] }).first(where: isEpilogueProducer)?.result,
        !results.contains(product)
      {
        results.insert(product, at: 0)
      }
      let body = members.map { graph.nodes[$0] }
      let node = Node(
        op: Node.fusedOp, operands: operands,
        attributes: [
          Node.fusedKindAttribute: .string(
            (kind == .elementwise && isUpdate ? FusedKind.update : kind).rawValue)
        ],
        results: results, location: body.last!.location, body: body)
      units.append((members[0], node, id))
    }
    // Kahn's algorithm over the units, taking the earliest-starting ready unit first.
    var definedBy: [ValueID: Int] = [:]
    for (position, unit) in units.enumerated() {
      for member in unit.node.body.isEmpty ? [unit.node] : unit.node.body {
        for result in member.results { definedBy[result] = position }
      }
    }
    var pending = [Int](repeating: 0, count: units.count)
    var dependents = [[Int]](repeating: [], count: units.count)
    for (position, unit) in units.enumerated() {
      let sources = Set(unit.node.operands.compactMap { definedBy[$0] }).subtracting([position])
      pending[position] = sources.count
      for source in sources { dependents[source].append(position) }
    }
    var ready = units.indices.filter { pending[$0] == 0 }
    var ordered: [Node] = []
    while !ready.isEmpty {
      let next = ready.min { units[$0].first < units[$1].first }!
      ready.removeAll { $0 == next }
      ordered.append(units[next].node)
      for dependent in dependents[next] {
        pending[dependent] -= 1
        if pending[dependent] == 0 { ready.append(dependent) }
      }
    }
    precondition(ordered.count == units.count, "fusion formed a cycle between groups")
    return ordered
  }
}
