import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// `max_pool2d`, `avg_pool2d` and `global_avg_pool2d`: values worked by hand (PyTorch's output-size
/// and divisor rules, first maximum on ties), compiled kernels against the interpreter, forward and
/// backward, and the layers' options. Gradients against finite differences are cases of
/// `GradientTests`; located errors are files of the bad-model corpus (`pool_*.lam`).
@Suite("Pooling")
struct PoolingTests {
  // MARK: Helpers

  /// Runs one op in the interpreter on a f64 tensor.
  static func interpret(
    _ op: String, _ operands: [Tensor], _ attributes: [String: Attribute], result: [Int]
  ) throws -> [Double] {
    let definition = try #require(OpRegistry.definition(op))
    let context = InterpretContext(
      operands: operands, attributes: attributes, results: [(dtype: .f64, shape: result)])
    return try definition.interpret(context)[0].doubles()
  }

  /// The output height and width of a pool over height x width planes, and its attributes as the
  /// IR text writes them.
  static func pooled(_ op: String, _ attributes: [String: Attribute], height: Int, width: Int)
    throws -> (height: Int, width: Int, written: String)
  {
    let windows = try PoolingWindows(
      op: op, attributes: attributes, inputHeight: height, inputWidth: width)
    let written = attributes.keys.sorted().map { "\($0) = \(attributes[$0]!)" }.joined(
      separator: ", ")
    return (windows.height.output, windows.width.output, written)
  }

  static func tensor(_ shape: [Int], _ values: [Double]) -> Tensor {
    Tensor(shape: shape, scalars: values)
  }

  /// The result type a pooling layer call gives, through the language.
  static func resultType(_ call: String, input: String) throws -> String {
    let model = try Model(
      source: """
        model M {
          input x: f32[\(input)]
          output y = x |> \(call)
        }
        """)
    return model.graph.type(of: model.graph.outputs[0].value).description
  }

  // MARK: Sizes and values worked by hand

