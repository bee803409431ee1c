import LaminaSupport

/// Typed handles of every op in the table: `Ops.add.name`, `node.is(Ops.constant)`,
/// `builder.op(Ops.sqrt, [x])`. Passes and the C backend refer to specific ops only through these.
public enum Ops {
  public static let add = OpHandle("add")
  public static let scan = OpHandle("scan")
  public static let batchNormStatistics = OpHandle("batch_norm_statistics")
  public static let batchNormStatisticsGrad = OpHandle("batch_norm_statistics_grad")
  public static let batchNormRunningStatistics = OpHandle("batch_norm_running_statistics")
  public static let sub = OpHandle("sub")
  public static let mul = OpHandle("mul")
  public static let div = OpHandle("div")
  public static let pow = OpHandle("pow")
  public static let maximum = OpHandle("maximum")
  public static let minimum = OpHandle("minimum")
  public static let neg = OpHandle("neg")
  public static let abs = OpHandle("abs")
  public static let exp = OpHandle("exp")
  public static let log = OpHandle("log")
  public static let sqrt = OpHandle("sqrt")
  public static let greaterEqual = OpHandle("greater_equal")
  public static let sign = OpHandle("sign")
  public static let relu = OpHandle("relu")
  public static let leakyRelu = OpHandle("leaky_relu")
  public static let sigmoid = OpHandle("sigmoid")
  public static let tanh = OpHandle("tanh")
  public static let gelu = OpHandle("gelu")
  public static let geluGrad = OpHandle("gelu_grad")
  public static let softplus = OpHandle("softplus")
  public static let matmul = OpHandle("matmul")
  public static let transpose = OpHandle("transpose")
  public static let permute = OpHandle("permute")
  public static let sum = OpHandle("sum")
  public static let mean = OpHandle("mean")
  public static let max = OpHandle("max")
  public static let softmax = OpHandle("softmax")
  public static let logSoftmax = OpHandle("log_softmax")
  public static let reshape = OpHandle("reshape")
  public static let flatten = OpHandle("flatten")
  public static let broadcastTo = OpHandle("broadcast_to")
  public static let concat = OpHandle("concat")
  public static let slice = OpHandle("slice")
  public static let sliceBackward = OpHandle("slice_backward")
  public static let squeeze = OpHandle("squeeze")
  public static let unsqueeze = OpHandle("unsqueeze")
  public static let mse = OpHandle("mse")
  public static let crossEntropy = OpHandle("cross_entropy")
  public static let crossEntropyGrad = OpHandle("cross_entropy_grad")
  public static let binaryCrossEntropyWithLogits = OpHandle("binary_cross_entropy_with_logits")
  public static let l2 = OpHandle("l2")
  public static let constant = OpHandle("constant")
  public static let cast = OpHandle("cast")
  public static let stopGradient = OpHandle("stop_gradient")
  public static let lrSchedule = OpHandle("lr_schedule")
  public static let layerNorm = OpHandle("layer_norm")
  public static let dropout = OpHandle("dropout")
  public static let conv2d = OpHandle("conv2d")
  public static let convTranspose2d = OpHandle("conv_transpose2d")
  public static let conv2dBackwardWeight = OpHandle("conv2d_backward_weight")
  public static let maxPool2d = OpHandle("max_pool2d")
  public static let maxPool2dBackward = OpHandle("max_pool2d_backward")
  public static let avgPool2d = OpHandle("avg_pool2d")
  public static let avgPool2dBackward = OpHandle("avg_pool2d_backward")
  public static let globalAvgPool2d = OpHandle("global_avg_pool2d")
  public static let randomNormal = OpHandle("random_normal")
  public static let randomUniform = OpHandle("random_uniform")
  public static let gatherRows = OpHandle("gather_rows")
  public static let scatterAddRows = OpHandle("scatter_add_rows")
  public static let sequenceMask = OpHandle("sequence_mask")
  public static let conv3d = OpHandle("conv3d")
  public static let convTranspose3d = OpHandle("conv_transpose3d")
  public static let conv3dBackwardWeight = OpHandle("conv3d_backward_weight")
  public static let maxPool3d = OpHandle("max_pool3d")
  public static let maxPool3dBackward = OpHandle("max_pool3d_backward")
  public static let avgPool3d = OpHandle("avg_pool3d")
  public static let avgPool3dBackward = OpHandle("avg_pool3d_backward")
  public static let instanceNorm = OpHandle("instance_norm")
  public static let lrn = OpHandle("lrn")
  public static let elu = OpHandle("elu")
  public static let selu = OpHandle("selu")
  public static let softsign = OpHandle("softsign")
  public static let clip = OpHandle("clip")
  public static let hardSigmoid = OpHandle("hard_sigmoid")
  public static let prelu = OpHandle("prelu")
  public static let gather = OpHandle("gather")
  public static let scatterAdd = OpHandle("scatter_add")
  public static let tile = OpHandle("tile")
  public static let pad = OpHandle("pad")
  public static let padBackward = OpHandle("pad_backward")

  /// Every handle, in table order (a test checks they match the table one to one).
  public static let all: [OpHandle] = [
    add, sub, mul, div, pow, maximum, minimum, neg, abs, exp, log, sqrt, greaterEqual, sign, relu,
    leakyRelu, sigmoid, tanh, gelu, geluGrad, softplus, matmul, transpose, permute, sum, mean, max,
    softmax, logSoftmax, reshape, flatten, broadcastTo, concat, slice, sliceBackward, squeeze,
    unsqueeze, mse, crossEntropy, crossEntropyGrad, binaryCrossEntropyWithLogits, l2, constant,
    cast, stopGradient, lrSchedule, batchNormStatistics, batchNormStatisticsGrad,
  ]
    + [batchNormRunningStatistics]
    + [layerNorm, dropout] + [conv2d, convTranspose2d, conv2dBackwardWeight]
    + [maxPool2d, maxPool2dBackward, avgPool2d, avgPool2dBackward, globalAvgPool2d]
    + [randomNormal, randomUniform]
    + [gatherRows, scatterAddRows]
    + [sequenceMask]
    + [scan]
    + [conv3d, convTranspose3d, conv3dBackwardWeight]
    + [maxPool3d, maxPool3dBackward, avgPool3d, avgPool3dBackward]
    + [instanceNorm, lrn]
    + [elu, selu, softsign, clip, hardSigmoid, prelu]
    + [gather, scatterAdd, tile, pad, padBackward]
}
