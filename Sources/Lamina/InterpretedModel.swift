import LaminaIR
import LaminaSupport

/// A model trained and evaluated by the reference interpreter, for `Trainer`.
///
/// Much slower than the compiled model and computed the same way (the interpreter is the oracle the
/// compiled code is tested against), so a short run checks the compiled one: `lamina train --interpret`.
public final class InterpretedModel: TrainableModel {
  public let model: Model
  public let signature: ModelSignature
  /// Parameters and optimizer state, by name.
  private var values: [String: Tensor]
  private let parameterNames: [String]
  private let stateNames: [String]

  /// The model must come from `Pipeline.training`.
  public init(_ model: Model, parameters: [String: Tensor]) throws {
    _ = try model.trainStep(named: nil)
    guard !model.graph.assignments.isEmpty else {
      throw RunError(
        "model \(model.graph.name) was not built with the training pipeline (Pipeline.training)")
    }
    self.model = model
    signature = try model.generateC().signature
    parameterNames = signature.params.map(\.name)
    stateNames = signature.states.map(\.name)
    values = try model.graph.initialState()
    try setParameters(parameters)
  }

  public func trainStep(_ inputs: [String: Tensor], step: String?) throws -> Double {
    try trainStep(inputs, step: step, dims: [:])
  }

  public func trainStep(_ inputs: [String: Tensor], step: String?, dims: [String: Int]) throws
    -> Double
  {
    let (loss, updated) = try model.interpretTrainStep(
      inputs, values: values, step: step, dims: dims)
    values = updated
    return loss
  }

  public func evaluate(_ inputs: [String: Tensor]) throws -> (
    outputs: [String: Tensor], losses: [String: Tensor]
  ) {
    let outputNames = signature.outputs.map(\.name)
    let lossNames = signature.losses.map(\.name)
    let results = try model.interpret(
      inputs: inputs, parameters: values, outputs: outputNames + lossNames)
    return (
      results.filter { outputNames.contains($0.key) }, results.filter { lossNames.contains($0.key) }
    )
  }

  public func parameters() throws -> [String: Tensor] {
    values.filter { parameterNames.contains($0.key) }
  }

  public func setParameters(_ tensors: [String: Tensor]) throws {
    for entry in signature.params {
      guard let tensor = tensors[entry.name] else {
        throw RunError("no value for parameter '\(entry.name)' (\(entry.typeDescription))")
      }
      guard tensor.dtype.rawValue == entry.dtype, tensor.shape == entry.concreteShape([:]) else {
        throw RunError(
          "parameter '\(entry.name)': expected \(entry.typeDescription), got \(tensor.typeDescription)"
        )
      }
      values[entry.name] = tensor
    }
    // Model state given with the parameters (a weights file's running statistics), as compiled.
    for (name, tensor) in signature.modelStates(in: tensors) { try setState([name: tensor]) }
  }

  public func state() throws -> [String: Tensor] { values.filter { stateNames.contains($0.key) } }

  public func setState(_ tensors: [String: Tensor]) throws {
    for (name, tensor) in tensors {
      guard let entry = signature.states.first(where: { $0.name == name }) else {
        throw RunError("the model has no state '\(name)'")
      }
      guard tensor.dtype.rawValue == entry.dtype, tensor.shape == entry.concreteShape([:]) else {
        throw RunError(
          "state '\(name)': expected \(entry.typeDescription), got \(tensor.typeDescription)")
      }
      values[name] = tensor
    }
  }
}
