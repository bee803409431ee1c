import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// Compiled C against the reference interpreter, for every example and every op, with each
/// C compiler, at batch 1 and at a larger batch.
///
/// Tolerance: |compiled - interpreted| ≤ 1e-5·|interpreted| + 1e-6·scale for f32 (scale: the largest
/// magnitude in the tensor, since a matrix product's rounding error grows with its terms, not its
/// result), 1e-12 relative for f64; integers exactly.
@Suite("Compiled models", .serialized)
struct CompiledModelTests {
  static let models =
    RepositoryPaths.files(in: "examples", withExtension: "lam")
    + RepositoryPaths.files(in: "examples/bench", withExtension: "lam") + [
      RepositoryPaths.path("Tests/LaminaTests/Fixtures/every_op.lam")
    ]

  struct Case: CustomStringConvertible, Sendable {
    var model: String
    var compiler: String
    var description: String { "\(URL(fileURLWithPath: model).lastPathComponent) with \(compiler)" }
  }

  static let cases: [Case] = TestData.compilers.flatMap { compiler in
    models.map { Case(model: $0, compiler: compiler) }
  }

  @Test("compiled outputs and losses equal the interpreter's", arguments: cases)
  func matchesInterpreter(_ testCase: Case) throws {
    let model = try Model(contentsOf: testCase.model)
    let options = TestCache.options(compiler: testCase.compiler)
    let parameters = try model.initialParameters(seed: 11)
    let compiled = try model.compile(options: options, parameters: parameters)
    for problem in try TestData.compiledMismatches(
      model, compiled, parameters: parameters, batches: [1, 7])
    {
      Issue.record("\(testCase) \(problem)")
    }
    for batch in [1, 7] {
      let symbols = Dictionary(uniqueKeysWithValues: compiled.signature.symbols.map { ($0, batch) })
      let inputs = TestData.inputs(for: model.graph, symbols: symbols, seed: UInt64(batch))
      let outputs = try compiled.evaluate(inputs).outputs
      // forward gives the same outputs without the inputs only the losses need.
      let forwardInputs = inputs.filter { name, _ in
        compiled.signature.inputs.first { $0.name == name }?.forward == true
      }
      let forward = try compiled.forward(
        forwardInputs,
        dims: TestData.freeDimensions(
          symbols, given: forwardInputs, signature: compiled.signature))
      for (name, tensor) in forward {
        #expect(tensor == outputs[name], "\(testCase): forward \(name)")
      }
    }
  }

