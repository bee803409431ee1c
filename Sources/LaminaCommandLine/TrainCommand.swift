import Foundation
import Lamina

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// `lamina train FILE.lam --data DIR`: trains a model with its compiled training step.
enum TrainCommand: Command {
  static let name = "train"
  static let summary = "Train a model on .npy data (compiled train step), with checkpoints"
  static let help = """
    usage: lamina train FILE.lam --data DIR --epochs N --batch B [--val DIR] [--seed S]
                        [--checkpoint W.safetensors] [--resume W.safetensors] [-o W.safetensors]
                        [--plot loss.svg] [--early-stopping PATIENCE] [--step NAME]
                        [--steps NAME:N,NAME:N] [--monitor LOSS] [--model NAME]
                        [--init-from W.safetensors [--rename OLD=NEW]... [--allow-partial]]
                        [--gradients G.svg [--gradients-every N]]
                        [--interpret] [--target T] [--cc PATH] [--no-cache] [--quiet]
                        [--passes A,B,...] [--disable-pass P]

    Trains the model's `train with ...` steps on DIR, which holds one NAME.npy per model input (rows
    along the first axis). Each epoch shuffles the rows (deterministically from --seed and the epoch),
    runs every batch of B rows (the last one may be smaller), then reports the mean training loss and,
    with --val, the validation loss and accuracy (for a cross_entropy loss).
    A model with several steps (a GAN's discriminator and generator) alternates them: each round runs
    every step once, in the order of the file. A step whose loss reads data inputs takes the next
    batch on every call (and only the inputs it reads); one that reads none takes no batch, and a
    symbolic dimension no input of it determines (batch) is B. The epoch ends when the data is used up.
      --steps D:5,G:1  run step D 5 times then G once a round (names as in the file; steps not
                       named run once, NAME:0 leaves one out)
      --step NAME      train only step NAME
      --monitor LOSS   the loss early stopping and the best epoch follow (validation loss with --val,
                       else the training loss of the step minimizing it); default the first step's
      --checkpoint W   after every epoch, save parameters, optimizer state and progress to W
      --resume W       continue from checkpoint W (and keep saving to it unless --checkpoint is given);
                       the result is identical to a run that was never interrupted
      -o W             save the final weights (with --early-stopping, the best epoch's)
      --plot P         draw training and validation loss (and accuracy) per epoch to P as SVG
      --early-stopping PATIENCE
                       stop after PATIENCE epochs without a lower validation loss (training loss
                       without --val) and restore the best epoch's weights (the checkpoint keeps the
                       last epoch's, to resume from, and the best ones as best.NAME)
    \(transferHelp)
      --interpret      train with the reference interpreter instead of compiled code (slow; a check)
      --quiet          print only the final summary
    A progress bar is drawn on standard error when it is a terminal; otherwise one line per epoch.
    Exits with status 1 when the loss becomes NaN or infinite (the last checkpoint is kept).
    \(OptionSpec.passSelectionHelp)
    \(OptionSpec.compilingHelp)
    """
  static let options = OptionSpec(
    valued: Set([
      "--data", "--epochs", "--batch", "--val", "--seed", "--checkpoint", "--resume", "--plot",
      "--early-stopping", "--step", "--steps", "--monitor", "--model", "--cc", "--cflags",
      "--threads", "-o", "--output",
      "--cache-dir",
    ]).union(transferValued),
    repeatable: Set(transferRepeatable),
    switches: Set(["--no-cache", "--quiet", "--interpret"]).union(transferSwitches)
  ).selectingPasses.compiling

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    let interpret = options.isSet("--interpret")
    return try train(options, console: console) { model, compileOptions, parameters in
      interpret
        ? try InterpretedModel(model, parameters: parameters)
        : try model.compileForTraining(options: compileOptions, parameters: parameters)
    }
  }

  /// The command with the way to build the trainable model passed in.
  static func train(
    _ options: Options, console: Console,
    makeTrainable: (Model, CompileOptions, [String: Tensor]) throws -> any TrainableModel
  ) throws -> Int32 {
    let path = try options.modelPath()
    func positive(_ name: String) throws -> Int? {
      guard let text = options.value(name) else { return nil }
      guard let value = Int(text), value > 0 else {
        throw UsageError("\(name) takes a positive integer, got '\(text)'")
      }
      return value
    }
    guard let dataPath = options.value("--data") else {
      throw UsageError("missing --data DIR (a directory with one NAME.npy per model input)")
    }
    guard let epochs = try positive("--epochs") else { throw UsageError("missing --epochs N") }
    guard let batch = try positive("--batch") else { throw UsageError("missing --batch B") }
    let patience = try positive("--early-stopping")
    let quiet = options.isSet("--quiet")
    let plotPath = options.value("--plot")
    let outputPath = options.value("-o") ?? options.value("--output")
    let resumePath = options.value("--resume")
    let checkpointPath = options.value("--checkpoint") ?? resumePath
    var seed = try options.seed()
    // Found out now, not after every epoch has run.
    for output in [plotPath, outputPath, checkpointPath, options.value("--gradients")].compactMap({
      $0
    }) {
      try AtomicFile.checkWritable(output)
    }

    let model = try Model(
      contentsOf: path, modelName: options.value("--model"),
      pipeline: try options.selectedPasses(Pipeline.training))
    if !model.warnings.isEmpty {
      console.error(DiagnosticRenderer(sources: [model.source]).render(model.warnings))
    }
    let step = options.value("--step")
    let stepCounts = try options.value("--steps").map(parseStepCounts) ?? [:]
    if step != nil && !stepCounts.isEmpty {
      throw UsageError("give --step NAME (one step) or --steps NAME:N,... (counts), not both")
    }
    let trainStep = try model.trainStep(named: step)
    // Checked before anything is compiled or written: a typo in --steps or --monitor is an error.
    let stepNames = model.graph.trainSteps.map(\.name)
    for name in stepCounts.keys.sorted() where !stepNames.contains(name) {
      throw UsageError(
        "--steps: the model has no training step '\(name)' (steps: \(stepNames.joined(separator: ", ")))"
      )
    }
    let monitor = options.value("--monitor")
    if let monitor, !model.graph.losses.contains(where: { $0.name == monitor }),
      !stepNames.contains(monitor)
    {
      throw UsageError(
        "--monitor: the model has no loss '\(monitor)' (losses: \(model.graph.losses.map(\.name).joined(separator: ", ")))"
      )
    }
    let inputNames = model.graph.inputs.map { model.graph[$0.value].name }
    let train = try Dataset(directory: dataPath, inputs: inputNames)
    let validation = try options.value("--val").map {
      try Dataset(directory: $0, inputs: inputNames)
    }

    var resume: Checkpoint?
    if let resumePath {
      let checkpoint = try Checkpoint.read(contentsOf: resumePath)
      guard checkpoint.model.isEmpty || checkpoint.model == model.graph.name else {
        throw RunError(
          "\(resumePath) is a checkpoint of model \(checkpoint.model), not \(model.graph.name)")
      }
      if options.value("--seed") != nil, checkpoint.seed != seed {
        console.error(
          "lamina train: warning: resuming with the checkpoint's seed \(checkpoint.seed), not --seed \(seed)"
        )
      }
      if let saved = checkpoint.batchSize, saved != batch {
        console.error(
          "lamina train: warning: the checkpoint was trained with batch \(saved); continuing with --batch \(batch) will not match an uninterrupted run"
        )
      }
      seed = checkpoint.seed
      resume = checkpoint
    }

    var compileOptions = try CompileCommand.compileOptions(options)
    compileOptions.threads = try positive("--threads") ?? 0
    let compileStart = DispatchTime.now().uptimeNanoseconds
    let trainable = try makeTrainable(
      model, compileOptions,
      try startingParameters(model, options: options, seed: seed, resume: resume, console: console))
    let compileSeconds = Double(DispatchTime.now().uptimeNanoseconds - compileStart) / 1e9
    let trainer = try Trainer(
      model: model, compiled: trainable, step: step, checkpointPath: checkpointPath,
      steps: stepCounts, monitor: monitor)

    let gradients = try gradientMonitor(
      model, options: options, trainable: trainable, train: train, batch: batch, seed: seed,
      compileOptions: compileOptions, resume: resume)
    let stepsPerEpoch = trainer.callsPerEpoch(batches: train.batchCount(size: batch))
    let firstEpoch = resume?.epoch ?? 0
    if !quiet {
      let described =
        trainer.schedule.count > 1
        ? trainer.schedule.map { entry in
          let found = model.graph.trainSteps.first { $0.name == entry.step }
          return "\(entry.step): \(found?.optimizer ?? "?") on \(found?.lossName ?? "?")"
            + (entry.count > 1 ? " x\(entry.count)" : "")
        }.joined(separator: ", ") + "; monitoring \(trainer.lossName)"
        : "\(trainStep.optimizer) on \(trainStep.lossName)"
      var line = "training \(model.graph.name) (\(described)) on \(train.count) rows"
      if let validation { line += ", validating on \(validation.count)" }
      line += "; \(epochs) epochs of \(stepsPerEpoch) steps (batch \(batch)), seed \(seed)"
      if firstEpoch > 0 { line += "; resuming after epoch \(firstEpoch)" }
      line +=
        options.isSet("--interpret")
        ? "; interpreted" : String(format: "; compiled in %.2f s", compileSeconds)
      console.print(line)
    }

    if firstEpoch >= epochs {
      console.error(
        "lamina train: note: the checkpoint already holds \(firstEpoch) epochs; pass --epochs above \(firstEpoch) to train further"
      )
    }
    let live = !quiet && !console.isCapturing && isatty(2) == 1
    let progress = ProgressPrinter(
      console: console, live: live, quiet: quiet, epochs: epochs,
      totalSteps: (epochs - min(firstEpoch, epochs)) * stepsPerEpoch,
      hasAccuracy: trainer.classification != nil && validation != nil,
      stepOrder: trainer.schedule.map(\.step))

    let start = DispatchTime.now().uptimeNanoseconds
    let history: TrainingHistory
    do {
      history = try trainer.fit(
        train: train, validation: validation, epochs: epochs, batchSize: batch, seed: seed,
        earlyStoppingPatience: patience, resume: resume,
        callbacks: [progress] + (gradients.map { [$0] } ?? []))
    } catch let error as NonFiniteLossError {
      progress.clearLine()
      if let plotPath, !error.history.isEmpty {
        try? LossPlot.write(error.history, title: model.graph.name, to: plotPath)
      }
      _ = try? finishGradients(
        gradients, options: options, title: model.graph.name, console: console)
      console.error("lamina train: error: \(TerminalText.escaped("\(error)", keepingNewlines: true))")
      return 1
    }
    progress.clearLine()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9

    if let plotPath { try LossPlot.write(history.epochs, title: model.graph.name, to: plotPath) }
    if let outputPath {
      // Model state (running statistics) is saved with the parameters, as PyTorch's state_dict.
      let modelState = Set(model.graph.modelStates.map { model.graph[$0.value].name })
      let weights = try trainable.parameters().merging(
        trainable.state().filter { modelState.contains($0.key) }
      ) { a, _ in a }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
      try SafeTensors.write(weights, metadata: ["model": model.graph.name], to: outputPath)
    }

    let ran = history.epochs.count - (resume?.history.count ?? 0)
    var summary = String(
      format: "trained %d epoch%@ (%d steps in all) in %.2f s", ran, ran == 1 ? "" : "s",
      history.globalStep, seconds)
    if let last = history.epochs.last {
      if let losses = last.stepLosses {
        summary +=
          "; final train losses "
          + trainer.schedule.compactMap { entry in
            losses[entry.step].map { String(format: "%@ %.4f", entry.step, $0) }
          }.joined(separator: ", ")
      } else {
        summary += String(format: "; final train loss %.4f", last.trainLoss)
      }
    }
    if let bestEpoch = history.bestEpoch,
      let best = history.epochs.first(where: { $0.epoch == bestEpoch })
    {
      if let loss = best.validationLoss {
        summary += String(format: "; best val loss %.4f at epoch %d", loss, bestEpoch)
        if let accuracy = best.validationAccuracy {
          summary += String(format: " (val accuracy %.2f%%)", accuracy * 100)
        }
      }
    }
    if history.stoppedEarly { summary += "; stopped early" }
    if history.restoredBestWeights, let bestEpoch = history.bestEpoch {
      summary += "; restored the weights of epoch \(bestEpoch)"
    }
    console.print(summary)
    var wrote: [String] = []
    if let checkpointPath, ran > 0 { wrote.append("checkpoint \(checkpointPath)") }
    if let outputPath { wrote.append("weights \(outputPath)") }
    if let plotPath { wrote.append("plot \(plotPath)") }
    wrote += try finishGradients(
      gradients, options: options, title: model.graph.name, console: console)
    if !wrote.isEmpty { console.print("wrote \(TerminalText.escaped(wrote.joined(separator: ", ")))") }
    return 0
  }
}

