import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// The optimizer updates (built as IR) against hand-computed values, and the compiled training step
/// against the interpreted one.
@Suite("Training steps", .serialized)
struct TrainStepTests {

  func compile(_ model: Model, parameters: [String: Tensor]) throws -> CompiledModel {
    try model.compile(options: TestCache.options(), parameters: parameters)
  }

  /// loss = Σ w², so ∂loss/∂w = 2w: every optimizer's first steps can be worked out by hand.
  func quadratic(_ optimizer: String) throws -> Model {
    try Model(
      source: """
        model Quadratic {
          param w: f64[3] = constant(1)
          loss = sum(w * w)
          train with \(optimizer)
        }
        """, pipeline: Pipeline.training)
  }

  func weights(_ values: [Double]) -> [String: Tensor] {
    ["w": Tensor(shape: [3], scalars: values)]
  }

  @Test("sgd, momentum and Nesterov match hand-computed updates")
  func sgd() throws {
    let w: [Double] = [1, -2, 0.5]
    // Plain: w ← w - lr·2w.
    var model = try quadratic("sgd(lr: 0.1)")
    var compiled = try compile(model, parameters: weights(w))
    _ = try compiled.trainStep([:])
    #expect(
      try compiled.parameter(named: "w").scalars(as: Double.self) == w.map { $0 - 0.1 * 2 * $0 })

    // Momentum 0.9: v₁ = g₁, w₁ = w₀ - lr·g₁; v₂ = 0.9 v₁ + g₂, w₂ = w₁ - lr·v₂.
    model = try quadratic("sgd(lr: 0.1, momentum: 0.9)")
    compiled = try compile(model, parameters: weights(w))
    _ = try compiled.trainStep([:])
    _ = try compiled.trainStep([:])
    let w1 = w.map { $0 - 0.1 * 2 * $0 }
    let v2 = zip(w, w1).map { 0.9 * 2 * $0 + 2 * $1 }
    let w2 = zip(w1, v2).map { $0 - 0.1 * $1 }
    expectClose(try compiled.parameter(named: "w").scalars(as: Double.self), w2)
    #expect(try compiled.state()["Quadratic.step"] == nil)
    #expect(try compiled.state()["train.step"]?.doubles() == [2])

