import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// `dropout`: identity at inference, the same mask interpreted and compiled in training, the kept
/// fraction and scale, seeds, the generator's state across steps and checkpoints, gradients, errors.
@Suite("Dropout")
struct DropoutTests {
  /// A model whose training step exposes dropout's mask: with the loss Σ dropout(p) · x, the
  /// gradient of `p` is `x` through the same mask, so SGD with lr 1 leaves p where the mask dropped
  /// an element and moves it by x · scale where it kept one.
  static func maskSource(batch: Int, rate: Double) -> String {
    """
    model DropoutMask {
      input x: f32[\(batch), 24]
      param p: f32[\(batch), 24] = ones()

      let y = dropout(p, rate: \(rate))
      output y
      loss = sum(y * x)
      train with sgd(lr: 1)
    }
    """
  }

  static func scalar(_ value: Int64) -> Tensor { Tensor(shape: [], scalars: [value]) }

  /// Inputs with no zero, so every kept element moves its parameter.
  static func nonzeroInputs(batch: Int, seed: UInt64) -> Tensor {
    var generator = SeededGenerator(seed: seed, stream: "dropout-test")
    return Tensor(
      shape: [batch, 24],
      scalars: (0..<(batch * 24)).map { _ in
        let magnitude = Float.random(in: 0.25...2, using: &generator)
        return Bool.random(using: &generator) ? magnitude : -magnitude
      })
  }

