import LaminaIR
import LaminaSupport

/// Moves work out of loops that does not need to run step by step, as one large op over the whole
/// sequence.
///
/// - Forward: body nodes that read only sequence steps, loop invariants and other such nodes (not
///   the carried state) run once before the loop over the whole sequence: the input projection
///   `x_t @ W_ih + b` of every step becomes one `[time·batch, features] @ [features, units]`
///   matrix product (the sequence's leading axes merged), whose result the loop reads step by step.
/// - Backward: a carried accumulator `acc ← acc + a_tᵀ b_t` (a weight gradient of a per-step
///   matrix product) becomes `acc₀ + Aᵀ B` after the loop, one product over the stacked `a_t` and
///   `b_t` (the loop stacks `b_t` as a per-step output), instead of one small product per step.
///
/// Only elementwise ops (whose per-step operands all have the result's shape) and matrix products
/// of a per-step left operand by an invariant right one are hoisted: for those, computing the
/// whole sequence at once is the same arithmetic. Elementwise ops go only with a product they are
/// connected to (`membersWorthHoisting`).
///
///     %h, %hs = scan(%h0, %xs, %w, %u) {         %p = matmul(reshape(%xs), %w)   (one GEMM)
///       args(%c, %x, %wi, %ui)                    %h, %hs = scan(%h0, %ps, %u) {
///       %a = matmul(%x, %wi)              →         args(%c, %a, %ui)
///       %b = matmul(%c, %ui)                        %b = matmul(%c, %ui)
///       ...                                         ...
public struct Hoisting: GraphPass {
  public static let name = "hoist"
  public static let summary =
    "Runs loop work that does not depend on the carried state once, over the whole sequence."

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    var index = 0
    while index < graph.nodes.count {
      if graph.nodes[index].hasRegion {
        do {
          index += try hoistStepIndependentWork(at: index, in: &graph)
          index += try hoistAccumulations(at: index, in: &graph)
        } catch {
          context.diagnostics.error(
            "hoist: \(error.message)", at: graph.nodes[index].location)
        }
      }
      index += 1
    }
    try context.diagnostics.throwIfErrors()
  }

  // MARK: Forward

  /// Hoists the body nodes of the scan at `index` that do not depend on the carried state;
  /// returns the number of nodes inserted before it.
  func hoistStepIndependentWork(at index: Int, in graph: inout Graph) throws(ShapeError) -> Int {
    var scan = graph.nodes[index]
    guard let layout = scan.scanLayout else { return 0 }
    let steps = graph.type(of: scan.operands[layout.sequenceRange.lowerBound]).shape[0]
    // The whole-sequence value of each hoistable body value: a sequence operand or a new node's
    // result; invariants stand for themselves.
    var whole: [ValueID: ValueID] = [:]
    var invariant: [ValueID: ValueID] = [:]
    for position in layout.sequenceRange {
      whole[scan.regionArguments[position]] = scan.operands[position]
    }
    for position in layout.invariantRange {
      invariant[scan.regionArguments[position]] = scan.operands[position]
    }
    let worthHoisting = membersWorthHoisting(
      scan, stepIndependent: Set(whole.keys), invariant: Set(invariant.keys), graph: graph)
    var hoisted: [Node] = []
    var removed = Set<Int>()
    let location = scan.location
    for (memberIndex, member) in scan.body.enumerated() where worthHoisting.contains(memberIndex) {
      guard let definition = member.definition,
        member.operands.allSatisfy({ whole[$0] != nil || invariant[$0] != nil })
      else { continue }
      let resultType = graph.type(of: member.result)
      let stackedType = TensorType(resultType.dtype, [steps] + resultType.shape)
      var built: ValueID?
      switch definition.fusion {
      case .elementwise, .broadcast:
        built = try add(
          member.op, member.operands.map { whole[$0] ?? invariant[$0]! }, member.attributes,
          expecting: stackedType, into: &hoisted, graph: &graph, location: location)
      case .matmulLike:
        // Rows from the steps, the right operand invariant: merge the leading axes into rows.
        guard let rows = whole[member.operands[0]], let right = invariant[member.operands[1]]
        else { continue }
        let stepType = graph.type(of: member.operands[0])
        let flat = try add(
          Ops.reshape.name, [rows],
          ["shape": .dims([[steps, stepType.shape[0]].product, stepType.shape[1]])],
          expecting: nil, into: &hoisted, graph: &graph, location: location)
        let product = try add(
          member.op, [flat, right], member.attributes, expecting: nil, into: &hoisted,
          graph: &graph, location: location)
        built = try add(
          Ops.reshape.name, [product], ["shape": .dims(stackedType.shape)],
          expecting: stackedType, into: &hoisted, graph: &graph, location: location)
      default:
        continue
      }
      guard let built else { continue }
      whole[member.result] = built
      removed.insert(memberIndex)
    }
    guard !removed.isEmpty else { return 0 }

    // The loop reads the hoisted values it still needs step by step, as new sequences.
    let remaining = scan.body.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    let hoistedValues = Set(removed.map { scan.body[$0].result })
    var needed: [ValueID] = []
    for value in remaining.flatMap(\.operands) + scan.regionResults
    where hoistedValues.contains(value) && !needed.contains(value) {
      needed.append(value)
    }
    var renamed: [ValueID: ValueID] = [:]
    var newSequences: [(operand: ValueID, argument: ValueID)] = []
    for value in needed {
      let argument = graph.makeValue(
        name: graph[value].name + ".step", type: graph.type(of: value), location: location)
      renamed[value] = argument
      newSequences.append((whole[value]!, argument))
    }
    scan.body = remaining.map { member in
      var member = member
      member.operands = member.operands.map { renamed[$0] ?? $0 }
      return member
    }
    scan.regionResults = scan.regionResults.map { renamed[$0] ?? $0 }
    // Sequences and invariants the body no longer reads leave the loop (one sequence stays:
    // it gives the step count).
    let read = Set(scan.body.flatMap(\.operands) + scan.regionResults)
    var operands = Array(scan.operands[layout.carriedRange])
    var arguments = Array(scan.regionArguments[layout.carriedRange])
    var sequences = 0
    for position in layout.sequenceRange where read.contains(scan.regionArguments[position]) {
      operands.append(scan.operands[position])
      arguments.append(scan.regionArguments[position])
      sequences += 1
    }
    for (operand, argument) in newSequences {
      operands.append(operand)
      arguments.append(argument)
      sequences += 1
    }
    if sequences == 0 {
      let position = layout.sequenceRange.lowerBound
      operands.append(scan.operands[position])
      arguments.append(scan.regionArguments[position])
      sequences = 1
    }
    var invariants = 0
    for position in layout.invariantRange where read.contains(scan.regionArguments[position]) {
      operands.append(scan.operands[position])
      arguments.append(scan.regionArguments[position])
      invariants += 1
    }
    let newLayout = ScanLayout(
      carried: layout.carried, sequences: sequences, invariants: invariants,
      reverse: layout.reverse)
    scan.operands = operands
    scan.regionArguments = arguments
    scan.attributes = newLayout.attributes
    graph.nodes[index] = scan
    graph.nodes.insert(contentsOf: hoisted, at: index)
    return hoisted.count
  }

  /// What a body member hoisted over the whole sequence would be: an elementwise op, a matrix
  /// product of a per-step left operand by an invariant right one, or nothing hoistable.
  enum HoistedForm { case elementwise, product }

  func hoistedForm(
    _ member: Node, stepIndependent: Set<ValueID>, invariant: Set<ValueID>, graph: Graph
  ) -> HoistedForm? {
    guard let definition = member.definition, definition.effects.isPure, !member.hasRegion,
      member.op != Node.fusedOp, member.results.count == 1,
      member.operands.allSatisfy({ stepIndependent.contains($0) || invariant.contains($0) }),
      member.operands.contains(where: stepIndependent.contains)
    else { return nil }
    let resultType = graph.type(of: member.result)
    switch definition.fusion {
    case .elementwise, .broadcast:
      guard case .expression = definition.c,
        member.operands.allSatisfy({
          !stepIndependent.contains($0) || graph.type(of: $0) == resultType
        })
      else { return nil }
      return .elementwise
    case .matmulLike:
      guard member.operands.count == 2, stepIndependent.contains(member.operands[0]),
        invariant.contains(member.operands[1]),
        let leftTranspose = definition.operandTransposeAttributes.first ?? nil,
        member.attributes[leftTranspose]?.boolValue != true,
        graph.type(of: member.operands[0]).rank == 2, resultType.rank == 2
      else { return nil }
      return .product
    default:
      return nil
    }
  }

  /// The body members to hoist: the step-independent matrix products (one large GEMM instead of
  /// a small one per step) and the elementwise work connected to them (the projection's bias).
  /// Elementwise work connected to no product stays in the loop: hoisted, it would be the same
  /// arithmetic plus a pass writing the whole sequence to memory and the loop reading it back,
  /// where inside the loop it fuses into the step's elementwise kernel, which reads its operands
  /// anyway (the backward step's `1 - tanh²` of a saved activation).
  func membersWorthHoisting(
    _ scan: Node, stepIndependent: Set<ValueID>, invariant: Set<ValueID>, graph: Graph
  ) -> Set<Int> {
    var independent = stepIndependent
    var forms: [Int: HoistedForm] = [:]
    var definer: [ValueID: Int] = [:]
    for (position, member) in scan.body.enumerated() {
      guard
        let form = hoistedForm(
          member, stepIndependent: independent, invariant: invariant, graph: graph)
      else { continue }
      forms[position] = form
      independent.insert(member.result)
      definer[member.result] = position
    }
    // Components of hoistable members linked by the values they pass each other.
    var component = Array(scan.body.indices)
    func root(_ position: Int) -> Int {
      var position = position
      while component[position] != position { position = component[position] }
      return position
    }
    for position in forms.keys.sorted() {
      for operand in scan.body[position].operands {
        if let source = definer[operand] { component[root(position)] = root(source) }
      }
    }
    let withProducts = Set(forms.filter { $0.value == .product }.keys.map(root))
    return Set(forms.keys.filter { withProducts.contains(root($0)) })
  }

  /// Appends a node of `op` to `nodes`, typed by its shape rule; when `expected` is given the
  /// rule must give exactly that type.
  private func add(
    _ op: String, _ operands: [ValueID], _ attributes: [String: Attribute],
    expecting expected: TensorType?, into nodes: inout [Node], graph: inout Graph,
    location: SourceLocation
  ) throws(ShapeError) -> ValueID {
    guard let definition = OpRegistry.definition(op) else { throw ShapeError("no op \(op)") }
    let (types, resolved) = try definition.inferTypes(
      operands: operands.map { graph.type(of: $0) }, attributes: attributes)
    if let expected, types != [expected] {
      throw ShapeError("hoisting \(op) gives \(types), expected \(expected)")
    }
    let result = graph.makeValue(name: graph.temporaryName(), type: types[0], location: location)
    nodes.append(
      Node(op: op, operands: operands, attributes: resolved, results: [result], location: location))
    return result
  }

  // MARK: Backward

  /// `acc ← acc + reshape(sum(g_t, axes: [0], keepdims))` (a bias gradient: a sum over the
  /// batch) becomes `acc₀ + reshape(sum(G, axes: [0, 1]))` after the loop over the stacked `g_t`.
  /// Returns nil (and changes nothing) when the accumulator is not of that form.
  private func hoistBatchSum(
    term: ValueID, argument: ValueID, next: ValueID, position: Int, update: Node,
    scan: inout Node, layout: ScanLayout, steps: Dim, after: inout [Node], graph: inout Graph
  ) throws(ShapeError) -> ValueID? {
    guard let reshape = scan.body.first(where: { $0.results == [term] }),
      case .alias? = reshape.definition?.c, reshape.operands.count == 1,
      let sum = scan.body.first(where: { $0.results == [reshape.operands[0]] }),
      let reduction = sum.definition?.reduction, reduction.combine == .add,
      reduction.finalize == .none, sum.attributes["axes"]?.intsValue == [0],
      sum.attributes["keepdims"]?.boolValue == true, sum.operands.count == 1,
      scan.body.filter({ $0.operands.contains(term) }).count == 1,
      scan.body.filter({ $0.operands.contains(sum.result) }).count == 1,
      !scan.regionResults.contains(term), !scan.regionResults.contains(sum.result)
    else { return nil }
    let factor = sum.operands[0]
    let stacked: ValueID
    if let argumentPosition = scan.regionArguments.firstIndex(of: factor),
      layout.sequenceRange.contains(argumentPosition)
    {
      stacked = scan.operands[argumentPosition]
    } else if let output = scan.regionResults.dropFirst(layout.carried).firstIndex(of: factor) {
      stacked = scan.results[output]
    } else {
      let stepType = graph.type(of: factor)
      stacked = graph.makeValue(
        name: graph[factor].name + ".all",
        type: TensorType(stepType.dtype, [steps] + stepType.shape), location: scan.location)
      scan.regionResults.append(factor)
      scan.results.append(stacked)
    }
    var attributes = sum.attributes
    attributes["axes"] = .ints([0, 1])
    let total = try add(
      sum.op, [stacked], attributes, expecting: nil, into: &after, graph: &graph,
      location: scan.location)
    let shaped = try add(
      reshape.op, [total], reshape.attributes, expecting: graph.type(of: term), into: &after,
      graph: &graph, location: scan.location)
    after.append(
      Node(
        op: update.op, operands: [scan.operands[position], shaped], attributes: update.attributes,
        results: [scan.results[position]], location: scan.location))
    scan.body.removeAll { [next, term, sum.result].contains($0.results.first ?? next) }
    scan.operands.remove(at: position)
    scan.regionArguments.remove(at: position)
    scan.regionResults.remove(at: position)
    scan.results.remove(at: position)
    return shaped
  }

  /// Turns carried accumulators `acc ← acc + matmul(a, b) {transpose_a}` of the scan at `index`
  /// into one product after the loop; returns the number of nodes inserted after it.
  func hoistAccumulations(at index: Int, in graph: inout Graph) throws(ShapeError) -> Int {
    var scan = graph.nodes[index]
    guard var layout = scan.scanLayout else { return 0 }
    let steps = graph.type(of: scan.operands[layout.sequenceRange.lowerBound]).shape[0]
    let location = scan.location
    var after: [Node] = []
    var position = 0
    while position < layout.carried {
      let argument = scan.regionArguments[position]
      let next = scan.regionResults[position]
      let uses = scan.body.filter { $0.operands.contains(argument) }
      guard let update = scan.body.first(where: { $0.results == [next] }),
        let updateDefinition = update.definition, updateDefinition.algebra.leftIdentity == 0,
        updateDefinition.algebra.rightIdentity == 0,
        [.elementwise, .broadcast].contains(updateDefinition.fusion),
        update.operands.count == 2, update.operands.contains(argument), uses.count == 1,
        uses[0].results == [next],
        !scan.regionResults.enumerated().contains(where: {
          $0.offset != position && ($0.element == argument || $0.element == next)
        })
      else {
        position += 1
        continue
      }
      let term = update.operands[0] == argument ? update.operands[1] : update.operands[0]
      if try hoistBatchSum(
        term: term, argument: argument, next: next, position: position, update: update,
        scan: &scan, layout: layout, steps: steps, after: &after, graph: &graph) != nil
      {
        layout.carried -= 1
        scan.attributes = layout.attributes
        continue
      }
      guard
        let product = scan.body.first(where: { $0.results == [term] }),
        let definition = product.definition, definition.fusion == .matmulLike,
        product.operands.count == 2,
        let transposeA = definition.operandTransposeAttributes.first ?? nil,
        product.attributes[transposeA]?.boolValue == true,
        definition.operandTransposeAttributes.count > 1,
        let transposeB = definition.operandTransposeAttributes[1],
        product.attributes[transposeB]?.boolValue != true,
        product.operands.allSatisfy({ graph.type(of: $0).rank == 2 }),
        scan.body.filter({ $0.operands.contains(term) }).count == 1,
        !scan.regionResults.contains(term), graph.type(of: term) == graph.type(of: argument)
      else {
        position += 1
        continue
      }
      // Stack both factors: a sequence argument is its operand already; others become outputs.
      var stacked: [ValueID] = []
      for factor in product.operands {
        if let argumentPosition = scan.regionArguments.firstIndex(of: factor),
          layout.sequenceRange.contains(argumentPosition)
        {
          stacked.append(scan.operands[argumentPosition])
          continue
        }
        if let output = scan.regionResults.dropFirst(layout.carried).firstIndex(of: factor) {
          stacked.append(scan.results[output])
          continue
        }
        let stepType = graph.type(of: factor)
        let value = graph.makeValue(
          name: graph[factor].name + ".all",
          type: TensorType(stepType.dtype, [steps] + stepType.shape), location: location)
        scan.regionResults.append(factor)
        scan.results.append(value)
        stacked.append(value)
      }
      // acc₀ + A_allᵀ B_all, computed after the loop into the accumulator's old result.
      let flat = try stacked.map { value throws(ShapeError) -> ValueID in
        let type = graph.type(of: value)
        return try add(
          Ops.reshape.name, [value],
          ["shape": .dims([[type.shape[0], type.shape[1]].product] + type.shape.dropFirst(2))],
          expecting: nil, into: &after, graph: &graph, location: location)
      }
      let whole = try add(
        product.op, flat, product.attributes, expecting: graph.type(of: term), into: &after,
        graph: &graph, location: location)
      after.append(
        Node(
          op: update.op, operands: [scan.operands[position], whole], attributes: update.attributes,
          results: [scan.results[position]], location: location))
      // The accumulator leaves the loop.
      scan.body.removeAll { $0.results == [next] || $0.results == [term] }
      scan.operands.remove(at: position)
      scan.regionArguments.remove(at: position)
      scan.regionResults.remove(at: position)
      scan.results.remove(at: position)
      layout.carried -= 1
      scan.attributes = layout.attributes
    }
    guard !after.isEmpty else { return 0 }
    graph.nodes[index] = scan
    graph.nodes.insert(contentsOf: after, at: index + 1)
    return after.count
  }
}