    // Nesterov: step along g + μv.
    model = try quadratic("sgd(lr: 0.1, momentum: 0.9, nesterov: true)")
    compiled = try compile(model, parameters: weights(w))
    _ = try compiled.trainStep([:])
    expectClose(
      try compiled.parameter(named: "w").scalars(as: Double.self),
      w.map { $0 - 0.1 * (2 * $0 + 0.9 * 2 * $0) })
  }

  @Test("adam's first step moves each weight by lr against its gradient's sign")
  func adam() throws {
    let w: [Double] = [1, -2, 0.5]
    let compiled = try compile(try quadratic("adam(lr: 0.01)"), parameters: weights(w))
    let loss = try compiled.trainStep([:])
    #expect(abs(loss - 5.25) < 1e-12)
    // m̂ = g, v̂ = g², so the step is lr·g/(|g| + ε).
    expectClose(
      try compiled.parameter(named: "w").scalars(as: Double.self),
      w.map { $0 - 0.01 * (2 * $0) / (abs(2 * $0) + 1e-8) })
  }

  @Test("gradient clipping rescales to the given global norm")
  func clipping() throws {
    let w: [Double] = [3, 4, 0]  // g = [6, 8, 0], ‖g‖ = 10
    let compiled = try compile(try quadratic("sgd(lr: 1, clip_norm: 1)"), parameters: weights(w))
    _ = try compiled.trainStep([:])
    expectClose(
      try compiled.parameter(named: "w").scalars(as: Double.self), [3 - 0.6, 4 - 0.8, 0],
      tolerance: 1e-6)
  }

  static let cosineRates: [Double] = [
    0.1, 0.1 * (1 + cos(Double.pi / 4)) / 2, 0.05, 0.1 * (1 + cos(3 * Double.pi / 4)) / 2, 0,
  ]
  static let scheduleCases: [(String, [Double])] = [
    (
      "sgd(lr: 0.1, schedule: \"step\", decay_steps: 2, decay_rate: 0.5)",
      [0.1, 0.1, 0.05, 0.05, 0.025]
    ),
    (
      "sgd(lr: 0.1, schedule: \"exponential\", decay_steps: 1, decay_rate: 0.5)",
      [0.1, 0.05, 0.025, 0.0125, 0.00625]
    ),
    ("sgd(lr: 0.1, schedule: \"cosine\", decay_steps: 4)", cosineRates),
    ("sgd(lr: 0.1, warmup_steps: 4)", [0.025, 0.05, 0.075, 0.1, 0.1]),
  ]

  @Test("learning-rate schedules", arguments: scheduleCases)
  func schedules(_ optimizer: String, _ rates: [Double]) throws {
    // With loss = Σ w², one step scales w by (1 - 2·lr).
    let compiled = try compile(try quadratic(optimizer), parameters: weights([1, 1, 1]))
    var expected = 1.0
    for rate in rates {
      _ = try compiled.trainStep([:])
      expected *= 1 - 2 * rate
      let actual = try compiled.parameter(named: "w").scalars(as: Double.self)[0]
      #expect(abs(actual - expected) < 1e-12, "\(optimizer): \(actual) vs \(expected)")
    }
  }

  @Test(
    "compiled training steps equal interpreted ones for every optimizer",
    arguments: [
      "sgd(lr: 0.05, momentum: 0.9, weight_decay: 0.01)", "adam(lr: 0.01)",
      "adamw(lr: 0.01, weight_decay: 0.1)",
      "rmsprop(lr: 0.01, momentum: 0.5)", "adagrad(lr: 0.1)",
      "sgd(lr: 0.1, clip_norm: 0.5, schedule: \"cosine\", decay_steps: 3)",
    ])
  func compiledMatchesInterpreter(_ optimizer: String) throws {
    let model = try Model(
      source: """
        model Fit {
          input x: f64[batch, 3]
          input y: f64[batch, 1]
          let h = x |> dense(units: 4) |> tanh
          output prediction = dense(h, units: 1)
          loss = mse(prediction, y)
          train with \(optimizer)
        }
        """, pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 3)
    let compiled = try compile(model, parameters: parameters)
    var values = parameters.merging(try model.graph.initialState()) { a, _ in a }
    for step in 0..<4 {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 5], seed: UInt64(step))
      let compiledLoss = try compiled.trainStep(inputs)
      let reference = try model.interpretTrainStep(inputs, values: values)
      values = reference.values
      #expect(
        abs(compiledLoss - reference.loss) <= 1e-12 * max(1, abs(reference.loss)),
        "\(optimizer) step \(step)")
    }
    let compiledValues = try compiled.parameters().merging(try compiled.state()) { a, _ in a }
    for (name, tensor) in values {
      let problem = TestData.mismatch(compiledValues[name]!, tensor, rtol: 1e-10, atol: 1e-12)
      #expect(problem == nil, "\(optimizer): \(name): \(problem ?? "")")
    }
  }

  @Test("the same seed gives bit-identical weights after training")
  func deterministic() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("examples/digits_mlp.lam"), pipeline: Pipeline.training)
    func train() throws -> [String: Tensor] {
      let compiled = try compile(model, parameters: try model.initialParameters(seed: 9))
      for step in 0..<5 {
        _ = try compiled.trainStep(
          TestData.inputs(for: model.graph, symbols: ["batch": 16], seed: UInt64(step)))
      }
      return try compiled.parameters()
    }
    #expect(try train() == (try train()))
  }

  func expectClose(_ actual: [Double], _ expected: [Double], tolerance: Double = 1e-12) {
    #expect(actual.count == expected.count)
    for (a, e) in zip(actual, expected) {
      #expect(abs(a - e) <= tolerance * max(1, abs(e)), "\(actual) vs \(expected)")
    }
  }
}
