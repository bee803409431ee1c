import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// The simplification passes (`constant-fold`, `simplify`, `transpose-fold`) change no result: every
/// example, and the fixture that uses every op, gives the interpreter the same outputs, losses and
/// gradients with and without them.
@Suite("Simplification passes")
struct SimplificationTests {
  static let models =
    RepositoryPaths.files(in: "examples", withExtension: "lam") + [
      RepositoryPaths.path("Tests/LaminaTests/Fixtures/every_op.lam")
    ]
  static let simplifying: Set<String> = [
    ConstantFolding.name, AlgebraicSimplification.name, TransposeFolding.name,
  ]

  /// Everything a model exposes: outputs and losses, plus the gradients after training passes.
  func evaluate(_ model: Model, inputs: [String: Tensor], parameters: [String: Tensor]) throws
    -> [String: Tensor]
  {
    let exposed = model.withGradientOutputs()
    let names = (exposed.graph.outputs + exposed.graph.losses).map(\.name)
    return try exposed.interpret(
      inputs: inputs, parameters: parameters, outputs: names, mode: .training)
  }

  @Test("outputs, losses and gradients are unchanged", arguments: models)
  func unchanged(path: String) throws {
    for pipeline in [Pipeline.inference, Pipeline.training] {
      let reference = try Model(
        contentsOf: path,
        pipeline: try Pipeline.select(
          from: pipeline, passes: nil, disabled: Array(Self.simplifying)))
      let simplified = try Model(contentsOf: path, pipeline: pipeline)
      let symbols = Set(
        reference.graph.inputs.flatMap { reference.graph.type(of: $0.value).symbols })
      let inputs = TestData.inputs(
        for: reference.graph, symbols: Dictionary(uniqueKeysWithValues: symbols.map { ($0, 3) }),
        seed: 11)
      let parameters = try reference.initialParameters(seed: 11)
      let expected = try evaluate(reference, inputs: inputs, parameters: parameters)
      let actual = try evaluate(simplified, inputs: inputs, parameters: parameters)
      #expect(Set(actual.keys) == Set(expected.keys))
      for (name, tensor) in expected {
        guard let result = actual[name] else { continue }
        let mismatch = TestData.mismatch(result, tensor, rtol: 1e-6, atol: 1e-7)
        #expect(mismatch == nil, "\(name): \(mismatch ?? "")")
      }
    }
  }

  @Test("the passes rewrite an example's training graph")
  func passesDoSomething() throws {
    // Guards against passes that silently never fire: the gradient of the model's weighted L2
    // penalty multiplies two constants (its weight and 2), which constant-fold evaluates.
    let path = RepositoryPaths.path("examples/logistic_f64.lam")
    let without = try Model(
      contentsOf: path,
      pipeline: try Pipeline.select(
        from: Pipeline.training, passes: nil, disabled: Array(Self.simplifying)))
    let with = try Model(contentsOf: path, pipeline: Pipeline.training)
    #expect(with.graph.nodes.count < without.graph.nodes.count)
  }

  @Test("folding keeps exact integer and f64 semantics")
  func exactFolding() throws {
    let model = try Model(
      source: """
        graph @Exact {
          %a = constant() {dtype = i32, value = -7.0}
          %b = constant() {dtype = i32, value = 2.0}
          %q = div(%a, %b)
          %c = constant() {dtype = f64, value = 0.1}
          %d = constant() {dtype = f64, value = 0.2}
          %s = add(%c, %d)
          %zero = constant() {dtype = i32, value = 0.0}
          %bad = div(%a, %zero)
          output q = %q
          output s = %s
          output bad = %bad
        }
        """, pipeline: Pipeline.inference)
    let nodes = Dictionary(
      model.graph.nodes.map { (model.graph[$0.result].name, $0) }, uniquingKeysWith: { a, _ in a })
    #expect(nodes["q"]?.op == "constant")
    #expect(nodes["q"]?.attributes["value"] == .float(-3))
    #expect(nodes["s"]?.attributes["value"] == .float(0.1 + 0.2))
    // Integer division by zero gives 0 at run time (ir-specs/ops.md), so folding gives 0 too.
    // (CSE then merges it with %zero, so the output is found by its value, not its name.)
    let bad = try #require(model.graph.exposedValue(named: "bad"))
    let producer = model.graph.nodes.first { $0.results.contains(bad) }
    #expect(producer?.op == "constant")
    #expect(producer?.attributes["value"] == .float(0))
    #expect(model.graph.type(of: bad).dtype == .i32)
  }
}
