import Foundation
import LaminaSupport

// Batch norm is split in two so that only the part that differs between modes is an op of its own:
//
//   %stats = batch_norm_statistics(%x, %running_mean, %running_var)   (mode-dependent, [4, C])
//   y = (x - stats[0]) · stats[1] · weight + bias                    (ordinary broadcast ops)
//
// The statistics op computes, per channel, the mean and 1/√(var + eps) that normalize x (the batch's
// in a training step, the running estimates at inference) and the running statistics a training
// step leaves behind (rows 2 and 3, which the layer registers as the state's update). The normalize
// step is plain elementwise arithmetic, so it fuses with its neighbours (a dense layer's epilogue,
// a following relu) and differentiates through the existing rules; only the statistics need a
// gradient rule of their own, which is zero at inference. One op with four rows keeps every node
// single-result (multi-result nodes are only partly supported by fusion and memory planning) while
// the statistics are still computed in one pass over x.

extension OpRegistry {
  /// Ops of normalization layers: batch norm's statistics, their gradient and their inference form.
  static let normalizationOps: [OpDefinition] = [
    batchNormStatisticsDefinition,
    OpDefinition(
      "batch_norm_statistics_grad",
      summary:
        "The gradient of batch_norm_statistics with respect to x (its gradient rule uses it): through the batch's mean and 1/√(var + eps) in a training step, zero at inference.",
      semantics:
        "Training: dx[n, c, …] = (dstats[0, c] - dstats[1, c]·stats[1, c]³·(x[n, c, …] - stats[0, c])) / M, M values per channel. Inference: dx = 0 (the running statistics do not depend on x).",
      operands: [OperandSpec("x"), OperandSpec("stats"), OperandSpec("stats_grad")],
      attributes: [AttributeSpec("eps", .float, default: .float(1e-5), "as the statistics'")],
      fusion: .opaque,
      c: .kernel(.batchNormStatisticsGradient),
      effects: [.dependsOnMode],
      shape: ShapeRule("same(x [N, C, …]), stats [4, C], stats_grad [4, C]") {
        context throws(ShapeError) in
        let x = context.operands[0]
        try context.requireFloat(x, "x")
        guard x.rank >= 2 else {
          throw ShapeError("\(context.op): x must have rank ≥ 2, got \(x)")
        }
        if let eps = context.double("eps"), !(eps > 0 && eps.isFinite) {
          throw ShapeError("\(context.op): eps must be a positive finite number, got \(eps)")
        }
        let expected = TensorType(x.dtype, [Dim(4), x.shape[1]])
        for operand in context.operands.dropFirst() where operand != expected {
          throw ShapeError("\(context.op): expected \(expected) statistics, got \(operand)")
        }
        return [x]
      },
      interpret: { context in
        _ = try context.checked("batch_norm_statistics_grad")
        let x = context.operands[0]
        guard context.mode == .training else {
          return [context.result(0, [Double](repeating: 0, count: x.count))]
        }
        let values = x.doubles()
        let (stats, grad) = (context.operands[1].doubles(), context.operands[2].doubles())
        let channels = x.shape[1]
        let inner = x.shape[2...].reduce(1, *)
        let count = Double(values.count / max(channels, 1))
        var output = [Double](repeating: 0, count: values.count)
        for (index, value) in values.enumerated() {
          let channel = (index / inner) % channels
          let (mean, invStd) = (stats[channel], stats[channels + channel])
          let (dMean, dInvStd) = (grad[channel], grad[channels + channel])
          // ∂mean/∂x = 1/M; ∂(1/√(var+eps))/∂x = -(1/√(var+eps))³·(x - mean)/M.
          output[index] = (dMean - dInvStd * invStd * invStd * invStd * (value - mean)) / count
        }
        return [context.result(0, output)]
      }),
    OpDefinition(
      "batch_norm_running_statistics",
      summary:
        "Batch norm's statistics at inference, from the running statistics alone: the inference form of batch_norm_statistics, which the backend's inference entry points run in its place.",
      semantics:
        "y[0] = running_mean, y[1] = 1/√(running_var + eps), y[2] = running_mean, y[3] = running_var, each [C] (batch_norm_statistics' rows in inference mode).",
      operands: [OperandSpec("running_mean"), OperandSpec("running_var")],
      attributes: [AttributeSpec("eps", .float, default: .float(1e-5), "added to the variance")],
      fusion: .opaque,
      c: .kernel(.batchNormRunningStatistics),
      shape: ShapeRule("[4, C](running_mean [C], running_var [C])") {
        context throws(ShapeError) in
        let (mean, variance) = (context.operands[0], context.operands[1])
        try context.requireFloat(mean, "running_mean")
        guard mean.rank == 1, variance == mean else {
          throw ShapeError(
            "\(context.op): running_mean and running_var must be the same [C] vector, got \(mean) and \(variance)"
          )
        }
        if let eps = context.double("eps"), !(eps > 0 && eps.isFinite) {
          throw ShapeError("\(context.op): eps must be a positive finite number, got \(eps)")
        }
        return [TensorType(mean.dtype, [Dim(4), mean.shape[0]])]
      },
      interpret: { context in
        _ = try context.checked("batch_norm_running_statistics")
        let (mean, variance) = (context.operands[0].doubles(), context.operands[1].doubles())
        let eps = context.double("eps") ?? 1e-5
        let inverse = variance.map { 1 / Foundation.sqrt($0 + eps) }
        return [context.result(0, mean + inverse + mean + variance)]
      }),
  ]

