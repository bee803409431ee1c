import Foundation
import Lamina
import LaminaTestSupport
import Testing

@testable import LaminaCommandLine

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// The training loop: datasets, checkpoints, resume, early stopping, the loss plot and `lamina train`.
///
/// The loop runs the compiled train step (and the interpreted one, `InterpretedModel`);
/// `ScriptedTrainable`, a fake with scripted losses, drives the early-stopping and NaN tests.
@Suite("Training")
struct TrainingTests {
  static let digitsPath = RepositoryPaths.path("examples/digits_mlp.lam")

  static func digits(_ split: String, rows: Int? = nil) throws -> Dataset {
    let full = try Dataset(
      directory: RepositoryPaths.path("examples/data/digits/\(split)"), inputs: ["x", "label"])
    guard let rows else { return full }
    return try Dataset(full.gather(0..<rows))
  }

  // MARK: Dataset

  @Test("batches keep the last partial batch and gather the right rows")
  func batching() throws {
    let x = Tensor(shape: [10, 2], scalars: (0..<20).map(Float.init))
    let y = Tensor(shape: [10], scalars: (0..<10).map(Int32.init))
    let data = try Dataset(["x": x, "y": y])
    let batches = data.batches(size: 4)
    #expect(batches.map { $0["x"]!.shape } == [[4, 2], [4, 2], [2, 2]])
    #expect(batches.map { $0["y"]!.shape } == [[4], [4], [2]])
    #expect(batches[2]["y"]!.scalars(as: Int32.self) == [8, 9])
    #expect(batches[2]["x"]!.scalars(as: Float.self) == [16, 17, 18, 19])
    #expect(data.batchCount(size: 4) == 3)
    #expect(data.batchCount(size: 5) == 2)

    let gathered = data.gather([7, 2])
    #expect(gathered["x"]!.scalars(as: Float.self) == [14, 15, 4, 5])
    #expect(gathered["y"]!.scalars(as: Int32.self) == [7, 2])
  }

  @Test("shuffling is a permutation, deterministic in (seed, epoch), different across epochs")
  func shuffling() throws {
    let data = try Dataset(["x": Tensor(shape: [100], scalars: (0..<100).map(Float.init))])
    let order = data.shuffledOrder(seed: 7, epoch: 3)
    #expect(order.sorted() == Array(0..<100))
    #expect(order != Array(0..<100))
    #expect(data.shuffledOrder(seed: 7, epoch: 3) == order)
    #expect(data.shuffledOrder(seed: 7, epoch: 4) != order)
    #expect(data.shuffledOrder(seed: 8, epoch: 3) != order)
    // Batches of a shuffled epoch hold every row exactly once, the last one partial.
    let batches = data.batches(size: 32, seed: 7, epoch: 3)
    #expect(batches.map { $0["x"]!.shape[0] } == [32, 32, 32, 4])
    let rows = batches.flatMap { $0["x"]!.scalars(as: Float.self) }.map(Int.init)
    #expect(rows == order)
  }

