import LaminaIR
import LaminaSupport

/// `scan`: a user-written recurrent cell (a block) run over time as one loop.
extension Lowering {
  /// `scan(xs, Cell(options), initial: h0, reverse: false)`: runs the block once per step of `xs`
  /// (`[batch, time, ...]`), as `Cell(x_t, h)` with the step's input and the carried state, which
  /// the block's result replaces. Returns every step's state, `[batch, time, ...]`. The block is
  /// expanded once, as the body of a `scan` node: its parameters are shared by every step.
  mutating func lowerScan(_ arguments: [Argument], at location: SourceLocation) -> Value {
    let positional = arguments.filter { $0.label == nil }
    let usage = "scan(xs, Cell(options), initial: h0) runs block Cell(x_t, h) over time"
    for argument in arguments where argument.label != nil {
      guard ["initial", "reverse"].contains(argument.label!) else {
        diagnostics.error(
          "scan has no option '\(argument.label!)' (it takes initial and reverse)",
          at: argument.location, help: usage)
        return .poisoned
      }
    }
    guard positional.count == 2 else {
      diagnostics.error(
        "scan takes the sequence and the step block: \(usage)", at: location)
      return .poisoned
    }
    guard let initialArgument = arguments.first(where: { $0.label == "initial" }) else {
      diagnostics.error(
        "scan needs the starting state: initial: h0", at: location, help: usage)
      return .poisoned
    }
    var reverse = false
    if let reverseArgument = arguments.first(where: { $0.label == "reverse" }) {
      guard case .bool(let value) = evaluate(reverseArgument.value) else {
        diagnostics.error("scan: reverse must be true or false", at: reverseArgument.location)
        return .poisoned
      }
      reverse = value
    }
    let sequenceValue = evaluate(positional[0].value)
    var initialValue = evaluate(initialArgument.value)
    if case .list(let items) = initialValue, items.count == 1 { initialValue = items[0] }
    guard case .tensor(let xs) = sequenceValue, case .tensor(let h0) = initialValue else {
      if case .poisoned = sequenceValue { return .poisoned }
      if case .poisoned = initialValue { return .poisoned }
      diagnostics.error(
        "scan needs a tensor sequence and a tensor starting state", at: location, help: usage)
      return .poisoned
    }
    let sequenceType = graph.type(of: xs)
    guard sequenceType.rank >= 2 else {
      diagnostics.error(
        "scan needs a sequence [batch, time, ...], got \(sequenceType)", at: positional[0].location)
      return .poisoned
    }

    // The step: an instance (`let cell = Cell(...)`) or a block call's options (`Cell(...)`).
    let cellExpr = positional[1].value
    var instance: Instance?
    var block: BlockDecl?
    var blockArguments: [Argument] = []
    switch cellExpr.kind {
    case .name(let name):
      if case .instance(let bound)? = scope.bindings[name]?.value {
        scope.bindings[name]!.used = true
        instance = bound
      } else if case .poisoned? = scope.bindings[name]?.value {
        return .poisoned
      } else {
        block = blocks[name]
      }
    case .call(let callee, _, let calleeArguments):
      block = blocks[callee]
      blockArguments = calleeArguments
    default: break
    }
    guard instance != nil || block != nil else {
      diagnostics.error(
        "scan's second argument must be a block taking (x_t, state), like MyCell(units: 32)",
        at: positional[1].location, help: usage)
      return .poisoned
    }

    do throws(ShapeError) {
      let timeMajor = try graph.addInferredNode(
        Ops.permute.name, [xs],
        attributes: ["perm": .ints([1, 0] + Array(2..<sequenceType.rank))], location: location)
      let layout = ScanLayout(carried: 1, sequences: 1, invariants: 0, reverse: reverse)
      let operands = [h0, timeMajor]
      let stepArguments = graph.makeScanArguments(
        operands: operands, layout: layout, prefix: "scan.step", location: location)
      let mark = graph.nodes.count
      let state = Value.tensor(stepArguments[0])
      let input = Value.tensor(stepArguments[1])
      let next: Value
      if let instance {
        next = callInstance(instance, [], at: location, leading: input, alsoLeading: [state])
      } else {
        next = callBlock(
          block!, leading: input, alsoLeading: [state], arguments: blockArguments, at: location)
      }
      guard case .tensor(let nextState) = next else {
        graph.nodes.removeSubrange(mark...)
        if case .poisoned = next { return .poisoned }
        diagnostics.error("scan's step block must return a tensor", at: location)
        return .poisoned
      }
      guard graph.type(of: nextState) == graph.type(of: h0) else {
        graph.nodes.removeSubrange(mark...)
        diagnostics.error(
          "scan's step returns \(graph.type(of: nextState)), but the state is \(graph.type(of: h0))",
          at: location, help: "the block's result is the next state: it must keep the state's type")
        return .poisoned
      }
      let results = try graph.finishScan(
        bodyFrom: mark, operands: operands, layout: layout, arguments: stepArguments,
        results: [nextState, nextState], location: location)
      let rank = graph.type(of: results[1]).rank
      return .tensor(
        try graph.addInferredNode(
          Ops.permute.name, [results[1]],
          attributes: ["perm": .ints([1, 0] + Array(2..<rank))], location: location))
    } catch {
      diagnostics.error("scan: \(error.message)", at: location, help: error.help)
      return .poisoned
    }
  }
}
