import Foundation
import LaminaIR
import LaminaSupport

/// What a `Trainer` drives: a model that takes a training step, evaluates, and exposes its
/// parameters and optimizer state. `CompiledModel` conforms (compiled with `Pipeline.training`).
public protocol TrainableModel {
  var signature: ModelSignature { get }
  /// Forward, backward and optimizer update on one batch; returns the loss before the update.
  /// `step` names the training step (nil: the first).
  func trainStep(_ inputs: [String: Tensor], step: String?) throws -> Double
  /// A training step with symbolic dimensions no input of the step determines bound by `dims`
  /// (a generator step that reads no data gets the batch size).
  func trainStep(_ inputs: [String: Tensor], step: String?, dims: [String: Int]) throws -> Double
  /// Every output and every loss, without updating anything.
  func evaluate(_ inputs: [String: Tensor]) throws -> (
    outputs: [String: Tensor], losses: [String: Tensor]
  )
  func parameters() throws -> [String: Tensor]
  /// Sets every parameter, and the model state (running statistics) `tensors` holds.
  func setParameters(_ tensors: [String: Tensor]) throws
  /// Optimizer state (momentum buffers, step counters) and model state, by name.
  func state() throws -> [String: Tensor]
  func setState(_ tensors: [String: Tensor]) throws
}

extension TrainableModel {
  /// For models whose steps read every symbolic dimension from their inputs: `dims` unused.
  public func trainStep(_ inputs: [String: Tensor], step: String?, dims: [String: Int]) throws
    -> Double
  {
    try trainStep(inputs, step: step)
  }
}

/// One epoch's numbers.
public struct EpochMetrics: Sendable, Codable, Equatable {
  /// 1-based.
  public var epoch: Int
  /// The mean training loss over the epoch's steps, weighted by batch size.
  public var trainLoss: Double
  /// The mean loss over the validation set (weighted by batch size), when there is one.
  public var validationLoss: Double?
  /// The fraction of validation rows classified correctly, when the loss is a classification loss.
  public var validationAccuracy: Double?
  public var seconds: Double
  public var steps: Int
  /// With several training steps: each step's mean training loss over the epoch (weighted by
  /// batch size), by step name. `trainLoss` is the monitored step's.
  public var stepLosses: [String: Double]?
  /// With several losses: each loss's mean over the validation set, by loss name.
  /// `validationLoss` is the monitored one.
  public var validationLosses: [String: Double]?

  public init(
    epoch: Int, trainLoss: Double, validationLoss: Double? = nil, validationAccuracy: Double? = nil,
    seconds: Double = 0, steps: Int = 0
  ) {
    self.epoch = epoch
    self.trainLoss = trainLoss
    self.validationLoss = validationLoss
    self.validationAccuracy = validationAccuracy
    self.seconds = seconds
    self.steps = steps
  }
}

/// What `Trainer.fit` returns: every epoch's metrics (including epochs run before a resume).
public struct TrainingHistory: Sendable, Equatable {
  public var epochs: [EpochMetrics]
  /// The epoch with the lowest monitored loss (validation loss, or training loss without validation).
  public var bestEpoch: Int?
  public var bestLoss: Double?
  /// True when early stopping ended training before the last epoch.
  public var stoppedEarly: Bool
  /// True when the best epoch's weights were put back at the end (early stopping only).
  public var restoredBestWeights: Bool
  public var globalStep: Int
}

/// Progress after one training step.
public struct StepProgress: Sendable {
  /// 1-based epoch and step within the epoch.
  public var epoch: Int
  public var epochs: Int
  public var step: Int
  public var steps: Int
  public var loss: Double
  /// Rows per second over the epoch so far.
  public var samplesPerSecond: Double
  /// Seconds since the epoch started.
  public var elapsed: Double
  /// Steps taken since the start of training (across resumes).
  public var globalStep: Int
  /// The training step that ran (nil when the model has one and none was named).
  public var stepName: String? = nil

  public init(
    epoch: Int, epochs: Int, step: Int, steps: Int, loss: Double, samplesPerSecond: Double,
    elapsed: Double, globalStep: Int
  ) {
    self.epoch = epoch
    self.epochs = epochs
    self.step = step
    self.steps = steps
    self.loss = loss
    self.samplesPerSecond = samplesPerSecond
    self.elapsed = elapsed
    self.globalStep = globalStep
  }
}

