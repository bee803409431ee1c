import LaminaSupport

/// Draws a graph for Graphviz: inputs as green boxes, parameters as yellow, nodes as ellipses labelled
/// with their op and result type.
public struct DotPrinter: Sendable {
  public init() {}

  public func print(_ graph: Graph) -> String {
    var out =
      "digraph \(quote(graph.name)) {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n"
    for input in graph.inputs {
      out +=
        "  \(id(input.value)) [shape=box, style=filled, fillcolor=\"#d8f0d8\", label=\(quote("input \(graph[input.value].name)\n\(typeText(graph, input.value))"))];\n"
    }
    for param in graph.params {
      out +=
        "  \(id(param.value)) [shape=box, style=filled, fillcolor=\"#f6ecc4\", label=\(quote("\(graph[param.value].name)\n\(typeText(graph, param.value))"))];\n"
    }
    func draw(_ node: Node, indent: String) {
      let result = node.results[0]
      let label = "\(node.op) %\(graph[result].name)\n\(typeText(graph, result))"
      out += "\(indent)\(id(result)) [label=\(quote(label))];\n"
      for operand in node.operands { out += "\(indent)\(id(operand)) -> \(id(result));\n" }
    }
    for (index, node) in graph.nodes.enumerated() {
      guard node.op == Node.fusedOp else {
        draw(node, indent: "  ")
        continue
      }
      // A fused node is a cluster around its members: the ops one kernel computes.
      let kind = node.attributes[Node.fusedKindAttribute]?.stringValue ?? "?"
      out += "  subgraph cluster_fused_\(index) {\n"
      out +=
        "    label=\(quote("fused \(kind): \(node.body.count) ops, 1 kernel\nwrites \(node.results.map { "%" + graph[$0].name }.joined(separator: ", "))"));\n"
      out += "    style=\"rounded,filled\"; fillcolor=\"#e6eefc\"; color=\"#5a7bd0\";\n"
      for member in node.body { draw(member, indent: "    ") }
      out += "  }\n"
    }
    for named in graph.outputs + graph.losses {
      let kind = graph.outputs.contains(named) ? "output" : "loss"
      out +=
        "  \(kind)_\(sanitize(named.name)) [shape=doubleoctagon, label=\(quote("\(kind) \(named.name)"))];\n"
      out += "  \(id(named.value)) -> \(kind)_\(sanitize(named.name));\n"
    }
    return out + "}\n"
  }

  private func id(_ value: ValueID) -> String { "v\(value.index)" }
  private func typeText(_ graph: Graph, _ value: ValueID) -> String {
    graph[value].type?.description ?? "?"
  }
  private func sanitize(_ name: String) -> String {
    String(name.map { $0.isLetter || $0.isNumber ? $0 : "_" })
  }
  private func quote(_ text: String) -> String {
    "\""
      + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(
        of: "\"", with: "\\\""
      )
      .replacingOccurrences(of: "\n", with: "\\n") + "\""
  }
}
