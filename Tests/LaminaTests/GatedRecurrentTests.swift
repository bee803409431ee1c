import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// The `lstm` and `gru` layers: PyTorch's parameter names, layouts and initialization, compiled
/// against the interpreter at batch 1 and 37 and length 1 and 23 (forward and the training step's
/// gradients), and bad input. Gradients against finite differences are cases of `GradientTests`;
/// values against PyTorch are checked by tools/compare_rnn_torch.py.
@Suite("Gated recurrent layers")
struct GatedRecurrentTests {
  static let source = """
    model Recurrent {
      input x: f32[batch, time, 3]
      input lengths: i32[batch]
      input target: f32[batch, 4]
      let both = x |> lstm(units: 5, bidirectional: true, lengths: lengths)
      let last = both |> gru(units: 4, return: "last", lengths: lengths)
      let plain = x |> lstm(units: 4, return: "last")
      output both
      output last
      loss = mse(last + plain, target)
      train with adam(lr: 1e-3)
    }
    """

  static func types(_ model: Model) -> [String: String] {
    Dictionary(
      uniqueKeysWithValues: model.graph.params.map {
        (model.graph[$0.value].name, model.graph.type(of: $0.value).description)
      })
  }

  @Test(
    "parameters are PyTorch's, without _l0: [gates·units, in], _reverse for the backward direction")
  func parameterNamesAndLayouts() throws {
    let types = Self.types(try Model(source: Self.source))
    #expect(types["lstm_0.weight_ih"] == "f32[20, 3]")
    #expect(types["lstm_0.weight_hh"] == "f32[20, 5]")
    #expect(types["lstm_0.bias_ih"] == "f32[20]")
    #expect(types["lstm_0.bias_hh"] == "f32[20]")
    #expect(types["lstm_0.weight_ih_reverse"] == "f32[20, 3]")
    #expect(types["lstm_0.bias_hh_reverse"] == "f32[20]")
    #expect(types["gru_0.weight_ih"] == "f32[12, 10]")
    #expect(types["gru_0.weight_hh"] == "f32[12, 4]")
    #expect(types["gru_0.weight_ih_reverse"] == nil)
    #expect(types["lstm_1.weight_ih"] == "f32[16, 3]")
    #expect(types.count == 16)
  }

