import LaminaSupport

/// Checks the invariants every pass must keep.
///
/// - every value is defined exactly once, before its uses (the node list is topologically ordered);
/// - every node names a known op with an accepted operand count and valid attributes;
/// - every value has a type within `TensorType.maximumStaticElements`, and each node's result types are what its op's shape rule gives;
/// - outputs, losses and training steps name existing values; losses are floating-point scalars.
///
/// The pass runner calls it after each pass and blames the pass by name when it fails.
public enum Verifier {
  public static func verify(_ graph: Graph) -> [Diagnostic] {
    var diagnostics = DiagnosticBag()
    var defined = [Bool](repeating: false, count: graph.values.count)

    func define(_ value: ValueID, at location: SourceLocation) {
      if defined[value.index] {
        diagnostics.error("value %\(graph[value].name) is defined more than once", at: location)
      }
      defined[value.index] = true
      if let type = graph[value].type {
        if type.boundedStaticElementCount == nil {
          diagnostics.error(
            "value %\(graph[value].name) : \(type) is too large: its dimensions multiply past 2^40 elements",
            at: location)
        }
      } else {
        diagnostics.error("value %\(graph[value].name) has no type", at: location)
      }
    }

    for input in graph.inputs { define(input.value, at: graph[input.value].location) }
    for param in graph.params {
      let info = graph[param.value]
      define(param.value, at: info.location)
      if let type = info.type, !type.shape.allSatisfy(\.isStatic) {
        diagnostics.error("parameter %\(info.name) has a symbolic shape \(type)", at: info.location)
      }
      if let definition = InitializerRegistry.definition(param.initializer.name) {
        for (name, _) in param.initializer.arguments
        where !definition.arguments.contains(where: { $0.name == name }) {
          diagnostics.error(
            "initializer \(definition.name) has no argument '\(name)'", at: info.location)
        }
      } else {
        diagnostics.error(
          "unknown initializer '\(param.initializer.name)' for %\(info.name)", at: info.location)
      }
    }

    for state in graph.states {
      define(state.value, at: graph[state.value].location)
      if InitializerRegistry.definition(state.initializer.name) == nil {
        diagnostics.error(
          "unknown initializer '\(state.initializer.name)' for state %\(graph[state.value].name)",
          at: graph[state.value].location)
      }
    }
    /// Values computed inside fused nodes: they have no buffer, so only their group may read them.
    var definedInside = [Bool](repeating: false, count: graph.values.count)

    func checkTypes(_ node: Node) {
      guard let definition = OpRegistry.definition(node.op) else {
        diagnostics.error("unknown op '\(node.op)'", at: node.location)
        return
      }
      do {
        guard let typing = try graph.typing(of: node, definition: definition) else { return }
        // Kinds may differ (IR text cannot tell `[-1, 8]` as ints from a shape); keys may not.
        if Set(typing.attributes.keys) != Set(node.attributes.keys) {
          diagnostics.error(
            "\(node.op) node %\(graph[node.results[0]].name) does not spell out its default attributes",
            at: node.location)
        }
        for problem in typing.problems { diagnostics.error(problem, at: node.location) }
      } catch {
        diagnostics.error(error.message, at: node.location, help: error.help)
      }
    }

    /// A fused node's members read its operands or earlier members; its results are members' results.
    func checkFused(_ node: Node) {
      guard let text = node.attributes[Node.fusedKindAttribute]?.stringValue else {
        diagnostics.error("fused node without a kind", at: node.location)
        return
      }
      guard let kind = FusedKind(rawValue: text) else {
        diagnostics.error(
          "fused node of unknown kind '\(text)' (valid: \(FusedKind.allCases.map(\.rawValue).joined(separator: ", ")))",
          at: node.location)
        return
      }
      if kind == .epilogue, node.epilogueProducer == nil {
        diagnostics.error(
          "fused epilogue node without a member that produces blocks (an op with an epilogue)",
          at: node.location)
      }
      if node.body.isEmpty {
        diagnostics.error("fused node with no members", at: node.location)
      }
      var visible = Set(node.operands)
      for member in node.body {
        if member.op == Node.fusedOp || !member.body.isEmpty {
          diagnostics.error("fused nodes do not nest", at: member.location)
        }
        for operand in member.operands where !visible.contains(operand) {
          diagnostics.error(
            "fused member \(member.op) reads %\(graph[operand].name), which is neither an operand of its group nor computed earlier in it",
            at: member.location)
        }
        for result in member.results {
          if defined[result.index] || definedInside[result.index] {
            diagnostics.error(
              "value %\(graph[result].name) is defined more than once", at: member.location)
          }
          definedInside[result.index] = true
          visible.insert(result)
        }
        checkTypes(member)
      }
      for result in node.results {
        if !definedInside[result.index] {
          diagnostics.error(
            "fused node result %\(graph[result].name) is not computed by a member",
            at: node.location)
        }
        definedInside[result.index] = false
        define(result, at: node.location)
      }
    }

    /// A region's body reads its arguments and earlier members only; its results are visible there.
    func checkRegion(_ node: Node) {
      guard node.scanLayout != nil else {
        diagnostics.error("\(node.op): invalid region attributes", at: node.location)
        return
      }
      var visible = Set<ValueID>()
      func defineInside(_ value: ValueID, at location: SourceLocation) {
        if defined[value.index] || definedInside[value.index] {
          diagnostics.error("value %\(graph[value].name) is defined more than once", at: location)
        }
        if graph[value].type == nil {
          diagnostics.error("value %\(graph[value].name) has no type", at: location)
        }
        definedInside[value.index] = true
        visible.insert(value)
      }
      for argument in node.regionArguments { defineInside(argument, at: node.location) }
      for member in node.body {
        for operand in member.operands where !visible.contains(operand) {
          diagnostics.error(
            "\(member.op) in the body of \(node.op) reads %\(graph[operand].name), which is neither a body argument nor computed earlier in the body",
            at: member.location,
            help: "values from outside a loop enter it as loop-invariant operands")
        }
        if member.op == Node.fusedOp {
          checkFused(member)
          for result in member.results {
            defined[result.index] = false
            definedInside[result.index] = true
            visible.insert(result)
          }
          continue
        }
        if member.hasRegion { checkRegion(member) }
        for result in member.results { defineInside(result, at: member.location) }
        if !member.hasRegion { checkTypes(member) }
      }
      for result in node.regionResults where !visible.contains(result) {
        diagnostics.error(
          "\(node.op): body result %\(graph[result].name) is not computed in the body",
          at: node.location)
      }
      checkTypes(node)
    }

    for node in graph.nodes {
      for operand in node.operands where !defined[operand.index] {
        diagnostics.error(
          "\(node.op) uses %\(graph[operand].name) before it is defined"
            + (definedInside[operand.index] ? " (it is internal to a fused node)" : ""),
          at: node.location)
      }
      if node.op == Node.fusedOp {
        checkFused(node)
        continue
      }
      if node.hasRegion {
        checkRegion(node)
        for result in node.results { define(result, at: node.location) }
        continue
      }
      for result in node.results { define(result, at: node.location) }
      checkTypes(node)
    }

    var publicNames = Set<String>()
    for named in graph.outputs + graph.losses {
      if !publicNames.insert(named.name).inserted {
        diagnostics.error(
          "the name '\(named.name)' is exposed twice", at: graph[named.value].location)
      }
      if !defined[named.value.index] {
        diagnostics.error(
          "'\(named.name)' names an undefined value", at: graph[named.value].location)
      }
    }
    for loss in graph.losses {
      if let type = graph[loss.value].type, !type.isScalar || !type.dtype.isFloatingPoint {
        diagnostics.error(
          "loss '\(loss.name)' must be a floating-point scalar, got \(type)",
          at: graph[loss.value].location)
      }
    }
    for gradient in graph.gradients {
      let location = graph[gradient.gradient].location
      // A gradient may live only inside the fused update kernel that consumes it.
      guard defined[gradient.parameter.index],
        defined[gradient.gradient.index] || definedInside[gradient.gradient.index]
      else {
        diagnostics.error("a gradient names an undefined value", at: location)
        continue
      }
      if graph.param(for: gradient.parameter) == nil {
        diagnostics.error(
          "grad \(gradient.step): %\(graph[gradient.parameter].name) is not a parameter",
          at: location)
      }
      if graph[gradient.parameter].type != graph[gradient.gradient].type {
        diagnostics.error(
          "the gradient of %\(graph[gradient.parameter].name) has type \(graph[gradient.gradient].type?.description ?? "?"), not the parameter's \(graph[gradient.parameter].type?.description ?? "?")",
          at: location)
      }
      if !graph.trainSteps.contains(where: { $0.name == gradient.step }) {
        diagnostics.error("grad names an unknown training step '\(gradient.step)'", at: location)
      }
    }
    for assignment in graph.assignments {
      let location = graph[assignment.value].location
      let target = graph[assignment.target]
      let isStorage =
        graph.param(for: assignment.target) != nil
        || graph.states.contains { $0.value == assignment.target }
      if !isStorage {
        diagnostics.error(
          "update \(assignment.step): %\(target.name) is neither a parameter nor state",
          at: location)
      }
      if target.type != graph[assignment.value].type {
        diagnostics.error(
          "update \(assignment.step): %\(target.name) is \(target.type?.description ?? "?") but its new value is \(graph[assignment.value].type?.description ?? "?")",
          at: location)
      }
    }
    var updatedStates = Set<ValueID>()
    for update in graph.stateUpdates {
      let target = graph[update.target]
      let location = target.location
      guard defined[update.value.index] || definedInside[update.value.index],
        update.trigger.map({ defined[$0.index] || definedInside[$0.index] }) ?? true
      else {
        diagnostics.error("update %\(target.name): names an undefined value", at: location)
        continue
      }
      if graph.state(for: update.target)?.isModelState != true {
        diagnostics.error(
          "update %\(target.name) without a training step: %\(target.name) is not model state",
          at: location)
      }
      if !updatedStates.insert(update.target).inserted {
        diagnostics.error("model state %\(target.name) has two update rules", at: location)
      }
      if target.type != graph[update.value].type {
        diagnostics.error(
          "update %\(target.name) is \(target.type?.description ?? "?") but its new value is \(graph[update.value].type?.description ?? "?")",
          at: location)
      }
    }
    for step in graph.trainSteps {
      if !graph.losses.contains(where: { $0.name == step.lossName }) {
        diagnostics.error(
          "training step '\(step.name)' minimizes '\(step.lossName)', which is not a loss",
          at: step.location)
      }
      if let optimizer = OptimizerRegistry.definition(step.optimizer) {
        let known = optimizer.allHyperparameters
        for (name, value) in step.attributes {
          guard let spec = known.first(where: { $0.name == name }) else {
            diagnostics.error(
              "\(step.optimizer) has no hyperparameter '\(name)'", at: step.location)
            continue
          }
          if value.coerced(to: spec.kind) == nil {
            diagnostics.error(
              "\(step.optimizer): '\(name)' must be \(spec.kind), got \(value)", at: step.location)
          }
        }
      } else {
        diagnostics.error("unknown optimizer '\(step.optimizer)'", at: step.location)
      }
    }
    return diagnostics.diagnostics
  }
}

