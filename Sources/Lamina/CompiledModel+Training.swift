import LaminaRuntime
import LaminaSupport

// The compiled train step (`CompiledModel.trainStep`, `state`, `setState`) is being added on main.
// Until it lands, this conformance is compiled out; when it does, delete the `#if` and its `#else`.
#if LAMINA_COMPILED_TRAIN_STEP
  extension CompiledModel: TrainableModel {}
#endif

extension Model {
  /// Compiles the model with its training steps and loads it, ready for `Trainer`.
  ///
  /// The model must come from `Pipeline.training` and have a `train with ...` step.
  public func compileForTraining(
    options: CompileOptions = CompileOptions(), parameters: [String: Tensor]? = nil
  ) throws -> any TrainableModel {
    _ = try trainStep(named: nil)
    #if LAMINA_COMPILED_TRAIN_STEP
      return try compile(options: options, parameters: parameters)
    #else
      throw RunError(
        "this build of Lamina cannot compile training steps yet (CompiledModel.trainStep is not merged)"
      )
    #endif
  }

  /// True when `compileForTraining` can produce a compiled train step in this build.
  public static var hasCompiledTrainStep: Bool {
    #if LAMINA_COMPILED_TRAIN_STEP
      return true
    #else
      return false
    #endif
  }
}
