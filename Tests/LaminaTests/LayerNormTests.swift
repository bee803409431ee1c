import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// `layer_norm`: the interpreter against the formula, compiled against the interpreter (forward and
/// a training step, batch 1 and 37, one and two normalized axes, with and without the affine
/// parameters), gradients against finite differences, fusion into one row kernel, and errors.
@Suite("Layer norm")
struct LayerNormTests {
  /// A model normalizing `x` (`f32[batch, 5, 6]`) over `axes` after a learned scale and shift, so
  /// every gradient path (x through s and t, weight, bias) reaches a parameter.
  static func source(axes: String, affine: Bool, dtype: String = "f32") -> String {
    """
    model LayerNormCase {
      input x: \(dtype)[batch, 5, 6]
      input target: \(dtype)[batch, 5, 6]
      param s: \(dtype)[6] = uniform(lo: 0.5, hi: 1.5)
      param t: \(dtype)[6] = uniform(lo: -1, hi: 1)

      output y = (x * s + t) |> layer_norm(axes: \(axes), affine: \(affine))
      loss = mse(y * y + y, target)
      train with sgd(lr: 0.1)
    }
    """
  }

  struct Case: CustomStringConvertible, Sendable {
    var axes: String
    var affine: Bool
    var description: String { "axes \(axes), affine \(affine)" }
  }

  static let cases = ["-1", "[-2, -1]"].flatMap { axes in
    [true, false].map { Case(axes: axes, affine: $0) }
  }

