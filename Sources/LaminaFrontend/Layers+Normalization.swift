import LaminaIR
import LaminaSupport

extension LayerRegistry {
  /// Normalization layers.
  static let normalizationLayers: [LayerDefinition] = [
    LayerDefinition(
      "batch_norm",
      summary:
        "Batch normalization over axis 1 of [N, C], [N, C, L] or [N, C, H, W] (PyTorch BatchNorm1d/2d): a training step normalizes with the batch's mean and variance and updates running_mean / running_var (model state: saved with the weights, not trained); inference uses the running statistics. momentum has PyTorch's meaning, running = (1 - momentum)·running + momentum·batch (Keras' momentum is 1 minus this).",
      options: [
        LayerOptionSpec("eps", .number, default: .number(1e-5), "added to the variance"),
        LayerOptionSpec(
          "momentum", .number, default: .number(0.1),
          "weight of a batch's statistics in the running ones (PyTorch's meaning)"),
        LayerOptionSpec(
          "affine", .bool, default: .bool(true),
          "learn a per-channel weight (ones) and bias (zeros)"),
        LayerOptionSpec("name", .string, "scope name of the layer's state (default batch_norm_N)"),
      ]
    ) { builder throws(ShapeError) in
      let x = builder.inputs[0]
      let type = builder.type(of: x)
      guard type.dtype.isFloatingPoint else {
        throw ShapeError("batch_norm needs a floating-point input, got \(type)")
      }
      guard type.rank >= 2 else {
        throw ShapeError(
          "batch_norm needs an input of rank ≥ 2 ([N, C], [N, C, L] or [N, C, H, W]), got \(type)",
          help: "batch norm normalizes each channel (axis 1) over the batch")
      }
      guard let channels = type.shape[1].staticValue else {
        throw ShapeError("batch_norm needs a static channel axis (axis 1), got \(type)")
      }
      let eps = builder.double("eps") ?? 1e-5
      let momentum = builder.double("momentum") ?? 0.1
      guard eps > 0 else { throw ShapeError("batch_norm: eps must be positive, got \(eps)") }
      guard momentum >= 0, momentum <= 1 else {
        throw ShapeError("batch_norm: momentum must be in [0, 1], got \(momentum)")
      }
      let channelType = TensorType(type.dtype, [Dim(channels)])
      var weight: ValueID?
      var bias: ValueID?
      if builder.bool("affine") != false {
        weight = try builder.param("weight", channelType, Initializer("ones"))
        bias = try builder.param("bias", channelType, Initializer("zeros"))
      }
      let runningMean = try builder.state("running_mean", channelType, Initializer("zeros"))
      let runningVar = try builder.state("running_var", channelType, Initializer("ones"))
      // Under a `freeze` pattern (Keras fine-tuning): the running statistics in every mode, and
      // no update, so a training step leaves them as they were loaded.
      let frozen = builder.isFrozen("running_mean") || builder.isFrozen("running_var")
      var statistics: ValueID?
      let mean: ValueID
      var scale: ValueID
      if frozen {
        let epsilon = try builder.op(
          "constant", [], ["value": .float(eps), "dtype": .dtype(type.dtype)])
        let one = try builder.op("constant", [], ["value": .float(1), "dtype": .dtype(type.dtype)])
        mean = runningMean
        scale = try builder.op(
          "div", [one, builder.op("sqrt", [builder.op("add", [runningVar, epsilon])])])
      } else {
        // Mode-dependent statistics, then plain broadcast arithmetic that fuses (see
        // Ops+Normalization.swift for why the op is split this way).
        statistics = try builder.op(
          Ops.batchNormStatistics.name, [x, runningMean, runningVar],
          ["eps": .float(eps), "momentum": .float(momentum)])
        mean = try builder.op("slice", [statistics!], ["index": .slices([.index(0)])])
        scale = try builder.op("slice", [statistics!], ["index": .slices([.index(1)])])
      }
      if let weight { scale = try builder.op("mul", [scale, weight]) }
      // [C] broadcasts against axis 1 once given trailing unit axes: [C, 1, 1] for [N, C, H, W].
      func perChannel(_ value: ValueID) throws(ShapeError) -> ValueID {
        guard type.rank > 2 else { return value }
        let shape = [Dim(channels)] + Array(repeating: Dim(1), count: type.rank - 2)
        return try builder.op("reshape", [value], ["shape": .dims(shape)])
      }
      var y = try builder.op(
        "mul", [builder.op("sub", [x, perChannel(mean)]), perChannel(scale)])
      if let bias { y = try builder.op("add", [y, perChannel(bias)]) }
      // A training step that runs these statistics leaves the running ones behind.
      if let statistics {
        func row(_ index: Int) throws(ShapeError) -> ValueID {
          try builder.op("slice", [statistics], ["index": .slices([.index(index)])])
        }
        try builder.updateState(runningMean, to: row(2), when: statistics)
        try builder.updateState(runningVar, to: row(3), when: statistics)
      }
      return y
    }
  ]
}
