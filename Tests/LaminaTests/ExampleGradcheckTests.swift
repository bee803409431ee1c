import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// Every example's gradients against central finite differences in f64 (`lamina gradcheck`):
/// worst relative error under 1e-3 for f32 models and 1e-6 for f64 ones, on a sample of each parameter.
@Suite("Example gradient checks")
struct ExampleGradcheckTests {
  static let models = RepositoryPaths.files(in: "examples", withExtension: "lam")

  @Test("gradients match finite differences", arguments: models)
  func gradcheck(path: String) throws {
    let model = try Model(contentsOf: path, pipeline: Pipeline.training)
    let symbols = Set(model.graph.inputs.flatMap { model.graph.type(of: $0.value).symbols })
    let inputs = TestData.inputs(
      for: model.graph, symbols: Dictionary(uniqueKeysWithValues: symbols.map { ($0, 3) }), seed: 5)
    let isDouble = !model.graph.params.contains { model.graph.type(of: $0.value).dtype == .f32 }
    // Finite differences evaluate the f64 loss compiled: the interpreter would take minutes on the
    // 20-layer model.
    let options = TestCache.options()
    // Every training step's parameters (a GAN's two players train in two steps).
    var results: [Model.GradientCheck] = []
    for step in model.graph.trainSteps {
      results += try model.checkGradients(
        inputs: inputs, parameters: try model.initialParameters(seed: 5), step: step.name,
        samples: 8, compiled: options)
    }
    #expect(results.count == model.graph.params.count)
    #expect(Set(results.map(\.parameter)).count == model.graph.params.count)
    for result in results {
      #expect(
        result.worstRelativeError <= (isDouble ? 1e-6 : 1e-3),
        "\(result.parameter): \(result.worstRelativeError) (analytic \(result.analytic), numeric \(result.numeric))"
      )
    }
  }
}