  @Test("every weight and bias starts uniform in ±1/√units, unless init: says otherwise")
  func initialization() throws {
    let model = try Model(source: Self.source)
    let values = try model.initialParameters(seed: 2)
    for (name, units) in [("lstm_0.weight_hh", 5.0), ("gru_0.bias_ih", 4.0)] {
      let elements = try #require(values[name]).doubles()
      let bound = 1 / units.squareRoot()
      #expect(elements.allSatisfy { abs($0) <= bound }, "\(name)")
      // Spread over the range, not clustered: some element past 60% of the bound each way.
      #expect(elements.contains { $0 > 0.6 * bound } && elements.contains { $0 < -0.6 * bound })
    }
    let zeros = try Model(
      source: """
        model M {
          input x: f32[batch, time, 3]
          output h = x |> gru(units: 2, init: zeros())
        }
        """)
    #expect(
      try zeros.initialParameters().values.allSatisfy { $0.doubles().allSatisfy { $0 == 0 } })
  }

  /// Valid inputs for `symbols`: lengths from 0 to the time steps.
  static func inputs(_ model: Model, batch: Int, time: Int, seed: UInt64) -> [String: Tensor] {
    var inputs = TestData.inputs(
      for: model.graph, symbols: ["batch": batch, "time": time], seed: seed)
    var generator = SeededGenerator(seed: seed + 100)
    let lengths = (0..<batch).map { row in
      // The first row is always full length, so some row runs every step.
      row == 0 ? Int32(time) : Int32(generator.next() % UInt64(time + 1))
    }
    inputs["lengths"] = Tensor(shape: [batch], scalars: lengths)
    return inputs
  }

  @Test(
    "compiled equals the interpreter at batch 1 and 37, length 1 and 23, forward and gradients",
    arguments: TestData.compilers)
  func compiledMatchesInterpreter(_ compiler: String) throws {
    let trained = try Model(source: Self.source, pipeline: Pipeline.training)
      .withGradientOutputs()
    let parameters = try trained.initialParameters(seed: 7)
    var options = TestCache.options(compiler: compiler)
    options.threads = 2
    let compiled = try trained.compile(options: options, parameters: parameters)
    let names = compiled.signature.outputs.map(\.name)
    #expect(
      names.contains {
        $0.hasPrefix("grad.lstm_0.weight_hh_reverse") || $0.contains("weight_hh_reverse")
      })
    for (batch, time) in [(1, 1), (1, 23), (37, 1), (37, 23)] {
      let inputs = Self.inputs(trained, batch: batch, time: time, seed: UInt64(batch * 100 + time))
      let ours = try compiled.evaluate(inputs).outputs
      let reference = try trained.interpret(inputs: inputs, parameters: parameters, outputs: names)
      for problem in TestData.compiledMismatches(ours, reference, names: names) {
        Issue.record("\(compiler), batch \(batch), time \(time), \(problem)")
      }
    }
  }

  /// The error of building `call` on an input of type `input`, or "no error".
  static func buildError(_ input: String, _ body: String) -> String {
    do {
      _ = try Model(
        source: """
          model M {
            input x: \(input)
            input lengths: i32[batch]
            input h0: f32[batch, 4]
            \(body)
          }
          """)
      return "no error"
    } catch {
      return "\(error)"
    }
  }

  @Test(
    "a sequence of the wrong rank, a feature size the weights do not take, bad lengths or state")
  func badInput() {
    #expect(
      Self.buildError("f32[batch, 7]", "output y = x |> lstm(units: 4)").contains(
        "lstm needs a sequence input [batch, time, features], got f32[batch, 7]"))
    #expect(
      Self.buildError("f32[batch, 5, 3]", "output y = x |> gru(units: 4, lengths: h0)").contains(
        "gru: lengths must be one integer vector"))
    #expect(
      Self.buildError("f32[batch, 5, 3]", "output y = x |> lstm(units: 4, initial: [h0])")
        .contains("lstm: initial must be 2 states of type f32[batch, 4]"))
    #expect(
      Self.buildError("f32[batch, 5, 3]", "output y = x |> gru(units: 3, initial: [h0])")
        .contains("gru: initial must be 1 state of type f32[batch, 3], got f32[batch, 4]"))
    // One shared instance called on 3 and then 2 features.
    let shared = Self.buildError(
      "f32[batch, 5, 3]",
      """
      let cell = lstm(units: 4, return: "last")
        let a = x |> cell
        let b = x[:, :, 0:2] |> cell
        output y = a + b
      """)
    #expect(
      shared.contains(
        "lstm: the input has 2 features, but the layer's weights take 3 (cell.weight_ih is f32[16, 3])"
      ),
      "\(shared)")
  }

  @Test("a length above the time axis is an error at run time, compiled and interpreted")
  func lengthAboveTime() throws {
    let model = try Model(source: Self.source)
    let parameters = try model.initialParameters(seed: 1)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    var inputs = Self.inputs(model, batch: 3, time: 5, seed: 1)
    inputs["lengths"] = Tensor(shape: [3], scalars: [5, 9, 2] as [Int32])
    var messages: [String] = []
    do { _ = try compiled.evaluate(inputs) } catch { messages.append("\(error)") }
    do {
      _ = try model.interpret(inputs: inputs, parameters: parameters, outputs: ["both", "last"])
    } catch { messages.append("\(error)") }
    #expect(messages.count == 2)
    for message in messages {
      #expect(
        message.contains("length 9 at position [1] of 'lengths' is outside 0...5"), "\(message)")
    }
  }
}
