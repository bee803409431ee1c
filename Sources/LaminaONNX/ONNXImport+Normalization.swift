import LaminaSupport

extension ONNXTranslators {
  /// BatchNormalization (inference) as the `batch_norm` layer.
  static let normalizationTranslators: [ONNXTranslator] = [
    ONNXTranslator(["BatchNormalization"], translateBatchNorm)
  ]

  /// The layer's four tensors are the node's scale, bias, mean and variance, stored under the
  /// layer's names (`SCOPE.weight`, `.bias`, `.running_mean`, `.running_var`), so fine-tuning
  /// trains the scale and bias and updates the statistics as PyTorch would.
  @Sendable static func translateBatchNorm(_ context: inout ONNXNodeContext) throws
    -> [ImportedValue]
  {
    let x = try context.tensor(0)
    guard (2...5).contains(x.rank) else {
      throw context.error(
        "BatchNormalization of a rank-\(x.rank) input: lamina import translates [N, C], [N, C, L], [N, C, H, W] and [N, C, D, H, W]"
      )
    }
    guard let channels = x.shape[1].staticValue else {
      throw context.error(
        "BatchNormalization needs a static channel count, the input is \(x.shape)")
    }
    if context.opset < 9, try context.int("spatial", default: 1) != 1 {
      throw context.error("BatchNormalization with spatial = 0 is not supported")
    }
    if try context.int("training_mode", default: 0) != 0 {
      throw context.error("BatchNormalization in training mode is not supported")
    }
    let scope = context.layerScope(weightSuffixes: [
      1: "weight", 2: "bias", 3: "running_mean", 4: "running_var",
    ])
    let names = ["weight", "bias", "running_mean", "running_var"]
    let what = ["scale", "bias", "mean", "variance"]
    for index in 0..<4 {
      let tensor = try context.constant(index + 1, "the batch norm \(what[index])").converted(
        to: x.dtype)
      guard tensor.count == channels else {
        throw context.error("the \(what[index]) has shape \(tensor.shape), expected [\(channels)]")
      }
      try context.addWeight(
        "\(scope).\(names[index])", tensor.reshaped([channels])!, fromInput: index + 1)
    }
    let epsilon = context.float("epsilon", default: 1e-5)
    // ONNX's momentum weighs the running statistics; the layer's (PyTorch's) weighs the batch.
    // Through the float's shortest decimal form, so 0.9 gives 0.1, not 0.100000024.
    let onnxMomentum = Double("\(context.float("momentum", default: 0.9))") ?? 0.9
    let momentum = Float(1 - onnxMomentum)
    return [
      context.emit(
        "batch_norm(\(x.name), eps: \(try floatLiteral(epsilon)), momentum: \(try floatLiteral(momentum)), name: \"\(scope)\")",
        shape: x.shape, dtype: x.dtype)
    ]
  }
}