/// Hooks called during `Trainer.fit`; both do nothing by default. Throwing stops training.
public protocol TrainingCallback {
  func stepEnded(_ progress: StepProgress) throws
  /// After each epoch's validation and checkpoint.
  func epochEnded(_ metrics: EpochMetrics, history: [EpochMetrics]) throws
}

extension TrainingCallback {
  public func stepEnded(_ progress: StepProgress) throws {}
  public func epochEnded(_ metrics: EpochMetrics, history: [EpochMetrics]) throws {}
}

/// A callback from closures.
public struct ClosureCallback: TrainingCallback {
  public var onStep: ((StepProgress) throws -> Void)?
  public var onEpoch: ((EpochMetrics, [EpochMetrics]) throws -> Void)?

  public init(
    onStep: ((StepProgress) throws -> Void)? = nil,
    onEpoch: ((EpochMetrics, [EpochMetrics]) throws -> Void)? = nil
  ) {
    self.onStep = onStep
    self.onEpoch = onEpoch
  }

  public func stepEnded(_ progress: StepProgress) throws { try onStep?(progress) }
  public func epochEnded(_ metrics: EpochMetrics, history: [EpochMetrics]) throws {
    try onEpoch?(metrics, history)
  }
}

/// Training stopped because the loss became NaN or infinite.
public struct NonFiniteLossError: Error, Sendable, CustomStringConvertible {
  /// 1-based.
  public var epoch: Int
  /// The 1-based step within the epoch; nil when the validation loss was not finite.
  public var step: Int?
  public var loss: Double
  /// The epochs completed before it.
  public var history: [EpochMetrics]
  /// The checkpoint left in place (from the last finite epoch), if any was written.
  public var checkpointPath: String?
  /// Where the data itself holds NaN or an infinity (`input 'x', row 12 of the training data holds
  /// nan`), when it does: then the learning rate is not to blame.
  public var dataProblem: String? = nil

  public var description: String {
    var text =
      step.map { "the training loss is \(loss) at epoch \(epoch), step \($0)" }
      ?? "the validation loss is \(loss) after epoch \(epoch)"
    text += dataProblem.map { ": \($0)" } ?? " (try a lower learning rate)"
    if let checkpointPath, let last = history.last {
      text += "; the last good checkpoint (epoch \(last.epoch)) is kept in \(checkpointPath)"
    }
    return text
  }
}

/// Where a classification model's accuracy comes from: the `cross_entropy` labels input and the output
/// whose last axis holds one score per class.
public struct ClassificationTarget: Sendable, Equatable {
  public var labels: String
  public var output: String
  public var classes: Int

  public init(labels: String, output: String, classes: Int) {
    self.labels = labels
    self.output = output
    self.classes = classes
  }

  /// Finds the `cross_entropy` behind `loss` (or any one) whose labels are a model input of rank 1 and
  /// whose logits are `[N, C]`, and an output `[N, C]` (preferring the logits or a function of them).
  public static func find(in graph: Graph, loss: String) -> ClassificationTarget? {
    let candidates = graph.nodes.filter { $0.op == "cross_entropy" && $0.operands.count == 2 }
    let lossValue = graph.losses.first { $0.name == loss }?.value
    let ordered =
      candidates.filter { $0.result == lossValue } + candidates.filter { $0.result != lossValue }
    for node in ordered {
      let logits = node.operands[0]
      let labels = node.operands[1]
      guard graph.inputs.contains(where: { $0.value == labels }),
        graph.type(of: labels).shape.count == 1
      else { continue }
      let logitsShape = graph.type(of: logits).shape
      guard logitsShape.count == 2, let classes = logitsShape[1].staticValue else { continue }
      let matching = graph.outputs.filter { output in
        let shape = graph.type(of: output.value).shape
        return shape.count == 2 && shape[1].staticValue == classes
      }
      let fromLogits = matching.first { output in
        output.value == logits
          || graph.nodes.contains {
            $0.results.contains(output.value) && $0.operands.contains(logits)
          }
      }
      guard let output = fromLogits ?? matching.first else { continue }
      return ClassificationTarget(labels: graph[labels].name, output: output.name, classes: classes)
    }
    return nil
  }
}