  /// `batch_norm_statistics`, whose inference form is `batch_norm_running_statistics`.
  static let batchNormStatisticsDefinition: OpDefinition = {
    var definition = OpDefinition(
      "batch_norm_statistics",
      summary:
        "Batch norm's per-channel statistics (channel axis 1): in a training step the batch's mean and 1/√(var + eps) in one pass, and the updated running statistics; at inference the running statistics.",
      semantics:
        "y[0] = mean, y[1] = 1/√(var + eps), y[2] = new running_mean, y[3] = new running_var, each [C]. Training: mean and biased var over every axis but 1 (M values per channel; M = 1 is an error), new running_mean = (1 - momentum)·running_mean + momentum·mean, new running_var = (1 - momentum)·running_var + momentum·var·M/(M - 1) (PyTorch's momentum; Keras' momentum is 1 - this). Inference: mean = running_mean, var = running_var, rows 2 and 3 unchanged.",
      operands: [OperandSpec("x"), OperandSpec("running_mean"), OperandSpec("running_var")],
      attributes: [
        AttributeSpec("eps", .float, default: .float(1e-5), "added to the variance"),
        AttributeSpec(
          "momentum", .float, default: .float(0.1),
          "weight of the batch's statistics in the running ones (PyTorch's meaning)"),
      ],
      fusion: .opaque,
      c: .kernel(.batchNormStatistics),
      effects: [.dependsOnMode],
      shape: ShapeRule("[4, C](x [N, C, …], running_mean [C], running_var [C])") {
        context throws(ShapeError) in
        let channels = try batchNormChannels(context)
        return [TensorType(context.operands[0].dtype, [Dim(4), channels])]
      },
      interpret: { context in
        _ = try context.checked("batch_norm_statistics")
        let x = context.operands[0]
        let (runningMean, runningVar) = (
          context.operands[1].doubles(), context.operands[2].doubles()
        )
        let eps = context.double("eps") ?? 1e-5
        let momentum = context.double("momentum") ?? 0.1
        let channels = x.shape[1]
        var rows = [[Double]](repeating: [Double](repeating: 0, count: channels), count: 4)
        guard context.mode == .training else {
          rows[0] = runningMean
          rows[1] = runningVar.map { 1 / Foundation.sqrt($0 + eps) }
          rows[2] = runningMean
          rows[3] = runningVar
          return [context.result(0, rows.flatMap { $0 })]
        }
        let values = x.doubles()
        let perChannel = values.count / max(channels, 1)
        guard perChannel > 1 else {
          throw InterpretError(batchNormSingleValueMessage(x.shape))
        }
        let inner = x.shape[2...].reduce(1, *)
        for channel in 0..<channels {
          // Two plain passes in Double: the reference, not the one-pass kernel it checks.
          var channelValues: [Double] = []
          for n in 0..<x.shape[0] {
            let start = (n * channels + channel) * inner
            channelValues += values[start..<(start + inner)]
          }
          let count = Double(channelValues.count)
          let mean = channelValues.reduce(0, +) / count
          let variance = channelValues.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / count
          rows[0][channel] = mean
          rows[1][channel] = 1 / Foundation.sqrt(variance + eps)
          rows[2][channel] = (1 - momentum) * runningMean[channel] + momentum * mean
          rows[3][channel] =
            (1 - momentum) * runningVar[channel] + momentum * variance * count / (count - 1)
        }
        return [context.result(0, rows.flatMap { $0 })]
      },
      // Only rows 0 and 1 reach a loss; the running statistics are state, with no gradient.
      gradient: { builder, inputs throws(ShapeError) in
        let dx = try builder.op(
          "batch_norm_statistics_grad", [inputs.operands[0], inputs.result, inputs.resultGradient],
          ["eps": inputs.attributes["eps"] ?? .float(1e-5)])
        return [dx, nil, nil]
      })
    // At inference the statistics are the running ones: an op of the state alone, so that the
    // normalize arithmetic no longer waits for a pass over x and fuses into x's producer.
    definition.inferenceForm = .op(Ops.batchNormRunningStatistics.name, operands: [1, 2])
    return definition
  }()
}

/// The channel count of batch norm's x ([N, C, …]), checked against the running statistics ([C]).
func batchNormChannels(_ context: ShapeContext) throws(ShapeError) -> Dim {
  let x = context.operands[0]
  try context.requireFloat(x, "x")
  guard x.rank >= 2 else {
    throw ShapeError(
      "\(context.op) needs an input of rank ≥ 2 ([N, C], [N, C, L], [N, C, H, W]), got \(x)")
  }
  // Both reach the generated C as literals: finite numbers only.
  if let eps = context.double("eps"), !(eps > 0 && eps.isFinite) {
    throw ShapeError("\(context.op): eps must be a positive finite number, got \(eps)")
  }
  if let momentum = context.double("momentum"), !(momentum >= 0 && momentum <= 1) {
    throw ShapeError("\(context.op): momentum must be in [0, 1], got \(momentum)")
  }
  let expected = TensorType(x.dtype, [x.shape[1]])
  for (name, operand) in zip(["running_mean", "running_var"], context.operands.dropFirst())
  where operand != expected {
    throw ShapeError(
      "\(context.op): \(name) must be \(expected) (one value per channel of \(x)), got \(operand)")
  }
  return x.shape[1]
}

/// The run-time error of a training step with one value per channel (PyTorch's wording).
func batchNormSingleValueMessage(_ shape: [Int]) -> String {
  "batch_norm: expected more than 1 value per channel when training, got input of shape [\(shape.map(String.init).joined(separator: ", "))]"
}
