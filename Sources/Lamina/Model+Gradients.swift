import Foundation
import LaminaIR
import LaminaPasses
import LaminaSupport

/// Gradients of a training step's loss, and their check against finite differences.
extension Model {
  /// The training step named `step`, or the first one.
  public func trainStep(named step: String?) throws -> TrainStep {
    guard let first = graph.trainSteps.first else {
      throw RunError("model \(graph.name) has no training step (add `train with sgd(lr: 0.01)`)")
    }
    guard let step else { return first }
    guard let found = graph.trainSteps.first(where: { $0.name == step }) else {
      throw RunError(
        "model \(graph.name) has no training step '\(step)' (it has \(graph.trainSteps.map(\.name).joined(separator: ", ")))"
      )
    }
    return found
  }

  /// The loss and every trained parameter's gradient for one step, by the reference interpreter.
  ///
  /// The model must have gone through `Pipeline.training`. Keys: `loss` and the parameter names.
  /// `mode` is `.training` unless asked (`lamina gradients --mode inference`): batch norm then uses
  /// its running statistics, dropout is the identity.
  public func interpretGradients(
    inputs: [String: Tensor], parameters: [String: Tensor], step: String? = nil,
    mode: ExecutionMode = .training
  ) throws -> [String: Tensor] {
    let trainStep = try trainStep(named: step)
    let entries = graph.gradients.filter { $0.step == trainStep.name }
    let names = [trainStep.lossName] + entries.map { graph[$0.gradient].name }
    let values = try interpret(
      inputs: inputs, parameters: parameters, outputs: names, mode: mode)
    var result = ["loss": values[trainStep.lossName]!]
    for entry in entries {
      result[graph[entry.parameter].name] = values[graph[entry.gradient].name]!
    }
    return result
  }

  /// One parameter's result of a gradient check.
  public struct GradientCheck: Sendable {
    public var parameter: String
    /// Elements compared (a sample of large parameters).
    public var checked: Int
    public var elements: Int
    /// The largest |analytic - numeric| / max(|analytic|, |numeric|, floor) over the checked elements.
    public var worstRelativeError: Double
    public var worstIndex: Int
    public var analytic: Double
    public var numeric: Double
  }

  /// Compares this step's gradients with central finite differences of the loss computed in f64.
  ///
  /// - Parameters:
  ///   - samples: elements checked per parameter, chosen at random (all when a parameter has fewer).
  ///   - step: the finite-difference step (relative to 1 + |w|).
  ///   - compiled: evaluate the f64 loss with compiled code (much faster for large models) instead
  ///     of the interpreter; the gradients themselves always come from the interpreter.
  ///   - mode: the mode the loss and gradients are computed in (`.training`, as a training step).
  public func checkGradients(
    inputs: [String: Tensor], parameters: [String: Tensor], step: String? = nil, samples: Int = 32,
    seed: UInt64 = 0, differenceStep: Double = 1e-6, compiled: CompileOptions? = nil,
    mode: ExecutionMode = .training
  ) throws -> [GradientCheck] {
    let trainStep = try trainStep(named: step)
    let analytic = try interpretGradients(
      inputs: inputs, parameters: parameters, step: trainStep.name, mode: mode)
    // The loss in f64, for the finite differences.
    var promoted = graph
    var context = PassContext()
    try PromoteToF64().run(on: &promoted, context: &context)
    let interpreter = Interpreter(graph: promoted)
    let wideInputs = inputs.mapValues { $0.dtype == .f32 ? $0.converted(to: .f64) : $0 }
    // Model state (running statistics) not given starts at its initializer, as in `interpret`.
    var wideParameters = try graph.initialModelState().merging(parameters) { _, given in given }
      .mapValues { $0.dtype == .f32 ? $0.converted(to: .f64) : $0 }
    let compiledLoss = try compiled.map { options in
      try Model.compile(graph: promoted, options: options)
    }
    try compiledLoss?.setParameters(wideParameters)
    var changed: String?
    func loss() throws -> Double {
      if let compiledLoss {
        if let changed { try compiledLoss.setParameter(wideParameters[changed]!, named: changed) }
        return try compiledLoss.evaluate(wideInputs, mode: mode).losses[trainStep.lossName]!
          .doubles()[0]
      }
      return try interpreter.run(
        inputs: wideInputs, parameters: wideParameters, outputs: [trainStep.lossName],
        mode: mode)[
          trainStep.lossName]!.doubles()[0]
    }
    let floor = graph.params.contains { graph.type(of: $0.value).dtype == .f32 } ? 1e-4 : 1e-8
    var generator = SeededGenerator(seed: seed, stream: "gradcheck")
    var results: [GradientCheck] = []
    for entry in graph.gradients where entry.step == trainStep.name {
      let name = graph[entry.parameter].name
      changed = name
      guard let original = wideParameters[name], let gradient = analytic[name]?.doubles() else {
        continue
      }
      var values = original.doubles()
      var indices = Array(values.indices)
      if indices.count > samples {
        indices.shuffle(using: &generator)
        indices = Array(indices.prefix(samples)).sorted()
      }
      var check = GradientCheck(
        parameter: name, checked: indices.count, elements: values.count, worstRelativeError: 0,
        worstIndex: 0,
        analytic: 0, numeric: 0)
      for index in indices {
        let saved = values[index]
        let h = differenceStep * (1 + abs(saved))
        values[index] = saved + h
        wideParameters[name] = Tensor(dtype: .f64, shape: original.shape, doubles: values)
        let plus = try loss()
        values[index] = saved - h
        wideParameters[name] = Tensor(dtype: .f64, shape: original.shape, doubles: values)
        let minus = try loss()
        values[index] = saved
        let numeric = (plus - minus) / (2 * h)
        let error = abs(gradient[index] - numeric) / max(abs(gradient[index]), abs(numeric), floor)
        if error > check.worstRelativeError {
          check.worstRelativeError = error
          check.worstIndex = index
          check.analytic = gradient[index]
          check.numeric = numeric
        }
      }
      wideParameters[name] = original
      try compiledLoss?.setParameter(original, named: name)
      results.append(check)
    }
    return results
  }
}

extension Model {
  /// One training step by the reference interpreter: the loss, and the parameters and optimizer state
  /// after the update. `values` holds both parameters and state, by name (state defaults to its initial
  /// value when missing).
  public func interpretTrainStep(
    _ inputs: [String: Tensor], values: [String: Tensor], step: String? = nil,
    dims: [String: Int] = [:]
  )
    throws -> (loss: Double, values: [String: Tensor])
  {
    let trainStep = try trainStep(named: step)
    var current = try graph.initialState().merging(values) { _, given in given }
    let updates = graph.assignments.filter { $0.step == trainStep.name }
    let names = [trainStep.lossName] + updates.map { graph[$0.value].name }
    let results = try interpret(
      inputs: inputs, parameters: current, outputs: names, mode: .training, dims: dims)
    for update in updates {
      current[graph[update.target].name] = results[graph[update.value].name]!
    }
    return (results[trainStep.lossName]!.doubles()[0], current)
  }
}
