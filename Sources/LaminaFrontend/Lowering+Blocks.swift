import LaminaIR
import LaminaSupport

/// Blocks: expanding a block call in a fresh scope, and `repeat`.
extension Lowering {
  /// `repeat(x, n, Block(args))`: n fresh copies of the block, each feeding the next.
  mutating func lowerRepeat(_ arguments: [Argument], at location: SourceLocation) -> Value {
    guard arguments.count == 3, arguments.allSatisfy({ $0.label == nil }) else {
      diagnostics.error(
        "repeat takes three arguments: repeat(x, count, Block(options))", at: location)
      return .poisoned
    }
    var current = evaluate(arguments[0].value)
    guard case .integer(let count) = evaluate(arguments[1].value), (0...10_000).contains(count)
    else {
      diagnostics.error(
        "repeat count must be an integer from 0 to 10000", at: arguments[1].location)
      return .poisoned
    }
    let blockExpr = arguments[2].value
    let (blockName, blockArguments): (String, [Argument]) =
      switch blockExpr.kind {
      case .name(let name): (name, [])
      case .call(let callee, _, let arguments): (callee, arguments)
      default: ("", [])
      }
    if case .name(let name) = blockExpr.kind,
      case .instance(let instance)? = scope.bindings[name]?.value
    {
      // One instance applied count times: the copies share its parameters.
      scope.bindings[name]!.used = true
      if case .poisoned = current { return .poisoned }
      for _ in 0..<count {
        current = callInstance(instance, [], at: location, leading: current)
        if case .poisoned = current { return .poisoned }
      }
      return current
    }
    if case .name(let name) = blockExpr.kind, case .poisoned? = scope.bindings[name]?.value {
      return .poisoned
    }
    guard let block = blocks[blockName] else {
      let isBuiltIn =
        layers[blockName] != nil || OpRegistry.definition(blockName) != nil
      diagnostics.error(
        "repeat's third argument must be a block, like Residual(units: 64)", at: blockExpr.location,
        help: isBuiltIn
          ? "\(blockName) is a built-in function; wrap it in a block: block Step(x) { return \(blockName)(x, ...) }"
          : closestName(to: blockName, among: Array(blocks.keys)).map { "did you mean '\($0)'?" })
      return .poisoned
    }
    let nodesBefore = graph.nodes.count
    if case .poisoned = current { return .poisoned }
    for copy in 0..<count {
      current = callBlock(block, leading: current, arguments: blockArguments, at: location)
      if case .poisoned = current { return .poisoned }
      // The first copy tells how large all of them will be; stop before building a runaway model.
      if copy == 0 {
        let (total, overflow) = (graph.nodes.count - nodesBefore).multipliedReportingOverflow(
          by: count)
        if overflow || nodesBefore + total > Lowering.maximumNodes {
          diagnostics.error(
            "repeat would make \(overflow ? "too many" : "about \(total)") nodes from \(count) copies of block \(block.name), more than a model may have (\(Lowering.maximumNodes))",
            at: location, help: "use a smaller count; repeats nested inside blocks multiply")
          return .poisoned
        }
      }
    }
    return current
  }

