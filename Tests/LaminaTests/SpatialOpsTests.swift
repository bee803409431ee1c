import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// The ops ONNX models need beyond the 2-D ones: `conv3d`, `conv_transpose3d`,
/// `conv3d_backward_weight`, `max_pool3d`, `avg_pool3d` (and their backward ops), `instance_norm`,
/// `lrn`, and the `batch_norm` layer on rank 3 and 5. The 3-D ops and the norms compile as their
/// decompositions into 2-D and elementwise ops, so the compiled results (forward and every
/// parameter's gradient) against the interpreter's direct loops check the decompositions, and the
/// interpreter's gradients against finite differences check the gradient rules.
@Suite("Spatial ops", .serialized)
struct SpatialOpsTests {
  struct Case: CustomStringConvertible, Sendable {
    var name: String
    var dtype = "f32"
    var input: String
    /// `param` lines the body uses.
    var parameters: String = ""
    /// The expression of `h` from `x`.
    var body: String
    var description: String { name }

    var source: String {
      """
      model Spatial {
        input x: \(dtype)[batch, \(input)]
        input target: \(dtype)[batch, 3]
      \(parameters)
        let h = \(body)
        let y = h |> flatten |> dense(units: 3)
        output y
        output h
        loss = mse(y, target)
        train with sgd(lr: 0.01)
      }
      """
    }
  }

  static let cases: [Case] = [
    Case(
      name: "conv3d with stride, asymmetric padding and a bias", input: "3, 4, 5, 6",
      parameters: """
          param w: f32[4, 3, 2, 3, 2] = normal(std: 0.3)
          param b: f32[4] = normal(std: 0.1)
        """,
      body: "conv3d(x, w, b, stride: [1, 2, 1], padding: [1, 0, 1, 0, 1, 1])"),
    Case(
      name: "conv3d with groups, depth dilation and stride, a scalar bias", input: "4, 7, 5, 4",
      parameters: """
          param w: f32[6, 2, 3, 2, 2] = normal(std: 0.3)
          param b: f32[] = normal(std: 0.1)
        """,
      body:
        "conv3d(x, w, b, stride: [2, 1, 1], dilation: [2, 1, 2], groups: 2, padding: [2, 1, 0, 1, 0, 1])"
    ),
    Case(
      name: "conv3d in f64, kernel depth 1", dtype: "f64", input: "2, 3, 4, 4",
      parameters: """
          param w: f64[3, 2, 1, 3, 3] = normal(std: 0.3)
          param b: f64[3] = normal(std: 0.1)
        """,
      body: "conv3d(x, w, b, padding: [0, 1, 1, 0, 1, 1]) |> relu"),
    Case(
      name: "conv_transpose3d with stride, padding, output_padding and groups", input: "4, 3, 3, 2",
      parameters: """
          param w: f32[4, 3, 2, 3, 2] = normal(std: 0.3)
          param b: f32[6] = normal(std: 0.1)
        """,
      body:
        "conv_transpose3d(x, w, b, stride: [2, 2, 1], padding: [1, 0, 0, 0, 1, 0], output_padding: [1, 0, 0], groups: 2)"
    ),
    Case(
      name: "max_pool3d with stride, padding and dilation", input: "2, 6, 7, 5",
      body:
        "max_pool3d(x, kernel: [3, 2, 3], stride: [2, 2, 1], padding: [1, 1, 0, 1, 0, 1], dilation: [1, 2, 1])"
    ),
    Case(
      name: "max_pool3d in ceil mode after a conv3d", input: "2, 5, 5, 5",
      parameters: """
          param w: f32[3, 2, 2, 2, 2] = normal(std: 0.3)
          param b: f32[3] = normal(std: 0.1)
        """,
      body: "conv3d(x, w, b) |> max_pool3d(kernel: [2, 2, 2], ceil_mode: true)"),
    Case(
      name: "avg_pool3d counting padding, ceil mode", input: "2, 5, 6, 5",
      body:
        "avg_pool3d(x, kernel: [2, 3, 2], stride: [2, 2, 2], padding: [1, 1, 0, 1, 1, 1], ceil_mode: true)"
    ),
    Case(
      name: "avg_pool3d without the padding in the divisor (ONNX's default)", input: "3, 4, 5, 6",
      body:
        "avg_pool3d(x, kernel: [3, 3, 2], stride: [1, 2, 2], padding: [1, 1, 1, 1, 1, 0], count_include_pad: false)"
    ),
    Case(
      name: "instance_norm on NCHW", input: "3, 4, 5",
      parameters: """
          param scale: f32[3] = normal(std: 1)
          param shift: f32[3] = normal(std: 0.5)
        """,
      body: "instance_norm(x, scale, shift, eps: 1e-3)"),
    Case(
      name: "instance_norm on NCL in f64", dtype: "f64", input: "2, 7",
      parameters: """
          param scale: f64[2] = normal(std: 1)
          param shift: f64[2] = normal(std: 0.5)
        """,
      body: "instance_norm(x, scale, shift)"),
    Case(
      name: "lrn over 5 channels (AlexNet's)", input: "7, 3, 4",
      body: "lrn(x, size: 5, alpha: 0.3, beta: 0.75, bias: 2.0)"),
    Case(
      name: "lrn over an even window, rank 5, after a conv3d", input: "2, 3, 3, 3",
      parameters: """
          param w: f32[6, 2, 2, 2, 2] = normal(std: 0.5)
          param b: f32[6] = normal(std: 0.1)
        """,
      body: "conv3d(x, w, b) |> lrn(size: 4, alpha: 0.5, beta: 0.6, bias: 1.5)"),
    Case(
      name: "batch_norm on [N, C, L]", input: "4, 6",
      body: "x |> batch_norm"),
    Case(
      name: "batch_norm on [N, C, D, H, W]", input: "3, 2, 3, 4",
      body: "x |> batch_norm(momentum: 0.3)"),
  ]

