import Foundation
import Lamina

/// `lamina gradients FILE.lam`: writes the loss and every parameter's gradient.
enum GradientsCommand: Command {
  static let name = "gradients"
  static let summary = "Write the loss and each parameter's gradient to a .safetensors file"
  static let help = """
    usage: lamina gradients FILE.lam --input NAME=FILE.npy... -o GRADS.safetensors
                            [--weights W.safetensors | --seed S] [--step NAME] [--model NAME]
                            [--mode training|inference] [--passes A,B,...] [--disable-pass P]

    Runs one training step's forward and backward pass (with the reference interpreter) and writes the
    loss (key `loss`) and the gradient of every parameter it trains (keyed by the parameter's name), for
    comparison with other frameworks (tools/compare_gradients.py does that against PyTorch).
      --mode M   training (default, as a training step: batch norm with the batch's statistics) or
                 inference (batch norm with its running statistics, dropout off)
    \(OptionSpec.passSelectionHelp)
    """
  static let options = OptionSpec(
    valued: ["-o", "--weights", "--seed", "--step", "--model", "--mode"], repeatable: ["--input"]
  ).selectingPasses

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    let path = try options.modelPath()
    guard let output = options.value("-o") else { throw UsageError("missing -o GRADS.safetensors") }
    let model = try loadTrainingModel(path, options: options, console: console)
    let parameters = try loadParameters(
      model, weightsPath: options.value("--weights"), seed: try options.seed())
    let inputs = try readInputs(options, model: model)
    let values = try model.interpretGradients(
      inputs: inputs, parameters: parameters, step: options.value("--step"),
      mode: try executionMode(options, default: .training))
    try SafeTensors.write(
      values.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
      metadata: ["model": model.graph.name, "written_by": "lamina gradients"], to: output)
    console.print(
      "wrote the loss (\(values["loss"]!.doubles()[0])) and \(values.count - 1) gradients to \(output)"
    )
    return 0
  }
}

/// `lamina gradcheck FILE.lam`: compares gradients with finite differences.
enum GradcheckCommand: Command {
  static let name = "gradcheck"
  static let summary = "Check every parameter's gradient against finite differences in f64"
  static let help = """
    usage: lamina gradcheck FILE.lam [--input NAME=FILE.npy...] [--weights W | --seed S] [--batch N]
                            [--samples K] [--step NAME] [--model NAME] [--mode training|inference]
                            [--passes A,B,...] [--disable-pass P]

    Computes the gradient of a training step's loss with respect to each parameter it trains, and
    compares it with central finite differences of the loss computed in double precision, on K elements
    of each parameter chosen at random (default 32). Prints the worst relative error
    |analytic - numeric| / max(|analytic|, |numeric|, floor) per parameter (floor 1e-4 for f32 models,
    1e-8 for f64) and exits 1 when one exceeds 1e-3 (f32) or 1e-6 (f64). Without --input, random inputs
    with every symbolic dimension set to --batch (default 4) are used. The gradients come from the
    reference interpreter; the f64 losses of the differences from compiled code (--interpret: the
    interpreter too). --mode: training (default, as a training step) or inference (batch norm with
    its running statistics).
    \(OptionSpec.passSelectionHelp)
    \(OptionSpec.compilingHelp)
    """
  static let options = OptionSpec(
    valued: [
      "--weights", "--seed", "--step", "--model", "--batch", "--samples", "--cc", "--cache-dir",
      "--mode",
    ],
    repeatable: ["--input"], switches: ["--interpret", "--no-cache"]
  ).selectingPasses.compiling

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    let path = try options.modelPath()
    let model = try loadTrainingModel(path, options: options, console: console)
    let parameters = try loadParameters(
      model, weightsPath: options.value("--weights"), seed: try options.seed())
    var inputs = try readInputs(options, model: model)
    if inputs.isEmpty {
      let batch = Int(options.value("--batch") ?? "4") ?? 4
      let symbols = Set(model.graph.inputs.flatMap { model.graph.type(of: $0.value).symbols })
      let bound = Dictionary(uniqueKeysWithValues: symbols.map { ($0, batch) })
      try SampleInputs.checkAllocations(for: model.graph, symbols: bound)
      inputs = SampleInputs.make(for: model.graph, symbols: bound, seed: 1)
    }
    let samples = Int(options.value("--samples") ?? "32") ?? 32
    // The f64 loss for the differences is compiled unless --interpret: far faster on large models.
    let compiled = options.isSet("--interpret") ? nil : try CompileCommand.compileOptions(options)
    let results = try model.checkGradients(
      inputs: inputs, parameters: parameters, step: options.value("--step"), samples: samples,
      compiled: compiled, mode: try executionMode(options, default: .training))
    let isDouble = !model.graph.params.contains { model.graph.type(of: $0.value).dtype == .f32 }
    let limit = isDouble ? 1e-6 : 1e-3
    let width = max(9, results.map(\.parameter.count).max() ?? 0)
    console.print(
      "parameter".padding(toLength: width, withPad: " ", startingAt: 0)
        + "   checked   worst rel. error   analytic      numeric")
    var failed = false
    for result in results {
      let ok = result.worstRelativeError <= limit
      failed = failed || !ok
      console.print(
        result.parameter.padding(toLength: width, withPad: " ", startingAt: 0)
          + String(
            format: "  %4d/%-6d  %.2e %@  %+.6e  %+.6e", result.checked, result.elements,
            result.worstRelativeError, ok ? "ok  " : "FAIL", result.analytic, result.numeric))
    }
    console.print(
      failed
        ? "gradient check failed: an error exceeds \(limit)"
        : "all gradients within \(limit) of finite differences")
    return failed ? 1 : 0
  }
}

/// Loads a model through the training pipeline (which builds the backward graph).
func loadTrainingModel(_ path: String, options: Options, console: Console) throws -> Model {
  let model = try Model(
    contentsOf: path, modelName: options.value("--model"),
    pipeline: try options.selectedPasses(Pipeline.training))
  if !model.warnings.isEmpty {
    console.error(DiagnosticRenderer(sources: [model.source]).render(model.warnings))
  }
  return model
}

/// `--input NAME=FILE.npy` pairs, checked against the model's inputs.
func readInputs(_ options: Options, model: Model) throws -> [String: Tensor] {
  let names = model.graph.inputs.map { model.graph[$0.value].name }
  var inputs: [String: Tensor] = [:]
  for (name, file) in try options.pairs("--input") {
    guard names.contains(name) else {
      throw UsageError(
        "the model has no input '\(name)' (inputs: \(names.joined(separator: ", ")))"
          + (closestName(to: name, among: names).map { "; did you mean '\($0)'?" } ?? ""))
    }
    inputs[name] = try NPY.read(contentsOf: file)
  }
  return inputs
}