/// A training checkpoint: parameters, optimizer state and where training stood.
///
/// Stored as `.safetensors`: parameters under their own names (so the file also works as a weights
/// file for `lamina run --weights`), optimizer state under `state.NAME`, the best epoch's weights
/// under `best.NAME` (early stopping only), and the rest as metadata strings.
public struct Checkpoint: Sendable {
  public var parameters: [String: Tensor]
  public var state: [String: Tensor]
  /// The weights of the best epoch so far, kept when early stopping is on.
  public var bestParameters: [String: Tensor]?
  public var model: String
  /// Epochs completed; training resumes at epoch `epoch + 1`.
  public var epoch: Int
  public var globalStep: Int
  public var seed: UInt64
  public var batchSize: Int?
  public var bestLoss: Double?
  public var bestEpoch: Int?
  public var epochsSinceBest: Int
  public var history: [EpochMetrics]

  public static let statePrefix = "state."
  public static let bestPrefix = "best."
  static let format = "lamina-checkpoint-1"

  public init(
    parameters: [String: Tensor], state: [String: Tensor], bestParameters: [String: Tensor]? = nil,
    model: String, epoch: Int, globalStep: Int, seed: UInt64, batchSize: Int? = nil,
    bestLoss: Double? = nil, bestEpoch: Int? = nil, epochsSinceBest: Int = 0,
    history: [EpochMetrics] = []
  ) {
    self.parameters = parameters
    self.state = state
    self.bestParameters = bestParameters
    self.model = model
    self.epoch = epoch
    self.globalStep = globalStep
    self.seed = seed
    self.batchSize = batchSize
    self.bestLoss = bestLoss
    self.bestEpoch = bestEpoch
    self.epochsSinceBest = epochsSinceBest
    self.history = history
  }

  /// Writes the checkpoint atomically (a crash leaves the previous file intact).
  public func write(to path: String) throws {
    for name in parameters.keys
    where name.hasPrefix(Self.statePrefix) || name.hasPrefix(Self.bestPrefix) {
      throw FileError(
        path: path,
        reason:
          "parameter '\(name)' clashes with the checkpoint's '\(Self.statePrefix)' and '\(Self.bestPrefix)' prefixes; rename it"
      )
    }
    var tensors: [(name: String, tensor: Tensor)] = parameters.map { ($0.key, $0.value) }
    tensors += state.map { (Self.statePrefix + $0.key, $0.value) }
    tensors += (bestParameters ?? [:]).map { (Self.bestPrefix + $0.key, $0.value) }
    var metadata = [
      "format": Self.format, "model": model, "epoch": String(epoch),
      "global_step": String(globalStep), "seed": String(seed),
      "epochs_since_best": String(epochsSinceBest),
    ]
    if let batchSize { metadata["batch_size"] = String(batchSize) }
    // Swift prints doubles with the shortest text that reads back to the same value.
    if let bestLoss { metadata["best_validation_loss"] = "\(bestLoss)" }
    if let bestEpoch { metadata["best_epoch"] = String(bestEpoch) }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    metadata["history"] = String(decoding: try encoder.encode(history), as: UTF8.self)
    try SafeTensors.write(tensors, metadata: metadata, to: path)
  }

