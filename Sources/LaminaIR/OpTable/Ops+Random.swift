import Foundation
import LaminaSupport

extension OpRegistry {
  /// Ops that draw random numbers.
  static let randomOps: [OpDefinition] = [dropout]

  /// Ops that draw samples of a distribution from the model's generator.
  static let sampleOps: [OpDefinition] = [randomNormal, randomUniform]

  /// `dropout(x, seed, step) {rate, stream}`: inverted dropout in a training step, the identity at
  /// inference. The generator's seed and step counter are operands (model state the layer creates),
  /// so the mask is a function of the node's inputs: the interpreter and the C kernel draw the same
  /// one, and the gradient (the same op on the result's gradient, same stream) applies it again.
  static let dropout: OpDefinition = {
    var definition = OpDefinition(
      "dropout",
      summary:
        "Inverted dropout: in a training step each element is zeroed with probability `rate` and the others scaled by 1/(1 - rate); at inference the identity. The mask comes from Philox-4x32-10 keyed by `seed`, at counter (element / 4, `stream`, `step`), the same in the interpreter and compiled code.",
      semantics:
        "training: y_i = x_i · (keep_i ? 1/(1 - rate) : 0), keep_i = philox(seed; i/4, stream, step)[i mod 4] ≥ ⌊rate · 2^32⌋; inference: y = x",
      operands: [OperandSpec("x"), OperandSpec("seed"), OperandSpec("step")],
      attributes: [
        AttributeSpec(
          "rate", .float, required: true, "the probability of zeroing an element, in [0, 1)"),
        AttributeSpec(
          "stream", .int, default: .int(0),
          "the node's stream id: different dropout nodes draw different masks"),
      ],
      fusion: .opaque,
      c: .kernel(.dropout),
      effects: [.dependsOnMode, .drawsRandomNumbers],
      shape: ShapeRule("same(x); seed, step: i64[]") { context throws(ShapeError) in
        let x = context.operands[0]
        try context.requireFloat(x)
        for (position, name) in [(1, "seed"), (2, "step")] {
          let operand = context.operands[position]
          guard operand == .scalar(.i64) else {
            throw ShapeError(
              "dropout: \(name) must be i64[] (the generator's state), got \(operand)")
          }
        }
        _ = try dropoutRate(context.double("rate"))
        guard let stream = context.int("stream"), stream >= 0, stream <= Int(UInt32.max) else {
          throw ShapeError(
            "dropout: stream must be between 0 and \(UInt32.max), got \(context.int("stream") ?? -1)"
          )
        }
        return [x]
      },
      interpret: { context in
        let x = context.operands[0]
        let values = x.doubles()
        guard context.mode == .training else { return [context.result(0, values)] }
        let rate = try dropoutRate(context.double("rate"))
        guard values.count < DropoutStream.elementLimit else {
          throw InterpretError(
            "dropout: \(x.typeDescription) has \(values.count) elements; the generator's counter covers below 2^34"
          )
        }
        let stream = DropoutStream(
          seed: UInt64(bitPattern: Int64(integerValues(context.operands[1])[0])),
          step: UInt64(bitPattern: Int64(integerValues(context.operands[2])[0])),
          stream: UInt32(context.int("stream") ?? 0), rate: rate)
        // The scale rounded to the dtype first, as the C kernel's literal: a product of two floats
        // is exact in Double, so rounding it once gives C's float product bit for bit.
        let scale = Tensor(scalar: dropoutScale(rate: rate), dtype: x.dtype).doubles()[0]
        let keeps = stream.keeps(count: values.count)
        return [context.result(0, values.indices.map { values[$0] * (keeps[$0] ? scale : 0) })]
      },
      // ∂/∂x: the same mask and scale, which the same node drawing on the result's gradient applies.
      gradient: { builder, inputs throws(ShapeError) in
        let operands = inputs.operands
        let masked = try builder.op(
          Ops.dropout, [inputs.resultGradient, operands[1], operands[2]], inputs.attributes)
        return [masked, nil, nil]
      })
    // At inference the result is x itself: no kernel copies it (fusion then sees x's producer
    // feeding the consumer directly, so an epilogue can take it).
    definition.inferenceForm = .operand(0)
    return definition
  }()

