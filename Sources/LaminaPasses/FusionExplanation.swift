import LaminaIR
import LaminaSupport

/// Two neighbouring ops that fusion left in separate kernels, and why.
public struct UnfusedPair: Sendable, Hashable, CustomStringConvertible {
  /// The node producing the value, as `%name = op`.
  public var producer: String
  /// The node reading it, as `%name = op`.
  public var consumer: String
  /// One sentence naming the rule that kept them apart.
  public var reason: String

  public var description: String { "\(producer) -> \(consumer): \(reason)" }
}

extension Fusion {
  /// Why each producer-consumer pair of `graph` (the graph fusion runs on) stays unfused.
  ///
  /// Runs the same planner as the pass, then asks, for every edge between two groups, which of
  /// the planner's rules refused it, in the order the planner applies them. Nodes that compute
  /// nothing (constants, views of a buffer) are left out: there is no kernel to fuse them into.
  ///
  ///     %probs = softmax(%logits)   ->   %logits = add -> %probs = softmax: softmax has its own
  ///                                      kernel (reduction); ...
  public static func explain(_ graph: Graph) -> [UnfusedPair] {
    var planner = FusionPlanner(graph: graph)
    planner.formGroups()
    var pairs: [UnfusedPair] = []
    for (consumerIndex, consumer) in graph.nodes.enumerated() {
      var seen = Set<Int>()
      for operand in consumer.operands {
        guard let producerIndex = planner.producer[operand], seen.insert(producerIndex).inserted,
          planner.groupOf[producerIndex] != planner.groupOf[consumerIndex],
          planner.computes(graph.nodes[producerIndex]), planner.computes(consumer)
        else { continue }
        pairs.append(
          UnfusedPair(
            producer: planner.label(producerIndex), consumer: planner.label(consumerIndex),
            reason: planner.reasonApart(producerIndex, consumerIndex)))
      }
    }
    return pairs
  }
}

extension FusionPlanner {
  /// Whether a node does work a kernel could share: not a constant, not a view of a buffer.
  func computes(_ node: Node) -> Bool {
    guard !node.operands.isEmpty else { return false }
    if let definition = OpRegistry.definition(node.op), case .alias = definition.c { return false }
    return true
  }

  func label(_ index: Int) -> String {
    let node = graph.nodes[index]
    return "%\(graph[node.result].name) = \(node.op)"
  }

  /// A group's kernel as a noun: "the matmul kernel of %h".
  func kernelName(_ group: Int) -> String {
    let members = groups[group].members
    let kind = groups[group].kind.map { "\($0.rawValue) kernel" } ?? "own kernel"
    guard let last = members.max() else { return kind }
    let others = members.count - 1
    let named = others > 0 ? " (with \(others) more op\(others == 1 ? "" : "s"))" : ""
    return "the \(kind) of %\(graph[graph.nodes[last].result].name)\(named)"
  }