  /// Reads a checkpoint `write(to:)` wrote.
  public static func read(contentsOf path: String) throws -> Checkpoint {
    let (tensors, metadata) = try SafeTensors.readWithMetadata(contentsOf: path)
    guard metadata["format"] == format else {
      throw FileError(
        path: path,
        reason:
          "not a Lamina training checkpoint (no format \"\(format)\" in its metadata); a plain weights file cannot be resumed"
      )
    }
    func field<T>(_ key: String, _ parse: (String) -> T?) throws -> T {
      guard let text = metadata[key], let value = parse(text) else {
        throw FileError(path: path, reason: "checkpoint metadata '\(key)' is missing or malformed")
      }
      return value
    }
    var parameters: [String: Tensor] = [:]
    var state: [String: Tensor] = [:]
    var best: [String: Tensor] = [:]
    for (name, tensor) in tensors {
      if name.hasPrefix(statePrefix) {
        state[String(name.dropFirst(statePrefix.count))] = tensor
      } else if name.hasPrefix(bestPrefix) {
        best[String(name.dropFirst(bestPrefix.count))] = tensor
      } else {
        parameters[name] = tensor
      }
    }
    let history: [EpochMetrics]
    if let text = metadata["history"] {
      do {
        history = try JSONDecoder().decode([EpochMetrics].self, from: Data(text.utf8))
      } catch {
        throw FileError(path: path, reason: "checkpoint metadata 'history' is malformed")
      }
    } else {
      history = []
    }
    // Counts are never negative (a negative epoch would resume before the start), and a batch holds
    // at least one row.
    func count(_ text: String) -> Int? { Int(text).flatMap { $0 >= 0 ? $0 : nil } }
    func optionalField<T>(_ key: String, _ parse: (String) -> T?) throws -> T? {
      guard metadata[key] != nil else { return nil }
      return try field(key, parse)
    }
    return Checkpoint(
      parameters: parameters, state: state, bestParameters: best.isEmpty ? nil : best,
      model: metadata["model"] ?? "", epoch: try field("epoch", count),
      globalStep: try field("global_step", count), seed: try field("seed") { UInt64($0) },
      batchSize: try optionalField("batch_size") { Int($0).flatMap { $0 > 0 ? $0 : nil } },
      bestLoss: try optionalField("best_validation_loss") { Double($0) },
      bestEpoch: try optionalField("best_epoch", count),
      epochsSinceBest: try optionalField("epochs_since_best", count) ?? 0, history: history)
  }
}

/// The training loop: shuffled mini-batches, validation, early stopping, checkpoints and resume.
///
///     let model = try Model(contentsOf: "examples/digits_mlp.lam", pipeline: Pipeline.training)
///     let compiled = try model.compile(parameters: try model.initialParameters(seed: 0))
///     let trainer = try Trainer(model: model, compiled: compiled)
///     let history = try trainer.fit(train: train, validation: test, epochs: 20, batchSize: 32)
///
/// Deterministic: each epoch's shuffle depends only on `(seed, epoch)`, so a fixed seed gives the same
/// batches in every run, and a run resumed from a checkpoint continues exactly as an uninterrupted one
/// (provided the model's train step is itself deterministic, as Lamina's compiled code is).
///
/// Early stopping (`earlyStoppingPatience: P`) monitors the validation loss (the training loss when
/// there is no validation set) and stops after P epochs without improvement. Like Keras's
/// `EarlyStopping(restore_best_weights=True)`, the best epoch's parameters are put back at the end;
/// unlike Keras, also when the epochs run out before patience does. The optimizer state is not rolled
/// back.
public final class Trainer {
  public let model: any TrainableModel
  /// The one training step to run, when one was named.
  public let step: String?
  /// The steps a round runs, in the order of the model file, each `count` times in a row.
  public let schedule: [ScheduledStep]
  /// The monitored loss: the one validation reports first and early stopping and the best
  /// checkpoint follow (by default the first scheduled step's loss).
  public let lossName: String
  /// Where accuracy comes from; nil when the loss is not a classification loss.
  public let classification: ClassificationTarget?
  /// When set, a checkpoint is written here (atomically) after every epoch whose losses are finite.
  public var checkpointPath: String?
  /// The model name stored in checkpoints.
  public var modelName: String

