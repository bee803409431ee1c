import LaminaIR
import LaminaSupport

/// Gives the inference entry points (`forward`, `evaluate`) their own copy of the forward graph, in
/// which every mode-dependent op that declares an inference form (`OpDefinition.inferenceForm`)
/// takes it, and records which copied values stand for the outputs and losses
/// (`Graph.inferenceSpecializations`).
///
/// One graph serves every entry point, and a mode-dependent node is one node for both modes: batch
/// norm's statistics read the convolution's result x even though at inference they are the running
/// statistics, so the normalize arithmetic waits for a kernel over x and cannot run in the
/// convolution's epilogue. In the copy the statistics are `batch_norm_running_statistics` of the
/// state alone; fusion then folds the normalize into the copy of the convolution (or matmul) as an
/// epilogue with per-channel operands. Training entry points keep running the original nodes.
///
/// The copy holds every forward node that depends on an input or on a node with an inference form
/// (producers included, so that fusion groups each mode's nodes apart); nodes of parameters and
/// state alone stay shared. It runs on the backend's copy of the graph only: the interpreter
/// computes the original graph with the mode in its context, which gives the same values.
///
///     %s = batch_norm_statistics(%x, %rm, %rv)    →   %s           (training entry points)
///                                                     %s.inference = batch_norm_running_statistics(%rm, %rv)
public struct ModeSpecialization: GraphPass {
  public static let name = "mode-specialize"
  public static let summary =
    "Gives inference entry points a copy of the forward graph with mode-dependent ops in their inference form (batch norm from its running statistics), so fusion folds them into their producers."

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    let exposed = (graph.outputs + graph.losses).map(\.value)
    let forward = Set(graph.nodesNeeded(for: exposed))
    guard forward.contains(where: { graph.nodes[$0].definition?.inferenceForm != nil }) else {
      return
    }
    let inputs = Set(graph.inputs.map(\.value))
    var copies: [ValueID: ValueID] = [:]
    var rebuilt: [Node] = []
    var working = graph
    for (index, node) in graph.nodes.enumerated() {
      rebuilt.append(node)
      guard forward.contains(index) else { continue }
      let form = node.definition?.inferenceForm
      guard
        form != nil
          || node.operands.contains(where: { inputs.contains($0) || copies[$0] != nil })
      else { continue }
      let operands = node.operands.map { copies[$0] ?? $0 }
      switch form {
      case .operand(let position)?:
        guard node.results.count == 1, operands.indices.contains(position) else {
          throw Diagnostic.error(
            "\(node.op): its inference form names operand \(position), which it does not have",
            at: node.location)
        }
        copies[node.result] = operands[position]
      case .op(let op, let positions)?:
        guard node.results.count == 1, let definition = OpRegistry.definition(op),
          positions.allSatisfy(operands.indices.contains)
        else {
          throw Diagnostic.error(
            "\(node.op): its inference form \(op) is not an op of its operands", at: node.location)
        }
        let declared = Set(definition.attributes.map(\.name))
        let value = Self.copy(of: node.result, in: &working)
        rebuilt.append(
          Node(
            op: op, operands: positions.map { operands[$0] },
            attributes: node.attributes.filter { declared.contains($0.key) }, results: [value],
            location: node.location))
        copies[node.result] = value
      case nil:
        var copied = Self.copy(of: node, in: &working, renaming: copies)
        copied.operands = operands
        rebuilt.append(copied)
        for (result, copy) in zip(node.results, copied.results) { copies[result] = copy }
      }
    }
    working.nodes = rebuilt
    var specialized = Set<ValueID>()
    working.inferenceSpecializations = exposed.compactMap { value in
      guard let copy = copies[value], specialized.insert(value).inserted else { return nil }
      return InferenceSpecialization(value: value, inference: copy)
    }
    graph = working
  }

  /// A copy of `node` with fresh results and, for a node with a region (a loop), a fresh body:
  /// every value defined once in the graph, the body's arguments and results renamed with it.
  static func copy(of node: Node, in graph: inout Graph, renaming outer: [ValueID: ValueID]) -> Node
  {
    var renamed = outer
    func fresh(_ value: ValueID, in graph: inout Graph) -> ValueID {
      let copy = Self.copy(of: value, in: &graph)
      renamed[value] = copy
      return copy
    }
    var copied = node
    copied.operands = node.operands.map { renamed[$0] ?? $0 }
    copied.regionArguments = node.regionArguments.map { fresh($0, in: &graph) }
    copied.body = node.body.map { member in
      let inner = copy(of: member, in: &graph, renaming: renamed)
      for (result, copy) in zip(member.results, inner.results) { renamed[result] = copy }
      return inner
    }
    copied.regionResults = node.regionResults.map { renamed[$0] ?? $0 }
    copied.results = node.results.map { fresh($0, in: &graph) }
    return copied
  }

  /// A new value of `value`'s type for its inference copy: temporaries stay temporaries (`%7`),
  /// named values read as their copy (`%image.inference`).
  static func copy(of value: ValueID, in graph: inout Graph) -> ValueID {
    let info = graph[value]
    let name =
      info.name.allSatisfy(\.isNumber) ? graph.temporaryName() : info.name + ".inference"
    return graph.makeValue(name: name, type: info.type, location: info.location)
  }
}