  /// `random_normal(seed, step) {shape, mean, std, dtype, stream}`: a tensor of normal samples.
  static let randomNormal = OpDefinition(
    "random_normal",
    summary:
      "A tensor of samples from the normal distribution N(mean, std²) (torch.randn · std + mean), drawn from the model's Philox-4x32-10 generator by the Box-Muller transform (cos and sin of one pair of words: element i uses words 2k, 2k+1 of the block at counter (i / 4, `stream`, `step`), k = (i mod 4) / 2, cos for even i and sin for odd); computed in double and rounded once, so the interpreter and compiled code agree bit for bit. A leaf: no gradient. A call names no operands: the language passes the generator's state (random.seed, the training or `run --seed` seed, and random.step, advanced by every training step). `shape` may hold symbolic dimensions (`[batch, 8]`).",
    semantics:
      "y_i = mean + std · r · (i even ? cos θ : sin θ), r = √(-2 ln u₁), θ = 2π u₂, u₁ = (w_{2k} + 1) / 2^32, u₂ = w_{2k+1} / 2^32, w = philox(seed; i/4, stream, step), k = (i mod 4) / 2",
    operands: [OperandSpec("seed"), OperandSpec("step")],
    attributes: [
      AttributeSpec("shape", .dims, required: true, "the result's shape (`[batch, 8]`)"),
      AttributeSpec("mean", .float, default: .float(0), "the distribution's mean"),
      AttributeSpec("std", .float, default: .float(1), "the standard deviation, at least 0"),
      AttributeSpec("dtype", .dtype, default: .dtype(.f32), "element type (f32 or f64)"),
      AttributeSpec(
        "stream", .int, default: .int(Int(RandomGenerator.firstSampleStream)),
        "the node's stream id (the language numbers them from 2^31, above dropout's)"),
    ],
    fusion: .opaque,
    c: .kernel(.randomNormal),
    effects: [.drawsRandomNumbers, .readsModelGenerator],
    shape: ShapeRule("shape of dtype; seed, step: i64[]") { context throws(ShapeError) in
      try randomSampleType(context, parameters: ("mean", "std")) { mean, std in
        std >= 0 ? nil : "std must be at least 0, got \(formatFloat(std))"
      }
    },
    interpret: { context in
      let stream = try SampleStream(context)
      let map = sampleMap(Ops.randomNormal, context.attributes)
      return [context.result(0, stream.normals().map { map.offset.addingProduct(map.scale, $0) })]
    })

  /// `random_uniform(seed, step) {shape, lo, hi, dtype, stream}`: a tensor of uniform samples.
  static let randomUniform = OpDefinition(
    "random_uniform",
    summary:
      "A tensor of samples from the uniform distribution on [lo, hi) (torch.rand · (hi - lo) + lo; rounding to f32 can give hi), drawn from the model's Philox-4x32-10 generator: element i is lo + (hi - lo) · w / 2^32 with w word i mod 4 of the block at counter (i / 4, `stream`, `step`), computed in double and rounded once, the same in the interpreter and compiled code. A leaf: no gradient. A call names no operands: the language passes the generator's state (random.seed and random.step). `shape` may hold symbolic dimensions.",
    semantics:
      "y_i = lo + (hi - lo) · w_i / 2^32, w_i = philox(seed; i/4, stream, step)[i mod 4]",
    operands: [OperandSpec("seed"), OperandSpec("step")],
    attributes: [
      AttributeSpec("shape", .dims, required: true, "the result's shape (`[batch, 8]`)"),
      AttributeSpec("lo", .float, default: .float(0), "the lower bound"),
      AttributeSpec("hi", .float, default: .float(1), "the upper bound, at least lo"),
      AttributeSpec("dtype", .dtype, default: .dtype(.f32), "element type (f32 or f64)"),
      AttributeSpec(
        "stream", .int, default: .int(Int(RandomGenerator.firstSampleStream)),
        "the node's stream id (the language numbers them from 2^31, above dropout's)"),
    ],
    fusion: .opaque,
    c: .kernel(.randomUniform),
    effects: [.drawsRandomNumbers, .readsModelGenerator],
    shape: ShapeRule("shape of dtype; seed, step: i64[]") { context throws(ShapeError) in
      try randomSampleType(context, parameters: ("lo", "hi")) { lo, hi in
        lo <= hi
          ? nil : "lo must be at most hi, got lo \(formatFloat(lo)) and hi \(formatFloat(hi))"
      }
    },
    interpret: { context in
      let stream = try SampleStream(context)
      let map = sampleMap(Ops.randomUniform, context.attributes)
      return [context.result(0, stream.uniforms().map { map.offset.addingProduct(map.scale, $0) })]
    })

  /// The affine map `offset + scale · x` a sample node applies to its standard draws (N(0, 1) for
  /// `random_normal`: mean and std; uniform on [0, 1) for `random_uniform`: lo and hi - lo). The
  /// interpreter and the C kernel both take it from here.
  public static func sampleMap(_ op: OpHandle, _ attributes: [String: Attribute]) -> (
    offset: Double, scale: Double
  ) {
    if op == Ops.randomNormal {
      return (attributes["mean"]?.doubleValue ?? 0, attributes["std"]?.doubleValue ?? 1)
    }
    let lo = attributes["lo"]?.doubleValue ?? 0
    return (lo, (attributes["hi"]?.doubleValue ?? 1) - lo)
  }

