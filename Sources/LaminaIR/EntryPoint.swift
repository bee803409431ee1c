import LaminaSupport

/// One function of a compiled model: which values it must produce, and in which mode it runs.
///
/// The C backend emits one entry point each; the memory planner plans each one separately, so both
/// must agree on the list and on where every value lives. `forward` computes the outputs, `evaluate`
/// the outputs and losses (`forward_training` and `evaluate_training` the same in training mode,
/// for graphs with mode-dependent ops), and `train_N` (one per training step that has updates) its loss and the
/// new values of the parameters and state it updates.
public struct EntryPoint: Hashable, Sendable {
  /// `forward`, `evaluate`, `train_0`, …: the C function is `lamina_NAME`.
  public var name: String
  public var mode: ExecutionMode
  /// Values written to the caller's output buffers, in `outputs[]` order.
  public var outputs: [ValueID]
  /// Values written to the caller's loss buffers, in `losses[]` order.
  public var losses: [ValueID]
  /// The training step's updates; empty for inference entry points.
  public var updates: [Assignment]

  public init(
    name: String, mode: ExecutionMode, outputs: [ValueID], losses: [ValueID],
    updates: [Assignment] = []
  ) {
    self.name = name
    self.mode = mode
    self.outputs = outputs
    self.losses = losses
    self.updates = updates
  }

  /// Every value the entry point must produce.
  public var targets: [ValueID] { outputs + losses + updates.map(\.value) }

  /// The entry points of a graph, in the order the C backend emits them.
  public static func all(in graph: Graph) -> [EntryPoint] {
    let outputs = graph.outputs.map(\.value)
    let losses = graph.losses.map(\.value)
    // Inference computes the inference copy of the outputs and losses, where there is one.
    let (inferenceOutputs, inferenceLosses) = (
      outputs.map(graph.inferenceValue), losses.map(graph.inferenceValue)
    )
    var entries = [
      EntryPoint(name: "forward", mode: .inference, outputs: inferenceOutputs, losses: []),
      EntryPoint(
        name: "evaluate", mode: .inference, outputs: inferenceOutputs, losses: inferenceLosses),
    ]
    // `run --mode training`: outputs as a training step computes them (batch statistics), with
    // no update written back. Only a graph whose result depends on the mode needs its own.
    if hasModeDependentOps(graph) {
      entries += [
        EntryPoint(name: "forward_training", mode: .training, outputs: outputs, losses: []),
        EntryPoint(name: "evaluate_training", mode: .training, outputs: outputs, losses: losses),
      ]
    }
    for (index, step) in trainableSteps(in: graph).enumerated() {
      let loss = graph.losses.first { $0.name == step.lossName }!.value
      entries.append(
        EntryPoint(
          name: "train_\(index)", mode: .training, outputs: [], losses: [loss],
          updates: graph.assignments.filter { $0.step == step.name }))
    }
    return entries
  }

  /// Whether any node (or fused member) computes differently in a training step.
  public static func hasModeDependentOps(_ graph: Graph) -> Bool {
    graph.nodes.contains { node in
      ([node] + node.body).contains { OpRegistry.definition($0.op)?.dependsOnMode == true }
    }
  }

  /// Training steps whose updates the optimizer pass built (the others get no entry point).
  public static func trainableSteps(in graph: Graph) -> [TrainStep] {
    graph.trainSteps.filter { step in graph.assignments.contains { $0.step == step.name } }
  }

  /// The members of region nodes' bodies (recursively), each with the step of its region node.
  public static func regionMembers(of node: Node) -> [Node] {
    node.body.flatMap { member in [member] + (member.hasRegion ? regionMembers(of: member) : []) }
  }

  /// The nodes the entry point runs, in order: step `i` of its schedule is node `schedule[i]`.
  public func schedule(in graph: Graph) -> [Int] { graph.nodesNeeded(for: targets) }

  /// The nodes of `schedule` an inference entry point computes once and keeps between calls: pure
  /// kernels of parameters, state and constants alone (batch norm's scale from its running
  /// statistics, a weight's transpose), with static shapes, none of them exposed. They run again
  /// only when the parameters or state may have changed since the last call (the context's
  /// parameter version), as ONNX Runtime and TVM fold initializer-only subgraphs once, except that
  /// here the weights may still change. A training step keeps nothing: its weights change every step.
  public func keptNodes(in graph: Graph, schedule: [Int]) -> Set<Int> {
    guard mode == .inference else { return [] }
    var fixed = Set(graph.params.map(\.value)).union(graph.states.map(\.value))
    let exposed = Set(outputs + losses)
    var kept = Set<Int>()
    for nodeIndex in schedule {
      let node = graph.nodes[nodeIndex]
      guard node.isPureInEveryMode, node.operands.allSatisfy(fixed.contains),
        node.results.allSatisfy({
          !exposed.contains($0) && graph.type(of: $0).symbols.isEmpty
            && graph.type(of: $0).boundedStaticElementCount != nil
        })
      else { continue }
      fixed.formUnion(node.results)
      if case .alias? = OpRegistry.definition(node.op)?.c { continue }
      kept.insert(nodeIndex)
    }
    return kept
  }