  /// - Parameters:
  ///   - step: train this step only; nil: every step, alternating (`steps` sets the counts).
  ///   - steps: how many times in a row each step runs in a round, by step name; steps not named
  ///     run once (0 leaves a step out).
  ///   - lossName: the loss to monitor (a step's name stands for its loss); nil: the first
  ///     scheduled step's.
  public init(
    _ model: any TrainableModel, step: String? = nil, lossName: String? = nil,
    classification: ClassificationTarget? = nil, checkpointPath: String? = nil,
    steps: [String: Int] = [:]
  ) throws {
    let schedule = try Trainer.schedule(model.signature, step: step, counts: steps)
    let named = lossName.map { name in
      model.signature.steps.first {
        $0.name == name && !model.signature.losses.contains { $0.name == name }
      }?.loss ?? name
    }
    guard
      let loss = named
        ?? schedule.first.flatMap({ entry in
          model.signature.steps.first { $0.name == entry.step }?.loss
        }) ?? model.signature.losses.first?.name
    else {
      throw RunError("model \(model.signature.model) has no loss to train")
    }
    guard model.signature.losses.contains(where: { $0.name == loss }) else {
      throw RunError(
        "model \(model.signature.model) has no loss named '\(loss)' (losses: \(model.signature.losses.map(\.name).joined(separator: ", ")))"
      )
    }
    self.model = model
    self.step = step
    self.schedule = schedule
    self.lossName = loss
    self.classification = classification
    self.checkpointPath = checkpointPath
    self.modelName = model.signature.model
  }

  /// A trainer for `compiled`, taking the loss of the training step and the classification target
  /// from the model's graph.
  public convenience init(
    model: Model, compiled: any TrainableModel, step: String? = nil, checkpointPath: String? = nil,
    steps: [String: Int] = [:], monitor: String? = nil
  ) throws {
    let schedule = try Trainer.schedule(compiled.signature, step: step, counts: steps)
    let firstLoss = try model.trainStep(named: schedule.first?.step ?? step).lossName
    let monitored =
      monitor.map { name in
        model.graph.trainSteps.first { step in
          step.name == name && !model.graph.losses.contains { $0.name == name }
        }?.lossName ?? name
      } ?? firstLoss
    try self.init(
      compiled, step: step, lossName: monitored,
      classification: ClassificationTarget.find(in: model.graph, loss: monitored),
      checkpointPath: checkpointPath, steps: steps)
  }

  /// One entry of a round: a training step and how many times in a row it runs.
  public struct ScheduledStep: Sendable, Equatable {
    public var step: String
    public var count: Int
    public init(step: String, count: Int) {
      self.step = step
      self.count = count
    }
  }

  /// The round a model's steps make: `step` alone when given; else every step in file order, each
  /// once unless `counts` says otherwise. Unknown step names and negative counts are errors.
  public static func schedule(_ signature: ModelSignature, step: String?, counts: [String: Int])
    throws -> [ScheduledStep]
  {
    let names = signature.steps.map(\.name)
    let known = names.isEmpty ? "it has none" : "steps: " + names.joined(separator: ", ")
    for (name, count) in counts.sorted(by: { $0.key < $1.key }) {
      guard names.contains(name) else {
        throw RunError("the model has no training step '\(name)' (\(known))")
      }
      guard count >= 0 else {
        throw RunError("step '\(name)' must run 0 or more times a round, got \(count)")
      }
    }
    if let step {
      guard names.isEmpty || names.contains(step) else {
        throw RunError("the model has no training step '\(step)' (\(known))")
      }
      if !counts.isEmpty {
        throw RunError("a step count (steps:) and a single step (step:) cannot be given together")
      }
      return [ScheduledStep(step: step, count: 1)]
    }
    // A model without named steps (an old library) trains its first step, as before.
    guard !names.isEmpty else { return [] }
    let schedule = names.map { ScheduledStep(step: $0, count: counts[$0] ?? 1) }.filter {
      $0.count > 0
    }
    guard !schedule.isEmpty else { throw RunError("every training step runs 0 times a round") }
    return schedule
  }

  /// The inputs step `name` reads: the signature's list, or every input for a library without one.
  func inputs(ofStep name: String?) -> [String] {
    let signature = model.signature
    return signature.steps.first { $0.name == name }?.inputs ?? signature.inputs.map(\.name)
  }

  /// Symbolic dimensions no input of the step determines: they take the batch's row count.
  func freeSymbols(ofStep name: String?) -> [String] {
    let read = Set(inputs(ofStep: name))
    let mentioned = Set(
      model.signature.inputs.filter { read.contains($0.name) }.flatMap { entry in
        entry.shape.flatMap { $0.split(separator: "*").map(String.init) }
      })
    return model.signature.symbols.filter { !mentioned.contains($0) }
  }

