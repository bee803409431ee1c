import Foundation
import Lamina

/// `lamina run FILE.lam|LIB.so`: runs a model on `.npy` inputs.
enum RunCommand: Command {
  static let name = "run"
  static let summary = "Run a model (compiled, or --interpret) on .npy inputs"
  static let help = """
    usage: lamina run FILE.lam|LIB.so [--weights W.safetensors] [--seed S] --input NAME=FILE.npy...
                      [--output NAME=FILE.npy|FILE.png...] [--batch N] [--dim SYMBOL=N...]
                      [--image-size HxW] [--interpret] [--target T] [--cc PATH] [--no-cache]
                      [--model NAME] [--mode inference|training] [--passes A,B,...] [--disable-pass P]

    Compiles the model (or loads a library from `lamina compile`) and runs it. Without --weights the
    initializers are used (with --seed); a library needs --weights. Outputs and losses can be requested
    by name; inputs the requested values do not need (a label, at inference) may be given and are
    ignored. Without --output, every output is summarized on standard output.
      --interpret  use the reference interpreter instead of compiled code
      --seed S     seed the initializers (without --weights) and the model's random generator
                   (random_normal, random_uniform); without it the generator keeps the weights' seed
      --batch N    run the inputs N rows at a time and join the outputs (their first axis)
      --dim S=N    bind symbolic dimension S to N where no input determines it (a generator's
                   batch: --dim batch=1000); an input that makes it another size is an error
      --output NAME=FILE.png
                   write the output as a grid of grayscale images ([N, H, W], [N, 1, H, W], or
                   [N, H*W] with --image-size HxW); values in [0, 1] as they are, others stretched
      --mode M     inference (default: batch norm uses its running statistics, dropout is off) or
                   training (outputs as a training step computes them: the batch's statistics;
                   the running statistics are not written back, only training steps update them)
    \(OptionSpec.passSelectionHelp)
    \(OptionSpec.compilingHelp)
    """
  static let options = OptionSpec(
    valued: [
      "--weights", "--seed", "--model", "--batch", "--cc", "--cflags", "--cache-dir", "--mode",
      "--image-size",
    ],
    repeatable: ["--input", "--output", "--dim"], switches: ["--interpret", "--no-cache"]
  ).selectingPasses.compiling

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    let path = try options.modelPath()
    var inputs: [String: Tensor] = [:]
    for (name, file) in try options.pairs("--input") {
      inputs[name] = try NPY.read(contentsOf: file)
    }
    var requested = try options.pairs("--output")
    let batch = try options.value("--batch").map { text -> Int in
      guard let value = Int(text), value > 0 else {
        throw UsageError("--batch takes a positive integer, got '\(text)'")
      }
      return value
    }

    var dims: [String: Int] = [:]
    for text in options.values("--dim") {
      let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
      guard parts.count == 2, !parts[0].isEmpty, let value = Int(parts[1]), value > 0 else {
        throw UsageError(
          "--dim takes SYMBOL=N with N a positive integer (--dim batch=1000), got '\(TerminalText.escaped(text))'"
        )
      }
      dims[parts[0]] = value
    }
    let imageSize = try options.value("--image-size").map { text in
      guard let size = ImageGrid.parseSize(text) else {
        throw UsageError("--image-size takes HxW (8x8), got '\(TerminalText.escaped(text))'")
      }
      return size
    }
    // Found out before anything runs: a PNG output must be writable too.
    for (_, file) in requested where !file.isEmpty { try AtomicFile.checkWritable(file) }
    let generatorSeed = options.value("--seed") != nil ? try options.seed() : nil