/// A node's op applied to its operands' types: what shape inference fills in and the verifier checks.
public struct NodeTyping: Sendable {
  /// The result types the op's shape rule gives.
  public var types: [TensorType]
  /// The node's attributes with the op's defaults filled in.
  public var attributes: [String: Attribute]
  /// Where the node disagrees: its result count, or a result's declared type.
  public var problems: [String]
}

extension Graph {
  /// Applies `definition`'s shape rule to the node's operand types. Nil when an operand has no type
  /// yet (that operand has its own diagnostic); throws the rule's error.
  public func typing(of node: Node, definition: OpDefinition) throws(ShapeError) -> NodeTyping? {
    let operandTypes = node.operands.compactMap { self[$0].type }
    guard operandTypes.count == node.operands.count else { return nil }
    var region: RegionTypes?
    if definition.region != nil {
      let arguments = node.regionArguments.compactMap { self[$0].type }
      let results = node.regionResults.compactMap { self[$0].type }
      guard arguments.count == node.regionArguments.count, results.count == node.regionResults.count
      else { return nil }
      region = RegionTypes(arguments: arguments, results: results)
    }
    let (types, attributes) = try definition.inferTypes(
      operands: operandTypes, attributes: node.attributes, region: region)
    var problems: [String] = []
    if types.count != node.results.count {
      problems.append(
        "\(node.op) defines \(types.count) results, the node names \(node.results.count)")
    } else {
      for (result, type) in zip(node.results, types) {
        if let declared = self[result].type, declared != type {
          problems.append(
            "%\(self[result].name) is declared \(declared) but \(node.op) gives \(type)")
        }
      }
    }
    return NodeTyping(types: types, attributes: attributes, problems: problems)
  }
}
