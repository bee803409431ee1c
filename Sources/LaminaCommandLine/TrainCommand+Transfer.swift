import Foundation
import Lamina

/// `lamina train --init-from` (transfer learning) and `--gradients` (gradient norms).
extension TrainCommand {
  static let transferHelp = """
      --init-from W    start from another model's weights (.safetensors, or a checkpoint): every
                       parameter and model state whose name and shape match is loaded, the others
                       keep their initializers; prints what was loaded, missing, unexpected and
                       mismatched. A shape mismatch is an error unless --allow-partial
      --rename OLD=NEW read names of the --init-from file that start with OLD as starting with NEW
                       (repeatable; the first rule that applies wins)
      --allow-partial  keep parameters whose shape differs from the file's at their initializers
      --gradients G    record every trained parameter's gradient norm (on one fixed batch of the
                       training data) before training and after every epoch, draw them per layer
                       on a log scale to G (SVG) and write them to G's name with .csv; warns when
                       the first layers' gradients vanish or a norm explodes
      --gradients-every N
                       record every N steps instead of every epoch
    """
  static let transferValued = ["--init-from", "--gradients", "--gradients-every"]
  static let transferRepeatable = ["--rename"]
  static let transferSwitches = ["--allow-partial"]

  /// The parameters to start from: the checkpoint's when resuming, else the initializers' with
  /// `--init-from`'s tensors loaded.
  static func startingParameters(
    _ model: Model, options: Options, seed: UInt64, resume: Checkpoint?, console: Console
  ) throws -> [String: Tensor] {
    if let resume, options.value("--init-from") == nil { return resume.parameters }
    guard let path = options.value("--init-from") else {
      if !options.values("--rename").isEmpty || options.isSet("--allow-partial") {
        throw UsageError("--rename and --allow-partial go with --init-from W.safetensors")
      }
      return try model.initialParameters(seed: seed)
    }
    if resume != nil {
      throw UsageError(
        "--init-from and --resume exclude each other: a checkpoint already holds every parameter")
    }
    let renames = try options.values("--rename").map { try PrefixRename(parsing: $0) }
    let transfer = try model.transfer(
      from: path, renames: renames, allowPartial: options.isSet("--allow-partial"))
    if !options.isSet("--quiet") { console.print(transfer.table(), terminator: "") }
    return try model.parameters(startingFrom: transfer, seed: seed)
  }

  /// The gradient monitor `--gradients` asks for, recording from now on; nil without it.
  static func gradientMonitor(
    _ model: Model, options: Options, trainable: any TrainableModel, train: Dataset,
    batch: Int, seed: UInt64, compileOptions: CompileOptions, resume: Checkpoint?
  ) throws -> GradientMonitor? {
    guard let plotPath = options.value("--gradients") else {
      if options.value("--gradients-every") != nil {
        throw UsageError("--gradients-every N goes with --gradients G.svg")
      }
      return nil
    }
    try AtomicFile.checkWritable(plotPath)
    try AtomicFile.checkWritable(GradientMonitor.csvPath(forPlot: plotPath))
    var every: Int?
    if let text = options.value("--gradients-every") {
      guard let value = Int(text), value > 0 else {
        throw UsageError("--gradients-every takes a positive integer, got '\(text)'")
      }
      every = value
    }
    let step = options.value("--step")
    let probe: any GradientProbe =
      options.isSet("--interpret")
      ? InterpretedGradientProbe(model: model, step: step)
      : try CompiledGradientProbe(model: model, step: step, options: compileOptions)
    // The first batch of the first epoch, the same in every run with this seed.
    let rows = train.shuffledOrder(seed: seed, epoch: 0).prefix(batch)
    return try GradientMonitor(
      model: model, trainable: trainable, probe: probe, batch: train.gather(rows), step: step,
      every: every, startStep: resume?.globalStep ?? 0, startEpoch: resume?.epoch ?? 0)
  }

  /// Writes the gradient plot and CSV and prints the warnings; returns what it wrote.
  static func finishGradients(
    _ monitor: GradientMonitor?, options: Options, title: String, console: Console
  ) throws -> [String] {
    guard let monitor, let plotPath = options.value("--gradients") else { return [] }
    try monitor.writePlot(to: plotPath, title: title)
    for warning in monitor.warnings() {
      console.error("lamina train: warning: \(warning.message)")
    }
    return ["gradients \(plotPath) and \(GradientMonitor.csvPath(forPlot: plotPath))"]
  }
}
