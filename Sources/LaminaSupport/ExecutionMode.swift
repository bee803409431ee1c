/// Whether a graph runs for inference or as part of a training step.
///
/// The same graph serves both: `lamina_forward` and `Interpreter.run` use inference; training steps
/// use training. Ops that behave differently (dropout drops only in training; batch norm uses batch
/// statistics only in training) declare `dependsOnMode` and read the mode. In the runtime (it does
/// not see the IR), `CompiledModel.forward(_:mode:)` chooses the entry point.
public enum ExecutionMode: String, Sendable, Hashable {
  case inference
  case training
}