/// Prints training progress: a bar redrawn in place on a terminal, one line per epoch otherwise.
final class ProgressPrinter: TrainingCallback {
  let console: Console
  let live: Bool
  let quiet: Bool
  let epochs: Int
  let totalSteps: Int
  let hasAccuracy: Bool
  /// The training steps in round order, for the per-step losses of a model with several.
  let stepOrder: [String]
  private var stepsDone = 0
  private let start = DispatchTime.now().uptimeNanoseconds
  private var lastDraw: UInt64 = 0
  private var drawn = false

  init(
    console: Console, live: Bool, quiet: Bool, epochs: Int, totalSteps: Int, hasAccuracy: Bool,
    stepOrder: [String] = []
  ) {
    self.stepOrder = stepOrder
    self.console = console
    self.live = live
    self.quiet = quiet
    self.epochs = epochs
    self.totalSteps = totalSteps
    self.hasAccuracy = hasAccuracy
  }

  func stepEnded(_ progress: StepProgress) throws {
    stepsDone += 1
    guard live else { return }
    let now = DispatchTime.now().uptimeNanoseconds
    // At most ~20 redraws a second, and always the epoch's last step.
    guard now - lastDraw > 50_000_000 || progress.step == progress.steps else { return }
    lastDraw = now
    let elapsed = Double(now - start) / 1e9
    let remaining = Double(max(totalSteps - stepsDone, 0)) * elapsed / Double(max(stepsDone, 1))
    let width = 24
    let filled = progress.steps > 0 ? width * progress.step / progress.steps : width
    let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
    let named = progress.stepName.map { TerminalText.escaped($0) + " " } ?? ""
    let line = String(
      format: "epoch %d/%d [%@] %d/%d  %@loss %.4f  %.0f samples/s  ETA %@", progress.epoch,
      progress.epochs, bar, progress.step, progress.steps, named, progress.loss,
      progress.samplesPerSecond, clock(remaining))
    console.error("\r\u{1B}[K" + line, terminator: "")
    drawn = true
  }

