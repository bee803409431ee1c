import LaminaIR
import LaminaSupport

extension Graph {
  /// Makes every use of a value read its replacement instead: node operands, outputs, losses,
  /// gradient declarations and updates. Outputs and losses keep their public names.
  ///
  /// Replacements may chain (`a → b`, `b → c`); each use gets the end of its chain. Update targets
  /// are parameters or state, never replaced.
  mutating func replaceUses(_ replacement: [ValueID: ValueID]) {
    guard !replacement.isEmpty else { return }
    func resolved(_ value: ValueID) -> ValueID {
      var current = value
      // A chain is at most as long as the map; the bound guards against a cycle.
      for _ in 0...replacement.count {
        guard let next = replacement[current] else { break }
        current = next
      }
      return current
    }
    for index in nodes.indices {
      nodes[index].operands = nodes[index].operands.map(resolved)
      // A fused node's members read its operands directly.
      for member in nodes[index].body.indices {
        nodes[index].body[member].operands = nodes[index].body[member].operands.map(resolved)
      }
    }
    for index in outputs.indices { outputs[index].value = resolved(outputs[index].value) }
    for index in losses.indices { losses[index].value = resolved(losses[index].value) }
    for index in gradients.indices {
      gradients[index].gradient = resolved(gradients[index].gradient)
    }
    for index in assignments.indices {
      assignments[index].value = resolved(assignments[index].value)
    }
    for index in stateUpdates.indices {
      stateUpdates[index].value = resolved(stateUpdates[index].value)
      stateUpdates[index].trigger = stateUpdates[index].trigger.map(resolved)
    }
    // An output's inference copy (mode-specialize) is replaced like the output itself: a
    // decomposed op downstream of a folded batch norm has both.
    for index in inferenceSpecializations.indices {
      inferenceSpecializations[index].value = resolved(inferenceSpecializations[index].value)
      inferenceSpecializations[index].inference = resolved(
        inferenceSpecializations[index].inference)
    }
  }

  /// The index of the node defining each value, for values that nodes define.
  func producers() -> [ValueID: Int] {
    var producers: [ValueID: Int] = [:]
    for (index, node) in nodes.enumerated() {
      for result in node.results { producers[result] = index }
    }
    return producers
  }

  /// `node` with its attributes resolved by its op's shape rule, when that rule gives exactly
  /// `expected`; nil otherwise. Rewrites check through this that they keep the result's type.
  func retyped(_ node: Node, expecting expected: [TensorType]) -> Node? {
    guard let definition = OpRegistry.definition(node.op) else { return nil }
    let operandTypes = node.operands.compactMap { self[$0].type }
    guard operandTypes.count == node.operands.count,
      let inferred = try? definition.inferTypes(
        operands: operandTypes, attributes: node.attributes),
      inferred.types == expected
    else { return nil }
    var typed = node
    typed.attributes = inferred.attributes
    return typed
  }
}

/// The axis permutation a node applies when it is a permutation (`transpose`, `permute`): result
/// axis d is operand axis `perm[d]`, with negative axes made non-negative; nil for other nodes or
/// invalid perms.
func permutation(of node: Node, operandRank rank: Int) -> [Int]? {
  guard let rule = node.definition?.permutation else { return nil }
  return rule(node.attributes, rank)
}