  /// The result type of `random_normal` and `random_uniform`, after checking the generator operands,
  /// the shape, the dtype, the stream and the two distribution parameters (finite, and as `check`
  /// wants: it returns a message for bad values).
  static func randomSampleType(
    _ context: ShapeContext, parameters: (String, String),
    check: (Double, Double) -> String?
  ) throws(ShapeError) -> [TensorType] {
    let op = context.op
    guard context.operands.count == 2 else {
      throw ShapeError(
        "\(op) takes the generator's seed and step, got \(context.operands.count) operands")
    }
    for (position, name) in [(0, "seed"), (1, "step")]
    where context.operands[position] != .scalar(.i64) {
      throw ShapeError(
        "\(op): \(name) must be i64[] (the generator's state), got \(context.operands[position])")
    }
    guard let shape = context.attributes["shape"]?.dimsValue else {
      throw ShapeError("\(op): missing shape", help: "give it: \(op)(shape: [batch, 8])")
    }
    if let bad = shape.first(where: { $0.factor <= 0 }) {
      throw ShapeError(
        "\(op): every dimension of the shape must be positive, got \(bad) in \(describe(shape))")
    }
    guard case .dtype(let dtype)? = context.attributes["dtype"], dtype.isFloatingPoint else {
      throw ShapeError(
        "\(op): dtype must be f32 or f64, got \(context.attributes["dtype"]?.description ?? "none")"
      )
    }
    guard let stream = context.attributes["stream"]?.intValue, stream >= 0,
      stream <= Int(UInt32.max)
    else {
      throw ShapeError("\(op): stream must be between 0 and \(UInt32.max)")
    }
    let first = context.attributes[parameters.0]?.doubleValue ?? 0
    let second = context.attributes[parameters.1]?.doubleValue ?? 1
    guard first.isFinite, second.isFinite else {
      throw ShapeError("\(op): \(parameters.0) and \(parameters.1) must be finite")
    }
    if let problem = check(first, second) { throw ShapeError("\(op): \(problem)") }
    return [TensorType(dtype, shape)]
  }

  /// The rate, checked to be in [0, 1).
  static func dropoutRate(_ rate: Double?) throws(ShapeError) -> Double {
    guard let rate, rate >= 0, rate < 1 else {
      throw ShapeError(
        "dropout: rate must be at least 0 and below 1, got \(rate.map { formatFloat($0) } ?? "none")",
        help: "rate is the probability of zeroing an element: dropout(rate: 0.25)")
    }
    return rate
  }

  /// 1/(1 - rate), the scale of kept elements.
  public static func dropoutScale(rate: Double) -> Double { 1 / (1 - rate) }
}

/// The model's random generator: two scalars of model state that every `dropout` node reads, created
/// by the first dropout layer. `random.seed` keys the generator (the training seed: `Trainer.fit` and
/// `lamina train --seed` set it); `random.step` counts training steps, advanced by one in every step,
/// so each step draws new masks and a checkpoint resume continues the exact stream.
public enum RandomGenerator {
  public static let seedName = "random.seed"
  public static let stepName = "random.step"
}

extension RandomGenerator {
  /// The stream id of the first `random_normal` or `random_uniform` node; the language numbers the
  /// others after it. Dropout's streams count from 0, so no two random nodes share a counter.
  public static let firstSampleStream: UInt32 = 1 << 31
}

/// The words a `random_normal` or `random_uniform` node draws, as the C kernels of
/// `RandomKernels` draw them (`lamina_sample_block` in `runtime/lamina_philox.h`).
struct SampleStream {
  var seed: UInt64
  var step: UInt64
  var stream: UInt32
  var count: Int

  init(_ context: InterpretContext) throws {
    seed = UInt64(bitPattern: Int64(integerValues(context.operands[0])[0]))
    step = UInt64(bitPattern: Int64(integerValues(context.operands[1])[0]))
    stream = UInt32(context.int("stream") ?? Int(RandomGenerator.firstSampleStream))
    count = context.results[0].shape.reduce(1, *)
    guard count < DropoutStream.elementLimit else {
      throw InterpretError(
        "\(count) random elements; the generator's counter covers below 2^34")
    }
  }

  /// Philox's words for elements 0..<count: element i is word i mod 4 of block i / 4.
  func words() -> [UInt32] {
    let key = [UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)]
    var result: [UInt32] = []
    result.reserveCapacity((count + 3) / 4 * 4)
    for block in 0..<(count + 3) / 4 {
      result += Philox.block(
        counter: [
          UInt32(truncatingIfNeeded: block), stream, UInt32(truncatingIfNeeded: step),
          UInt32(truncatingIfNeeded: step >> 32),
        ], key: key)
    }
    return result
  }

  /// Uniform numbers in [0, 1): word / 2^32, exact in double.
  func uniforms() -> [Double] {
    words().prefix(count).map { Double($0) * 0x1p-32 }
  }

  /// Standard normal numbers by Box-Muller: each pair of words (2k, 2k+1) gives r·cos θ to the
  /// even element and r·sin θ to the odd one, with u₁ = (w + 1) / 2^32 in (0, 1] so ln u₁ is finite.
  func normals() -> [Double] {
    let words = words()
    return (0..<count).map { index in
      let pair = index & ~1
      let u1 = (Double(words[pair]) + 1) * 0x1p-32
      let u2 = Double(words[pair + 1]) * 0x1p-32
      let radius = (-2 * Foundation.log(u1)).squareRoot()
      let angle = 6.283185307179586 * u2
      return radius * (index % 2 == 0 ? Foundation.cos(angle) : Foundation.sin(angle))
    }
  }
}