  /// The training-step calls one epoch of `batches` batches makes: rounds run until a step that
  /// reads data finds no batch left (or, when no step reads data, `batches` rounds).
  public func callsPerEpoch(batches: Int) -> Int {
    let entries = schedule.isEmpty ? [ScheduledStep(step: "", count: 1)] : schedule
    let reads = entries.map { schedule.isEmpty || !inputs(ofStep: $0.step).isEmpty }
    var calls = 0
    var used = 0
    var rounds = 0
    while true {
      if reads.contains(true) ? used >= batches : rounds >= batches { return calls }
      for (entry, reading) in zip(entries, reads) {
        for _ in 0..<entry.count {
          if reading {
            if used >= batches { return calls }
            used += 1
          }
          calls += 1
        }
      }
      rounds += 1
    }
  }

  /// Trains for `epochs` epochs in all (counting those done before `resume`).
  ///
  /// - Parameters:
  ///   - resume: a checkpoint to continue from: its parameters, state, history and seed are used and
  ///     training starts at the epoch after it.
  ///   - earlyStoppingPatience: stop after this many epochs without a lower monitored loss.
  /// - Throws: `NonFiniteLossError` when a loss becomes NaN or infinite (the checkpoint of the last
  ///   finite epoch is left as it was); errors from the model or from callbacks.
  @discardableResult
  public func fit(
    train: Dataset, validation: Dataset? = nil, epochs: Int, batchSize: Int, seed: UInt64 = 0,
    earlyStoppingPatience: Int? = nil, resume: Checkpoint? = nil,
    callbacks: [any TrainingCallback] = []
  ) throws -> TrainingHistory {
    guard batchSize > 0 else { throw RunError("the batch size must be positive, got \(batchSize)") }
    if let earlyStoppingPatience, earlyStoppingPatience < 1 {
      throw RunError("early-stopping patience must be at least 1, got \(earlyStoppingPatience)")
    }
    var seed = seed
    var firstEpoch = 0
    var globalStep = 0
    var history: [EpochMetrics] = []
    var bestLoss: Double?
    var bestEpoch: Int?
    var bestParameters: [String: Tensor]?
    var sinceBest = 0
    if let resume {
      try model.setParameters(resume.parameters)
      if !resume.state.isEmpty { try model.setState(resume.state) }
      seed = resume.seed
      firstEpoch = resume.epoch
      globalStep = resume.globalStep
      history = resume.history
      bestLoss = resume.bestLoss
      bestEpoch = resume.bestEpoch
      bestParameters = resume.bestParameters
      sinceBest = resume.epochsSinceBest
    } else if model.signature.states.contains(where: { $0.name == RandomGenerator.seedName }) {
      // The training seed keys the model's random generator (dropout's masks); a resumed run
      // continues with the checkpoint's generator state instead.
      try model.setState([
        RandomGenerator.seedName: Tensor(shape: [], scalars: [Int64(bitPattern: seed)])
      ])
    }
    var stoppedEarly = false
    if let patience = earlyStoppingPatience, sinceBest >= patience { stoppedEarly = true }
    if let classification {
      // Checked here, where the message can name the dataset row; the loss kernel only knows the
      // position in a shuffled batch.
      try Trainer.checkLabels(train, classification, data: "training")
      if let validation { try Trainer.checkLabels(validation, classification, data: "validation") }
    }

    var epoch = firstEpoch
    while epoch < epochs && !stoppedEarly {
      let start = DispatchTime.now().uptimeNanoseconds
      let batches = train.batchIndices(
        size: batchSize, order: train.shuffledOrder(seed: seed, epoch: epoch))
      // Each call of a step that reads data takes the next batch; one that reads none (a GAN's
      // generator) takes none and gets the batch size for its free dimensions. The epoch ends
      // when a step needs a batch and none is left.
      let entries: [ScheduledStep?] = schedule.isEmpty ? [nil] : schedule
      let plans = entries.map { entry in
        let name = entry?.step ?? step
        return (
          name: name, count: entry?.count ?? 1, inputs: inputs(ofStep: name),
          free: freeSymbols(ofStep: name)
        )
      }
      let readsData = plans.contains { !$0.inputs.isEmpty }
      let totalCalls = callsPerEpoch(batches: batches.count)
      var lossSums: [String: Double] = [:]
      var weights: [String: Double] = [:]
      var seen = 0
      var used = 0
      var calls = 0
      var rounds = 0
      epochLoop: while readsData ? used < batches.count : rounds < batches.count {
        for plan in plans {
          for _ in 0..<plan.count {
            var inputs: [String: Tensor] = [:]
            var rowCount = batchSize
            var rows: ArraySlice<Int> = []
            if !plan.inputs.isEmpty {
              guard used < batches.count else { break epochLoop }
              rows = batches[used]
              used += 1
              rowCount = rows.count
              let batch = train.gather(rows)
              for name in plan.inputs { inputs[name] = batch[name] }
              seen += rowCount
            }
            let dims = Dictionary(uniqueKeysWithValues: plan.free.map { ($0, rowCount) })
            let loss = try model.trainStep(inputs, step: plan.name, dims: dims)
            calls += 1
            guard loss.isFinite else {
              throw NonFiniteLossError(
                epoch: epoch + 1, step: calls, loss: loss, history: history,
                checkpointPath: history.isEmpty ? nil : checkpointPath,
                dataProblem: rows.isEmpty
                  ? nil : Trainer.nonFiniteData(train, rows: Array(rows), data: "training"))
            }
            let key = plan.name ?? ""
            lossSums[key, default: 0] += loss * Double(rowCount)
            weights[key, default: 0] += Double(rowCount)
            globalStep += 1
            if !callbacks.isEmpty {
              let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
              var progress = StepProgress(
                epoch: epoch + 1, epochs: epochs, step: calls, steps: totalCalls, loss: loss,
                samplesPerSecond: elapsed > 0 ? Double(seen) / elapsed : 0, elapsed: elapsed,
                globalStep: globalStep)
              progress.stepName = plans.count > 1 ? plan.name : nil
              for callback in callbacks { try callback.stepEnded(progress) }
            }
          }
        }
        rounds += 1
      }
      let means = lossSums.mapValues { $0 }.merging(weights) { sum, weight in sum / weight }
      let monitoredStep =
        plans.first { plan in
          model.signature.steps.first { $0.name == plan.name }?.loss == lossName
        }?.name ?? plans.first?.name
      var metrics = EpochMetrics(
        epoch: epoch + 1, trainLoss: means[monitoredStep ?? ""] ?? .nan, steps: calls)
      if plans.count > 1 { metrics.stepLosses = means }
      if let validation {
        let result = try self.validateEveryLoss(validation, batchSize: batchSize)
        guard result.loss.isFinite else {
          throw NonFiniteLossError(
            epoch: epoch + 1, step: nil, loss: result.loss, history: history,
            checkpointPath: history.isEmpty ? nil : checkpointPath,
            dataProblem: Trainer.nonFiniteData(validation, rows: nil, data: "validation"))
        }
        metrics.validationLoss = result.loss
        metrics.validationAccuracy = result.accuracy
        if result.losses.count > 1 { metrics.validationLosses = result.losses }
      }
      metrics.seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      history.append(metrics)

      let monitored = metrics.validationLoss ?? metrics.trainLoss
      if bestLoss.map({ monitored < $0 }) ?? true {
        bestLoss = monitored
        bestEpoch = epoch + 1
        sinceBest = 0
        if earlyStoppingPatience != nil {
          // The best epoch's model state (running statistics) is put back with its parameters.
          let modelState = Set(model.signature.modelStates.map(\.name))
          bestParameters = try model.parameters().merging(
            model.state().filter { modelState.contains($0.key) }
          ) { a, _ in a }
        }
      } else {
        sinceBest += 1
      }
      if let checkpointPath {
        try Checkpoint(
          parameters: try model.parameters(), state: try model.state(),
          bestParameters: earlyStoppingPatience != nil ? bestParameters : nil, model: modelName,
          epoch: epoch + 1, globalStep: globalStep, seed: seed, batchSize: batchSize,
          bestLoss: bestLoss, bestEpoch: bestEpoch, epochsSinceBest: sinceBest, history: history
        ).write(to: checkpointPath)
      }
      for callback in callbacks { try callback.epochEnded(metrics, history: history) }
      if let patience = earlyStoppingPatience, sinceBest >= patience { stoppedEarly = true }
      epoch += 1
    }

    var restored = false
    if earlyStoppingPatience != nil, let bestParameters, let bestEpoch,
      bestEpoch != history.last?.epoch
    {
      try model.setParameters(bestParameters)
      restored = true
    }
    return TrainingHistory(
      epochs: history, bestEpoch: bestEpoch, bestLoss: bestLoss, stoppedEarly: stoppedEarly,
      restoredBestWeights: restored, globalStep: globalStep)
  }