  @Test("inference is the identity, interpreted and compiled")
  func inferenceIdentity() throws {
    let model = try Model(
      source: """
        model Identity {
          input x: f32[batch, 7, 9]
          output y = dropout(x, rate: 0.6)
        }
        """)
    let compiled = try model.compile(options: TestCache.options())
    for batch in [1, 37] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 3)
      let interpreted = try model.interpret(inputs: inputs, parameters: [:], outputs: ["y"])
      #expect(interpreted["y"] == inputs["x"])
      #expect(try compiled.forward(inputs)["y"] == inputs["x"])
    }
  }

  @Test("inference runs no kernel for dropout: the activation after it fuses into the producer")
  func inferenceHasNoKernel() throws {
    let source = """
      model DenseDropout {
        input x: f32[batch, 6]
        input t: f32[batch, 5]
        let y = x |> dense(units: 5) |> dropout(rate: 0.5) |> relu
        output y
        loss = mse(y, t)
        train with sgd(lr: 0.1)
      }
      """
    let model = try Model(source: source, pipeline: Pipeline.training)
    var graph = model.graph
    _ = try PassRunner(passes: Pipeline.codegen).run(&graph)
    let entries = EntryPoint.all(in: graph)
    func kernels(_ name: String) throws -> [Node] {
      let entry = try #require(entries.first { $0.name == name })
      return entry.schedule(in: graph).map { graph.nodes[$0] }.filter { node in
        if case .alias? = OpRegistry.definition(node.op)?.c { return false }
        return true
      }
    }
    let forward = try kernels("forward")
    #expect(!forward.contains { $0.op == "dropout" })
    #expect(forward.count == 1)
    #expect(Set(try #require(forward.first).body.map(\.op)).isSuperset(of: ["matmul", "relu"]))
    // A training step still draws its mask.
    #expect(try kernels("train_0").contains { $0.op == "dropout" })
    #expect(try kernels("forward_training").contains { $0.op == "dropout" })
    // And the compiled forward is the interpreter's.
    let compiled = try model.compile(options: TestCache.options())
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 3], seed: 5)
    let parameters = try compiled.parameters()
    let expected = try model.interpret(inputs: inputs, parameters: parameters, outputs: ["y"])
    #expect(try compiled.forward(inputs)["y"] == expected["y"])
  }

  @Test(
    "training steps draw the same masks interpreted and compiled, new ones each step",
    arguments: [1, 37])
  func sameMaskInterpretedAndCompiled(batch: Int) throws {
    let rate = 0.375
    let model = try Model(
      source: Self.maskSource(batch: batch, rate: rate), pipeline: Pipeline.training)
    let seed: Int64 = 1234
    var values = try model.initialParameters(seed: 0)
    values[RandomGenerator.seedName] = Self.scalar(seed)
    let compiled = try model.compileForTraining(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 0))
    try compiled.setState([RandomGenerator.seedName: Self.scalar(seed)])
    let scale = Float(1 / (1 - rate))
    var masks: [[Bool]] = []
    for step in 0..<3 {
      let x = Self.nonzeroInputs(batch: batch, seed: UInt64(step))
      let before = values["p"]!.scalars(as: Float.self)
      let (expectedLoss, next) = try model.interpretTrainStep(["x": x], values: values)
      let loss = try compiled.trainStep(["x": x], step: nil)
      values = next
      let interpreted = values["p"]!.scalars(as: Float.self)
      let compiledP = try compiled.parameters()["p"]!.scalars(as: Float.self)
      // Each element moved by exactly x · scale (kept) or not at all (dropped), the same in both.
      let inputs = x.scalars(as: Float.self)
      let mask = zip(before, interpreted).map { $0 != $1 }
      for index in inputs.indices {
        let expected = before[index] - (mask[index] ? inputs[index] * scale : 0)
        #expect(interpreted[index] == expected, "step \(step), element \(index)")
      }
      #expect(compiledP == interpreted, "step \(step): compiled and interpreted masks differ")
      #expect(abs(loss - expectedLoss) <= 1e-5 * abs(expectedLoss) + 1e-5)
      masks.append(mask)
      // The step counter advanced once, in both.
      #expect(values[RandomGenerator.stepName] == Self.scalar(Int64(step + 1)))
      #expect(try compiled.state()[RandomGenerator.stepName] == Self.scalar(Int64(step + 1)))
    }
    #expect(masks[0] != masks[1] && masks[1] != masks[2], "each step draws a new mask")
    #expect(masks.joined().contains(true) && masks.joined().contains(false))
  }

  @Test(
    "a training-mode forward gives bit-identical outputs interpreted and compiled (7x9, two nodes)",
    arguments: [1, 37])
  func trainingForwardIdentical(batch: Int) throws {
    let model = try Model(
      source: """
        model Forward {
          input x: f32[batch, 3, 7, 9]
          let h = x |> dropout(rate: 0.3)
          output y = h
          output z = dropout(h * 2, rate: 0.8)
        }
        """)
    let compiled = try model.compile(options: TestCache.options())
    let state = [
      RandomGenerator.seedName: Self.scalar(-77), RandomGenerator.stepName: Self.scalar(1 << 40),
    ]
    try compiled.setState(state)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 8)
    let expected = try model.interpret(
      inputs: inputs, parameters: state, outputs: ["y", "z"], mode: .training)
    let outputs = try compiled.forward(inputs, mode: .training)
    for name in ["y", "z"] {
      #expect(outputs[name] == expected[name], "batch \(batch), \(name)")
      let values = expected[name]!.scalars(as: Float.self)
      #expect(values.contains(0) && values.contains { $0 != 0 }, "\(name) drops some, keeps some")
    }
    // Inference is still the identity.
    #expect(try compiled.forward(inputs)["y"] == inputs["x"])
  }

  @Test("a tensor large enough to split over threads gets the same mask as the interpreter's")
  func parallelMask() throws {
    let model = try Model(
      source: """
        model Large {
          input x: f32[batch, 1000]
          output y = dropout(x, rate: 0.45)
        }
        """)
    var options = TestCache.options()
    options.threads = 4
    let compiled = try model.compile(options: options)
    let state = [
      RandomGenerator.seedName: Self.scalar(5), RandomGenerator.stepName: Self.scalar(3),
    ]
    try compiled.setState(state)
    // 301 rows: 301 000 elements, past the work that runs on one thread, and not a multiple of 4
    // blocks per chunk.
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 301], seed: 2)
    let expected = try model.interpret(
      inputs: inputs, parameters: state, outputs: ["y"], mode: .training)
    #expect(try compiled.forward(inputs, mode: .training)["y"] == expected["y"])
  }

  @Test(
    "the kept fraction is within 5 sigma of 1 - rate, kept values scaled by 1/(1 - rate)",
    arguments: [0.1, 0.5, 0.9])
  func keptFraction(rate: Double) throws {
    let model = try Model(
      source: """
        model Fraction {
          input x: f32[512, 512]
          output y = dropout(x, rate: \(rate))
        }
        """)
    let count = 512 * 512
    let x = Tensor(shape: [512, 512], scalars: [Float](repeating: 1, count: count))
    let y = try model.interpret(
      inputs: ["x": x], parameters: [RandomGenerator.seedName: Self.scalar(99)], outputs: ["y"],
      mode: .training)["y"]!.scalars(as: Float.self)
    let kept = y.filter { $0 != 0 }
    #expect(kept.allSatisfy { $0 == Float(1 / (1 - rate)) })
    #expect(y.allSatisfy { $0 == 0 || $0 == Float(1 / (1 - rate)) })
    let expected = Double(count) * (1 - rate)
    let sigma = (Double(count) * rate * (1 - rate)).squareRoot()
    #expect(abs(Double(kept.count) - expected) <= 5 * sigma, "kept \(kept.count) of \(count)")
    // Neighbouring elements are independent: as many kept pairs as chance gives.
    var keptPairs = 0
    for index in stride(from: 0, to: count - 1, by: 2) where y[index] != 0 && y[index + 1] != 0 {
      keptPairs += 1
    }
    let pairs = Double(count / 2)
    let pairProbability = (1 - rate) * (1 - rate)
    #expect(
      abs(Double(keptPairs) - pairs * pairProbability)
        <= 5 * (pairs * pairProbability * (1 - pairProbability)).squareRoot())
  }

  @Test(
    "the same seed reproduces a mask, another seed or another step differs; distinct nodes draw distinct masks"
  )
  func seeds() throws {
    let model = try Model(
      source: """
        model Seeds {
          input x: f32[batch, 64]
          output a = dropout(x, rate: 0.5)
          output b = dropout(x, rate: 0.5)
        }
        """)
    let x = Tensor(shape: [4, 64], scalars: [Float](repeating: 1, count: 256))
    func run(seed: Int64, step: Int64 = 0) throws -> [String: Tensor] {
      try model.interpret(
        inputs: ["x": x],
        parameters: [
          RandomGenerator.seedName: Self.scalar(seed), RandomGenerator.stepName: Self.scalar(step),
        ], outputs: ["a", "b"], mode: .training)
    }
    let first = try run(seed: 7)
    #expect(try run(seed: 7) == first)
    #expect(try run(seed: 8)["a"] != first["a"])
    #expect(try run(seed: 7, step: 1)["a"] != first["a"])
    #expect(first["a"] != first["b"])
  }

  static let trainingSource = """
    model DigitsDropout {
      input x: f32[batch, 64]
      input label: i32[batch]

      let h = x |> dense(units: 32, activation: "relu") |> dropout(rate: 0.5)
      let logits = h |> dense(units: 10)
      output probs = softmax(logits)
      loss = cross_entropy(logits, label)
      train with sgd(lr: 0.05, momentum: 0.9)
    }
    """

  static func digits(_ rows: Int) throws -> Dataset {
    let full = try Dataset(
      directory: RepositoryPaths.path("examples/data/digits/train"), inputs: ["x", "label"])
    return try Dataset(full.gather(0..<rows))
  }

  @Test(
    "Trainer's seed keys the generator: a seed reproduces a run exactly, another differs, interpreted as compiled"
  )
  func trainerSeed() throws {
    let model = try Model(source: Self.trainingSource, pipeline: Pipeline.training)
    let train = try Self.digits(64)
    func fit(seed: UInt64, interpreted: Bool = false) throws -> [String: Tensor] {
      let initial = try model.initialParameters(seed: 1)
      let trainable: any TrainableModel =
        interpreted
        ? try InterpretedModel(model, parameters: initial)
        : try model.compileForTraining(options: TestCache.options(), parameters: initial)
      let trainer = try Trainer(model: model, compiled: trainable)
      try trainer.fit(train: train, epochs: 1, batchSize: 16, seed: seed)
      #expect(try trainable.state()[RandomGenerator.seedName] == Self.scalar(Int64(seed)))
      #expect(try trainable.state()[RandomGenerator.stepName] == Self.scalar(4))
      return try trainable.parameters()
    }
    let first = try fit(seed: 3)
    let again = try fit(seed: 3)
    let other = try fit(seed: 4)
    let interpreted = try fit(seed: 3, interpreted: true)
    for (name, tensor) in first {
      #expect(tensor == again[name], "\(name)")
      // Same masks, so the interpreter's weights differ from the compiled ones by rounding only.
      let problem = TestData.mismatch(tensor, interpreted[name]!, rtol: 1e-4, atol: 1e-5)
      #expect(problem == nil, "\(name): \(problem ?? "")")
    }
    #expect(first["dense_0.weight"] != other["dense_0.weight"])
  }

  @Test("a run resumed from a checkpoint continues the exact random stream")
  func resume() throws {
    let model = try Model(source: Self.trainingSource, pipeline: Pipeline.training)
    let train = try Self.digits(96)
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    func run(epochs: Int, checkpoint: String, resume: Checkpoint? = nil) throws -> (
      parameters: [String: Tensor], state: [String: Tensor]
    ) {
      let trainable = try model.compileForTraining(
        options: TestCache.options(), parameters: try model.initialParameters(seed: 2))
      let trainer = try Trainer(model: model, compiled: trainable, checkpointPath: checkpoint)
      try trainer.fit(train: train, epochs: epochs, batchSize: 16, seed: 11, resume: resume)
      return (try trainable.parameters(), try trainable.state())
    }
    let straight = try run(epochs: 2, checkpoint: directory + "/a.safetensors")
    let first = try run(epochs: 1, checkpoint: directory + "/b.safetensors")
    let saved = try Checkpoint.read(contentsOf: directory + "/b.safetensors")
    #expect(saved.state[RandomGenerator.stepName] == Self.scalar(6))
    let resumed = try run(epochs: 2, checkpoint: directory + "/b.safetensors", resume: saved)
    #expect(straight.state[RandomGenerator.stepName] == Self.scalar(12))
    for (name, tensor) in straight.parameters {
      #expect(tensor == resumed.parameters[name], "\(name)")
      #expect(tensor != first.parameters[name], "\(name)")
    }
    #expect(straight.state == resumed.state)
  }

  static func gradientSource(rate: Double) -> String {
    """
    model DropoutGradient {
      input x: f64[batch, 12]
      input target: f64[batch, 12]
      param w: f64[12] = uniform(lo: 0.5, hi: 1.5)
      param b: f64[12] = uniform(lo: -0.5, hi: 0.5)

      let h = dropout(tanh(x * w + b), rate: \(rate))
      loss = mse(h * h + h, target)
      train with sgd(lr: 0.1)
    }
    """
  }

  @Test("gradients match finite differences with the mask fixed (the same step)")
  func gradcheck() throws {
    let model = try Model(source: Self.gradientSource(rate: 0.3), pipeline: Pipeline.training)
    var parameters = try model.initialParameters(seed: 4)
    parameters[RandomGenerator.seedName] = Self.scalar(21)
    parameters[RandomGenerator.stepName] = Self.scalar(5)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 5], seed: 6)
    let results = try model.checkGradients(inputs: inputs, parameters: parameters, samples: 12)
    #expect(results.count == 2)
    for result in results {
      #expect(
        result.worstRelativeError <= 1e-6,
        "\(result.parameter): \(result.worstRelativeError) (analytic \(result.analytic), numeric \(result.numeric))"
      )
    }
    // Dropout is active: the gradient of a dropped element's path is 0, and some are.
    let gradients = try model.interpretGradients(inputs: inputs, parameters: parameters)
    let noDrop = try Model(source: Self.gradientSource(rate: 0), pipeline: Pipeline.training)
    let plain = try noDrop.interpretGradients(inputs: inputs, parameters: parameters)
    #expect(gradients["w"] != plain["w"])
  }

  @Test("a rate outside [0, 1) is a located error with the value", arguments: ["1", "1.5", "-0.1"])
  func badRate(rate: String) throws {
    let source = """
      model Bad {
        input x: f32[batch, 4]
        output y = x |> dropout(rate: \(rate))
      }
      """
    do {
      _ = try Model(source: source, path: "bad.lam")
      Issue.record("rate \(rate) compiled")
    } catch {
      let text = String(describing: error)
      #expect(text.contains("bad.lam:3:"), "\(text)")
      #expect(text.contains("rate must be at least 0 and below 1, got \(rate)"), "\(text)")
    }
  }
}
