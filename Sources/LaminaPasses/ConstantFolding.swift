import LaminaIR
import LaminaSupport

/// Evaluates at compile time the nodes whose operands are all constants, with the op table's
/// reference interpreter, and replaces them by constants.
///
/// The IR has only scalar constants, so a node is folded when its operands are scalar constants and
/// its result is a scalar (`div(2, 4)` → `constant 0.5`), or when it computes one number everywhere:
/// an elementwise op of constants and broadcasts of constants, or a reshape-like op of such a value,
/// becomes `broadcast_to` of a new scalar constant. Only one element is ever evaluated, so folding
/// stays cheap whatever the shapes. Values are computed as the interpreter computes them (in
/// `Double`, rounded to the result dtype, integer division truncating), so folding never changes a
/// result; a node the interpreter rejects (a kernel error) is left for run time. Ops that
/// depend on the execution mode are left alone.
///
///     %a = constant() {value = 2.0}
///     %b = constant() {value = 4.0}      →      %c = constant() {value = 0.5} : f32[]
///     %c = div(%a, %b) : f32[]
public struct ConstantFolding: GraphPass {
  public static let name = "constant-fold"
  public static let summary =
    "Evaluates nodes of constants at compile time (scalars, and broadcasts of one value)."

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    // Values holding one number everywhere: the scalar constant that holds it, and the number
    // rounded to the dtype.
    var uniform: [ValueID: (constant: ValueID, value: Tensor)] = [:]
    let original = graph.nodes
    var nodes: [Node] = []
    nodes.reserveCapacity(original.count)
    for var node in original {
      defer { nodes.append(node) }
      // Only pure ops fold: a mode, random numbers or state make the value unknown until run time.
      guard node.results.count == 1, let definition = node.definition, definition.effects.isPure
      else { continue }
      let result = node.result
      let type = graph.type(of: result)
      if node.is(Ops.constant) {
        guard type.isScalar, let value = node.attributes["value"]?.doubleValue else { continue }
        uniform[result] = (result, Tensor(dtype: type.dtype, shape: [], doubles: [value]))
        continue
      }
      let operands = node.operands.compactMap { uniform[$0] }
      guard !node.operands.isEmpty, operands.count == node.operands.count else { continue }
      let operandTypes = node.operands.map { graph.type(of: $0) }

      let value: Tensor
      if definition.rearrangement != nil, operands.count == 1 {
        // Same elements, new shape: the dtype cannot change.
        value = operands[0].value
      } else if operandTypes.allSatisfy(\.isScalar) && type.isScalar
        || definition.fusion == .elementwise || definition.fusion == .broadcast
      {
        // A scalar op of scalars, or one number per element from one number per operand.
        let context = InterpretContext(
          operands: operands.map(\.value), attributes: node.attributes,
          results: [(type.dtype, [])])
        guard let values = try? definition.interpret(context), values.count == 1,
          values[0].shape.isEmpty, values[0].dtype == type.dtype
        else { continue }
        value = values[0]
      } else {
        continue
      }
      let number = value.doubles()[0]
      let constantAttributes: [String: Attribute] = [
        "value": .float(number), "dtype": .dtype(type.dtype),
      ]
      if type.isScalar {
        // The node itself becomes the constant: its result keeps its name and every use.
        node = Node(
          op: Ops.constant.name, operands: [], attributes: constantAttributes, results: [result],
          location: node.location)
        uniform[result] = (result, value)
        continue
      }
      if definition.rearrangement == .broadcast, operandTypes[0].isScalar {
        // Already a broadcast of a constant.
        uniform[result] = (node.operands[0], value)
        continue
      }
      // Symbols the operands do not carry could not be bound from them at run time.
      let known = Set(operandTypes.flatMap(\.symbols))
      guard type.symbols.allSatisfy(known.contains) else { continue }
      let scalar: ValueID
      if let existing = operands.first(where: {
        $0.value.dtype == type.dtype && $0.value.doubles() == [number]
      }) {
        scalar = existing.constant
      } else {
        scalar = graph.makeValue(
          name: graph.temporaryName(), type: .scalar(type.dtype), location: node.location)
        nodes.append(
          Node(
            op: Ops.constant.name, operands: [], attributes: constantAttributes, results: [scalar],
            location: node.location))
      }
      let broadcast = Node(
        op: Ops.broadcastTo.name, operands: [scalar], attributes: ["shape": .dims(type.shape)],
        results: [result], location: node.location)
      guard let typed = graph.retyped(broadcast, expecting: [type]) else { continue }
      node = typed
      uniform[result] = (scalar, value)
    }
    graph.nodes = nodes
  }
}