    let mode = try executionMode(options, default: .inference)
    var runner: Runner
    if path.hasSuffix(".so") || path.hasSuffix(".dylib") {
      guard !options.isSet("--interpret") else {
        throw UsageError("--interpret needs a model file, not a library")
      }
      let compiled = try CompiledModel(libraryPath: path)
      guard let weights = options.value("--weights") else {
        throw UsageError("a compiled library has no initializers: pass --weights W.safetensors")
      }
      try compiled.loadWeights(from: weights)
      if let generatorSeed { try seedGenerator(compiled, generatorSeed) }
      runner = .compiled(compiled)
    } else {
      let model = try loadModel(
        path, modelName: options.value("--model"),
        pipeline: try options.selectedPasses(Pipeline.inference), console: console)
      var parameters = try loadParameters(
        model, weightsPath: options.value("--weights"), seed: try options.seed())
      if let generatorSeed,
        model.graph.modelStates.contains(where: {
          model.graph[$0.value].name == RandomGenerator.seedName
        })
      {
        parameters[RandomGenerator.seedName] = generatorTensor(generatorSeed)
      }
      if options.isSet("--interpret") {
        runner = .interpreted(model, parameters)
      } else {
        runner = .compiled(
          try model.compile(options: CompileCommand.compileOptions(options), parameters: parameters)
        )
      }
    }
    runner = runner.inMode(mode).binding(dims)
    if requested.isEmpty { requested = runner.outputNames.map { ($0, "") } }
    try runner.checkInputNames(Array(inputs.keys))

    let results: [String: Tensor]
    if let batch {
      results = try runInBatches(runner, inputs, requested.map(\.name), batch: batch)
    } else {
      results = try runner.run(inputs, requested.map(\.name))
    }
    for (name, file) in requested {
      guard let tensor = results[name] else { continue }
      if file.isEmpty {
        console.print("\(TerminalText.escaped(name)): \(tensor)")
      } else if file.lowercased().hasSuffix(".png") {
        let png = try ImageGrid.png(tensor, imageSize: imageSize)
        try AtomicFile.write(Data(png), to: file)
        console.print(
          "wrote \(TerminalText.escaped(name)) \(tensor.typeDescription) to \(TerminalText.escaped(file)) as an image grid"
        )
      } else {
        try NPY.write(tensor, to: file)
        console.print("wrote \(name) \(tensor.typeDescription) to \(TerminalText.escaped(file))")
      }
    }
    return 0
  }

  /// Splits every input along its first axis, runs each piece, and joins the results the same way.
  static func runInBatches(
    _ runner: Runner, _ inputs: [String: Tensor], _ names: [String], batch: Int
  ) throws
    -> [String: Tensor]
  {
    let rows = Set(inputs.values.compactMap { $0.shape.first })
    guard rows.count == 1, let total = rows.first else {
      throw UsageError(
        "--batch needs inputs with the same first dimension, got \(inputs.mapValues(\.shape))")
    }
    var pieces: [String: [Tensor]] = [:]
    var start = 0
    while start < total {
      let end = min(start + batch, total)
      let slice = inputs.mapValues { rowsOf($0, start, end) }
      for (name, tensor) in try runner.run(slice, names) {
        pieces[name, default: []].append(tensor)
      }
      start = end
    }
    return try pieces.mapValues { parts in
      guard parts.allSatisfy({ $0.rank >= 1 }) else {
        throw UsageError(
          "--batch works only for outputs with the batch as first axis; a scalar (a loss) is not")
      }
      return joinRows(parts)
    }
  }

  /// The generator's seed state for `seed` (an i64 scalar holding its bits).
  static func generatorTensor(_ seed: UInt64) -> Tensor {
    Tensor(shape: [], scalars: [Int64(bitPattern: seed)])
  }

  /// Seeds a compiled model's random generator, when it has one.
  static func seedGenerator(_ compiled: CompiledModel, _ seed: UInt64) throws {
    guard compiled.signature.states.contains(where: { $0.name == RandomGenerator.seedName })
    else { return }
    try compiled.setState([RandomGenerator.seedName: generatorTensor(seed)])
  }

  static func rowsOf(_ tensor: Tensor, _ start: Int, _ end: Int) -> Tensor {
    let rowBytes = tensor.byteCount / max(tensor.shape[0], 1)
    return tensor.withUnsafeBytes { bytes in
      Tensor(
        dtype: tensor.dtype, shape: [end - start] + tensor.shape.dropFirst(),
        bytes: UnsafeRawBufferPointer(rebasing: bytes[(start * rowBytes)..<(end * rowBytes)]))!
    }
  }

  static func joinRows(_ parts: [Tensor]) -> Tensor {
    let first = parts[0]
    var joined = Tensor(
      zeros: first.dtype, shape: [parts.map { $0.shape[0] }.reduce(0, +)] + first.shape.dropFirst())
    joined.withUnsafeMutableBytes { destination in
      var offset = 0
      for part in parts {
        part.withUnsafeBytes { source in
          destination.baseAddress!.advanced(by: offset).copyMemory(
            from: source.baseAddress!, byteCount: source.count)
        }
        offset += part.byteCount
      }
    }
    return joined
  }
}

