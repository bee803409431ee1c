import LaminaIR
import LaminaSupport

/// Random inputs a model accepts, for benchmarks, checks and tests.
///
/// Floats are standard normal, except inputs named `positive…` (|N| + 0.1, for log and sqrt) and
/// `target…` (uniform in [0, 1), for binary cross-entropy); integer inputs that feed `cross_entropy`
/// as labels are valid class indices, and so are ids that pick rows of a table (`gather_rows`, the
/// embedding) and indices along a `gather`'s axis, and sequence lengths (`sequence_mask`, the recurrent layers' `lengths:`) are in
/// 0...time when the time axis is static; other integers are in 0..<5.
public enum SampleInputs {
  /// Throws, naming the input, when one of the inputs `make` would draw cannot be allocated (its
  /// random values are drawn as f64 first): call it before `make` with shapes from a user's model.
  public static func checkAllocations(for graph: Graph, symbols: [String: Int]) throws {
    for input in graph.inputs {
      guard let shape = graph.type(of: input.value).concreteShape(symbols) else { continue }
      try Tensor.checkAllocation(
        .f64, shape, of: "the random values of input '\(graph[input.value].name)'")
    }
  }

  /// Random inputs for `graph` with its symbolic dimensions bound by `symbols` (inputs with unbound
  /// dimensions are left out). See `checkAllocations(for:symbols:)` for shapes from a user's model.
  public static func make(for graph: Graph, symbols: [String: Int], seed: UInt64) -> [String:
    Tensor]
  {
    var generator = SeededGenerator(seed: seed)
    var result: [String: Tensor] = [:]
    for input in graph.inputs {
      let info = graph[input.value]
      let type = graph.type(of: input.value)
      guard let shape = type.concreteShape(symbols) else { continue }
      let count = shape.reduce(1, *)
      let values: [Double]
      if type.dtype.isInteger {
        let classes = labelClasses(of: input.value, in: graph) ?? 5
        values = (0..<count).map { _ in Double(generator.next() % UInt64(classes)) }
      } else if info.name.hasPrefix("positive") {
        values = (0..<count).map { _ in abs(generator.nextNormal()) + 0.1 }
      } else if info.name.hasPrefix("target") {
        values = (0..<count).map { _ in generator.nextUnit() }
      } else {
        values = (0..<count).map { _ in generator.nextNormal() }
      }
      result[info.name] = Tensor(dtype: type.dtype, shape: shape, doubles: values)
    }
    return result
  }

  /// The class count when `value` is the labels operand of a `cross_entropy` node, or the
  /// smallest row count of the tables it picks rows of.
  static func labelClasses(of value: ValueID, in graph: Graph) -> Int? {
    for node in graph.nodes where node.op == "cross_entropy" && node.operands[1] == value {
      return graph.type(of: node.operands[0]).shape[1].staticValue
    }
    let rows = graph.nodes.filter { $0.is(Ops.gatherRows) && $0.operands[1] == value }.compactMap {
      graph.type(of: $0.operands[0]).shape.first?.staticValue
    }
    // Indices along an axis (`gather`): valid positions of that axis.
    let positions = graph.nodes.filter { $0.is(Ops.gather) && $0.operands[1] == value }.compactMap {
      node -> Int? in
      let shape = graph.type(of: node.operands[0]).shape
      var axis = node.attributes["axis"]?.intValue ?? 0
      if axis < 0 { axis += shape.count }
      return shape.indices.contains(axis) ? shape[axis].staticValue : nil
    }
    // Sequence lengths: 0 through the number of steps, when it is static.
    let lengths = graph.nodes.filter { $0.is(Ops.sequenceMask) && $0.operands[0] == value }
      .compactMap { graph.type(of: $0.result).shape.first?.staticValue.map { $0 + 1 } }
    return (rows + positions + lengths).min()
  }
}