  /// The results of `keptNodes` needed only until convolutions pack them: each is read by nothing
  /// but the weights of convolutions whose kernels keep their own packed copy per parameter
  /// version (`ConvolutionSchedule.packsWeightsOnce`), such as the weights `scale-fold` scales.
  /// Keeping them too would hold the weights twice more (ResNet-50: 95 MB beside the parameters and
  /// the packed copies), so the entry point computes them into memory of its own when the
  /// parameters moved, has the convolutions pack them there, and frees it. By value: the nodes
  /// (top-level, in `schedule`) whose kernels pack it.
  public func transientValues(in graph: Graph, schedule: [Int]) -> [ValueID: [Int]] {
    let kept = keptNodes(in: graph, schedule: schedule)
    guard !kept.isEmpty else { return [:] }
    let candidates = Set(kept.flatMap { graph.nodes[$0].results })
    var packers: [ValueID: [Int]] = [:]
    var refused = Set<ValueID>()
    for nodeIndex in schedule {
      let node = graph.nodes[nodeIndex]
      let used = Set(([node] + EntryPoint.regionMembers(of: node)).flatMap(\.operands))
        .intersection(candidates)
      guard !used.isEmpty else { continue }
      // The convolution that would pack it: the node itself, or the producer of a fused node.
      let convolution = node.op == Node.fusedOp ? node.epilogueProducer : node
      let readers = node.op == Node.fusedOp ? node.body : [node]
      for value in used {
        guard !kept.contains(nodeIndex), !node.hasRegion, let convolution,
          convolution.operands.count > 1, convolution.operands[1] == value,
          ConvolutionSchedule(convolution, in: graph)?.packsWeightsOnce == true,
          readers.flatMap(\.operands).filter({ $0 == value }).count == 1
        else {
          refused.insert(value)
          continue
        }
        packers[value, default: []].append(nodeIndex)
      }
    }
    for value in refused { packers[value] = nil }
    return packers
  }

  /// Where each value the entry point touches lives, before memory planning.
  ///
  /// Inputs, parameters and state live in their own storage; aliasing ops (`reshape`) share their
  /// operand's storage; an output or loss is computed straight into the caller's buffer; the
  /// results of kept nodes (`keptNodes`) live in a buffer the context keeps between calls;
  /// everything else needs arena space.
  public func storage(in graph: Graph, schedule: [Int]) -> [ValueID: StorageClass] {
    let kept = keptNodes(in: graph, schedule: schedule)
    var storage: [ValueID: StorageClass] = [:]
    for (index, input) in graph.inputs.enumerated() { storage[input.value] = .input(index) }
    for (index, param) in graph.params.enumerated() { storage[param.value] = .param(index) }
    for (index, state) in graph.states.enumerated() { storage[state.value] = .state(index) }
    // A loop body's arguments are views the loop sets each step; its members' results live in
    // the arena once for every step (aliases share their operand's storage).
    func classifyRegion(_ node: Node) {
      for argument in node.regionArguments { storage[argument] = .regionArgument }
      for member in node.body {
        if case .alias? = OpRegistry.definition(member.op)?.c {
          storage[member.result] = .alias(of: member.operands[0])
          continue
        }
        if member.hasRegion { classifyRegion(member) }
        for value in member.results { storage[value] = .arena }
      }
    }
    for nodeIndex in schedule {
      let node = graph.nodes[nodeIndex]
      if case .alias? = OpRegistry.definition(node.op)?.c {
        storage[node.result] = .alias(of: node.operands[0])
        continue
      }
      if node.hasRegion { classifyRegion(node) }
      for value in node.results {
        if kept.contains(nodeIndex) {
          storage[value] = .kept
        } else if let index = outputs.firstIndex(of: value) {
          storage[value] = .output(index)
        } else if let index = losses.firstIndex(of: value) {
          storage[value] = .loss(index)
        } else {
          storage[value] = .arena
        }
      }
    }
    return storage
  }
}

/// Where a value lives while an entry point runs.
public enum StorageClass: Hashable, Sendable {
  case input(Int)
  case param(Int)
  case state(Int)
  /// The caller's `outputs[i]`.
  case output(Int)
  /// The caller's `losses[i]`.
  case loss(Int)
  /// The same storage as another value, seen with another shape.
  case alias(of: ValueID)
  /// Space in the context's arena, placed by the memory plan (or one slot each without one).
  case arena
  /// Space in a buffer the context keeps between calls, for a value of parameters, state and
  /// constants alone (`EntryPoint.keptNodes`).
  case kept
  /// A loop body's argument: a view of the carried state, a sequence's step or an invariant,
  /// which the loop points at each step.
  case regionArgument
}
