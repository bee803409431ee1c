import LaminaIR
import LaminaSupport

/// What one call of a compiled entry point does, read from the graph the C backend compiles.
public struct ExecutionStatistics: Sendable, Equatable {
  /// Kernel functions the call runs (aliases such as reshape run none).
  public var kernels: Int
  /// Bytes of the values kernels write to memory other than the caller's outputs, at the given
  /// symbol values: what a plan without reuse would allocate.
  public var intermediateBytes: Int

  /// Statistics of computing `targets` in `graph` (after the backend passes), with `symbols` bound.
  public init(graph: Graph, targets: [ValueID], symbols: [String: Int]) {
    let exposed = Set(graph.outputs.map(\.value) + graph.losses.map(\.value))
    var kernels = 0
    var bytes = 0
    for index in graph.nodesNeeded(for: targets) {
      let node = graph.nodes[index]
      if case .alias? = OpRegistry.definition(node.op)?.c { continue }
      kernels += 1
      for result in node.results where !exposed.contains(result) {
        let type = graph.type(of: result)
        let elements = type.shape.map { $0.evaluate(symbols) ?? 0 }.reduce(1, *)
        bytes += elements * type.dtype.byteSize
      }
    }
    self.kernels = kernels
    self.intermediateBytes = bytes
  }

  /// One forward call (`lamina_forward`).
  public static func forward(_ graph: Graph, symbols: [String: Int]) -> ExecutionStatistics {
    ExecutionStatistics(graph: graph, targets: graph.outputs.map(\.value), symbols: symbols)
  }

  /// One training step of `step` (its loss and every update it applies).
  public static func trainStep(_ graph: Graph, step: String, symbols: [String: Int])
    -> ExecutionStatistics
  {
    let lossName = graph.trainSteps.first { $0.name == step }?.lossName
    let loss = graph.losses.filter { $0.name == lossName }.map(\.value)
    let updates = graph.assignments.filter { $0.step == step }.map(\.value)
    return ExecutionStatistics(graph: graph, targets: loss + updates, symbols: symbols)
  }
}
