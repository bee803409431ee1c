import LaminaIR
import LaminaSupport

/// Kernels of ops that draw random numbers, from the Philox generator of `lamina_philox.h`.
enum RandomKernels {
  /// `dropout`: at inference a copy; in a training step each element times the scale or 0, as
  /// Philox decides for its position (`DropoutStream` in the interpreter draws the same words).
  /// Each block of four elements is one Philox call, so threads split the blocks with nothing
  /// shared: the mask does not depend on the thread count.
  static func emitDropout(
    _ context: KernelContext, into body: inout CWriter, prelude: inout CWriter
  ) {
    let type = context.resultType
    let elementType = CExpressionContext.cType(type.dtype)
    let count = cProduct(type.shape)
    guard context.mode == .training else {
      body.line("/* Inference: dropout is the identity. */")
      body.line("memcpy(out, in0, (size_t)(\(count)) * sizeof(\(elementType)));")
      return
    }
    let rate = context.attributes["rate"]?.doubleValue ?? 0
    let stream = context.attributes["stream"]?.intValue ?? 0
    let literals = CExpressionContext(
      operands: [], attributes: [:], dtype: type.dtype, operandDTypes: [])
    body.line("const int64_t count = \(count);")
    body.line(
      "if (count >= LAMINA_DROPOUT_ELEMENT_LIMIT) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"dropout: %lld elements; the generator's counter covers fewer than 2^34\", (long long)count);"
    )
    body.line("const int64_t blocks = (count + 3) / 4;")

    var range = CWriter()
    range.line("const int64_t count = job->count;")
    range.line("/* The generator's state: the training seed and the step counter (model state). */")
    range.line("const uint64_t seed = (uint64_t)in1[0], step = (uint64_t)in2[0];")
    range.line(
      "/* rate \(Attribute.float(rate)): drop an element when its word is below rate * 2^32; scale the others by 1/(1 - rate). */"
    )
    range.line(
      "const \(elementType) scale = \(literals.literal(OpRegistry.dropoutScale(rate: rate)));")
    range.line("const uint32_t threshold = \(DropoutStream.threshold(rate: rate))u;")
    range.block("for (int64_t block = begin; block < end; block++)") { loop in
      loop.line(
        "const lamina_philox_block words = lamina_dropout_block(seed, step, \(stream)u, (uint32_t)block);"
      )
      loop.block("for (int lane = 0; lane < 4 && block * 4 + lane < count; lane++)") { lane in
        lane.line("const int64_t i = block * 4 + lane;")
        lane.line(
          "out[i] = in0[i] * (words.word[lane] >= threshold ? scale : (\(elementType))0);")
      }
    }
    dispatchBlocks(context, elementType: elementType, range: range, body: &body, prelude: &prelude)
  }

  /// `random_normal` and `random_uniform`: each block of four elements is one Philox call
  /// (`lamina_sample_block`), turned into numbers in double as `SampleStream` in the interpreter
  /// does, with `fma` where a product is added (both sides round it once, whatever the compiler
  /// contracts), then rounded once to the result's dtype.
  static func emitSamples(
    _ context: KernelContext, into body: inout CWriter, prelude: inout CWriter
  ) {
    let type = context.resultType
    let elementType = CExpressionContext.cType(type.dtype)
    let count = cProduct(type.shape)
    let normal = context.node.is(Ops.randomNormal)
    let stream = context.attributes["stream"]?.intValue ?? Int(RandomGenerator.firstSampleStream)
    let double = CExpressionContext(
      operands: [], attributes: [:], dtype: .f64, operandDTypes: [])
    body.line("const int64_t count = \(count);")
    body.line(
      "if (count >= LAMINA_DROPOUT_ELEMENT_LIMIT) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"\(context.node.op): %lld elements; the generator's counter covers fewer than 2^34\", (long long)count);"
    )
    body.line("const int64_t blocks = (count + 3) / 4;")

    var range = CWriter()
    range.line("const int64_t count = job->count;")
    range.line("/* The generator's state: the seed and the step counter (model state). */")
    range.line("const uint64_t seed = (uint64_t)in0[0], step = (uint64_t)in1[0];")
    let map = OpRegistry.sampleMap(
      normal ? Ops.randomNormal : Ops.randomUniform, context.attributes)
    let offset = double.literal(map.offset)
    let scale = double.literal(map.scale)
    range.line(
      normal
        ? "/* N(\(offset), \(scale)²) by Box-Muller: words (2k, 2k+1) give r cos θ and r sin θ. */"
        : "/* U[\(offset), \(offset) + \(scale)): offset + scale * word / 2^32. */")
    range.line("const double offset = \(offset), scale = \(scale);")
    range.block("for (int64_t block = begin; block < end; block++)") { loop in
      loop.line(
        "const lamina_philox_block words = lamina_sample_block(seed, step, \(stream)u, (uint32_t)block);"
      )
      if normal {
        loop.block("for (int pair = 0; pair < 2; pair++)") { pair in
          pair.line("const double u1 = ((double)words.word[2 * pair] + 1.0) * 0x1p-32;")
          pair.line("const double u2 = (double)words.word[2 * pair + 1] * 0x1p-32;")
          pair.line("const double radius = sqrt(-2.0 * log(u1));")
          pair.line("const double angle = 6.283185307179586 * u2;")
          pair.line("const int64_t i = block * 4 + 2 * pair;")
          pair.line(
            "if (i < count) out[i] = (\(elementType))fma(scale, radius * cos(angle), offset);")
          pair.line(
            "if (i + 1 < count) out[i + 1] = (\(elementType))fma(scale, radius * sin(angle), offset);"
          )
        }
      } else {
        loop.block("for (int lane = 0; lane < 4 && block * 4 + lane < count; lane++)") { lane in
          lane.line(
            "out[block * 4 + lane] = (\(elementType))fma(scale, (double)words.word[lane] * 0x1p-32, offset);"
          )
        }
      }
    }
    dispatchBlocks(context, elementType: elementType, range: range, body: &body, prelude: &prelude)
  }

  /// Runs `range` (a loop over Philox blocks `begin..<end`) over the thread pool, in chunks of 4
  /// blocks: 16 elements, whole cache lines of f32, so threads never share one.
  static func dispatchBlocks(
    _ context: KernelContext, elementType: String, range: CWriter, body: inout CWriter,
    prelude: inout CWriter
  ) {
    let operandTypes = context.operandTypes.map { CExpressionContext.cType($0.dtype) }
    let arguments =
      operandTypes.enumerated().map {
        ParallelLoop.Argument(elementType: $0.element, name: "in\($0.offset)", isWritten: false)
      } + [ParallelLoop.Argument(elementType: elementType, name: "out", isWritten: true)]
    var loop = ParallelLoop(
      kernel: "@KERNEL@", arguments: arguments, dimensionPrologue: [], extent: "blocks",
      work: "count", chunkAlignment: 4)
    loop.extraFields = ["int64_t count;"]
    loop.declarations(rangeBody: range, into: &prelude)
    loop.dispatch(into: &body) { fill in fill.line("job.count = count;") }
  }
}