  @Test("compiled outputs and gradients equal the interpreter's at batch 1 and 5", arguments: cases)
  func compiledMatchesInterpreter(_ testCase: Case) throws {
    let model = try Model(source: testCase.source, pipeline: Pipeline.training)
      .withGradientOutputs()
    let parameters = try model.initialParameters(seed: 3)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    for batch in [1, 5] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 7)
      let (outputs, losses) = try compiled.evaluate(inputs)
      let names = model.graph.outputs.map(\.name) + model.graph.losses.map(\.name)
      #expect(names.contains { $0.hasPrefix("grad.") })
      let expected = try model.interpret(inputs: inputs, parameters: parameters, outputs: names)
      for (name, tensor) in outputs.merging(losses, uniquingKeysWith: { a, _ in a }) {
        let reference = try #require(expected[name])
        let scale = TestData.largestFiniteMagnitude(reference) ?? 1
        let (rtol, atol) =
          testCase.dtype == "f32" ? (1e-4, 1e-5 * max(scale, 1)) : (1e-11, 1e-13 * max(scale, 1))
        let problem = TestData.mismatch(tensor, reference, rtol: rtol, atol: atol)
        #expect(problem == nil, "\(testCase) batch \(batch), \(name): \(problem ?? "")")
      }
    }
  }

  @Test("the interpreter's gradients equal finite differences", arguments: cases)
  func gradcheck(_ testCase: Case) throws {
    let model = try Model(
      source: testCase.source.replacingOccurrences(of: "f32", with: "f64"),
      pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 5)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 2], seed: 9)
    let checks = try model.checkGradients(inputs: inputs, parameters: parameters, samples: 12)
    #expect(!checks.isEmpty)
    for check in checks {
      #expect(
        check.worstRelativeError < 1e-6,
        "\(testCase): \(check.parameter) analytic \(check.analytic) numeric \(check.numeric)")
    }
  }

  /// The backward ops as second-order ops: conv3d_backward_weight's gradients (a conv_transpose3d
  /// and a conv3d) and avg_pool3d_backward's (an avg_pool3d), against finite differences and
  /// compiled against the interpreter.
  @Test("the 3-D backward ops' gradients equal finite differences, compiled as interpreted")
  func backwardOpGradients() throws {
    let source = """
      model SecondOrder {
        input target: f64[4, 3, 2, 3, 2]
        input pooled_target: f64[2, 4, 3, 3, 2]
        param x: f64[2, 3, 5, 6, 4] = normal(std: 1)
        param dy: f64[2, 4, 3, 3, 2] = normal(std: 1)
        let dw = conv3d_backward_weight(x, dy, kernel: [2, 3, 2], stride: [2, 2, 2], padding: [1, 1, 0, 0, 0, 1], dilation: [1, 1, 2])
        let spread = avg_pool3d_backward(dy, kernel: [2, 2, 2], stride: [1, 1, 1], padding: [1, 0, 1, 0, 1, 0], input_size: [3, 3, 2], count_include_pad: false)
        output dw
        output spread
        loss = mse(dw, target) + mse(spread, pooled_target)
        train with sgd(lr: 0.1)
      }
      """
    let model = try Model(source: source, pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 1)
    let inputs = TestData.inputs(for: model.graph, symbols: [:], seed: 2)
    let checks = try model.checkGradients(inputs: inputs, parameters: parameters, samples: 40)
    #expect(checks.count == 2)
    for check in checks {
      #expect(check.worstRelativeError < 1e-6, "\(check.parameter): \(check)")
    }
    let withGradients = model.withGradientOutputs()
    let names = withGradients.graph.outputs.map(\.name)
    let compiled = try withGradients.compile(options: TestCache.options(), parameters: parameters)
    let (outputs, _) = try compiled.evaluate(inputs)
    let expected = try withGradients.interpret(
      inputs: inputs, parameters: parameters, outputs: names)
    for name in names {
      let problem = TestData.mismatch(
        try #require(outputs[name]), try #require(expected[name]), rtol: 1e-11, atol: 1e-12)
      #expect(problem == nil, "\(name): \(problem ?? "")")
    }
  }

  /// Ties and NaN: the decomposition's two stages must pick the same position as the direct
  /// 3-D window (the first maximum in (d, h, w) order, the last NaN).
  @Test(
    "max_pool3d_backward compiled sends each window's gradient where the interpreter does, on ties and NaN"
  )
  func maximumTies() throws {
    let source = """
      model Ties {
        input x: f64[2, 2, 5, 6, 5]
        input g: f64[2, 2, 3, 3, 3]
        output y = max_pool3d(x, kernel: [3, 2, 3], stride: [2, 2, 2], padding: [1, 0, 1, 1, 0, 1])
        output dx = max_pool3d_backward(x, g, kernel: [3, 2, 3], stride: [2, 2, 2], padding: [1, 0, 1, 1, 0, 1])
      }
      """
    let model = try Model(source: source)
    let compiled = try model.compile(options: TestCache.options())
    var generator = SeededGenerator(seed: 4)
    // Values from {0, 1, 2}: most windows hold their maximum more than once.
    var values = (0..<(2 * 2 * 5 * 6 * 5)).map { _ in
      Double(Int.random(in: 0..<3, using: &generator))
    }
    values[17] = .nan
    values[40] = .nan
    values[41] = .nan
    let x = Tensor(shape: [2, 2, 5, 6, 5], scalars: values)
    let g = Tensor(
      shape: [2, 2, 3, 3, 3],
      scalars: (0..<(2 * 2 * 27)).map { Double($0 + 1) })
    let inputs = ["x": x, "g": g]
    let (outputs, _) = try compiled.evaluate(inputs)
    let expected = try model.interpret(inputs: inputs, parameters: [:], outputs: ["y", "dx"])
    for name in ["y", "dx"] {
      let actual = try #require(outputs[name]).doubles()
      let reference = try #require(expected[name]).doubles()
      #expect(actual.count == reference.count)
      for (a, b) in zip(actual, reference) {
        #expect(a == b || (a.isNaN && b.isNaN), "\(name): \(a) against \(b)")
      }
    }
  }

  /// Values worked by hand: ONNX's LRN formula on one pixel of four channels, and instance
  /// normalization of one row.
  @Test("lrn and instance_norm give the values worked by hand")
  func valuesByHand() throws {
    let lrn = try #require(OpRegistry.definition("lrn"))
    let x = Tensor(shape: [1, 4, 1, 1], scalars: [1.0, 2, 3, 4])
    let y = try lrn.interpret(
      InterpretContext(
        operands: [x],
        attributes: [
          "size": .int(3), "alpha": .float(0.6), "beta": .float(0.5), "bias": .float(1),
        ],
        results: [(dtype: .f64, shape: [1, 4, 1, 1])]))[0].doubles()
    // Channel 0 sees channels 0 and 1: 1 / √(1 + 0.2 · 5); channel 1 sees 0 to 2: 2 / √(1 + 0.2 · 14);
    // channel 3 sees 2 and 3: 4 / √(1 + 0.2 · 25).
    let expected = [
      1 / 2.0.squareRoot(), 2 / 3.8.squareRoot(), 3 / 6.8.squareRoot(), 4 / 6.0.squareRoot(),
    ]
    for (a, b) in zip(y, expected) { #expect(abs(a - b) < 1e-12, "\(y) against \(expected)") }

    let norm = try #require(OpRegistry.definition("instance_norm"))
    let row = Tensor(shape: [1, 1, 4], scalars: [1.0, 3, 5, 7])
    let normalized = try norm.interpret(
      InterpretContext(
        operands: [row, Tensor(shape: [1], scalars: [2.0]), Tensor(shape: [1], scalars: [1.0])],
        attributes: ["eps": .float(0)], results: [(dtype: .f64, shape: [1, 1, 4])]))[0].doubles()
    // Mean 4, variance 5: (x − 4) / √5 · 2 + 1.
    for (a, value) in zip(normalized, [1.0, 3, 5, 7]) {
      #expect(abs(a - ((value - 4) / 5.0.squareRoot() * 2 + 1)) < 1e-12)
    }
  }

  @Test("3-D shape errors name what was expected and what was found")
  func shapeErrors() throws {
    func message(_ op: String, _ operands: [TensorType], _ attributes: [String: Attribute])
      -> String?
    {
      do {
        _ = try OpRegistry.definition(op)!.inferTypes(operands: operands, attributes: attributes)
        return nil
      } catch { return error.message }
    }
    let x = TensorType(.f32, [Dim(symbol: "batch"), 4, 5, 6, 7])
    let w = TensorType(.f32, [8, 4, 3, 3, 3])
    let bias = TensorType(.f32, [8])
    #expect(
      message("conv3d", [x, w, bias], [:]) == nil)
    #expect(
      message("conv3d", [TensorType(.f32, [1, 4, 5, 6]), w, bias], [:])?.contains("rank 5") == true)
    #expect(
      message("conv3d", [x, w, bias], ["padding": .ints([1, 1, 1, 1])])?.contains(
        "6 sizes") == true)
    #expect(
      message("conv3d", [x, TensorType(.f32, [8, 2, 3, 3, 3]), bias], [:])?.contains(
        "expects 2") == true)
    #expect(
      message("conv3d", [x, TensorType(.f32, [8, 4, 7, 3, 3]), bias], [:])?.contains(
        "larger than the padded input") == true)
    #expect(
      message(
        "max_pool3d", [x], ["kernel": .ints([2, 2, 2]), "padding": .ints([2, 0, 0, 0, 0, 0])])?
        .contains("more than half the kernel") == true)
    #expect(
      message("lrn", [TensorType(.f32, [2, 3])], ["size": .int(3)])?.contains("rank 3") == true)
    #expect(
      message(
        "instance_norm",
        [TensorType(.f32, [2, 3, 4]), TensorType(.f32, [4]), TensorType(.f32, [3])], [:])?
        .contains("one per channel") == true)
  }
}