  /// The GEMM's paths (one output column run as a row product, one row, split over K, packed),
  /// at batch sizes that run them on one thread and across the pool.
  @Test("matrix products of every shape class equal the interpreter", arguments: TestData.compilers)
  func matrixProductShapes(_ compiler: String) throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("Tests/LaminaTests/Fixtures/matmul_shapes.lam"))
    let options = TestCache.options(compiler: compiler)
    let parameters = try model.initialParameters(seed: 5)
    let compiled = try model.compile(options: options, parameters: parameters)
    for batch in [1, 7, 5000] {
      let inputs = TestData.inputs(
        for: model.graph, symbols: ["batch": batch], seed: UInt64(batch))
      let outputs = try compiled.forward(inputs)
      let expected = try model.interpret(
        inputs: inputs, parameters: parameters, outputs: model.graph.outputs.map(\.name))
      for (name, reference) in expected {
        let scale = reference.doubles().map(abs).max() ?? 1
        let problem = TestData.mismatch(
          outputs[name]!, reference, rtol: 1e-5, atol: 1e-6 * max(scale, 1))
        #expect(problem == nil, "\(compiler) batch \(batch), \(name): \(problem ?? "")")
      }
    }
  }

  /// Compiles `source` with each C compiler, runs it on `inputs` and checks each named output
  /// against the interpreter's within its own tolerance.
  private func expectOutputsMatchInterpreter(
    source: String, inputs: [String: Tensor], tolerances: [String: (rtol: Double, atol: Double)]
  ) throws {
    let model = try Model(source: source)
    let names = tolerances.keys.sorted()
    let expected = try model.interpret(inputs: inputs, parameters: [:], outputs: names)
    for compiler in TestData.compilers {
      let options = TestCache.options(compiler: compiler)
      let outputs = try model.compile(options: options, parameters: [:]).forward(inputs)
      for name in names {
        let (rtol, atol) = tolerances[name]!
        let problem = TestData.mismatch(outputs[name]!, expected[name]!, rtol: rtol, atol: atol)
        #expect(problem == nil, "\(compiler), \(name): \(problem ?? "")")
      }
    }
  }

  /// Exact gelu in both precisions, far into the negative tail (where ½(1 + erf) would cancel).
  @Test("exact gelu and its derivative match the interpreter in f32 and f64, tails included")
  func exactGelu() throws {
    let values = stride(from: -30.0, through: 12.0, by: 0.37).map { $0 }
    try expectOutputsMatchInterpreter(
      source: """
        model Gelu {
          input x: f32[n]
          input y: f64[n]
          output fx = gelu(x)
          output gx = gelu_grad(x)
          output fy = gelu(y)
          output gy = gelu_grad(y)
        }
        """,
      inputs: [
        "x": Tensor(shape: [values.count], scalars: values.map { Float($0) }),
        "y": Tensor(shape: [values.count], scalars: values),
      ],
      tolerances: [
        "fx": (2e-5, 1e-30), "gx": (2e-5, 1e-30), "fy": (1e-12, 0), "gy": (1e-12, 0),
      ])
  }

  /// The generated C computes exp, sigmoid and f32 tanh with inline polynomials (so loops
  /// vectorize), not libm: over the whole range, where results overflow, underflow to denormals
  /// and to 0, and for NaN and infinities, they must agree with the interpreter (Foundation's libm).
  @Test("inline exp, sigmoid and tanh match libm over their whole range, specials included")
  func inlineMath() throws {
    let specials = [0, -0.0, 1, -1, .nan, .infinity, -.infinity]
    let floats = stride(from: -110.0, through: 95.0, by: 0.0137).map { $0 } + specials
    let doubles =
      stride(from: -760.0, through: 720.0, by: 0.0731).map { $0 }
      + [-745.13, -745.14, -708.39, 709.78, 709.79, 1e-300, -1e-300] + specials
    // atol: a few units in the last place of the smallest denormal, where results have few bits.
    try expectOutputsMatchInterpreter(
      source: """
        model InlineMath {
          input x: f32[n]
          input y: f64[m]
          output exp_x = exp(x)
          output sigmoid_x = sigmoid(x)
          output tanh_x = tanh(x)
          output exp_y = exp(y)
          output sigmoid_y = sigmoid(y)
        }
        """,
      inputs: [
        "x": Tensor(shape: [floats.count], scalars: floats.map { Float($0) }),
        "y": Tensor(shape: [doubles.count], scalars: doubles),
      ],
      tolerances: [
        "exp_x": (2e-7, 1e-44), "sigmoid_x": (3e-7, 1e-44), "tanh_x": (5e-7, 1e-44),
        "exp_y": (5e-16, 2e-323), "sigmoid_y": (8e-16, 2e-323),
      ])
  }

  /// Ops only the backward graph uses (slice_backward: the language has no syntax for its index)
  /// count too: GradientTests compiles the fixture's gradients.
  @Test("the fixture uses every op of the op table")
  func fixtureCoversEveryOp() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("Tests/LaminaTests/Fixtures/every_op.lam"),
      pipeline: Pipeline.training)
    let used = Set(model.graph.nodes.map(\.op))
    let missing = OpRegistry.names.filter { !used.contains($0) }
    #expect(missing.isEmpty, "every_op.lam does not use \(missing)")
  }
}