  /// The loss over `data` (the mean over batches weighted by their size) and, for a classification
  /// loss, the accuracy: argmax of the output's last axis against the labels.
  public func validate(_ data: Dataset, batchSize: Int) throws -> (loss: Double, accuracy: Double?)
  {
    let result = try validateEveryLoss(data, batchSize: batchSize)
    return (result.loss, result.accuracy)
  }

  /// `validate`, with every loss's mean over `data` by name besides the monitored one.
  public func validateEveryLoss(_ data: Dataset, batchSize: Int) throws -> (
    loss: Double, accuracy: Double?, losses: [String: Double]
  ) {
    var sums: [String: Double] = [:]
    var lossSum = 0.0
    var correct = 0
    var seen = 0
    for rows in data.batchIndices(size: batchSize) {
      let batch = data.gather(rows)
      let (outputs, losses) = try model.evaluate(batch)
      guard let loss = losses[lossName]?.doubles().first else {
        throw RunError("evaluation returned no loss '\(lossName)'")
      }
      lossSum += loss * Double(rows.count)
      for (name, value) in losses {
        sums[name, default: 0] += value.doubles()[0] * Double(rows.count)
      }
      seen += rows.count
      if let classification {
        guard let scores = outputs[classification.output], let labels = batch[classification.labels]
        else {
          throw RunError(
            "evaluation returned no output '\(classification.output)' or no labels '\(classification.labels)'"
          )
        }
        correct += Trainer.correctPredictions(scores: scores, labels: labels)
      }
    }
    return (
      lossSum / Double(seen), classification == nil ? nil : Double(correct) / Double(seen),
      sums.mapValues { $0 / Double(seen) }
    )
  }