  @Test("the interpreter computes PyTorch's LayerNorm formula")
  func interpreterFormula() throws {
    let model = try Model(
      source: """
        model Formula {
          input x: f64[2, 4]
          param w: f64[4] = ones()
          output y = layer_norm(x, eps: 0.001)
        }
        """)
    let x = Tensor(dtype: .f64, shape: [2, 4], doubles: [1, 2, 3, 4, -2, 0, 0, 10])
    let y = try model.interpret(
      inputs: ["x": x], parameters: model.initialParameters(seed: 1), outputs: ["y"])["y"]!
    var expected: [Double] = []
    for row in [[1.0, 2, 3, 4], [-2.0, 0, 0, 10]] {
      let mean = row.reduce(0, +) / 4
      let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 4
      expected += row.map { ($0 - mean) / (variance + 0.001).squareRoot() }
    }
    #expect(
      TestData.mismatch(
        y, Tensor(dtype: .f64, shape: [2, 4], doubles: expected), rtol: 1e-15, atol: 0) == nil)
    // The first row by hand: mean 2.5, variance 1.25.
    #expect(abs(y.doubles()[0] - (1 - 2.5) / (1.25 + 0.001).squareRoot()) < 1e-15)
  }

  @Test("the layer's weight and bias scale and shift each normalized position")
  func affineParameters() throws {
    let model = try Model(source: Self.source(axes: "[-2, -1]", affine: true))
    let parameters = try model.initialParameters(seed: 3)
    #expect(parameters["layer_norm_0.weight"]?.shape == [5, 6])
    #expect(parameters["layer_norm_0.bias"]?.shape == [5, 6])
    #expect(parameters["layer_norm_0.weight"]?.doubles().allSatisfy { $0 == 1 } == true)
    #expect(parameters["layer_norm_0.bias"]?.doubles().allSatisfy { $0 == 0 } == true)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 2], seed: 4)
    let plain = try model.interpret(inputs: inputs, parameters: parameters, outputs: ["y"])["y"]!
    var changed = parameters
    let weight = (0..<30).map { Double($0) / 10 - 1 }
    let bias = (0..<30).map { Double($0 % 7) - 3 }
    changed["layer_norm_0.weight"] = Tensor(dtype: .f32, shape: [5, 6], doubles: weight)
    changed["layer_norm_0.bias"] = Tensor(dtype: .f32, shape: [5, 6], doubles: bias)
    let scaled = try model.interpret(inputs: inputs, parameters: changed, outputs: ["y"])["y"]!
    let expected = plain.doubles().enumerated().map { index, value in
      value * weight[index % 30] + bias[index % 30]
    }
    #expect(
      TestData.mismatch(
        scaled, Tensor(dtype: .f32, shape: plain.shape, doubles: expected), rtol: 1e-6, atol: 1e-6)
        == nil)
  }

  @Test("compiled forward and training step equal the interpreter", arguments: cases)
  func compiledMatchesInterpreter(_ testCase: Case) throws {
    let model = try Model(
      source: Self.source(axes: testCase.axes, affine: testCase.affine),
      pipeline: Pipeline.training)
    var parameters = try model.initialParameters(seed: 7)
    if testCase.affine {
      // Not ones and zeros, so a swapped or ignored weight or bias shows.
      parameters["layer_norm_0.weight"] = Tensor(
        dtype: .f32, shape: [5, 6], doubles: (0..<30).map { 0.5 + Double($0) / 30 })
      parameters["layer_norm_0.bias"] = Tensor(
        dtype: .f32, shape: [5, 6], doubles: (0..<30).map { Double($0 % 5) / 5 - 0.4 })
      if testCase.axes == "-1" {
        parameters["layer_norm_0.weight"] = Tensor(
          dtype: .f32, shape: [6], doubles: (0..<6).map { 0.5 + Double($0) / 6 })
        parameters["layer_norm_0.bias"] = Tensor(
          dtype: .f32, shape: [6], doubles: (0..<6).map { Double($0) / 6 - 0.4 })
      }
    }
    for batch in [1, 37] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: UInt64(batch))
      let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
      let (outputs, losses) = try compiled.evaluate(inputs)
      let expected = try model.interpret(
        inputs: inputs, parameters: parameters, outputs: ["y", "loss"])
      for (name, tensor) in outputs.merging(losses, uniquingKeysWith: { a, _ in a }) {
        let problem = TestData.mismatch(tensor, expected[name]!, rtol: 1e-5, atol: 1e-6)
        #expect(problem == nil, "\(testCase), batch \(batch), \(name): \(problem ?? "")")
      }
      // A training step: the backward graph's kernels, compiled, against the interpreter's step.
      let loss = try compiled.trainStep(inputs)
      let (expectedLoss, expectedValues) = try model.interpretTrainStep(inputs, values: parameters)
      #expect(abs(loss - expectedLoss) <= 1e-5 * abs(expectedLoss) + 1e-6)
      for (name, tensor) in try compiled.parameters() {
        let problem = TestData.mismatch(tensor, expectedValues[name]!, rtol: 1e-5, atol: 1e-6)
        #expect(problem == nil, "\(testCase), batch \(batch), updated \(name): \(problem ?? "")")
      }
    }
  }

  @Test("gradients match finite differences", arguments: cases)
  func gradcheck(_ testCase: Case) throws {
    let model = try Model(
      source: Self.source(axes: testCase.axes, affine: testCase.affine, dtype: "f64"),
      pipeline: Pipeline.training)
    var parameters = try model.initialParameters(seed: 9)
    if testCase.affine {
      let shape = testCase.axes == "-1" ? [6] : [5, 6]
      let count = shape.reduce(1, *)
      parameters["layer_norm_0.weight"] = Tensor(
        dtype: .f64, shape: shape, doubles: (0..<count).map { 0.5 + Double($0) / Double(count) })
      parameters["layer_norm_0.bias"] = Tensor(
        dtype: .f64, shape: shape, doubles: (0..<count).map { Double($0 % 4) / 4 - 0.3 })
    }
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 3], seed: 10)
    let results = try model.checkGradients(inputs: inputs, parameters: parameters, samples: 30)
    #expect(results.count == (testCase.affine ? 4 : 2))
    for result in results {
      #expect(
        result.worstRelativeError <= 1e-6,
        "\(testCase), \(result.parameter): \(result.worstRelativeError) (analytic \(result.analytic), numeric \(result.numeric))"
      )
    }
  }

  @Test(
    "the op compiles to one fused row kernel, as W6 written out", arguments: ["-1", "[-2, -1]"])
  func fusesIntoOneRowKernel(_ axes: String) throws {
    let model = try Model(source: Self.source(axes: axes, affine: true))
    let lowered = try Model.lower(model.graph, passes: Pipeline.codegen)
    #expect(!lowered.nodes.contains { $0.op == "layer_norm" })
    let rowKernels = lowered.nodes.filter { $0.attributes["kind"]?.stringValue == "reduction" }
    #expect(rowKernels.count == 1)
    // Everything from x * s + t to the bias is inside it: its only operands are the model's
    // inputs, parameters and the eps constant.
    let kernel = try #require(rowKernels.first)
    #expect(kernel.body.filter { $0.op == "mean" }.count == 2)
    #expect(kernel.body.contains { $0.op == "mul" } && kernel.body.contains { $0.op == "sqrt" })
    let definedOutside = Set(
      lowered.nodes.filter { $0.op != "constant" && $0.op != "reshape" }
        .flatMap(\.results)
    ).subtracting(kernel.results)
    #expect(kernel.operands.allSatisfy { !definedOutside.contains($0) })
  }

  @Test("W6 with the layer_norm op compiles to the same C as W6 written out")
  func sameKernelAsW6() throws {
    let written = try Model(
      contentsOf: RepositoryPaths.path("examples/bench/w6_layer_norm_gelu.lam")
    ).generateC()
    let op = try Model(contentsOf: RepositoryPaths.path("examples/bench/w6_layer_norm_op.lam"))
      .generateC()
    // The C without its comments (IR value names, source lines) and the model's name.
    func kernels(_ source: String, model: String) throws -> String {
      let comments = try NSRegularExpression(
        pattern: "/\\*.*?\\*/", options: [.dotMatchesLineSeparators])
      let text = source.replacingOccurrences(of: model, with: "MODEL")
      return comments.stringByReplacingMatches(
        in: text, range: NSRange(text.startIndex..., in: text), withTemplate: "")
    }
    let (writtenC, opC) = (
      try kernels(written.source, model: "LayerNormGelu"),
      try kernels(op.source, model: "LayerNormOpGelu")
    )
    #expect(writtenC.contains("k1_fused_reduction"))
    #expect(writtenC == opC)
  }

  @Test("bad axes, weight shapes and dtypes are located errors naming expected and actual")
  func errors() throws {
    let cases: [(String, String)] = [
      ("layer_norm(x, axes: [0])", "expected [1] for f32[4, 6], got [0]"),
      ("layer_norm(x, axes: [-1, -2])", "expected [0, 1] for f32[4, 6], got [-1, -2]"),
      ("layer_norm(x, axes: [2])", "out of range"),
      ("layer_norm(cast(x, dtype: i32))", "floating-point"),
    ]
    for (call, message) in cases {
      let source = """
        model Bad {
          input x: f32[4, 6]
          output y = \(call)
        }
        """
      do {
        _ = try Model(source: source, path: "bad.lam")
        Issue.record("\(call) compiled")
      } catch {
        let text = String(describing: error)
        #expect(text.contains(message), "\(call): \(text)")
        #expect(text.contains("bad.lam:3:"), "\(call): \(text)")
      }
    }
    // The op itself, in IR text: a weight that is not the normalized axes' shape.
    let ir = """
      graph @Bad {
        input %x : f32[4, 6]
        param %w : f32[4] = ones()
        %y = layer_norm(%x, %w) : f32[4, 6]
        output y = %y
      }
      """
    #expect(throws: (any Error).self) { try Model(source: ir) }
    do { _ = try Model(source: ir) } catch {
      #expect(String(describing: error).contains("weight must be f32[6]"))
    }
  }
}
