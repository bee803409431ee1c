import LaminaIR
import LaminaSupport

/// Losses and penalties: scalar results accumulated in `double`.
enum LossKernels {
  /// mean((p - t)²)
  static func emitMSE(_ context: KernelContext, into writer: inout CWriter) {
    let count = cProduct(context.operandTypes[0].shape)
    writer.line("const int64_t count = \(count);")
    writer.line("double total = 0;")
    writer.line(
      "for (int64_t i = 0; i < count; i++) { const double d = (double)in0[i] - (double)in1[i]; total += d * d; }"
    )
    writer.line("out[0] = (\(resultType(context)))(total / (double)count);")
  }

  /// mean over label positions of logsumexp(logits) - logits[label]; class axis 1.
  static func emitCrossEntropy(_ context: KernelContext, into writer: inout CWriter) {
    let logits = context.operandTypes[0]
    writer.line(
      "const int64_t batch = \(cDim(logits.shape[0])), classes = \(cDim(logits.shape[1]));")
    writer.line("const int64_t inner = \(cProduct(Array(logits.shape[2...])));")
    writer.line("double total = 0;")
    writer.block("for (int64_t n = 0; n < batch; n++)") { batchLoop in
      batchLoop.block("for (int64_t j = 0; j < inner; j++)") { body in
        body.line("const int64_t label = (int64_t)in1[n * inner + j];")
        body.line(
          "if (label < 0 || label >= classes) return lamina_fail(ctx, LAMINA_ERROR_INDEX, \"cross_entropy: label %lld at position %lld is outside 0..<%lld\", (long long)label, (long long)(n * inner + j), (long long)classes);"
        )
        body.line(
          "const \(CExpressionContext.cType(logits.dtype))* row = in0 + n * classes * inner + j;")
        ReductionKernels.emitPeakAndExpSum(
          length: "classes", sumName: "exp_sum", element: { "row[\($0) * inner]" }, into: &body)
        body.line("total += peak + log(exp_sum) - (double)row[label * inner];")
      }
    }
    writer.line("out[0] = (\(resultType(context)))(total / (double)(batch * inner));")
  }

  /// (softmax(logits, axis 1) - onehot(label)) / count, one line of classes at a time, in `double`.
  static func emitCrossEntropyGradient(_ context: KernelContext, into writer: inout CWriter) {
    let logits = context.operandTypes[0]
    let type = CExpressionContext.cType(logits.dtype)
    writer.line(
      "const int64_t batch = \(cDim(logits.shape[0])), classes = \(cDim(logits.shape[1]));")
    writer.line("const int64_t inner = \(cProduct(Array(logits.shape[2...])));")
    writer.line("const double count = (double)(batch * inner);")
    writer.block("for (int64_t n = 0; n < batch; n++)") { batchLoop in
      batchLoop.block("for (int64_t j = 0; j < inner; j++)") { body in
        body.line("const int64_t label = (int64_t)in1[n * inner + j];")
        body.line(
          "if (label < 0 || label >= classes) return lamina_fail(ctx, LAMINA_ERROR_INDEX, \"cross_entropy_grad: label %lld at position %lld is outside 0..<%lld\", (long long)label, (long long)(n * inner + j), (long long)classes);"
        )
        body.line("const \(type)* row = in0 + n * classes * inner + j;")
        body.line("\(type)* gradient = out + n * classes * inner + j;")
        ReductionKernels.emitPeakAndExpSum(
          length: "classes", sumName: "exp_sum", element: { "row[\($0) * inner]" }, into: &body)
        // One division per line of classes, not two per element.
        body.line("const double scale = 1.0 / (exp_sum * count), hit = 1.0 / count;")
        body.line("#pragma omp simd")
        body.line(
          "for (int64_t c = 0; c < classes; c++) gradient[c * inner] = (\(type))(lamina_exp((double)row[c * inner] - peak) * scale - (c == label ? hit : 0.0));"
        )
      }
    }
  }

  /// mean of max(x, 0) - x·t + log(1 + e^-|x|)
  static func emitBinaryCrossEntropy(_ context: KernelContext, into writer: inout CWriter) {
    writer.line("const int64_t count = \(cProduct(context.operandTypes[0].shape));")
    writer.line("double total = 0;")
    writer.block("for (int64_t i = 0; i < count; i++)") { body in
      body.line("const double x = in0[i], t = in1[i];")
      body.line("total += (x > 0 ? x : 0) - x * t + log1p(lamina_exp(-fabs(x)));")
    }
    writer.line("out[0] = (\(resultType(context)))(total / (double)count);")
  }

  /// Σ over operands of Σ x²
  static func emitL2(_ context: KernelContext, into writer: inout CWriter) {
    writer.line("double total = 0;")
    for (index, operand) in context.operandTypes.enumerated() {
      writer.line(
        "for (int64_t i = 0; i < \(cProduct(operand.shape)); i++) total += (double)in\(index)[i] * (double)in\(index)[i];"
      )
    }
    writer.line("out[0] = (\(resultType(context)))total;")
  }

  private static func resultType(_ context: KernelContext) -> String {
    CExpressionContext.cType(context.resultType.dtype)
  }
}