  /// Throws when a label of `data` is not one of the classes, naming its row in the dataset.
  static func checkLabels(_ data: Dataset, _ target: ClassificationTarget, data what: String) throws
  {
    guard let labels = data.tensors[target.labels] else { return }
    for (row, label) in labels.doubles().enumerated()
    where !(label >= 0 && label < Double(target.classes) && label.rounded() == label) {
      throw RunError(
        "row \(row) of the \(what) data's '\(target.labels)' holds \(Int(exactly: label).map(String.init) ?? String(label)), which is not a class (valid: 0 to \(target.classes - 1))"
      )
    }
  }

  /// Where `rows` of `data` (every row when nil) hold NaN or an infinity, as a message; nil when
  /// they do not.
  static func nonFiniteData(_ data: Dataset, rows: [Int]?, data what: String) -> String? {
    for name in data.tensors.keys.sorted() {
      let tensor = data.tensors[name]!
      guard tensor.dtype.isFloatingPoint, tensor.count > 0 else { continue }
      let values = tensor.doubles()
      let width = tensor.count / tensor.shape[0]
      for row in rows ?? Array(0..<data.count) {
        if let value = values[row * width..<(row + 1) * width].first(where: { !$0.isFinite }) {
          return "the \(what) data holds \(value) in input '\(name)', row \(row)"
        }
      }
    }
    return nil
  }

  /// How many rows of `scores` `[N, C]` have their largest score (the first, on ties) at the label.
  public static func correctPredictions(scores: Tensor, labels: Tensor) -> Int {
    let classes = scores.shape.last ?? 1
    let values = scores.doubles()
    let targets = labels.doubles()
    var correct = 0
    for (row, label) in targets.enumerated() {
      let base = row * classes
      guard base + classes <= values.count else { break }
      var best = 0
      for column in 1..<max(classes, 1) where values[base + column] > values[base + best] {
        best = column
      }
      if Double(best) == label { correct += 1 }
    }
    return correct
  }
}
