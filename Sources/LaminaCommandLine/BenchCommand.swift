import Foundation
import Lamina

/// `lamina bench FILE.lam`: times compiled inference beside the reference interpreter.
enum BenchCommand: Command {
  static let name = "bench"
  static let summary = "Time compiled inference (median, min, max) beside the interpreter"
  static let help = """
    usage: lamina bench FILE.lam [--train] [--batch N] [--runs R] [--threads T] [--seconds S] [--target T] [--cc PATH]
                        [--no-interpreter] [--model NAME] [--compare C1,C2,...]
                        [--passes A,B,...] [--disable-pass P]

    Compiles the model, feeds it random inputs with every symbolic dimension set to --batch (default 1),
    and times `forward` after a warm-up: at least R runs (default 50) and S seconds (default 1). The
    reference interpreter runs on the same inputs a few times as the baseline, and both outputs are
    checked equal before timing. Reports median, min and max per call, and samples per second.
    --train times whole training steps (forward, backward, update) instead; the first step's loss is
    checked against the interpreter's.
    --compare C1,C2,... compiles the model once per configuration (\(BenchCompare.configurationHelp)),
    checks their results equal, and times them interleaved call by call (each timed call after an
    untimed one of the same configuration, with the others' threads asleep): median, min, max, kernels per
    call, bytes of intermediates, arena bytes, and the speedup over the last one (`--compare fused,unfused`),
    also as the median of the per-round ratios with a 95% confidence interval (excluding 1.00: not noise).
    \(OptionSpec.passSelectionHelp)
    \(OptionSpec.compilingHelp)
    """
  static let options = OptionSpec(
    valued: [
      "--batch", "--runs", "--threads", "--seconds", "--cc", "--cflags", "--model", "--seed",
      "--cache-dir", "--compare",
    ],
    switches: ["--no-interpreter", "--no-cache", "--json", "--train"]
  ).selectingPasses.compiling

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    let path = try options.modelPath()
    func integer(_ name: String, _ fallback: Int) throws -> Int {
      guard let text = options.value(name) else { return fallback }
      guard let value = Int(text), value >= 0 else {
        throw UsageError("\(name) takes a non-negative integer")
      }
      return value
    }
    let batch = max(1, try integer("--batch", 1))
    let runs = max(1, try integer("--runs", 50))
    let seconds = Double(options.value("--seconds") ?? "1") ?? 1
    let training = options.isSet("--train")
    let model =
      training
      ? try loadTrainingModel(path, options: options, console: console)
      : try loadModel(
        path, modelName: options.value("--model"),
        pipeline: try options.selectedPasses(Pipeline.inference), console: console)
    var compileOptions = try CompileCommand.compileOptions(options)
    compileOptions.threads = try integer("--threads", 0)
    if let compare = options.value("--compare") {
      return try BenchCompare.run(
        model: model, names: compare.split(separator: ",").map(String.init), training: training,
        batch: batch, runs: runs, seconds: seconds, compileOptions: compileOptions,
        seed: try options.seed(), json: options.isSet("--json"), console: console)
    }
    let parameters = try model.initialParameters(seed: try options.seed())
    let compilation = try model.buildLibrary(options: compileOptions)
    let compiled = try CompiledModel(
      libraryPath: compilation.libraryPath, threads: compileOptions.threads)
    try compiled.setParameters(parameters)

    let symbols = Dictionary(uniqueKeysWithValues: compiled.signature.symbols.map { ($0, batch) })
    let forwardNames = Set(compiled.signature.inputs.filter { $0.forward == true }.map(\.name))
    try SampleInputs.checkAllocations(for: model.graph, symbols: symbols)
    let allInputs = SampleInputs.make(for: model.graph, symbols: symbols, seed: 1)
    let inputs = training ? allInputs : allInputs.filter { forwardNames.contains($0.key) }
    let outputNames = compiled.signature.outputs.map(\.name)

    if !options.isSet("--json") {
      console.print(
        "model \(model.graph.name), \(symbols.isEmpty ? "no symbolic dimensions" : symbols.map { "\($0.key) = \($0.value)" }.sorted().joined(separator: ", ")), compiled in \(milliseconds(compilation.codegenSeconds + compilation.compileSeconds))\(compilation.compiledNow ? "" : " (cached)")"
      )
    }
    var rows: [(String, Timing)] = []
    var interpreterTiming: Timing?
    if training {
      // A training step changes the weights; the interpreter takes the same first step to check it.
      let state = try model.graph.initialState()
      if !options.isSet("--no-interpreter") {
        var reference = 0.0
        interpreterTiming = try Timing.measure(warmup: 0, runs: 3, minimumSeconds: 0) {
          reference = try model.interpretTrainStep(
            inputs, values: parameters.merging(state) { a, _ in a }
          ).loss
        }
        let first = try compiled.trainStep(inputs)
        guard abs(first - reference) <= 1e-4 * max(1, abs(reference)) else {
          throw RunError(
            "the compiled training step's loss \(first) differs from the interpreter's \(reference)"
          )
        }
      }
      rows.append(
        (
          "train step",
          try Timing.measure(warmup: 10, runs: runs, minimumSeconds: seconds) {
            _ = try compiled.trainStep(inputs)
          }
        ))
    }
    let compiledOutputs = training ? [:] : try compiled.forward(inputs)
    if !training && !options.isSet("--no-interpreter") {
      var reference: [String: Tensor] = [:]
      interpreterTiming = try Timing.measure(warmup: 0, runs: 3, minimumSeconds: 0) {
        reference = try model.interpret(
          inputs: inputs, parameters: parameters, outputs: outputNames)
      }
      try BenchCompare.checkClose(
        compiledOutputs, reference, what: "outputs", names: ("compiled", "the interpreter"))
    }
    if !training {
      // Outputs land in the same tensors every call (as PyTorch's caching allocator reuses blocks).
      var outputs: [String: Tensor] = [:]
      rows.append(
        (
          "compiled",
          try Timing.measure(warmup: 10, runs: runs, minimumSeconds: seconds) {
            try compiled.forward(inputs, into: &outputs)
          }
        ))
    }
    if let interpreterTiming { rows.append(("interpreter", interpreterTiming)) }

    if options.isSet("--json") {
      var entries: [String] = []
      for (name, timing) in rows {
        entries.append(
          "\"\(name)\": {\"median_seconds\": \(timing.median), \"min_seconds\": \(timing.min), \"max_seconds\": \(timing.max), \"runs\": \(timing.samples.count)}"
        )
      }
      console.print(
        "{\"model\": \"\(model.graph.name)\", \"batch\": \(batch), "
          + entries.joined(separator: ", ") + "}")
      return 0
    }
    console.print("")
    console.print("               median        min        max   runs   samples/s")
    for (name, timing) in rows {
      let throughput = Double(batch) / timing.median
      console.print(
        name.padding(toLength: 12, withPad: " ", startingAt: 0)
          + [formatDuration(timing.median), formatDuration(timing.min), formatDuration(timing.max)]
          .map { $0.leftPadded(11) }.joined()
          + String(timing.samples.count).leftPadded(7) + String(format: "%12.0f", throughput))
    }
    if let interpreterTiming {
      console.print(
        String(
          format: "\ncompiled is %.0fx faster than the interpreter (medians)",
          interpreterTiming.median / rows[0].1.median))
    }
    return 0
  }
}

extension String {
  func leftPadded(_ width: Int) -> String {
    count >= width ? self : String(repeating: " ", count: width - count) + self
  }
}