/// The two ways a model runs, behind one interface.
enum Runner {
  case interpreted(Model, [String: Tensor], ExecutionMode = .inference, dims: [String: Int] = [:])
  case compiled(CompiledModel, ExecutionMode = .inference, dims: [String: Int] = [:])

  /// The same runner computing in `mode`.
  func inMode(_ mode: ExecutionMode) -> Runner {
    switch self {
    case .interpreted(let model, let parameters, _, let dims):
      .interpreted(model, parameters, mode, dims: dims)
    case .compiled(let compiled, _, let dims): .compiled(compiled, mode, dims: dims)
    }
  }

  /// The same runner with symbolic dimensions no input determines bound (`--dim`).
  func binding(_ dims: [String: Int]) -> Runner {
    switch self {
    case .interpreted(let model, let parameters, let mode, _):
      .interpreted(model, parameters, mode, dims: dims)
    case .compiled(let compiled, let mode, _): .compiled(compiled, mode, dims: dims)
    }
  }

  var inputNames: [String] {
    switch self {
    case .interpreted(let model, _, _, _): model.graph.inputs.map { model.graph[$0.value].name }
    case .compiled(let compiled, _, _): compiled.signature.inputs.map(\.name)
    }
  }

  var outputNames: [String] {
    switch self {
    case .interpreted(let model, _, _, _): model.graph.outputs.map(\.name)
    case .compiled(let compiled, _, _): compiled.signature.outputs.map(\.name)
    }
  }

  func checkInputNames(_ names: [String]) throws {
    for name in names where !inputNames.contains(name) {
      throw UsageError(
        "the model has no input '\(name)' (inputs: \(inputNames.joined(separator: ", ")))"
          + (closestName(to: name, among: inputNames).map { "; did you mean '\($0)'?" } ?? ""))
    }
  }

  func run(_ inputs: [String: Tensor], _ names: [String]) throws -> [String: Tensor] {
    switch self {
    case .interpreted(let model, let parameters, let mode, let dims):
      if let symbol = dims.keys.sorted().first(where: { symbol in
        !model.graph.values.contains {
          $0.type?.shape.contains { $0.symbols.contains(symbol) } == true
        }
      }) {
        throw RunError("the model has no symbolic dimension '\(symbol)'")
      }
      return try model.interpret(
        inputs: inputs, parameters: parameters, outputs: names, mode: mode, dims: dims)
    case .compiled(let compiled, let mode, let dims):
      let losses = Set(compiled.signature.losses.map(\.name))
      for name in names
      where !losses.contains(name)
        && !compiled.signature.outputs.contains(where: { $0.name == name })
      {
        throw RunError("the model has no output or loss named '\(name)'")
      }
      if names.contains(where: losses.contains) {
        let (outputs, lossValues) = try compiled.evaluate(inputs, dims: dims, mode: mode)
        return outputs.merging(lossValues) { a, _ in a }
      }
      let relevant = inputs.filter { name, _ in
        compiled.signature.inputs.first { $0.name == name }?.forward == true
      }
      return try compiled.forward(relevant, dims: dims, mode: mode)
    }
  }
}

/// `--mode inference|training`, or `fallback` when absent.
func executionMode(_ options: Options, default fallback: ExecutionMode) throws -> ExecutionMode {
  guard let text = options.value("--mode") else { return fallback }
  guard let mode = ExecutionMode(rawValue: text) else {
    throw UsageError("--mode takes inference or training, got '\(TerminalText.escaped(text))'")
  }
  return mode
}