  @Test("a dataset directory must hold exactly the model's inputs")
  func datasetDirectory() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    try NPY.write(
      Tensor(shape: [3, 64], scalars: [Float](repeating: 0, count: 192)), to: directory + "/x.npy")
    #expect {
      try Dataset(directory: directory, inputs: ["x", "label"])
    } throws: { "\($0)".contains("missing label.npy") }
    try NPY.write(Tensor(shape: [3], scalars: [0, 1, 2] as [Int32]), to: directory + "/label.npy")
    try NPY.write(Tensor(shape: [3], scalars: [0, 1, 2] as [Int32]), to: directory + "/lable.npy")
    #expect {
      try Dataset(directory: directory, inputs: ["x", "label"])
    } throws: { "\($0)".contains("lable.npy names no model input") }
    try FileManager.default.removeItem(atPath: directory + "/lable.npy")
    try NPY.write(
      Tensor(shape: [4], scalars: [0, 1, 2, 3] as [Int32]), to: directory + "/label.npy")
    #expect {
      try Dataset(directory: directory, inputs: ["x", "label"])
    } throws: { "\($0)".contains("same first dimension") }
  }

  @Test("the classification target of digits_mlp is label against probs, 10 classes")
  func classificationTarget() throws {
    let model = try Model(contentsOf: Self.digitsPath, pipeline: Pipeline.training)
    #expect(
      ClassificationTarget.find(in: model.graph, loss: "loss")
        == ClassificationTarget(labels: "label", output: "probs", classes: 10))
    let scores = Tensor(shape: [3, 3], scalars: [0, 2, 1, 5, 5, 0, 0, 0, 1] as [Float])
    let labels = Tensor(shape: [3], scalars: [1, 1, 2] as [Int32])
    #expect(Trainer.correctPredictions(scores: scores, labels: labels) == 2)
  }

  // MARK: Checkpoints

  @Test("a checkpoint round-trips parameters, optimizer state and metadata")
  func checkpointRoundTrip() throws {
    let path = try RepositoryPaths.temporaryDirectory() + "/ckpt.safetensors"
    let history = [
      EpochMetrics(
        epoch: 1, trainLoss: 0.5, validationLoss: 0.25, validationAccuracy: 0.9, seconds: 1.5,
        steps: 4),
      EpochMetrics(epoch: 2, trainLoss: 0.1 + 0.2, seconds: 1, steps: 4),
    ]
    let checkpoint = Checkpoint(
      parameters: [
        "w": Tensor(shape: [2, 2], scalars: [1, 2, 3, 4] as [Float]),
        "layer.b": Tensor(shape: [2], scalars: [5, 6] as [Float]),
      ],
      state: [
        "w.momentum": Tensor(shape: [2, 2], scalars: [0.1, 0.2, 0.3, 0.4] as [Float]),
        "step": Tensor(shape: [], scalars: [7] as [Int64]),
      ],
      bestParameters: ["w": Tensor(shape: [2, 2], scalars: [9, 9, 9, 9] as [Float])],
      model: "Tiny", epoch: 2, globalStep: 8, seed: 12_345_678_901_234, batchSize: 32,
      bestLoss: 0.1 + 0.2, bestEpoch: 2, epochsSinceBest: 1, history: history)
    try checkpoint.write(to: path)
    let read = try Checkpoint.read(contentsOf: path)
    #expect(read.parameters.keys.sorted() == ["layer.b", "w"])
    #expect(read.parameters["w"] == checkpoint.parameters["w"])
    #expect(read.parameters["layer.b"] == checkpoint.parameters["layer.b"])
    #expect(read.state.keys.sorted() == ["step", "w.momentum"])
    #expect(read.state["w.momentum"] == checkpoint.state["w.momentum"])
    #expect(read.state["step"] == checkpoint.state["step"])
    #expect(read.bestParameters?["w"] == checkpoint.bestParameters?["w"])
    #expect(read.model == "Tiny")
    #expect(read.epoch == 2)
    #expect(read.globalStep == 8)
    #expect(read.seed == 12_345_678_901_234)
    #expect(read.batchSize == 32)
    #expect(read.bestLoss == 0.1 + 0.2)  // exactly: doubles are stored in round-trip form
    #expect(read.bestEpoch == 2)
    #expect(read.epochsSinceBest == 1)
    #expect(read.history == history)
    // The state lives under `state.`, and the parameters under their own names, so the file also
    // works as a plain weights file.
    let raw = try SafeTensors.readDictionary(contentsOf: path)
    #expect(raw.keys.sorted() == ["best.w", "layer.b", "state.step", "state.w.momentum", "w"])

    // A plain weights file is not a checkpoint.
    let weights = path + ".weights.safetensors"
    try SafeTensors.write([("w", checkpoint.parameters["w"]!)], to: weights)
    #expect { try Checkpoint.read(contentsOf: weights) } throws: {
      "\($0)".contains("not a Lamina training checkpoint")
    }
  }

  // MARK: Determinism and resume

  @Test(
    "a fixed seed gives bit-identical weights, and 1 epoch + resume 1 equals 2 epochs",
    arguments: [false, true])
  func resumeIsExact(interpreted: Bool) throws {
    let model = try Model(contentsOf: Self.digitsPath, pipeline: Pipeline.training)
    // The interpreter is slow: a smaller set for it.
    let train = try Self.digits("train", rows: interpreted ? 48 : 300)
    let validation = try Self.digits("test", rows: interpreted ? 20 : 100)
    let directory = try RepositoryPaths.temporaryDirectory()
    let stepsPerEpoch = train.batchCount(size: 16)

    func run(epochs: Int, checkpoint: String, resume: Checkpoint? = nil) throws -> (
      parameters: [String: Tensor], state: [String: Tensor], history: TrainingHistory
    ) {
      let initial = try model.initialParameters(seed: 5)
      let trainable: any TrainableModel =
        interpreted
        ? try InterpretedModel(model, parameters: initial)
        : try model.compileForTraining(options: TestCache.options(), parameters: initial)
      let trainer = try Trainer(model: model, compiled: trainable, checkpointPath: checkpoint)
      let history = try trainer.fit(
        train: train, validation: validation, epochs: epochs, batchSize: 16, seed: 5,
        resume: resume)
      return (try trainable.parameters(), try trainable.state(), history)
    }
    let straight = try run(epochs: 2, checkpoint: directory + "/a.safetensors")
    let again = try run(epochs: 2, checkpoint: directory + "/b.safetensors")
    let first = try run(epochs: 1, checkpoint: directory + "/c.safetensors")
    let saved = try Checkpoint.read(contentsOf: directory + "/c.safetensors")
    #expect(saved.epoch == 1)
    #expect(saved.globalStep == stepsPerEpoch)
    #expect(!saved.state.isEmpty)
    #expect(saved.state.keys.sorted() == first.state.keys.sorted())
    let resumed = try run(epochs: 2, checkpoint: directory + "/c.safetensors", resume: saved)

    #expect(straight.history.globalStep == 2 * stepsPerEpoch)
    #expect(resumed.history.globalStep == 2 * stepsPerEpoch)
    #expect(straight.history.epochs.count == 2)
    #expect(resumed.history.epochs.count == 2)
    #expect(!straight.parameters.isEmpty)
    for name in straight.parameters.keys {
      #expect(bytes(straight.parameters[name]!) == bytes(again.parameters[name]!), "\(name)")
      #expect(bytes(straight.parameters[name]!) == bytes(resumed.parameters[name]!), "\(name)")
      #expect(bytes(straight.parameters[name]!) != bytes(first.parameters[name]!), "\(name)")
    }
    #expect(straight.state.keys.sorted() == resumed.state.keys.sorted())
    for name in straight.state.keys {
      #expect(bytes(straight.state[name]!) == bytes(resumed.state[name]!), "\(name)")
    }
    #expect(straight.history.epochs.map(\.trainLoss) == resumed.history.epochs.map(\.trainLoss))
    #expect(
      straight.history.epochs.map(\.validationLoss) == resumed.history.epochs.map(\.validationLoss))
    #expect(straight.history.epochs[1].trainLoss < straight.history.epochs[0].trainLoss)
    #expect(straight.history.epochs.allSatisfy { $0.validationAccuracy != nil })
    // The final checkpoints of both runs hold the same weights.
    let end = try Checkpoint.read(contentsOf: directory + "/a.safetensors")
    let resumedEnd = try Checkpoint.read(contentsOf: directory + "/c.safetensors")
    #expect(end.epoch == 2 && resumedEnd.epoch == 2)
    for (name, tensor) in end.parameters {
      #expect(bytes(tensor) == bytes(resumedEnd.parameters[name]!))
    }
  }

  @Test("the interpreted and compiled train steps give the same losses")
  func interpretedMatchesCompiled() throws {
    let model = try Model(contentsOf: Self.digitsPath, pipeline: Pipeline.training)
    let train = try Self.digits("train", rows: 40)
    var losses: [[Double]] = []
    for interpreted in [false, true] {
      let initial = try model.initialParameters(seed: 1)
      let trainable: any TrainableModel =
        interpreted
        ? try InterpretedModel(model, parameters: initial)
        : try model.compileForTraining(options: TestCache.options(), parameters: initial)
      let history = try Trainer(model: model, compiled: trainable).fit(
        train: train, epochs: 2, batchSize: 8, seed: 1)
      losses.append(history.epochs.map(\.trainLoss))
    }
    for (compiled, interpreted) in zip(losses[0], losses[1]) {
      #expect(abs(compiled - interpreted) < 1e-4 * max(1, abs(interpreted)), "\(losses)")
    }
  }

  // MARK: Early stopping and NaN

  @Test(
    "early stopping stops after PATIENCE epochs without improvement and restores the best weights")
  func earlyStopping() throws {
    let fake = ScriptedTrainable(validationLosses: [1.0, 0.5, 0.7, 0.6, 0.9, 0.1])
    let trainer = try Trainer(fake)
    let data = try Dataset(["x": Tensor(shape: [10], scalars: [Float](repeating: 0, count: 10))])
    var epochsSeen: [Int] = []
    var steps = 0
    let history = try trainer.fit(
      train: data, validation: data, epochs: 10, batchSize: 4, earlyStoppingPatience: 2,
      callbacks: [
        ClosureCallback(
          onStep: { progress in
            steps += 1
            #expect(progress.steps == 3)
            #expect(progress.loss.isFinite)
          },
          onEpoch: { metrics, _ in epochsSeen.append(metrics.epoch) })
      ])
    #expect(epochsSeen == [1, 2, 3, 4])
    #expect(steps == 12)
    #expect(history.stoppedEarly)
    #expect(history.bestEpoch == 2)
    #expect(history.bestLoss == 0.5)
    #expect(history.restoredBestWeights)
    // The weights count steps: epoch 2 ended after 6.
    #expect(try fake.parameters()["steps"]!.doubles() == [6])
  }

  @Test("a NaN loss stops training with the epoch and step, keeping the last good checkpoint")
  func nanLoss() throws {
    let path = try RepositoryPaths.temporaryDirectory() + "/ckpt.safetensors"
    let fake = ScriptedTrainable(validationLosses: [1, 1, 1], nanAtStep: 5)
    let trainer = try Trainer(fake, checkpointPath: path)
    let data = try Dataset(["x": Tensor(shape: [8], scalars: [Float](repeating: 0, count: 8))])
    #expect {
      try trainer.fit(train: data, validation: data, epochs: 3, batchSize: 4)
    } throws: { error in
      guard let error = error as? NonFiniteLossError else { return false }
      return error.epoch == 3 && error.step == 1 && error.history.count == 2
        && "\(error)".contains("epoch 3, step 1") && "\(error)".contains("(epoch 2)")
    }
    let checkpoint = try Checkpoint.read(contentsOf: path)
    #expect(checkpoint.epoch == 2)
    #expect(checkpoint.parameters["steps"]!.doubles() == [4])
  }

  // MARK: Plot

  @Test("the loss plot is well-formed SVG with both loss series and the accuracy")
  func plot() throws {
    let epochs = (1...12).map { epoch in
      EpochMetrics(
        epoch: epoch, trainLoss: 2 / Double(epoch), validationLoss: 2.2 / Double(epoch) + 0.05,
        validationAccuracy: 0.5 + 0.04 * Double(epoch), seconds: 0.1, steps: 10)
    }
    let path = try RepositoryPaths.temporaryDirectory() + "/loss.svg"
    try LossPlot.write(epochs, title: "Digits <MLP> & co", to: path)
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let collector = ElementCollector()
    let parser = XMLParser(data: data)
    parser.delegate = collector
    #expect(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")
    #expect(collector.elements.first == "svg")
    #expect(collector.ids.isSuperset(of: ["train-loss", "validation-loss", "validation-accuracy"]))
    #expect(collector.texts.contains("training loss"))
    #expect(collector.texts.contains("validation loss"))
    #expect(collector.texts.contains("validation accuracy"))
    #expect(collector.texts.contains("epoch"))
    #expect(collector.texts.contains { $0.contains("Digits <MLP> & co") })
    #expect(collector.elements.filter { $0 == "polyline" }.count == 3)

    // Without validation: one series, no accuracy panel, still valid with a single epoch.
    let single = LossPlot.svg([EpochMetrics(epoch: 1, trainLoss: 0.7)])
    let singleCollector = ElementCollector()
    let singleParser = XMLParser(data: Data(single.utf8))
    singleParser.delegate = singleCollector
    #expect(singleParser.parse())
    #expect(singleCollector.ids.contains("train-loss"))
    #expect(!singleCollector.ids.contains("validation-loss"))
    #expect(!single.contains("nan"))
  }

  // MARK: Command line

  func lamina(_ arguments: String...) -> (status: Int32, output: String, errors: String) {
    let console = Console.capturing()
    let status = CommandLineTool.run(arguments, console: console)
    return (status, console.standardOutput, console.standardError)
  }

  @Test(
    "lamina train prints one line per epoch, a summary, a checkpoint and a plot; --resume continues"
  )
  func trainCommand() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    for (split, rows) in [("train", 200), ("val", 50)] {
      let data = try Self.digits(split == "train" ? "train" : "test", rows: rows)
      try FileManager.default.createDirectory(
        atPath: directory + "/" + split, withIntermediateDirectories: true)
      for (name, tensor) in data.tensors {
        try NPY.write(tensor, to: "\(directory)/\(split)/\(name).npy")
      }
    }
    let result = lamina(
      "train", Self.digitsPath, "--data", directory + "/train", "--val", directory + "/val",
      "--epochs", "2", "--batch", "16", "--checkpoint", directory + "/ckpt.safetensors", "--plot",
      directory + "/loss.svg", "-o", directory + "/w.safetensors", "--cache-dir",
      TestCache.directory)
    #expect(result.status == 0, "\(result.errors)")
    let lines = result.output.split(separator: "\n").map(String.init)
    #expect(lines.first?.hasPrefix("training DigitsMLP (sgd on loss) on 200 rows") == true)
    #expect(lines.filter { $0.hasPrefix("epoch 1/2  train loss") }.count == 1)
    #expect(lines.contains { $0.hasPrefix("epoch 2/2  train loss") && $0.contains("val acc") })
    #expect(lines.contains { $0.hasPrefix("trained 2 epochs (26 steps in all)") })
    // Standard error is not a terminal here: no progress bar.
    #expect(!result.errors.contains("\r"))
    #expect(FileManager.default.fileExists(atPath: directory + "/loss.svg"))
    #expect(try Checkpoint.read(contentsOf: directory + "/ckpt.safetensors").epoch == 2)
    #expect(try SafeTensors.readDictionary(contentsOf: directory + "/w.safetensors").count == 4)

    // Resuming with more epochs continues from the checkpoint and keeps saving to it.
    let more = lamina(
      "train", Self.digitsPath, "--data", directory + "/train", "--epochs", "3", "--batch", "16",
      "--resume", directory + "/ckpt.safetensors", "--quiet", "--cache-dir", TestCache.directory)
    #expect(more.status == 0, "\(more.errors)")
    #expect(more.output.hasPrefix("trained 1 epoch (39 steps in all)"))
    #expect(try Checkpoint.read(contentsOf: directory + "/ckpt.safetensors").epoch == 3)

    // The interpreter trains the same way.
    let interpreted = lamina(
      "train", Self.digitsPath, "--data", directory + "/val", "--epochs", "1", "--batch", "25",
      "--interpret")
    #expect(interpreted.status == 0, "\(interpreted.errors)")
    #expect(interpreted.output.contains("; interpreted"))
    #expect(interpreted.output.contains("trained 1 epoch (2 steps in all)"))
  }

  @Test("lamina train exits 1 naming the epoch and step when the loss becomes NaN")
  func trainCommandNaN() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let source = try String(contentsOfFile: Self.digitsPath, encoding: .utf8)
      .replacingOccurrences(of: "sgd(lr: 0.05, momentum: 0.9)", with: "sgd(lr: 1e30)")
    #expect(source.contains("lr: 1e30"))
    try source.write(toFile: directory + "/diverges.lam", atomically: true, encoding: .utf8)
    let result = lamina(
      "train", directory + "/diverges.lam", "--data",
      RepositoryPaths.path("examples/data/digits/test"), "--epochs", "3", "--batch", "30",
      "--checkpoint", directory + "/ckpt.safetensors", "--cache-dir", TestCache.directory)
    #expect(result.status == 1)
    #expect(result.errors.contains("lamina train: error: the training loss is"))
    #expect(result.errors.contains("at epoch 1, step "))
    #expect(!FileManager.default.fileExists(atPath: directory + "/ckpt.safetensors"))
  }

  @Test("on a terminal the progress bar is redrawn with \\r and erased before each epoch line")
  func progressBar() throws {
    let console = Console.capturing()
    let printer = ProgressPrinter(
      console: console, live: true, quiet: false, epochs: 2, totalSteps: 4, hasAccuracy: true)
    for step in 1...2 {
      try printer.stepEnded(
        StepProgress(
          epoch: 1, epochs: 2, step: step, steps: 2, loss: 0.5, samplesPerSecond: 1000,
          elapsed: 0.1, globalStep: step))
    }
    #expect(console.standardError.hasPrefix("\r\u{1B}[K"))
    #expect(console.standardError.contains("epoch 1/2 [========================] 2/2  loss 0.5000"))
    #expect(console.standardError.contains("samples/s  ETA"))
    #expect(!console.standardError.contains("\n"))
    try printer.epochEnded(
      EpochMetrics(
        epoch: 1, trainLoss: 0.5, validationLoss: 0.25, validationAccuracy: 0.9, seconds: 1.5),
      history: [])
    #expect(console.standardError.hasSuffix("\r\u{1B}[K"))
    #expect(
      console.standardOutput
        == "epoch 1/2  train loss 0.5000  val loss 0.2500  val acc 90.00%  1.50 s\n")
  }

  @Test("lamina train reports usage mistakes and data errors")
  func trainCommandErrors() throws {
    let data = RepositoryPaths.path("examples/data/digits/train")
    #expect(lamina("train", Self.digitsPath, "--epochs", "1", "--batch", "8").status == 2)
    #expect(
      lamina("train", Self.digitsPath, "--data", data, "--batch", "8").errors.contains("--epochs"))
    #expect(
      lamina("train", Self.digitsPath, "--data", data, "--epochs", "0", "--batch", "8").errors
        .contains("positive integer"))
    let missing = lamina(
      "train", Self.digitsPath, "--data", RepositoryPaths.path("examples"), "--epochs", "1",
      "--batch", "8")
    #expect(missing.status == 1)
    #expect(missing.errors.contains("missing x.npy, label.npy"))
  }

  // MARK: Compiled

  @Test("digits_mlp trained 20 epochs at batch 32 reaches 96.5% test accuracy")
  func digitsAccuracy() throws {
    let model = try Model(contentsOf: Self.digitsPath, pipeline: Pipeline.training)
    let compiled = try model.compileForTraining(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 0))
    let trainer = try Trainer(model: model, compiled: compiled)
    let test = try Self.digits("test")
    let history = try trainer.fit(
      train: try Self.digits("train"), validation: test, epochs: 20, batchSize: 32, seed: 0)
    let accuracy = try #require(history.epochs.last?.validationAccuracy)
    #expect(accuracy >= 0.965, "test accuracy \(accuracy)")
    #expect(try trainer.validate(test, batchSize: 100).accuracy == accuracy)
  }
}