  @Test("output sizes follow PyTorch, ceil mode's last-window rule included")
  func outputSizes() throws {
    // floor((7 - 2) / 2) + 1 = 3 columns of 9 → 4; ceil mode: 4 and 5.
    #expect(try Self.resultType("max_pool2d(kernel: 2)", input: "2, 3, 7, 9") == "f32[2, 3, 3, 4]")
    #expect(
      try Self.resultType("max_pool2d(kernel: 2, ceil_mode: true)", input: "2, 3, 7, 9")
        == "f32[2, 3, 4, 5]")
    // 5 with kernel 2, stride 2, padding 1, ceil mode: ceil((5 + 2 - 2) / 2) + 1 = 4, but the
    // fourth window would start at 6 - 1 = 5, past the input: PyTorch gives 3.
    #expect(
      try Self.resultType(
        "avg_pool2d(kernel: 2, stride: 2, padding: 1, ceil_mode: true)", input: "1, 1, 5, 5")
        == "f32[1, 1, 3, 3]")
    // "same" keeps ⌈size / stride⌉, even kernels padding one more on the bottom and right.
    #expect(
      try Self.resultType(
        "max_pool2d(kernel: [2, 4], stride: 1, padding: \"same\")", input: "batch, 3, 7, 9")
        == "f32[batch, 3, 7, 9]")
    #expect(
      try Self.resultType(
        "max_pool2d(kernel: 3, stride: 2, padding: \"same\")", input: "1, 1, 7, 8")
        == "f32[1, 1, 4, 4]")
    #expect(
      try Self.resultType("max_pool2d(kernel: 3, dilation: 2, stride: 1)", input: "1, 2, 7, 9")
        == "f32[1, 2, 3, 5]")
    #expect(try Self.resultType("global_avg_pool2d", input: "batch, 16, 7, 9") == "f32[batch, 16]")
  }

  @Test("\"same\" padding resolves to SAME_UPPER's four sides in the op")
  func samePaddingAttribute() throws {
    let model = try Model(
      source: """
        model M {
          input x: f32[1, 1, 7, 8]
          output y = x |> max_pool2d(kernel: [2, 4], stride: 1, padding: "same")
        }
        """)
    let node = try #require(model.graph.nodes.first { $0.op == "max_pool2d" })
    // Height: total 1 → top 0, bottom 1; width: total 3 → left 1, right 2.
    #expect(node.attributes["padding"] == .ints([0, 1, 1, 2]))
    #expect(node.attributes["stride"] == .ints([1, 1]))
  }

  @Test("avg_pool2d divides by the padded window or by the input positions (count_include_pad)")
  func countIncludePad() throws {
    let ones = Self.tensor([1, 1, 3, 3], Array(repeating: 1, count: 9))
    var attributes: [String: Attribute] = [
      "kernel": .ints([3, 3]), "stride": .ints([1, 1]), "padding": .ints([1, 1, 1, 1]),
    ]
    let counted = try Self.interpret("avg_pool2d", [ones], attributes, result: [1, 1, 3, 3])
    // A corner window covers 4 input positions of 9: 4/9; an edge 6/9; the centre 1.
    #expect(counted == [4, 6, 4, 6, 9, 6, 4, 6, 4].map { $0 / 9 })
    attributes["count_include_pad"] = .bool(false)
    let uncounted = try Self.interpret("avg_pool2d", [ones], attributes, result: [1, 1, 3, 3])
    #expect(uncounted == Array(repeating: 1, count: 9))
  }

  @Test("a ceil-mode window past the trailing padding divides by the window up to the padding")
  func ceilModeDivisor() throws {
    // A row of 5, windows of 2 with stride 2 and one column of padding on the right: ceil mode
    // adds a window at column 4 that covers the padding column 5; counted, it divides by 2.
    let row = Self.tensor([1, 1, 1, 5], [1, 2, 3, 4, 5])
    var attributes: [String: Attribute] = [
      "kernel": .ints([1, 2]), "stride": .ints([1, 2]), "padding": .ints([0, 0, 0, 1]),
      "ceil_mode": .bool(true),
    ]
    #expect(
      try Self.interpret("avg_pool2d", [row], attributes, result: [1, 1, 1, 3]) == [1.5, 3.5, 2.5])
    // Without the padding, ceil mode still makes a window at 4, clipped to the input: PyTorch
    // divides it by the clipped window (1), counted or not.
    attributes["padding"] = .ints([0, 0, 0, 0])
    #expect(
      try Self.interpret("avg_pool2d", [row], attributes, result: [1, 1, 1, 3]) == [1.5, 3.5, 5])
  }

  @Test("the gradient of a tied maximum goes to its first position; a NaN wins")
  func maximumTies() throws {
    // Two 2x2 windows: the first all equal, the second with a NaN after its maximum.
    let x = Self.tensor([1, 1, 2, 4], [3, 3, 1, 2, 3, 3, .nan, 2])
    let attributes: [String: Attribute] = ["kernel": .ints([2, 2])]
    let y = try Self.interpret("max_pool2d", [x], attributes, result: [1, 1, 1, 2])
    #expect(y[0] == 3 && y[1].isNaN)
    let gradient = Self.tensor([1, 1, 1, 2], [10, 20])
    let dx = try Self.interpret(
      "max_pool2d_backward", [x, gradient], attributes, result: [1, 1, 2, 4])
    #expect(dx == [10, 0, 0, 0, 0, 0, 20, 0])
  }

  @Test("overlapping windows add their gradients")
  func overlappingGradients() throws {
    let x = Self.tensor([1, 1, 1, 4], [1, 5, 2, 0])
    let attributes: [String: Attribute] = ["kernel": .ints([1, 2]), "stride": .ints([1, 1])]
    let gradient = Self.tensor([1, 1, 1, 3], [1, 2, 4])
    // Windows [1, 5], [5, 2], [2, 0]: the first two pick 5, the last 2.
    #expect(
      try Self.interpret("max_pool2d_backward", [x, gradient], attributes, result: [1, 1, 1, 4])
        == [0, 3, 4, 0])
    let average = try Self.interpret(
      "avg_pool2d_backward", [gradient],
      attributes.merging(["input_size": .ints([1, 4])]) { a, _ in a },
      result: [1, 1, 1, 4])
    #expect(average == [0.5, 1.5, 3, 2])
  }

  // MARK: Compiled against the interpreter

  /// Every pooling configuration the kernels special-case: interior and clipped windows, odd sizes,
  /// strides, dilation, asymmetric and "same" padding, ceil mode, both divisors. Each output reads
  /// its own parameter, so each parameter's gradient checks one backward kernel.
  static let configurations: [(name: String, call: String)] = [
    ("kernel2", "max_pool2d(kernel: 2)"),
    ("strided", "max_pool2d(kernel: 3, stride: 2, padding: [1, 0, 1, 1], ceil_mode: true)"),
    ("ceiled", "max_pool2d(kernel: 2, ceil_mode: true)"),
    ("same", "max_pool2d(kernel: [2, 4], stride: 1, padding: \"same\")"),
    ("dilated", "max_pool2d(kernel: 3, stride: [1, 2], dilation: 2)"),
    ("overlapping", "max_pool2d(kernel: 3, stride: 1, padding: 1)"),
    ("mean2", "avg_pool2d(kernel: 2)"),
    ("meanCounted", "avg_pool2d(kernel: 3, stride: 2, padding: [1, 0, 1, 1], ceil_mode: true)"),
    (
      "meanUncounted",
      "avg_pool2d(kernel: 3, stride: 2, padding: [1, 0, 1, 1], ceil_mode: true, count_include_pad: false)"
    ),
    ("meanAsymmetric", "avg_pool2d(kernel: [2, 3], stride: [2, 1], padding: [0, 1, 1, 0])"),
    ("meanOverlapping", "avg_pool2d(kernel: 3, stride: 1, padding: 1, count_include_pad: false)"),
    ("meanLastWindow", "avg_pool2d(kernel: 2, stride: 2, padding: 1, ceil_mode: true)"),
    ("global", "global_avg_pool2d"),
  ]

  /// A model applying every configuration to `x + p_k` (dtype `dtype`), with loss Σ_k sum(y_k²).
  /// `ties`: x is rounded to halves, so windows hold equal maxima.
  static func source(dtype: String, ties: Bool) -> String {
    var lines = ["model Pools {", "  input x: \(dtype)[batch, 3, 7, 9]"]
    let base =
      ties ? "cast(cast(x * 2, dtype: i32), dtype: \(dtype)) * 0.5" : "x"
    lines.append("  let image = \(base)")
    var terms: [String] = []
    for (index, configuration) in configurations.enumerated() {
      lines.append("  param p\(index): \(dtype)[3, 7, 9] = zeros()")
      lines.append("  output \(configuration.name) = (image + p\(index)) |> \(configuration.call)")
      terms.append("sum(\(configuration.name) * \(configuration.name))")
    }
    lines.append("  loss = " + terms.joined(separator: " + "))
    lines.append("  train with sgd(lr: 0.1)")
    lines.append("}")
    return lines.joined(separator: "\n")
  }

  struct CompiledCase: CustomStringConvertible, Sendable {
    var dtype: String
    var ties: Bool
    var compiler: String
    var description: String { "\(dtype)\(ties ? " with ties" : "") with \(compiler)" }
  }

  static let compiledCases: [CompiledCase] = TestData.compilers.flatMap { compiler in
    [("f32", false), ("f64", false), ("f32", true)].map {
      CompiledCase(dtype: $0.0, ties: $0.1, compiler: compiler)
    }
  }

  @Test(
    "compiled pooling and its gradients equal the interpreter at batch 1, 37 and 400 (threaded)",
    .serialized, arguments: compiledCases)
  func compiledMatchesInterpreter(_ testCase: CompiledCase) throws {
    let model = try Model(
      source: Self.source(dtype: testCase.dtype, ties: testCase.ties), pipeline: Pipeline.training
    ).withGradientOutputs()
    let ops = Set(model.graph.nodes.map(\.op))
    for op in [
      "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
      "global_avg_pool2d",
    ] {
      #expect(ops.contains(op), "the model does not use \(op)")
    }
    // Parameters with random values (zeros would leave the ties of the rounded input in place:
    // only the tie case keeps them at zero).
    var parameters: [String: Tensor] = [:]
    var generator = SeededGenerator(seed: 3)
    for param in model.graph.params {
      let name = model.graph[param.value].name
      let values = (0..<(3 * 7 * 9)).map { _ in testCase.ties ? 0 : generator.nextNormal() }
      parameters[name] = Tensor(
        dtype: model.graph.type(of: param.value).dtype, shape: [3, 7, 9], doubles: values)
    }
    let options = TestCache.options(compiler: testCase.compiler)
    let compiled = try model.compile(options: options, parameters: parameters)
    let names = model.graph.outputs.map(\.name)
    for batch in [1, 37, 400] {
      let inputs = TestData.inputs(
        for: model.graph, symbols: ["batch": batch], seed: UInt64(batch))
      let (outputs, _) = try compiled.evaluate(inputs)
      let expected = try model.interpret(inputs: inputs, parameters: parameters, outputs: names)
      for name in names {
        let reference = try #require(expected[name])
        let actual = try #require(outputs[name])
        let scale = TestData.largestFiniteMagnitude(reference) ?? 1
        let (rtol, atol): (Double, Double) =
          reference.dtype == .f64 ? (1e-12, 1e-13 * max(scale, 1)) : (1e-5, 1e-6 * max(scale, 1))
        let problem = TestData.mismatch(actual, reference, rtol: rtol, atol: atol)
        #expect(problem == nil, "\(testCase) batch \(batch), \(name): \(problem ?? "")")
      }
    }
  }

  /// NaNs and ties straight into `max_pool2d` and `max_pool2d_backward`, in each path of the
  /// backward kernel: disjoint windows (the fused loop), windows overlapping along the row (the
  /// chunked loop), overlapping down the column only, and windows clipped by padding (the scalar
  /// loop). Rows of 41 give the forward's stride-2 windows more than one vector of outputs (the
  /// AVX-512 permutes of `lamina_max_pool_stride2_f32`, a whole block and a partial one).
  static let backwardAttributes: [[String: Attribute]] = [
    ["kernel": .ints([2, 2]), "stride": .ints([2, 2])],
    ["kernel": .ints([2, 3]), "stride": .ints([1, 1])],
    ["kernel": .ints([3, 2]), "stride": .ints([1, 2])],
    [
      "kernel": .ints([3, 3]), "stride": .ints([2, 2]), "padding": .ints([1, 0, 1, 1]),
      "ceil_mode": .bool(true),
    ],
  ]

  @Test(
    "compiled max pooling and its gradient pick the interpreter's maxima with NaNs and ties",
    arguments: backwardAttributes)
  func backwardWithNaNsAndTies(_ attributes: [String: Attribute]) throws {
    let (height, width, written) = try Self.pooled(
      "max_pool2d", attributes, height: 7, width: 41)
    let model = try Model(
      source: """
        graph @MaxPoolBackward {
          input %x : f32[batch, 3, 7, 41]
          input %g : f32[batch, 3, \(height), \(width)]
          %y = max_pool2d(%x) {\(written)} : f32[batch, 3, \(height), \(width)]
          %dx = max_pool2d_backward(%x, %g) {\(written)} : f32[batch, 3, 7, 41]
          output y = %y
          output dx = %dx
        }
        """)
    let compiled = try model.compile(options: TestCache.options(), parameters: [:])
    var generator = SeededGenerator(seed: 17)
    for batch in [1, 37] {
      // Values in steps of 0.5 (many ties), one in 16 a NaN.
      let x = (0..<(batch * 3 * 7 * 41)).map { _ -> Float in
        generator.nextUnit() < 1.0 / 16 ? .nan : Float((generator.nextNormal() * 2).rounded()) / 2
      }
      let g = (0..<(batch * 3 * height * width)).map { _ in Float(generator.nextNormal()) }
      let inputs = [
        "x": Tensor(shape: [batch, 3, 7, 41], scalars: x),
        "g": Tensor(shape: [batch, 3, height, width], scalars: g),
      ]
      let outputs = try compiled.forward(inputs)
      let expected = try model.interpret(inputs: inputs, parameters: [:], outputs: ["y", "dx"])
      for name in ["y", "dx"] {
        let problem = TestData.mismatch(
          try #require(outputs[name]), try #require(expected[name]), rtol: 1e-6, atol: 1e-6)
        #expect(problem == nil, "\(attributes) batch \(batch), \(name): \(problem ?? "")")
      }
    }
  }

  /// Forward pools over rows long enough that the kernels' row buffer takes fewer output rows
  /// than the plane has (9x700 planes: bands of 5 rows), with vector blocks of 16 columns, and
  /// padding on both sides at stride 2 (the AVX-512 permutes reading the row buffer's padding
  /// columns), against the interpreter; NaNs and ties go into the maxima.
  static let wideRowAttributes: [[String: Attribute]] = [
    ["kernel": .ints([3, 3]), "stride": .ints([2, 2]), "padding": .ints([1, 1, 1, 1])],
    [
      "kernel": .ints([3, 3]), "stride": .ints([1, 1]), "padding": .ints([1, 1, 1, 1]),
      "count_include_pad": .bool(false),
    ],
    [
      "kernel": .ints([2, 3]), "stride": .ints([2, 3]), "padding": .ints([0, 1, 1, 0]),
      "ceil_mode": .bool(true),
    ],
    ["kernel": .ints([3, 2]), "stride": .ints([1, 1]), "dilation": .ints([3, 2])],
  ]

  @Test(
    "compiled forward pools over rows wider than one band of the row buffer equal the interpreter",
    arguments: wideRowAttributes)
  func wideRows(_ attributes: [String: Attribute]) throws {
    let (height, width) = (9, 700)
    var generator = SeededGenerator(seed: 29)
    for op in ["max_pool2d", "avg_pool2d"] {
      // Dilation is max_pool2d's attribute only, count_include_pad avg_pool2d's.
      if op == "avg_pool2d", attributes["dilation"] != nil { continue }
      let attributes = attributes.filter { op == "avg_pool2d" || $0.key != "count_include_pad" }
      let (outputHeight, outputWidth, written) = try Self.pooled(
        op, attributes, height: height, width: width)
      let model = try Model(
        source: """
          graph @WideRows {
            input %x : f32[batch, 2, \(height), \(width)]
            %y = \(op)(%x) {\(written)} : f32[batch, 2, \(outputHeight), \(outputWidth)]
            output y = %y
          }
          """)
      let compiled = try model.compile(options: TestCache.options(), parameters: [:])
      for batch in [1, 3] {
        let x = (0..<(batch * 2 * height * width)).map { _ -> Float in
          op == "max_pool2d" && generator.nextUnit() < 1.0 / 64
            ? .nan : Float((generator.nextNormal() * 4).rounded()) / 4
        }
        let inputs = ["x": Tensor(shape: [batch, 2, height, width], scalars: x)]
        let outputs = try compiled.forward(inputs)
        let expected = try model.interpret(inputs: inputs, parameters: [:], outputs: ["y"])
        let problem = TestData.mismatch(
          try #require(outputs["y"]), try #require(expected["y"]), rtol: 1e-6, atol: 1e-6)
        #expect(problem == nil, "\(op) \(attributes) batch \(batch): \(problem ?? "")")
      }
    }
  }

  @Test("the generated C names the pooling nodes and shares planes with the thread pool")
  func generatedCode() throws {
    let model = try Model(
      source: Self.source(dtype: "f32", ties: false), pipeline: Pipeline.training)
    let text = try model.generateC().source
    #expect(text.contains("max_pool2d("), "no kernel comment names a max_pool2d node")
    #expect(text.contains("max_pool2d_backward("))
    #expect(text.contains("lamina_pool_run"))
    #expect(text.contains("#pragma omp simd"))
  }
}
