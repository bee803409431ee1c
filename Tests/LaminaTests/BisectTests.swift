import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// `lamina bisect` and `PipelineBisection`: a wrong rewrite planted in a pass list is named, with the
/// first value it changes; clean models bisect clean, interpreted and compiled.
@Suite("Pipeline bisection")
struct BisectTests {
  /// A wrong rewrite, as a buggy simplification would make it: relu(x) becomes |x|.
  struct ReluAsAbs: GraphPass {
    static let name = "relu-as-abs"
    static let summary = "Rewrites relu(x) as abs(x) (wrong on purpose)."
    func run(on graph: inout Graph, context: inout PassContext) throws {
      for index in graph.nodes.indices where graph.nodes[index].op == "relu" {
        graph.nodes[index].op = "abs"
      }
    }
  }

  static let digits = RepositoryPaths.path("examples/digits_mlp.lam")

  func inputs(_ path: String, batch: Int = 4) throws -> [String: Tensor] {
    let graph = try Model(contentsOf: path).graph
    let symbols = Set(graph.inputs.flatMap { graph.type(of: $0.value).symbols })
    return TestData.inputs(
      for: graph, symbols: Dictionary(uniqueKeysWithValues: symbols.map { ($0, batch) }), seed: 3)
  }

  @Test("a wrong rewrite planted in the pass list is named, with the first value it changes")
  func plantedRewrite() throws {
    // The planted pass goes after simplify, where a real rewrite of relu would live.
    var passes = Pipeline.inference
    let simplify = try #require(passes.firstIndex { $0.name == AlgebraicSimplification.name })
    passes.insert(ReluAsAbs(), at: simplify + 1)
    var bisection = PipelineBisection(passes: passes)
    bisection.compileOptions = TestCache.options()
    let report = try bisection.run(contentsOf: Self.digits, inputs: try inputs(Self.digits))

    #expect(
      report.stages.map(\.pass) == passes.map(\.name) + Pipeline.codegen.map(\.name))
    let bad = try #require(report.firstBadStage)
    #expect(bad.pass == ReluAsAbs.name)
    let (mode, value) = try #require(bad.firstDeparture)
    // h = relu(x @ w1 + b1) is the first value in topological order that the rewrite changes.
    #expect(mode == "interpreted")
    #expect(value.name == "h")
    #expect(value.maxAbsoluteError > 0.01 && value.maxRelativeError > 0.01)
    #expect(
      bad.interpreted.comparisons.filter { $0.departure != nil }.map(\.name).starts(with: ["h"]))
    // Compiled, the outputs change too.
    #expect(bad.compiled.comparisons.contains { $0.name == "probs" && $0.departure != nil })
    // Every stage before it agrees, interpreted and compiled, and compares something.
    for stage in report.stages.prefix { $0.pass != ReluAsAbs.name } {
      #expect(stage.firstDeparture == nil, "\(stage.pass)")
      #expect(stage.interpreted.comparisons.contains { $0.name == "h" }, "\(stage.pass)")
      #expect(stage.compiled.skipped == nil, "\(stage.pass): \(stage.compiled.skipped ?? "")")
      #expect(stage.compiled.comparisons.map(\.name) == ["probs", "loss"], "\(stage.pass)")
    }
  }

  @Test("a wrong rewrite in the training pipeline is named, and the step's updates depart")
  func plantedRewriteInTraining() throws {
    var passes = Pipeline.training
    passes.insert(ReluAsAbs(), at: passes.count - 1)
    var bisection = PipelineBisection(passes: passes)
    bisection.training = true
    bisection.compileOptions = TestCache.options()
    let report = try bisection.run(contentsOf: Self.digits, inputs: try inputs(Self.digits))
    let bad = try #require(report.firstBadStage)
    #expect(bad.pass == ReluAsAbs.name)
    #expect(bad.firstDeparture?.comparison.name == "h")
    #expect(
      bad.compiled.comparisons.contains { $0.name == "w1 after the step" && $0.departure != nil })
    // Before autodiff and the optimizer's updates the graph is interpreted but not compiled.
    let first = try #require(report.stages.first)
    #expect(first.interpreted.skipped == nil && !first.interpreted.comparisons.isEmpty)
    #expect(first.compiled.skipped?.contains("autodiff") == true)
  }

  func lamina(_ arguments: [String]) -> (status: Int32, output: String, errors: String) {
    let console = Console.capturing()
    let status = CommandLineTool.run(arguments, console: console)
    return (status, console.standardOutput, console.standardError)
  }

  @Test(
    "clean models bisect clean, interpreted and compiled, inference and training",
    arguments: [
      ["examples/digits_mlp.lam"], ["examples/regressor.lam", "--train"],
      ["examples/digits_mlp.lam", "--train"],
    ])
  func cleanModel(_ arguments: [String]) throws {
    let path = RepositoryPaths.path(arguments[0])
    let result = lamina(
      ["bisect", path, "--cache-dir", TestCache.directory] + arguments.dropFirst())
    #expect(result.status == 0, "\(result.output)\(result.errors)")
    #expect(result.output.contains("every stage agrees with the unoptimized interpreter"))
    let pipeline = arguments.contains("--train") ? Pipeline.training : Pipeline.inference
    for pass in pipeline + Pipeline.codegen {
      let line = result.output.split(separator: "\n").first {
        $0.hasPrefix("after \(pass.name) ")
      }
      #expect(line?.contains("interpreted: ") == true, "\(pass.name): \(result.output)")
    }
    // Once the graph is complete, every stage is compiled too.
    let last = result.output.split(separator: "\n").first { $0.hasPrefix("after memory-plan ") }
    #expect(last?.contains(#/compiled: \d+ values agree/#) == true, "\(result.output)")
  }

  @Test("given inputs are used, and a zero tolerance finds compiled rounding, exiting 1")
  func inputsAndTolerance() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    for (name, tensor) in try inputs(Self.digits, batch: 5) {
      try NPY.write(tensor, to: "\(directory)/\(name).npy")
    }
    let arguments = [
      "bisect", Self.digits, "--input", "x=\(directory)/x.npy", "--input",
      "label=\(directory)/label.npy", "--cache-dir", TestCache.directory,
    ]
    let clean = lamina(arguments)
    #expect(clean.status == 0, "\(clean.output)\(clean.errors)")
    #expect(!clean.output.contains("random inputs"))
    // f32 code rounds differently from the interpreter (which computes in f64): with no tolerance
    // at all, the first compiled stage departs, naming a value and its errors.
    let exact = lamina(arguments + ["--tolerance", "0"])
    #expect(exact.status == 1, "\(exact.output)\(exact.errors)")
    #expect(
      exact.output.contains(
        #/first departure: after pass shape-inference, value \w+ \(compiled\): max abs error [0-9.e-]+, max rel error/#
      ),
      "\(exact.output)")
    // An input the model does not have is a usage error, as in `lamina run`.
    let wrong = lamina(["bisect", Self.digits, "--input", "y=\(directory)/x.npy"])
    #expect(wrong.status == 2)
    #expect(wrong.errors.contains("no input 'y'"))
  }
}
