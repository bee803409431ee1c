import Foundation
import Lamina
import Testing

/// The reference interpreter on whole graphs, against values worked out by hand.
@Suite("Reference interpreter")
struct InterpreterTests {
  let source = """
    model Tiny {
      input x: f32[batch, 2]
      input label: i32[batch]
      param w: f32[2, 2] = zeros()
      param b: f32[2] = zeros()
      let logits = relu(x @ w + b)
      output logits
      output probs = softmax(logits)
      loss = cross_entropy(logits, label)
    }
    """

  @Test("a small model matches hand-computed values")
  func handComputed() throws {
    let model = try Model(source: source)
    // w = [[1, -1], [2, 0]], b = [0.5, 0]; x = [[1, 1], [0, -1]]
    // x @ w + b = [[3.5, -1], [-2, 0]] → relu → [[3.5, 0], [0, 0]]
    let parameters = [
      "w": Tensor(shape: [2, 2], scalars: [1, -1, 2, 0] as [Float]),
      "b": Tensor(shape: [2], scalars: [0.5, 0] as [Float]),
    ]
    let inputs = [
      "x": Tensor(shape: [2, 2], scalars: [1, 1, 0, -1] as [Float]),
      "label": Tensor(shape: [2], scalars: [0, 1] as [Int32]),
    ]
    let out = try model.interpret(
      inputs: inputs, parameters: parameters, outputs: ["logits", "probs", "loss"])
    #expect(out["logits"]!.scalars(as: Float.self) == [3.5, 0, 0, 0])
    let probs = out["probs"]!.scalars(as: Float.self)
    let e = Float(exp(3.5))
    #expect(abs(probs[0] - e / (e + 1)) < 1e-6)
    #expect(abs(probs[2] - 0.5) < 1e-6)
    // loss = mean(-log p[0][0], -log p[1][1]) = (log(1 + e^-3.5) + log 2) / 2
    let expected = (log(1 + exp(-3.5)) + log(2.0)) / 2
    #expect(abs(Double(out["loss"]!.scalars(as: Float.self)[0]) - expected) < 1e-6)
  }

  @Test("inputs the outputs do not need may be left out")
  func unneededInputs() throws {
    let model = try Model(source: source)
    let parameters = try model.initialParameters(seed: 1)
    let x = Tensor(shape: [3, 2], scalars: [1, 2, 3, 4, 5, 6] as [Float])
    let out = try model.interpret(inputs: ["x": x], parameters: parameters, outputs: ["probs"])
    #expect(out["probs"]!.shape == [3, 2])
  }

  @Test("wrong shapes and dtypes are reported by input name")
  func inputErrors() throws {
    let model = try Model(source: source)
    let parameters = try model.initialParameters(seed: 1)
    func message(_ inputs: [String: Tensor], _ outputs: [String] = ["loss"]) -> String {
      do {
        _ = try model.interpret(inputs: inputs, parameters: parameters, outputs: outputs)
        return "no error"
      } catch {
        return "\(error)"
      }
    }
    let x = Tensor(shape: [3, 2], scalars: [Float](repeating: 0, count: 6))
    let labels = Tensor(shape: [3], scalars: [0, 1, 1] as [Int32])
    #expect(
      message([
        "x": Tensor(shape: [3, 5], scalars: [Float](repeating: 0, count: 15)), "label": labels,
      ])
        == "input 'x': expected f32[batch, 2], got f32[3, 5] (dimension 1 is 5, expected 2)")
    #expect(
      message(["x": x, "label": Tensor(shape: [4], scalars: [0, 1, 1, 0] as [Int32])])
        == "input 'label': dimension 0 (batch) is 4, but batch is 3 from 'x'")
    #expect(message(["x": x]) == "missing input 'label' (i32[batch])")
    #expect(
      message([
        "x": Tensor(shape: [3, 2], scalars: [Double](repeating: 0, count: 6)), "label": labels,
      ])
      .contains("input 'x': expected dtype f32, got f64"))
    #expect(message(["x": x, "label": labels], ["nope"]).contains("no output named 'nope'"))
    // 64-bit labels, as numpy writes them, are narrowed when they fit.
    let wide = Tensor(shape: [3], scalars: [0, 1, 1] as [Int64])
    #expect(message(["x": x, "label": wide]) == "no error")
    // A label outside the classes is caught where it is used.
    #expect(
      message(["x": x, "label": Tensor(shape: [3], scalars: [0, 7, 1] as [Int32])]).contains(
        "label"))
  }

  @Test("initialization is deterministic, per-parameter, and scaled by fan-in")
  func initialization() throws {
    let model = try Model(
      source:
        "model M { input x: f32[batch, 64]\n param w: f32[64, 128] = he_normal()\n param v: f32[3] = uniform(-2, -1)\n output y = x @ w }"
    )
    let first = try model.initialParameters(seed: 7)
    #expect(try model.initialParameters(seed: 7)["w"] == first["w"])
    #expect(try model.initialParameters(seed: 8)["w"] != first["w"])
    let values = first["w"]!.doubles()
    let mean = values.reduce(0, +) / Double(values.count)
    let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count))
      .squareRoot()
    // He normal: std = √(2 / fan_in) = √(2/64) = 0.177; 8192 samples put the estimate within a few %.
    #expect(abs(std - (2.0 / 64).squareRoot()) < 0.01)
    #expect(abs(mean) < 0.01)
    #expect(first["v"]!.doubles().allSatisfy { $0 >= -2 && $0 < -1 })
    // Adding a parameter leaves the others' initial values alone.
    let bigger = try Model(
      source:
        "model M { input x: f32[batch, 64]\n param a: f32[5] = normal()\n param w: f32[64, 128] = he_normal()\n output y = x @ w + sum(a) }"
    )
    #expect(try bigger.initialParameters(seed: 7)["w"] == first["w"])
  }
}
