import LaminaIR
import LaminaSupport

/// Batch norm's statistics and their gradient, split across the thread pool by channel.
///
/// x is [N, C, inner…]: channel c's values are N runs of `inner` contiguous elements. Each task owns a
/// range of channels, so it writes its own rows of the result and never shares a sum.
enum NormalizationKernels {
  /// `batch_norm_statistics`: rows mean, 1/√(var + eps), new running mean, new running var.
  static func emitStatistics(
    _ context: KernelContext, into body: inout CWriter, prelude: inout CWriter
  ) {
    let x = context.operandTypes[0]
    let type = CExpressionContext.cType(x.dtype)
    let eps = context.attributes["eps"]?.doubleValue ?? 1e-5
    let momentum = context.attributes["momentum"]?.doubleValue ?? 0.1
    declareSizes(x, into: &body)
    guard context.mode == .training else {
      // Inference: the running statistics, C values; not worth a thread.
      body.block("for (int64_t c = 0; c < channels; c++)") { loop in
        loop.line("out[c] = in1[c];")
        loop.line("out[channels + c] = (\(type))(1.0 / sqrt((double)in2[c] + \(eps)));")
        loop.line("out[2 * channels + c] = in1[c];")
        loop.line("out[3 * channels + c] = in2[c];")
      }
      return
    }
    // PyTorch's check: a variance of one value is no estimate (and M - 1 below would be 0).
    let shapeFormat = "[" + x.shape.map { _ in "%lld" }.joined(separator: ", ") + "]"
    let shapeArguments = x.shape.map { "(long long)\(cDim($0))" }.joined(separator: ", ")
    body.line(
      "if (batch * inner <= 1) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"batch_norm: expected more than 1 value per channel when training, got input of shape \(shapeFormat)\", \(shapeArguments));"
    )
    var range = CWriter()
    range.line("const int64_t batch = job->batch, channels = job->channels, inner = job->inner;")
    range.line("const double count = (double)(batch * inner);")
    range.block("for (int64_t c = begin; c < end; c++)") { loop in
      // One pass in double, shifted by the channel's first value so that the sum of squares does
      // not cancel when the mean is large next to the spread.
      loop.line("const double shift = (double)in0[c * inner];")
      loop.line("double sum = 0, squares = 0;")
      loop.block("for (int64_t n = 0; n < batch; n++)") { rows in
        rows.line("const \(type)* row = in0 + (n * channels + c) * inner;")
        rows.line("#pragma omp simd reduction(+ : sum, squares)")
        rows.line(
          "for (int64_t i = 0; i < inner; i++) { const double d = (double)row[i] - shift; sum += d; squares += d * d; }"
        )
      }
      loop.line("const double centred = sum / count;")
      loop.line("double variance = squares / count - centred * centred;")
      loop.line("if (variance < 0) variance = 0;")
      loop.line("const double mean = shift + centred;")
      loop.line("out[c] = (\(type))mean;")
      loop.line("out[channels + c] = (\(type))(1.0 / sqrt(variance + \(eps)));")
      loop.line("/* Running statistics, PyTorch's momentum; the unbiased variance. */")
      loop.line(
        "out[2 * channels + c] = (\(type))((1.0 - \(momentum)) * (double)in1[c] + \(momentum) * mean);"
      )
      loop.line(
        "out[3 * channels + c] = (\(type))((1.0 - \(momentum)) * (double)in2[c] + \(momentum) * variance * count / (count - 1.0));"
      )
    }
    dispatch(context, range: range, type: type, body: &body, prelude: &prelude)
  }

  /// `batch_norm_statistics_grad`: dx through the batch's mean and 1/√(var + eps); zero at inference.
  static func emitStatisticsGradient(
    _ context: KernelContext, into body: inout CWriter, prelude: inout CWriter
  ) {
    let x = context.operandTypes[0]
    let type = CExpressionContext.cType(x.dtype)
    declareSizes(x, into: &body)
    guard context.mode == .training else {
      body.line("/* At inference the statistics are the running ones, which x does not change. */")
      body.line("for (int64_t i = 0; i < batch * channels * inner; i++) out[i] = 0;")
      return
    }
    var range = CWriter()
    range.line("const int64_t batch = job->batch, channels = job->channels, inner = job->inner;")
    range.line("const double count = (double)(batch * inner);")
    range.block("for (int64_t c = begin; c < end; c++)") { loop in
      loop.line("const double mean = (double)in1[c], inverse = (double)in1[channels + c];")
      loop.line("/* dx = dmean/M - dinv·inv³·(x - mean)/M */")
      loop.line("const double constant = (double)in2[c] / count;")
      loop.line(
        "const double slope = (double)in2[channels + c] * inverse * inverse * inverse / count;")
      loop.block("for (int64_t n = 0; n < batch; n++)") { rows in
        rows.line("const \(type)* row = in0 + (n * channels + c) * inner;")
        rows.line("\(type)* gradient = out + (n * channels + c) * inner;")
        rows.line("#pragma omp simd")
        rows.line(
          "for (int64_t i = 0; i < inner; i++) gradient[i] = (\(type))(constant - slope * ((double)row[i] - mean));"
        )
      }
    }
    dispatch(context, range: range, type: type, body: &body, prelude: &prelude)
  }

  /// `batch_norm_running_statistics`: the rows of the statistics at inference, from the running
  /// statistics alone (C values; not worth a thread).
  static func emitRunningStatistics(_ context: KernelContext, into body: inout CWriter) {
    let statistics = context.operandTypes[0]
    let type = CExpressionContext.cType(statistics.dtype)
    let eps = context.attributes["eps"]?.doubleValue ?? 1e-5
    body.line("const int64_t channels = \(cDim(statistics.shape[0]));")
    body.block("for (int64_t c = 0; c < channels; c++)") { loop in
      loop.line("out[c] = in0[c];")
      loop.line("out[channels + c] = (\(type))(1.0 / sqrt((double)in1[c] + \(eps)));")
      loop.line("out[2 * channels + c] = in0[c];")
      loop.line("out[3 * channels + c] = in1[c];")
    }
  }

  /// `batch`, `channels` and `inner` (the product of the axes after the channel) in the kernel.
  private static func declareSizes(_ x: TensorType, into body: inout CWriter) {
    body.line(
      "const int64_t batch = \(cDim(x.shape[0])), channels = \(cDim(x.shape[1])), inner = \(cProduct(Array(x.shape[2...])));"
    )
    body.line("(void)batch; (void)inner;")
  }

  /// Runs `range` over the channels, on this thread or across the pool.
  private static func dispatch(
    _ context: KernelContext, range: CWriter, type: String, body: inout CWriter,
    prelude: inout CWriter
  ) {
    let arguments =
      context.operandTypes.indices.map {
        ParallelLoop.Argument(elementType: type, name: "in\($0)", isWritten: false)
      } + [ParallelLoop.Argument(elementType: type, name: "out", isWritten: true)]
    let loop = ParallelLoop(
      kernel: "@KERNEL@", arguments: arguments, dimensionPrologue: [], extent: "channels",
      work: "batch * channels * inner", chunkAlignment: 1)
    var withFields = loop
    withFields.extraFields = ["int64_t batch;", "int64_t channels;", "int64_t inner;"]
    withFields.declarations(rangeBody: range, into: &prelude)
    withFields.dispatch(into: &body) { fill in
      fill.line("job.batch = batch;")
      fill.line("job.channels = channels;")
      fill.line("job.inner = inner;")
    }
  }
}
