/// An optimizer a training step can name, with the hyperparameters it accepts.
///
/// The update rules themselves are built as IR by the training issue; this table lets the frontend
/// and verifier check `train with adam(lr: 1e-3)` today.
public struct OptimizerDefinition: Sendable {
  public var name: String
  public var summary: String
  public var hyperparameters: [AttributeSpec]

  public init(_ name: String, _ summary: String, _ hyperparameters: [AttributeSpec]) {
    self.name = name
    self.summary = summary
    self.hyperparameters = hyperparameters
  }

  /// The option naming the loss a step minimizes.
  public static let lossOption = "loss"

  /// Hyperparameters every training step accepts, whatever its optimizer.
  public static let common: [AttributeSpec] = [
    AttributeSpec(lossOption, .string, default: .string("loss"), "the loss this step minimizes"),
    AttributeSpec(
      "params", .string, "a name pattern (`*` wildcards) selecting the parameters updated"),
    AttributeSpec("clip_norm", .float, "rescale gradients so their global L2 norm is at most this"),
    AttributeSpec(
      "schedule", .string, "learning-rate schedule: constant, step, exponential, cosine, warmup"),
    AttributeSpec("warmup_steps", .int, "steps of linear warm-up"),
    AttributeSpec(
      "decay_steps", .int, "steps per decay (step, exponential) or to the end (cosine)"),
    AttributeSpec("decay_rate", .float, "factor per decay_steps (step, exponential)"),
  ]

  public var allHyperparameters: [AttributeSpec] { hyperparameters + Self.common }
}

/// Every optimizer Lamina knows.
public enum OptimizerRegistry {
  public static let all: [OptimizerDefinition] = [
    OptimizerDefinition(
      "sgd", "Stochastic gradient descent with optional momentum.",
      [
        AttributeSpec("lr", .float, default: .float(0.01), "learning rate"),
        AttributeSpec("momentum", .float, default: .float(0), "momentum factor"),
        AttributeSpec("nesterov", .bool, default: .bool(false), "Nesterov momentum"),
        AttributeSpec(
          "weight_decay", .float, default: .float(0), "L2 penalty added to the gradient"),
      ]),
    OptimizerDefinition("adam", "Adam (Kingma and Ba, 2014).", adamHyperparameters),
    OptimizerDefinition(
      "adamw", "Adam with decoupled weight decay (Loshchilov and Hutter, 2017).",
      adamHyperparameters.map { spec in
        var spec = spec
        if spec.name == "weight_decay" { spec.defaultValue = .float(0.01) }
        return spec
      }),
    OptimizerDefinition(
      "rmsprop", "RMSProp.",
      [
        AttributeSpec("lr", .float, default: .float(0.01), "learning rate"),
        AttributeSpec("alpha", .float, default: .float(0.99), "smoothing constant"),
        AttributeSpec("eps", .float, default: .float(1e-8), "term added to the denominator"),
        AttributeSpec("momentum", .float, default: .float(0), "momentum factor"),
        AttributeSpec(
          "weight_decay", .float, default: .float(0), "L2 penalty added to the gradient"),
      ]),
    OptimizerDefinition(
      "adagrad", "Adagrad.",
      [
        AttributeSpec("lr", .float, default: .float(0.01), "learning rate"),
        AttributeSpec("eps", .float, default: .float(1e-10), "term added to the denominator"),
        AttributeSpec(
          "weight_decay", .float, default: .float(0), "L2 penalty added to the gradient"),
      ]),
  ]

  private static var adamHyperparameters: [AttributeSpec] {
    [
      AttributeSpec("lr", .float, default: .float(0.001), "learning rate"),
      AttributeSpec("beta1", .float, default: .float(0.9), "decay of the first moment"),
      AttributeSpec("beta2", .float, default: .float(0.999), "decay of the second moment"),
      AttributeSpec("eps", .float, default: .float(1e-8), "term added to the denominator"),
      AttributeSpec("weight_decay", .float, default: .float(0), "weight decay"),
    ]
  }

  public static func definition(_ name: String) -> OptimizerDefinition? {
    all.first { $0.name == name }
  }
}
