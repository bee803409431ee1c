import Foundation
import Lamina

/// `lamina bisect FILE.lam`: finds the first pass after which the model's values change.
enum BisectCommand: Command {
  static let name = "bisect"
  static let summary = "Find the first pass whose output departs from the unoptimized interpreter"
  static let help = """
    usage: lamina bisect FILE.lam [--input NAME=FILE.npy...] [--weights W.safetensors | --seed S]
                         [--train] [--tolerance T] [--batch N] [--interpret] [--model NAME]
                         [--cc PATH] [--cflags "FLAGS"] [--cache-dir D] [--no-cache]
                         [--passes A,B,...] [--disable-pass P]

    Interprets the model after only the passes the interpreter needs (shape inference; with --train
    also autodiff and optimizer-update): that is the reference. Then runs the pipeline one pass at a
    time, the backend's fusion and memory planning included; after each pass it runs the graph so far
    on the inputs, interpreted and then compiled (once the graph can be compiled: the stage says when
    it is not), and compares every value that still exists by name (outputs, losses, named
    intermediate values; compiled: outputs, losses and, with --train, the parameters and state after
    one step) with the reference. Prints one line per pass and names the first pass and the first
    value, in topological order, that departs, with its largest absolute and relative errors; exits 1
    then, 0 when every stage agrees.
      --tolerance T  an element departs when |got - expected| > T * (|expected| + max(1, max |expected|))
                     (default 1e-4 for f32 values, 1e-9 for f64, exact for integers)
      --train        the training pipeline, run in training mode
      --batch N      without --input: random inputs with every symbolic dimension N (default 4)
      --interpret    interpret only, compile nothing
    \(OptionSpec.passSelectionHelp)
    """
  static let options = OptionSpec(
    valued: [
      "--weights", "--seed", "--model", "--batch", "--tolerance", "--cc", "--cflags", "--cache-dir",
    ],
    repeatable: ["--input"], switches: ["--train", "--interpret", "--no-cache"]
  ).selectingPasses

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    let path = try options.modelPath()
    let training = options.isSet("--train")
    // The pipeline as the other commands select it; loading also reports the model's own errors.
    let pipeline = try options.selectedPasses(training ? Pipeline.training : Pipeline.inference)
    let model = try loadModel(
      path, modelName: options.value("--model"), pipeline: pipeline, console: console)
    var inputs = try readInputs(options, model: model)
    if inputs.isEmpty {
      let text = options.value("--batch") ?? "4"
      guard let batch = Int(text), batch > 0 else {
        throw UsageError("--batch takes a positive integer, got '\(text)'")
      }
      let symbols = Set(model.graph.inputs.flatMap { model.graph.type(of: $0.value).symbols })
      let bound = Dictionary(uniqueKeysWithValues: symbols.map { ($0, batch) })
      try SampleInputs.checkAllocations(for: model.graph, symbols: bound)
      inputs = SampleInputs.make(for: model.graph, symbols: bound, seed: 1)
      console.print("random inputs, every symbolic dimension \(batch)")
    }
    var bisection = PipelineBisection(passes: pipeline)
    bisection.training = training
    let compileOptions = try CompileCommand.compileOptions(options)
    bisection.codegenPasses = compileOptions.codegenPasses
    bisection.compileOptions = options.isSet("--interpret") ? nil : compileOptions
    if let text = options.value("--tolerance") {
      guard let tolerance = Double(text), tolerance >= 0 else {
        throw UsageError("--tolerance takes a non-negative number, got '\(text)'")
      }
      bisection.tolerance = tolerance
    }
    let parameters = try options.value("--weights").map {
      try loadParameters(model, weightsPath: $0, seed: 0)
    }
    let report = try bisection.run(
      contentsOf: path, modelName: options.value("--model"), inputs: inputs,
      parameters: parameters, seed: try options.seed())

    let width = max(report.stages.map(\.pass.count).max() ?? 0, 4)
    for stage in report.stages {
      let name = stage.pass.padding(toLength: width, withPad: " ", startingAt: 0)
      console.print(
        "after \(name)  interpreted: \(summary(stage.interpreted))  compiled: \(summary(stage.compiled))"
      )
    }
    guard let stage = report.firstBadStage, let (mode, comparison) = stage.firstDeparture else {
      console.print("every stage agrees with the unoptimized interpreter")
      return 0
    }
    console.print(
      "first departure: after pass \(stage.pass), value \(comparison.name) (\(mode)): "
        + "max abs error \(format(comparison.maxAbsoluteError)), "
        + "max rel error \(format(comparison.maxRelativeError)), \(comparison.departure ?? "")")
    return 1
  }

  static func summary(_ run: PipelineBisection.Run) -> String {
    if let skipped = run.skipped { return skipped }
    if let first = run.firstDeparture {
      return "\(first.name) departs (max abs error \(format(first.maxAbsoluteError)))"
    }
    let worst = run.comparisons.map(\.maxAbsoluteError).max() ?? 0
    return "\(run.comparisons.count) values agree (max abs error \(format(worst)))"
  }

  static func format(_ value: Double) -> String { String(format: "%.3g", value) }
}
