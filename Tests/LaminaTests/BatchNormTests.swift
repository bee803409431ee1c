import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// `batch_norm` in both modes: compiled against the interpreter, running statistics against a hand
/// computation, gradients against finite differences, the one-value-per-channel error, and its
/// running statistics as model state (saved, loaded, updated by the steps that run it).
@Suite("Batch norm", .serialized)
struct BatchNormTests {
  /// A model normalizing an input of `shape` (after `channels`) that a parameter scales first, so
  /// gradients pass through the batch statistics.
  static func source(_ trailing: [Int], channels: Int) -> String {
    let dims = ([channels] + trailing).map(String.init).joined(separator: ", ")
    return """
      model Norm {
        input x: f32[batch, \(dims)]
        input t: f32[batch, \(dims)]
        param s: f32[\(dims)] = uniform(lo: 0.5, hi: 1.5)
        let y = (x * s) |> batch_norm |> tanh
        output y
        loss = mse(y, t)
        train with sgd(lr: 0.1)
      }
      """
  }

  static let shapes: [[Int]] = [[], [5], [7, 9]]

  func model(_ trailing: [Int], channels: Int = 3) throws -> Model {
    try Model(source: Self.source(trailing, channels: channels), pipeline: Pipeline.training)
  }

  func inputs(_ model: Model, batch: Int, seed: UInt64) -> [String: Tensor] {
    TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: seed)
  }

  /// Running statistics away from their initial values, so inference really uses them.
  func runningState(channels: Int) -> [String: Tensor] {
    [
      "batch_norm_0.running_mean": Tensor(
        shape: [channels], scalars: (0..<channels).map { Float($0) * 0.3 - 0.2 }),
      "batch_norm_0.running_var": Tensor(
        shape: [channels], scalars: (0..<channels).map { 0.5 + Float($0) * 0.25 }),
    ]
  }

  @Test(
    "inference: compiled equals the interpreter at batch 1 and 37, rank 2, 3 and 4",
    arguments: shapes)
  func inference(trailing: [Int]) throws {
    let model = try model(trailing)
    let parameters = try model.initialParameters(seed: 3)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    let state = runningState(channels: 3)
    try compiled.setState(state)
    for batch in [1, 37] {
      let given = inputs(model, batch: batch, seed: UInt64(batch))
      let expected = try model.interpret(
        inputs: given, parameters: parameters.merging(state) { a, _ in a }, outputs: ["y"])
      let actual = try compiled.forward(given)
      expectBatchNormClose(
        try #require(actual["y"]).doubles(), try #require(expected["y"]).doubles(), 1e-5)
    }
  }

  @Test(
    "training: a compiled step equals the interpreted one at batch 37, rank 2, 3 and 4",
    arguments: shapes)
  func training(trailing: [Int]) throws {
    let model = try model(trailing)
    let parameters = try model.initialParameters(seed: 4)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    let interpreted = try InterpretedModel(model, parameters: parameters)
    let state = runningState(channels: 3)
    try compiled.setState(state)
    try interpreted.setState(state)
    for step in 0..<2 {
      let given = inputs(model, batch: 37, seed: UInt64(10 + step))
      let compiledLoss = try compiled.trainStep(given)
      let interpretedLoss = try interpreted.trainStep(given, step: nil)
      #expect(abs(compiledLoss - interpretedLoss) <= 1e-5 * max(1, abs(interpretedLoss)))
    }
    let expected = try interpreted.parameters().merging(try interpreted.state()) { a, _ in a }
    let actual = try compiled.parameters().merging(try compiled.state()) { a, _ in a }
    #expect(Set(actual.keys) == Set(expected.keys))
    for (name, tensor) in expected {
      expectBatchNormClose(try #require(actual[name]).doubles(), tensor.doubles(), 1e-5)
    }
  }

  @Test("the kernels split across threads (past the parallel threshold) equal the interpreter")
  func threaded() throws {
    // 37·8·15·17 = 75480 elements: more than LAMINA_PARALLEL_WORK, so both kernels run as tasks.
    let model = try model([15, 17], channels: 8)
    let parameters = try model.initialParameters(seed: 6)
    var options = TestCache.options()
    options.threads = 4
    let compiled = try model.compile(options: options, parameters: parameters)
    let interpreted = try InterpretedModel(model, parameters: parameters)
    let given = inputs(model, batch: 37, seed: 12)
    let compiledLoss = try compiled.trainStep(given)
    let interpretedLoss = try interpreted.trainStep(given, step: nil)
    #expect(abs(compiledLoss - interpretedLoss) <= 1e-5 * max(1, abs(interpretedLoss)))
    let expected = try interpreted.parameters().merging(try interpreted.state()) { a, _ in a }
    let actual = try compiled.parameters().merging(try compiled.state()) { a, _ in a }
    for (name, tensor) in expected {
      expectBatchNormClose(try #require(actual[name]).doubles(), tensor.doubles(), 1e-5)
    }
  }

  @Test(
    "training mode without a step: compiled equals the interpreter at batch 37 and writes no state",
    arguments: shapes)
  func trainingModeForward(trailing: [Int]) throws {
    let model = try model(trailing)
    let parameters = try model.initialParameters(seed: 5)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    let given = inputs(model, batch: 37, seed: 6)
    let expected = try model.interpret(
      inputs: given, parameters: parameters, outputs: ["y", "loss"], mode: .training)
    let (outputs, losses) = try compiled.evaluate(given, mode: .training)
    expectBatchNormClose(
      try #require(outputs["y"]).doubles(), try #require(expected["y"]).doubles(), 1e-5)
    expectBatchNormClose(
      try #require(losses["loss"]).doubles(), try #require(expected["loss"]).doubles(), 1e-5)
    expectBatchNormClose(
      try #require(try compiled.forward(given, mode: .training)["y"]).doubles(),
      try #require(expected["y"]).doubles(), 1e-5)
    // Batch statistics differ from the initial running ones, so the modes must differ.
    #expect(try compiled.forward(given)["y"]?.doubles() != outputs["y"]?.doubles())
    #expect(try compiled.modelState()["batch_norm_0.running_var"]?.doubles() == [1, 1, 1])
  }

  @Test("inference-mode gradients (affine in x) match finite differences", arguments: shapes)
  func gradcheckInference(trailing: [Int]) throws {
    let model = try model(trailing)
    let results = try model.checkGradients(
      inputs: inputs(model, batch: 4, seed: 8),
      parameters: try model.initialParameters(seed: 8).merging(runningState(channels: 3)) {
        a, _ in a
      },
      samples: 8, compiled: TestCache.options(), mode: .inference)
    #expect(results.count == 3)
    for result in results {
      #expect(
        result.worstRelativeError <= 1e-3,
        "\(result.parameter): \(result.worstRelativeError) (analytic \(result.analytic), numeric \(result.numeric))"
      )
    }
  }

  @Test("running statistics after three steps equal a hand computation (unbiased variance)")
  func runningStatistics() throws {
    let model = try Model(
      source: """
        model Stats {
          input x: f64[batch, 2, 3]
          param s: f64[2, 3] = ones()
          let y = (x * s) |> batch_norm(momentum: 0.25)
          loss = mean(y * y)
          train with sgd(lr: 0.0)
        }
        """, pipeline: Pipeline.training)
    let compiled = try model.compile(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 0))
    var runningMean = [0.0, 0.0]
    var runningVar = [1.0, 1.0]
    for step in 0..<3 {
      let batch = 4 + step
      let values = (0..<(batch * 6)).map { Double(($0 * 7 + step * 5) % 11) * 0.5 - 1 }
      _ = try compiled.trainStep(["x": Tensor(shape: [batch, 2, 3], scalars: values)])
      for channel in 0..<2 {
        var channelValues: [Double] = []
        for n in 0..<batch {
          channelValues += values[(n * 2 + channel) * 3..<(n * 2 + channel) * 3 + 3]
        }
        let count = Double(channelValues.count)
        let mean = channelValues.reduce(0, +) / count
        let unbiased = channelValues.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / (count - 1)
        runningMean[channel] = 0.75 * runningMean[channel] + 0.25 * mean
        runningVar[channel] = 0.75 * runningVar[channel] + 0.25 * unbiased
      }
    }
    let state = try compiled.modelState()
    expectBatchNormClose(
      try #require(state["batch_norm_0.running_mean"]).doubles(), runningMean, 1e-12)
    expectBatchNormClose(
      try #require(state["batch_norm_0.running_var"]).doubles(), runningVar, 1e-12)
  }

  @Test("gradients through the batch statistics match finite differences", arguments: shapes)
  func gradcheck(trailing: [Int]) throws {
    let model = try model(trailing)
    let results = try model.checkGradients(
      inputs: inputs(model, batch: 4, seed: 7), parameters: try model.initialParameters(seed: 7),
      samples: 8)
    #expect(results.count == 3)
    for result in results {
      #expect(
        result.worstRelativeError <= 1e-3,
        "\(result.parameter): \(result.worstRelativeError) (analytic \(result.analytic), numeric \(result.numeric))"
      )
    }
  }

  @Test("one value per channel in a training step is a run-time error, compiled and interpreted")
  func singleValuePerChannel() throws {
    let model = try model([])
    let parameters = try model.initialParameters(seed: 1)
    let given = inputs(model, batch: 1, seed: 1)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    let message = "expected more than 1 value per channel when training, got input of shape [1, 3]"
    #expect { _ = try compiled.trainStep(given) } throws: { "\($0)".contains(message) }
    let interpreted = try InterpretedModel(model, parameters: parameters)
    #expect { _ = try interpreted.trainStep(given, step: nil) } throws: {
      "\($0)".contains(message)
    }
    // Inference at batch 1 uses the running statistics: fine.
    #expect(try compiled.forward(given)["y"]?.shape == [1, 3])
  }

  @Test("running statistics are saved with the weights and in checkpoints, and load back")
  func savedAndLoaded() throws {
    let model = try model([5])
    let parameters = try model.initialParameters(seed: 2)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    for step in 0..<2 { _ = try compiled.trainStep(inputs(model, batch: 8, seed: UInt64(step))) }
    let trained = try compiled.modelState()
    #expect(trained["batch_norm_0.running_mean"]?.doubles() != [0, 0, 0])

    let directory = TestCache.directory + "/batch-norm-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let weightsPath = directory + "/weights.safetensors"
    try compiled.saveWeights(to: weightsPath)
    let file = try SafeTensors.readDictionary(contentsOf: weightsPath)
    #expect(
      Set(file.keys) == [
        "s", "batch_norm_0.weight", "batch_norm_0.bias", "batch_norm_0.running_mean",
        "batch_norm_0.running_var",
      ])

    let fresh = try model.compile(options: TestCache.options(), parameters: parameters)
    #expect(try fresh.modelState()["batch_norm_0.running_var"]?.doubles() == [1, 1, 1])
    try fresh.loadWeights(from: weightsPath)
    for (name, tensor) in trained {
      #expect(try fresh.modelState()[name]?.doubles() == tensor.doubles())
    }
    let probe = inputs(model, batch: 3, seed: 9)
    #expect(
      try fresh.forward(probe)["y"]?.doubles() == (try compiled.forward(probe)["y"]?.doubles()))

    // A checkpoint keeps them as state and resumes them.
    let checkpointPath = directory + "/checkpoint.safetensors"
    let (savedParameters, savedState) = try compiled.parametersAndState()
    try Checkpoint(
      parameters: savedParameters, state: savedState, model: "Norm", epoch: 1, globalStep: 2,
      seed: 0
    ).write(to: checkpointPath)
    let checkpoint = try Checkpoint.read(contentsOf: checkpointPath)
    #expect(
      checkpoint.state["batch_norm_0.running_mean"]?.doubles()
        == trained["batch_norm_0.running_mean"]?.doubles())
    let resumed = try model.compile(options: TestCache.options(), parameters: parameters)
    try resumed.setState(checkpoint.state)
    #expect(
      try resumed.modelState()["batch_norm_0.running_var"]?.doubles()
        == trained["batch_norm_0.running_var"]?.doubles())
    // The interpreter reads model state from a weights file's dictionary too.
    let interpreted = try model.interpret(inputs: probe, parameters: file, outputs: ["y"])
    expectBatchNormClose(
      try #require(interpreted["y"]).doubles(),
      try #require(try compiled.forward(probe)["y"]).doubles(),
      1e-5)
  }

  @Test("a training step updates the running statistics only when its loss runs the batch norm")
  func updatesFollowTheLoss() throws {
    let model = try Model(
      source: """
        model Two {
          input x: f32[batch, 3]
          param a: f32[3] = ones()
          param b: f32[3] = ones()
          let h = (x * a) |> batch_norm
          loss first = mean(h * h)
          loss second = mean((x * b) * (x * b))
          train first_step with sgd(lr: 0.1, loss: "first", params: "a")
          train second_step with sgd(lr: 0.1, loss: "second", params: "b")
        }
        """, pipeline: Pipeline.training)
    let compiled = try model.compile(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 0))
    let given = inputs(model, batch: 5, seed: 3)
    _ = try compiled.trainStep(given, step: "second_step")
    #expect(try compiled.modelState()["batch_norm_0.running_mean"]?.doubles() == [0, 0, 0])
    _ = try compiled.trainStep(given, step: "first_step")
    #expect(try compiled.modelState()["batch_norm_0.running_mean"]?.doubles() != [0, 0, 0])
  }

  @Test("bad inputs and options are located errors naming what was expected")
  func badModels() throws {
    let cases: [(String, String)] = [
      ("input x: f32[8]\n  output y = x |> batch_norm", "batch_norm needs an input of rank ≥ 2"),
      (
        "input x: i32[batch, 3]\n  output y = x |> batch_norm",
        "batch_norm needs a floating-point input"
      ),
      (
        "input x: f32[batch, 3]\n  output y = batch_norm(x, momentum: 1.5)",
        "batch_norm: momentum must be in [0, 1], got 1.5"
      ),
      (
        "input x: f32[batch, 3]\n  output y = batch_norm(x, eps: 0)",
        "batch_norm: eps must be positive, got 0.0"
      ),
    ]
    for (body, message) in cases {
      let source = "model Bad {\n  \(body)\n}\n"
      #expect {
        _ = try Model(source: source)
      } throws: { error in
        let text = "\(error)"
        return text.contains(message) && text.contains(":3:")
      }
    }
  }

  @Test("the IR of model state and its update rule prints and parses back to the same text")
  func roundTrip() throws {
    let model = try model([5])
    let text = model.ir()
    #expect(text.contains("state %batch_norm_0.running_var : f32[3] = ones()"))
    #expect(text.contains("update %batch_norm_0.running_mean = "))
    #expect(text.contains("update train %batch_norm_0.running_mean = "))
    let reparsed = try Model(source: text, pipeline: [])
    #expect(reparsed.ir() == text)
  }
}

/// Elementwise closeness, relative to the larger magnitude (at least 1).
func expectBatchNormClose(
  _ actual: [Double], _ expected: [Double], _ tolerance: Double,
  sourceLocation: Testing.SourceLocation = #_sourceLocation
) {
  #expect(actual.count == expected.count, sourceLocation: sourceLocation)
  for (index, (a, e)) in zip(actual, expected).enumerated() {
    #expect(
      abs(a - e) <= tolerance * max(1, abs(e)), "element \(index): \(a) vs \(e)",
      sourceLocation: sourceLocation)
  }
}