  /// Expands a block call. `instanceScope` names the parameters of a shared instance being called.
  mutating func callBlock(
    _ block: BlockDecl, leading: Value? = nil, alsoLeading: [Value] = [],
    arguments: [Argument], at location: SourceLocation,
    instanceScope: String? = nil
  ) -> Value {
    if let start = blockStack.firstIndex(of: block.name) {
      let through = blockStack[(start + 1)...]
      diagnostics.error(
        "block \(block.name) calls itself\(through.isEmpty ? "" : " through \(through.joined(separator: ", "))")",
        at: location,
        help:
          "blocks are expanded where they are called, so they cannot be recursive; for a chain of copies use repeat(x, n, \(block.name))"
      )
      return .poisoned
    }
    // Each level is a few stack frames of lowering; a chain of blocks this deep is surely generated.
    guard blockStack.count < 64 else {
      diagnostics.error(
        "blocks call each other more than 64 levels deep, down to block \(block.name)",
        at: location,
        help: "flatten the chain of blocks")
      return .poisoned
    }
    guard graph.nodes.count <= Lowering.maximumNodes else {
      diagnostics.error(
        "the model grows past \(Lowering.maximumNodes) nodes while expanding block \(block.name)",
        at: location,
        help: "blocks that call other blocks many times multiply; make fewer calls")
      return .poisoned
    }
    // Match arguments to parameters: positional in order, then labelled.
    var values: [String: Value] = [:]
    var nameOverride: String?
    var positional = block.parameters.makeIterator()
    if let leading, let first = positional.next() { values[first.name] = leading }
    // A loop's step passes the carried state after the step's input (`scan`).
    for value in alsoLeading {
      guard let next = positional.next() else {
        diagnostics.error(
          "block \(block.name) takes too few tensors for this call: it gets the step's input and \(alsoLeading.count) carried value(s)",
          at: location)
        return .poisoned
      }
      values[next.name] = value
    }
    var failed = false
    var argumentLocations: [String: SourceLocation] = [:]
    for argument in arguments {
      if argument.label == "name" && !block.parameters.contains(where: { $0.name == "name" }) {
        if case .string(let name) = argument.value.kind {
          nameOverride = name
          continue
        }
      }
      let parameter: BlockParameter?
      if let label = argument.label {
        parameter = block.parameters.first { $0.name == label }
        if parameter == nil {
          diagnostics.error(
            "block \(block.name) has no parameter '\(label)'", at: argument.location,
            help: closestName(to: label, among: block.parameters.map(\.name)).map {
              "did you mean '\($0)'?"
            })
          failed = true
          continue
        }
      } else {
        parameter = positional.next()
        if parameter == nil {
          diagnostics.error("too many arguments to block \(block.name)", at: argument.location)
          failed = true
          continue
        }
      }
      let parameterValue = evaluate(argument.value)
      if values[parameter!.name] != nil {
        diagnostics.error(
          "parameter '\(parameter!.name)' of \(block.name) is given twice", at: argument.location)
        failed = true
      }
      values[parameter!.name] = parameterValue
      argumentLocations[parameter!.name] = argument.location
    }
    // Options without the tensors make an instance, called later with shared parameters.
    let tensorParameters = block.parameters.filter { $0.kind == .tensor }
    if instanceScope == nil, leading == nil, !failed, !tensorParameters.isEmpty,
      tensorParameters.allSatisfy({ values[$0.name] == nil })
    {
      return makeInstance(.block(block), arguments, name: nameOverride, at: location)
    }
    for parameter in block.parameters where values[parameter.name] == nil {
      if let defaultValue = parameter.defaultValue {
        values[parameter.name] = evaluate(defaultValue)
      } else if !failed {
        diagnostics.error(
          "block \(block.name) needs the argument '\(parameter.name)'", at: location,
          notes: [.init("parameter declared here", at: parameter.location)])
        failed = true
      }
    }
    // Check kinds.
    for parameter in block.parameters {
      guard let value = values[parameter.name] else { continue }
      let ok: Bool =
        switch (parameter.kind, value) {
        case (_, .poisoned): false
        case (.tensor, .tensor), (.int, .integer), (.float, .integer), (.float, .number),
          (.bool, .bool),
          (.string, .string):
          true
        default: false
        }
      if !ok {
        if case .poisoned = value {
        } else {
          diagnostics.error(
            "argument '\(parameter.name)' of \(block.name) must be \(parameter.kind == .tensor ? "a tensor" : parameter.kind.rawValue), got \(value.kindDescription)",
            at: argumentLocations[parameter.name] ?? location,
            notes: [.init("parameter declared here", at: parameter.location)])
        }
        failed = true
      }
    }
    if failed { return .poisoned }

    let prefix = instanceScope ?? scope.qualified(nameOverride ?? nextInstanceName(block.name))
    var newScope = Scope(prefix: prefix)
    newScope.sharesParameters = instanceScope != nil || scope.sharesParameters
    for parameter in block.parameters {
      newScope.bindings[parameter.name] = Binding(
        value: values[parameter.name]!, location: parameter.location, warnsWhenUnused: false,
        kind: "parameter")
    }
    enterScope(newScope)
    blockStack.append(block.name)
    defer {
      blockStack.removeLast()
      exitScope()
    }
    recordDefinitions(block.statements)
    var result: Value?
    for statement in block.statements {
      if result != nil {
        diagnostics.error("statements after 'return' never run", at: statement.location)
        break
      }
      switch statement {
      case .param, .let:
        lowerSharedStatement(statement)
      case .return(let valueExpr, _):
        result = evaluate(valueExpr)
      case .input, .output, .loss, .train, .freeze:
        let isInput = statement.keyword == "input"
        let parameterList = (block.parameters.map(\.name) + [statement.definedName ?? "x"]).joined(
          separator: ", ")
        diagnostics.error(
          "'\(statement.keyword)' is only allowed in a model, not in block \(block.name)",
          at: statement.location,
          help: isInput
            ? "a block receives tensors as parameters: block \(block.name)(\(parameterList))"
            : "a block gives its result with `return`; declare outputs, losses and training in the model"
        )
        // Uses of the name are not reported again.
        if let name = statement.definedName, scope.bindings[name] == nil {
          bind(name, .poisoned, at: statement.location, kind: statement.keyword)
        }
      }
    }
    // The last value a block without `return` computes is most likely what it meant to return.
    let lastLet = block.statements.last { if case .let = $0 { true } else { false } }?.definedName
    let bindings = scope.bindings.sorted {
      ($0.value.location.line, $0.value.location.column) < (
        $1.value.location.line, $1.value.location.column
      )
    }
    for (name, binding) in bindings where !binding.used && binding.warnsWhenUnused {
      if result == nil && name == lastLet { continue }
      diagnostics.warning("\(binding.kind) '\(name)' is never used", at: binding.location)
    }
    guard let result else {
      diagnostics.error(
        "block \(block.name) has no 'return'", at: block.location,
        help: lastLet.map { "end it with `return \($0)`" } ?? "end it with `return expression`")
      return .poisoned
    }
    return result
  }
}
