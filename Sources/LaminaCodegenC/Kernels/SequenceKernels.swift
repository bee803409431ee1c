import LaminaIR
import LaminaSupport

/// Kernels of padded batches of sequences.
enum SequenceKernels {
  /// `out[t, n] = t < in0[n]`, after checking every length is in `0...steps`: a length past the
  /// time axis is reported through the entry point's error, as the interpreter reports it.
  static func emitMask(_ context: KernelContext, into body: inout CWriter) {
    let result = context.resultType
    let type = CExpressionContext.cType(result.dtype)
    // User text: a string literal passed to %s, never part of the format; `@` escaped so no name
    // can spell the kernel-name placeholder.
    let name = CText.stringLiteral(
      OpRegistry.lengthsDescription(input: context.attributes["input"]?.stringValue)
    ).replacingOccurrences(of: "@", with: "\\100")
    body.line("const int64_t steps = \(cDim(result.shape[0])), rows = \(cDim(result.shape[1]));")
    body.block("for (int64_t n = 0; n < rows; n++)") { loop in
      loop.line("const int64_t length = (int64_t)in0[n];")
      loop.line(
        "if (length < 0 || length > steps) return lamina_fail(ctx, LAMINA_ERROR_INDEX, \"sequence_mask: length %lld at position [%lld] of %s is outside 0...%lld (the number of time steps)\", (long long)length, (long long)n, \(name), (long long)steps);"
      )
    }
    body.block("for (int64_t t = 0; t < steps; t++)") { loop in
      loop.line(
        "for (int64_t n = 0; n < rows; n++) out[t * rows + n] = (\(type))(t < (int64_t)in0[n]);")
    }
  }
}