  /// The first of the planner's rules that kept `producerIndex` and `consumerIndex` apart.
  func reasonApart(_ producerIndex: Int, _ consumerIndex: Int) -> String {
    let producerNode = graph.nodes[producerIndex]
    let consumerNode = graph.nodes[consumerIndex]
    let producerGroup = groupOf[producerIndex]
    let consumerGroup = groupOf[consumerIndex]
    let definition = OpRegistry.definition(consumerNode.op)
    let kind = definition?.fusion.rawValue ?? "unknown"

    if isEpilogueProducer(consumerNode) {
      return
        "\(consumerNode.op) reads its operands from memory before its epilogue runs: only its consumers fuse into it"
    }
    if definition?.dependsOnMode == true {
      return
        "\(consumerNode.op) computes differently in training and inference: it keeps its own kernel per mode"
    }
    let consumerIsElementwise = isElementwise(consumerNode)
    let consumerIsRow = isRowReduction(consumerNode)
    let consumerIsColumn = isColumnReduction(consumerNode)
    guard consumerIsElementwise || consumerIsRow || consumerIsColumn else {
      // A reduction with axes could have fused had its axes been the last or all the leading ones.
      let axesNote =
        consumerNode.attributes["axes"] != nil
        ? ": fused kernels take sums, means and maxima over the last axis, and sums and means over all leading axes"
        : ""
      return "\(consumerNode.op) has its own kernel (\(kind))\(axesNote)"
    }
    guard let producerKind = groups[producerGroup].kind else {
      return
        "\(producerNode.op) has its own kernel (\(OpRegistry.definition(producerNode.op)?.fusion.rawValue ?? "unknown")) with no epilogue to run consumers in"
    }
    if !mayJoin(consumerIndex, producerGroup) {
      let tierNames = ["the outputs", "only the losses", "only the training step's backward graph"]
      return
        "%\(graph[consumerNode.result].name) is needed by \(tierNames[tier(consumerIndex)]), while \(kernelName(producerGroup)) serves a cheaper entry point: joining would add work to it"
    }
    let consumerShape = graph.type(of: consumerNode.results[0]).shape
    let producerDomain = groups[producerGroup].domain
    if consumerIsColumn {
      if producerKind != .elementwise {
        return
          "a sum over the leading axes accumulates only inside an elementwise loop; \(kernelName(producerGroup)) is a \(producerKind.rawValue) kernel"
      }
      return
        "its operand's loop (\(formatShape(producerDomain))) does not read every operand row by row, or joining would form a cycle"
    }
    if consumerIsRow {
      let operandShape = graph.type(of: consumerNode.operands[0]).shape
      if producerKind != .elementwise && producerKind != .reduction {
        return
          "a row reduction fuses only with elementwise and row-reduction kernels; \(kernelName(producerGroup)) is a \(producerKind.rawValue) kernel"
      }
      if operandShape != producerDomain {
        return
          "loop domains differ: \(kernelName(producerGroup)) loops over \(formatShape(producerDomain)), the reduction over \(formatShape(operandShape))"
      }
      if groups[producerGroup].members.contains(where: { isColumnReduction(graph.nodes[$0]) }) {
        return
          "\(kernelName(producerGroup)) sums over leading axes; a row reduction needs a kernel that walks whole rows"
      }
      if !canJoin(consumerIndex, producerGroup) {
        return cycleReason(producerGroup)
      }
      return
        "an operand of \(kernelName(producerGroup)) is not readable row by row in \(formatShape(producerDomain))"
    }
    // An elementwise consumer.
    if producerKind == .reduction, consumerShape != producerDomain {
      let rowShapes = [
        Array(producerDomain.dropLast()) + [Dim(1)], Array(producerDomain.dropLast()),
      ]
      if !rowShapes.contains(consumerShape) {
        return
          "the consumer's shape \(formatShape(consumerShape)) is neither the rows' domain \(formatShape(producerDomain)) nor one value per row"
      }
    }
    if producerKind == .epilogue {
      if consumerShape != producerDomain {
        return
          "an epilogue runs on the product's tiles: the consumer's shape \(formatShape(consumerShape)) is not the product's \(formatShape(producerDomain))"
      }
      let productType = graph.type(of: producerNode.results[0]).dtype
      let consumerType = graph.type(of: consumerNode.results[0]).dtype
      if consumerType != productType {
        return
          "an epilogue keeps the product's dtype (\(productType)); the consumer computes \(consumerType)"
      }
    }
    if producerKind == .elementwise, consumerShape != producerDomain {
      return
        "loop domains differ: \(kernelName(producerGroup)) loops over \(formatShape(producerDomain)), the consumer over \(formatShape(consumerShape))"
    }
    if isColumnReduction(producerNode) {
      return
        "a sum over leading axes is complete only when its loop ends: nothing in that loop can read it"
    }
    if !fits(consumerNode, into: groups[producerGroup]) {
      return
        "an operand of the consumer cannot be read in the loop of \(kernelName(producerGroup)) (its shape does not map onto \(formatShape(producerDomain)))"
    }
    if !canJoin(consumerIndex, producerGroup) {
      return cycleReason(producerGroup)
    }
    if groups[consumerGroup].members.count > 1 {
      return
        "%\(graph[consumerNode.result].name) joined \(kernelName(consumerGroup)) instead: an op joins one kernel (a matmul epilogue first, then the most recent producer)"
    }
    return
      "no rule joins a \(producerKind.rawValue) kernel with this consumer once the earlier groups formed"
  }

  func cycleReason(_ group: Int) -> String {
    "another operand of the consumer depends on \(kernelName(group)) through an op outside it: one kernel would need its own result"
  }

  func formatShape(_ shape: [Dim]) -> String {
    "[" + shape.map(\.description).joined(separator: ", ") + "]"
  }
}
