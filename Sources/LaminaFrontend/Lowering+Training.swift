import LaminaIR
import LaminaSupport

/// Training statements: `train [name] with optimizer(...)` and `freeze "pattern"`.
extension Lowering {
  mutating func lowerTrain(name: String?, _ expr: Expr, at location: SourceLocation) {
    guard case .call(let callee, let calleeLocation, let arguments) = expr.kind else {
      diagnostics.error(
        "expected an optimizer call like sgd(lr: 0.1) after 'with'", at: expr.location)
      return
    }
    guard let optimizer = optimizers.first(where: { $0.name == callee }) else {
      diagnostics.error(
        "unknown optimizer '\(callee)'", at: calleeLocation,
        help: closestName(to: callee, among: optimizers.map(\.name)).map {
          "did you mean '\($0)'?"
        }
          ?? "the optimizers are \(optimizers.map(\.name).joined(separator: ", "))")
      return
    }
    let stepName = name ?? "train"
    if let first = graph.trainSteps.first(where: { $0.name == stepName }) {
      diagnostics.error(
        "training step '\(stepName)' is defined twice", at: location,
        notes: [.init("first defined here", at: first.location)],
        help: "name each step: train generator with adam(...)")
      return
    }
    let bound = bindArguments(arguments, to: optimizerSignature(optimizer), at: expr.location)
    if !bound.failed {
      graph.trainSteps.append(
        TrainStep(
          name: stepName, optimizer: callee, attributes: bound.attributes, location: location))
    }
  }

  /// An optimizer's hyperparameters, labelled only; `loss:` names a loss rather than computing one.
  func optimizerSignature(_ optimizer: OptimizerDefinition) -> CallSignature {
    CallSignature(
      callee: optimizer.name, noun: "hyperparameter",
      slots: optimizer.allHyperparameters.map { spec in
        var slot = ArgumentSlot(attribute: spec)
        if spec.name == OptimizerDefinition.lossOption { slot.kind = .name }
        return slot
      },
      // Keras and PyTorch spell the learning rate out.
      aliases: ["learning_rate": "lr"])
  }

  mutating func applyFreezes() {
    for (pattern, location) in freezePatterns {
      var matched = false
      for index in graph.params.indices
      where globMatch(pattern, graph[graph.params[index].value].name) {
        graph.params[index].trainable = false
        matched = true
      }
      // A frozen batch_norm's running statistics count: freezing them alone is meaningful.
      matched = matched || graph.modelStates.contains { globMatch(pattern, graph[$0.value].name) }
      if !matched {
        diagnostics.warning(
          "freeze \"\(pattern)\" matches no parameter", at: location,
          help: "`lamina dump --params` lists the parameter names")
      }
    }
  }

}
