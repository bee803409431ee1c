import LaminaRuntime
import LaminaSupport

extension CompiledModel: TrainableModel {}

extension Model {
  /// Compiles the model with its training steps and loads it, ready for `Trainer`.
  ///
  /// The model must come from `Pipeline.training` and have a `train with ...` step.
  public func compileForTraining(
    options: CompileOptions = CompileOptions(), parameters: [String: Tensor]? = nil
  ) throws -> any TrainableModel {
    _ = try trainStep(named: nil)
    guard !graph.assignments.isEmpty else {
      throw RunError(
        "model \(graph.name) was not built with the training pipeline (Pipeline.training)")
    }
    return try compile(options: options, parameters: parameters)
  }
}