  func epochEnded(_ metrics: EpochMetrics, history: [EpochMetrics]) throws {
    guard !quiet else { return }
    clearLine()
    let digits = String(epochs).count
    var line =
      "epoch \(String(repeating: " ", count: max(0, digits - String(metrics.epoch).count)))\(metrics.epoch)/\(epochs)"
    if let losses = metrics.stepLosses {
      line +=
        "  train"
        + stepOrder.compactMap { name in
          losses[name].map { String(format: " %@ %.4f", TerminalText.escaped(name), $0) }
        }.joined(separator: "")
    } else {
      line += String(format: "  train loss %.4f", metrics.trainLoss)
    }
    if let losses = metrics.validationLosses {
      line +=
        "  val"
        + losses.keys.sorted().map {
          String(format: " %@ %.4f", TerminalText.escaped($0), losses[$0]!)
        }.joined(separator: "")
    } else if let loss = metrics.validationLoss {
      line += String(format: "  val loss %.4f", loss)
    }
    if let accuracy = metrics.validationAccuracy {
      line += String(format: "  val acc %.2f%%", accuracy * 100)
    }
    line += String(format: "  %.2f s", metrics.seconds)
    let best = history.map { $0.validationLoss ?? $0.trainLoss }.min()
    if history.count > 1, let best, (metrics.validationLoss ?? metrics.trainLoss) == best {
      line += "  *"
    }
    console.print(line)
  }

  /// Erases the progress bar so the next line starts clean.
  func clearLine() {
    if live && drawn {
      console.error("\r\u{1B}[K", terminator: "")
      drawn = false
    }
  }

  private func clock(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "-" }
    let total = Int(seconds.rounded())
    return total >= 3600
      ? String(format: "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60)
      : String(format: "%d:%02d", total / 60, total % 60)
  }
}

/// `discriminator:5,generator:1` as counts by step name.
func parseStepCounts(_ text: String) throws -> [String: Int] {
  var counts: [String: Int] = [:]
  for item in text.split(separator: ",", omittingEmptySubsequences: false) {
    let parts = item.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 2, !parts[0].isEmpty, let count = Int(parts[1]), count >= 0 else {
      throw UsageError(
        "--steps takes NAME:COUNT pairs separated by commas (discriminator:5,generator:1), got '\(TerminalText.escaped(String(item)))'"
      )
    }
    let name = String(parts[0])
    guard counts[name] == nil else {
      throw UsageError("--steps names step '\(TerminalText.escaped(name))' twice")
    }
    counts[name] = count
  }
  return counts
}
