import LaminaIR
import LaminaSupport

/// Builds the backward graph: the gradient of each training step's loss with respect to the
/// parameters it trains.
///
/// Reverse mode over the nodes the loss needs, last to first: each node's gradient rule (from the op
/// table) turns the gradient of its result into gradients of its operands. Gradients of values used
/// several times are summed; gradients of broadcast operands are summed back to the operand's shape;
/// integer values (labels) get none, and `stop_gradient` cuts the path. Gradient values are named
/// after what they are the gradient of (`%grad.w1`, `%grad.h`).
/// - Postcondition: `graph.gradients` lists, for every step, each trained parameter's gradient.
/// - Throws: a diagnostic at a node whose op has no gradient rule but lies on a path to a parameter.
///
///     %y = mul(%x, %w)             %grad.w = mul(%grad.y, %x)
///     %loss = sum(%y)       →      grad train %w = %grad.w
public struct Autodiff: GraphPass {
  public static let name = "autodiff"
  public static let summary = "Builds the gradient of each training step's loss for its parameters."

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    for step in graph.trainSteps where !graph.gradients.contains(where: { $0.step == step.name }) {
      guard let loss = graph.losses.first(where: { $0.name == step.lossName }) else {
        context.diagnostics.error(
          "training step '\(step.name)' minimizes '\(step.lossName)', which is not a loss",
          at: step.location)
        continue
      }
      let pattern = step.attributes["params"]?.stringValue
      // Integer parameters (an imported model's gather indices) are constants, never trained.
      let parameters = graph.params.filter { param in
        param.trainable && graph.type(of: param.value).dtype.isFloatingPoint
          && (pattern.map { globMatch($0, graph[param.value].name) } ?? true)
      }.map(\.value)
      if parameters.isEmpty {
        context.diagnostics.error(
          "training step '\(step.name)' has no trainable parameter to update"
            + (pattern.map { " (params: \"\($0)\" matches none)" } ?? ""),
          at: step.location,
          help: "`lamina dump --params` lists the parameters and which are frozen")
        continue
      }
      do {
        let gradients = try Autodiff.gradients(
          of: loss.value, withRespectTo: parameters, in: &graph)
        for (parameter, gradient) in zip(parameters, gradients) {
          graph.gradients.append(
            ParameterGradient(step: step.name, parameter: parameter, gradient: gradient))
        }
      } catch let diagnostic as Diagnostic {
        context.diagnostics.append(diagnostic)
      }
    }
    try context.diagnostics.throwIfErrors()
  }

  /// Appends nodes computing ∂`loss`/∂`target` for each target and returns those values (a target the
  /// loss does not depend on gets a zero gradient).
  public static func gradients(
    of loss: ValueID, withRespectTo targets: [ValueID], in graph: inout Graph
  )
    throws -> [ValueID]
  {
    let lossType = graph.type(of: loss)
    guard lossType.isScalar, lossType.dtype.isFloatingPoint else {
      throw Diagnostic.error(
        "can only differentiate a floating-point scalar, got \(lossType)", at: graph[loss].location)
    }
    let needed = graph.nodesNeeded(for: [loss])
    // Values on a path from a target to the loss: only their gradients are worth building.
    var dependsOnTarget = Set(targets)
    for index in needed {
      let node = graph.nodes[index]
      if !node.is(Ops.stopGradient), node.operands.contains(where: dependsOnTarget.contains) {
        dependsOnTarget.formUnion(node.results)
      }
    }

    var adjoints: [ValueID: ValueID] = [:]
    var builder = GradientBuilder(graph: graph, location: graph[loss].location)
    adjoints[loss] = builder.constant(1, like: loss)
    builder.graph.rename(adjoints[loss]!, to: "grad.\(graph[loss].name)")

    try sweep(
      needed.reversed().map { (index: $0, node: builder.graph.nodes[$0]) },
      adjoints: &adjoints, dependsOnTarget: dependsOnTarget, builder: &builder)

    var results: [ValueID] = []
    for target in targets {
      if let gradient = adjoints[target] {
        // Leaves have no defining node; their gradients are complete once the sweep ends.
        nameGradient(of: target, gradient, in: &builder.graph)
        results.append(gradient)
      } else {
        // The loss does not depend on this parameter: its gradient is zero.
        let type = builder.type(of: target)
        let zero = builder.constant(0, like: target)
        let gradient = try? builder.op(Ops.broadcastTo, [zero], ["shape": .dims(type.shape)])
        let value = gradient ?? zero
        nameGradient(of: target, value, in: &builder.graph)
        results.append(value)
      }
    }
    graph = builder.graph
    return results
  }

  /// Turns result gradients into operand gradients, node by node, `nodes` last to first; `index`
  /// is the node's position in the graph (nil for the members of a loop body).
  static func sweep(
    _ nodes: [(index: Int?, node: Node)], adjoints: inout [ValueID: ValueID],
    dependsOnTarget: Set<ValueID>, builder: inout GradientBuilder
  ) throws {
    for (index, node) in nodes {
      let wanted = node.operands.map { operand in
        dependsOnTarget.contains(operand) && builder.type(of: operand).dtype.isFloatingPoint
      }
      let operandGradients: [ValueID?]
      if node.hasRegion {
        guard node.results.contains(where: { adjoints[$0] != nil && dependsOnTarget.contains($0) })
        else { continue }
        for result in node.results {
          nameGradient(of: result, adjoints[result], in: &builder.graph)
        }
        guard wanted.contains(true) else { continue }
        guard let index else {
          throw Diagnostic.error(
            "the gradient of a loop inside a loop's body is not supported yet", at: node.location)
        }
        builder.location = node.location
        operandGradients = try scanGradient(
          nodeIndex: index, resultGradients: node.results.map { adjoints[$0] }, wanted: wanted,
          builder: &builder)
      } else {
        guard let resultGradient = adjoints[node.result], dependsOnTarget.contains(node.result)
        else { continue }
        // Every use of the result comes after its definition, so its gradient is complete now.
        nameGradient(of: node.result, resultGradient, in: &builder.graph)
        guard wanted.contains(true) else { continue }
        guard let definition = OpRegistry.definition(node.op), let rule = definition.gradient else {
          throw Diagnostic.error(
            "\(node.op) has no gradient, but the loss depends on a parameter through it",
            at: node.location,
            help: "wrap the value in stop_gradient(...) if no gradient should flow through it")
        }
        builder.location = node.location
        do {
          operandGradients = try rule(
            &builder, GradientInputs(node: node, resultGradient: resultGradient))
        } catch {
          throw Diagnostic.error("gradient of \(node.op): \(error.message)", at: node.location)
        }
      }
      for (position, operand) in node.operands.enumerated() where wanted[position] {
        guard position < operandGradients.count, var gradient = operandGradients[position] else {
          continue
        }
        let operandType = builder.type(of: operand)
        do throws(ShapeError) {
          gradient = try builder.reduce(gradient, toShapeOf: operandType)
          if builder.type(of: gradient).dtype != operandType.dtype {
            gradient = try builder.op(Ops.cast, [gradient], ["dtype": .dtype(operandType.dtype)])
          }
          if let existing = adjoints[operand] {
            adjoints[operand] = try builder.add(existing, gradient)
          } else {
            adjoints[operand] = gradient
          }
        } catch {
          throw Diagnostic.error("gradient of \(node.op): \(error.message)", at: node.location)
        }
      }
    }
  }

  /// Gives a finished gradient value the name `grad.NAME` when it has only a temporary name.
  static func nameGradient(of value: ValueID, _ gradient: ValueID?, in graph: inout Graph) {
    guard let gradient, graph[gradient].name.first?.isNumber == true else { return }
    graph.rename(gradient, to: "grad.\(graph[value].name)")
  }
}
