import LaminaSupport

/// Prints a graph in Lamina's textual IR, which `IRParser` reads back to the same text.
///
///     graph @DigitsMLP {
///       input %x : f32[batch, 64]
///       param %w1 : f32[64, 128] = he_normal()
///       %0 = matmul(%x, %w1) : f32[batch, 128]
///       %h = relu(%0) : f32[batch, 128]
///       output h = %h
///     }
///
/// After fusion, a `fused` node shows the members its one kernel computes:
///
///       %h = fused(%x, %w1, %b1) {kind = "epilogue"} : f32[batch, 128] {
///         %0 = matmul(%x, %w1) : f32[batch, 128]
///         %1 = add(%0, %b1) : f32[batch, 128]
///         %h = relu(%1) : f32[batch, 128]
///       }
public struct IRPrinter: Sendable {
  /// Adds `loc(line:column:length)` to every declaration and node.
  public var printLocations: Bool

  public init(printLocations: Bool = false) {
    self.printLocations = printLocations
  }

  public func print(_ graph: Graph) -> String {
    var out = "graph @\(graph.name) {\n"
    if printLocations, let file = graph.sourceFile {
      out += "  source \(quoteString(file))\n"
    }
    for input in graph.inputs {
      out += "  input \(name(input.value, in: graph)) : \(typeText(input.value, in: graph))"
      out += location(graph[input.value].location) + "\n"
    }
    for param in graph.params {
      out += "  param \(name(param.value, in: graph)) : \(typeText(param.value, in: graph))"
      out += " = \(param.initializer)"
      if !param.trainable { out += " frozen" }
      out += location(graph[param.value].location) + "\n"
    }
    for state in graph.states {
      // Model state has no owning step: `state %bn.running_mean : f32[16] = zeros()`.
      let owner = state.step.map { " \($0)" } ?? ""
      out +=
        "  state\(owner) \(name(state.value, in: graph)) : \(typeText(state.value, in: graph))"
      out += " = \(state.initializer)" + location(graph[state.value].location) + "\n"
    }
    for node in graph.nodes {
      out += "  " + print(node, in: graph) + "\n"
    }
    for output in graph.outputs {
      out += "  output \(output.name) = \(name(output.value, in: graph))\n"
    }
    for loss in graph.losses {
      out += "  loss \(loss.name) = \(name(loss.value, in: graph))\n"
    }
    for gradient in graph.gradients {
      out +=
        "  grad \(gradient.step) \(name(gradient.parameter, in: graph)) = \(name(gradient.gradient, in: graph))\n"
    }
    for assignment in graph.assignments {
      out +=
        "  update \(assignment.step) \(name(assignment.target, in: graph)) = \(name(assignment.value, in: graph))\n"
    }
    for update in graph.stateUpdates {
      out += "  update \(name(update.target, in: graph)) = \(name(update.value, in: graph))"
      if let trigger = update.trigger { out += " when \(name(trigger, in: graph))" }
      out += "\n"
    }
    for step in graph.trainSteps {
      out += "  train \(step.name) = \(step.optimizer)\(attributeText(step.attributes))"
      out += location(step.location) + "\n"
    }
    return out + "}\n"
  }

  /// One node: `%y = op(%a, %b) {attr = 1} : f32[batch, 10]`.
  public func print(_ node: Node, in graph: Graph) -> String {
    let results = node.results.map { name($0, in: graph) }.joined(separator: ", ")
    let operands = node.operands.map { name($0, in: graph) }.joined(separator: ", ")
    // Attributes at their op's default are left out (shape inference puts them back on reading).
    let defaults = OpRegistry.definition(node.op)?.attributes ?? []
    let shown = node.attributes.filter { name, value in
      guard let spec = defaults.first(where: { $0.name == name }), let fallback = spec.defaultValue
      else {
        return true
      }
      return value.coerced(to: spec.kind) != fallback.coerced(to: spec.kind)
    }
    var text = "\(results) = \(node.op)(\(operands))\(attributeText(shown))"
    let types = node.results.compactMap { graph[$0].type }
    if types.count == node.results.count {
      text += " : " + types.map(\.description).joined(separator: ", ")
    }
    text += location(node.location)
    // A region node lists its body: the arguments it defines, the members, the values it yields.
    if node.hasRegion {
      let arguments = node.regionArguments.map {
        "\(name($0, in: graph)) : \(typeText($0, in: graph))"
      }
      text += " {\n"
      text += "    args(\(arguments.joined(separator: ", ")))\n"
      for member in node.body {
        text +=
          "    " + print(member, in: graph).replacingOccurrences(of: "\n", with: "\n  ") + "\n"
      }
      text +=
        "    yield(\(node.regionResults.map { name($0, in: graph) }.joined(separator: ", ")))\n"
      return text + "  }"
    }
    // A fused node lists its members, one kernel's worth of ops, in a block.
    if !node.body.isEmpty {
      text += " {\n"
      for member in node.body { text += "    " + print(member, in: graph) + "\n" }
      text += "  }"
    }
    return text
  }

  func name(_ value: ValueID, in graph: Graph) -> String { "%" + quoteIfNeeded(graph[value].name) }

  private func typeText(_ value: ValueID, in graph: Graph) -> String {
    graph[value].type?.description ?? "?"
  }

  private func attributeText(_ attributes: [String: Attribute]) -> String {
    if attributes.isEmpty { return "" }
    let items = attributes.keys.sorted().map { "\($0) = \(attributes[$0]!)" }
    return " {" + items.joined(separator: ", ") + "}"
  }

  private func location(_ location: SourceLocation) -> String {
    guard printLocations, location.isKnown else { return "" }
    return " loc(\(location.line):\(location.column):\(location.length))"
  }
}

/// Value names are printed bare when they are plain identifiers with dots (`%head.weight`), quoted otherwise.
func quoteIfNeeded(_ name: String) -> String {
  let isPlain =
    !name.isEmpty
    && name.unicodeScalars.allSatisfy { scalar in
      scalar.properties.isASCIIHexDigit || ("a"..."z").contains(scalar)
        || ("A"..."Z").contains(scalar)
        || ("0"..."9").contains(scalar) || scalar == "_" || scalar == "."
    }
  return isPlain ? name : quoteString(name)
}
