import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// Invariants over every example and golden model: the IR prints, parses back and prints the same,
/// and the verifier accepts it.
@Suite("IR round trip")
struct RoundTripTests {
  static let models =
    RepositoryPaths.files(in: "examples", withExtension: "lam")
    + RepositoryPaths.files(in: "examples/bench", withExtension: "lam")
    + RepositoryPaths.files(in: "ir-specs/tests", withExtension: "lam").filter {
      !$0.contains("located_errors")
    }

  @Test("print → parse → print is the identity", arguments: models)
  func roundTrip(path: String) throws {
    let model = try Model(contentsOf: path)
    for locations in [false, true] {
      let printer = IRPrinter(printLocations: locations)
      let text = printer.print(model.graph)
      let reparsed = try IRParser.parse(text, path: "roundtrip.ir")
      #expect(printer.print(reparsed) == text)
      #expect(Verifier.verify(reparsed).isEmpty)
    }
  }

  /// Backward graphs use ops the language has no syntax for (slice_backward), and the fixture has an
  /// index of integers only (`counts[0]`, printed `[0]`).
  @Test(
    "training graphs round trip with their gradients",
    arguments: models.filter {
      (try? String(contentsOfFile: $0, encoding: .utf8))?.contains("train with") == true
    }
      + [RepositoryPaths.path("Tests/LaminaTests/Fixtures/every_op.lam")])
  func trainingRoundTrip(path: String) throws {
    let model = try Model(contentsOf: path, pipeline: Pipeline.training)
    #expect(!model.graph.gradients.isEmpty)
    let printer = IRPrinter()
    let text = printer.print(model.graph)
    let reparsed = try IRParser.parse(text, path: "roundtrip.ir")
    #expect(printer.print(reparsed) == text)
    #expect(Verifier.verify(reparsed).isEmpty)
  }

  @Test("the verifier accepts every lowered model", arguments: models)
  func verifies(path: String) throws {
    let model = try Model(contentsOf: path)
    let problems = Verifier.verify(model.graph)
    #expect(problems.isEmpty, "\(problems)")
  }

  @Test("locations survive the round trip")
  func locationsRoundTrip() throws {
    let model = try Model(contentsOf: RepositoryPaths.path("examples/digits_mlp.lam"))
    let text = IRPrinter(printLocations: true).print(model.graph)
    let reparsed = try IRParser.parse(text, path: "roundtrip.ir")
    let relu = try #require(reparsed.nodes.first { $0.op == "relu" })
    #expect(relu.location.file.hasSuffix("examples/digits_mlp.lam"))
    #expect(relu.location.line == 11)
    #expect(relu.location.column == 11)
  }

  @Test("the verifier catches broken graphs")
  func verifierCatchesProblems() throws {
    let text = """
      graph @Broken {
        input %x : f32[batch, 4]
        %y = relu(%x) : f32[batch, 5]
        %z = nosuchop(%y) : f32[batch, 5]
        output z = %z
      }
      """
    let graph = try IRParser.parse(text, path: "broken.ir")
    let messages = Verifier.verify(graph).map(\.message)
    #expect(
      messages.contains { $0.contains("declared f32[batch, 5] but relu gives f32[batch, 4]") })
    #expect(messages.contains { $0.contains("unknown op 'nosuchop'") })
  }

  @Test("IR parse errors are located")
  func parseErrorsAreLocated() {
    let text = "graph @G {\n  input %x : f32[batch]\n  %y = relu(%q)\n  output y = %y\n}\n"
    #expect {
      try IRParser.parse(text, path: "bad.ir")
    } throws: { error in
      let description = "\(error)"
      return description.contains("bad.ir:3:13: error: use of undefined value %q")
    }
  }
}