private func bytes(_ tensor: Tensor) -> [UInt8] { tensor.withUnsafeBytes { Array($0) } }

/// Collects element names, `id` attributes and text of an XML document.
private final class ElementCollector: NSObject, XMLParserDelegate {
  var elements: [String] = []
  var ids: Set<String> = []
  var texts: [String] = []
  private var text = ""

  func parser(
    _ parser: XMLParser, didStartElement name: String, namespaceURI: String?,
    qualifiedName: String?, attributes: [String: String] = [:]
  ) {
    elements.append(name)
    if let id = attributes["id"] { ids.insert(id) }
    text = ""
  }
  func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }
  func parser(
    _ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?
  ) {
    if name == "text" { texts.append(text) }
    text = ""
  }
}

/// A model whose losses follow a script: each epoch's validation loss is given, and one parameter
/// counts the steps taken, so tests can see which epoch's weights are in place.
final class ScriptedTrainable: TrainableModel {
  let signature = ModelSignature(
    abi: 1, model: "Scripted", symbols: ["n"],
    inputs: [.init(name: "x", dtype: "f32", shape: ["n"])],
    params: [.init(name: "steps", dtype: "f64", shape: [])], outputs: [],
    losses: [.init(name: "loss", dtype: "f32", shape: [])])
  let validationLosses: [Double]
  let nanAtStep: Int?
  private var steps = 0
  private var evaluations = 0
  private var epochOfEvaluation = 0
  private var lastStepAtEvaluation = -1

  init(validationLosses: [Double], nanAtStep: Int? = nil) {
    self.validationLosses = validationLosses
    self.nanAtStep = nanAtStep
  }

  func trainStep(_ inputs: [String: Tensor], step: String?) throws -> Double {
    steps += 1
    if steps == nanAtStep { return .nan }
    return 1 / Double(steps)
  }

  func evaluate(_ inputs: [String: Tensor]) throws -> (
    outputs: [String: Tensor], losses: [String: Tensor]
  ) {
    // Every evaluation after the same training step belongs to the same epoch's validation.
    if steps != lastStepAtEvaluation {
      lastStepAtEvaluation = steps
      epochOfEvaluation += 1
    }
    let loss = validationLosses[min(epochOfEvaluation - 1, validationLosses.count - 1)]
    return ([:], ["loss": Tensor(scalar: loss, dtype: .f64)])
  }

  func parameters() throws -> [String: Tensor] {
    ["steps": Tensor(scalar: Double(steps), dtype: .f64)]
  }
  func setParameters(_ tensors: [String: Tensor]) throws {
    steps = Int(tensors["steps"]!.doubles()[0])
  }
  func state() throws -> [String: Tensor] { [:] }
  func setState(_ tensors: [String: Tensor]) throws {}
}
