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
/// Until the compiled train step lands, the loop is driven by `InterpretedTrainable` below, a test
/// stand-in only: the digits MLP's gradients written out by hand (main's ops have no gradient rules
/// yet), SGD with momentum in Swift, and the reference interpreter for evaluation. The digits accuracy
/// test needs the real compiled step and is disabled without it.
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
    let model = try Model(contentsOf: Self.digitsPath)
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

  @Test("a fixed seed gives bit-identical weights, and 1 epoch + resume 1 equals 2 epochs")
  func resumeIsExact() throws {
    // The inference graph: the stand-in's gradients are written by hand.
    let model = try Model(contentsOf: Self.digitsPath)
    let train = try Self.digits("train", rows: 90)
    let validation = try Self.digits("test", rows: 40)
    let directory = try RepositoryPaths.temporaryDirectory()

    func run(epochs: Int, checkpoint: String, resume: Checkpoint? = nil) throws -> (
      parameters: [String: Tensor], state: [String: Tensor], history: TrainingHistory
    ) {
      let trainable = try InterpretedTrainable(
        model, parameters: model.initialParameters(seed: 5),
        gradients: InterpretedTrainable.digitsGradients)
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
    #expect(saved.globalStep == 6)
    #expect(saved.state.keys.contains("step"))
    let resumed = try run(epochs: 2, checkpoint: directory + "/c.safetensors", resume: saved)

    #expect(straight.history.globalStep == 12)
    #expect(resumed.history.globalStep == 12)
    #expect(straight.history.epochs.count == 2)
    #expect(resumed.history.epochs.count == 2)
    for name in straight.parameters.keys {
      #expect(bytes(straight.parameters[name]!) == bytes(again.parameters[name]!), "\(name)")
      #expect(bytes(straight.parameters[name]!) == bytes(resumed.parameters[name]!), "\(name)")
      #expect(bytes(straight.parameters[name]!) != bytes(first.parameters[name]!), "\(name)")
    }
    for name in straight.state.keys {
      #expect(bytes(straight.state[name]!) == bytes(resumed.state[name]!), "\(name)")
    }
    #expect(straight.history.epochs.map(\.trainLoss) == resumed.history.epochs.map(\.trainLoss))
    #expect(
      straight.history.epochs.map(\.validationLoss) == resumed.history.epochs.map(\.validationLoss))
    #expect(straight.history.epochs[1].trainLoss < straight.history.epochs[0].trainLoss)
    #expect(straight.history.epochs.allSatisfy { $0.validationAccuracy != nil })
    // The final checkpoints of both runs hold the same weights and state.
    let end = try Checkpoint.read(contentsOf: directory + "/a.safetensors")
    let resumedEnd = try Checkpoint.read(contentsOf: directory + "/c.safetensors")
    #expect(end.epoch == 2 && resumedEnd.epoch == 2)
    for (name, tensor) in end.parameters {
      #expect(bytes(tensor) == bytes(resumedEnd.parameters[name]!))
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

  @Test("lamina train prints one line per epoch, a summary, a checkpoint and a plot")
  func trainCommand() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    for (split, rows) in [("train", 64), ("val", 32)] {
      let data = try Self.digits(split == "train" ? "train" : "test", rows: rows)
      try FileManager.default.createDirectory(
        atPath: directory + "/" + split, withIntermediateDirectories: true)
      for (name, tensor) in data.tensors {
        try NPY.write(tensor, to: "\(directory)/\(split)/\(name).npy")
      }
    }
    let console = Console.capturing()
    let arguments = [
      Self.digitsPath, "--data", directory + "/train", "--val", directory + "/val", "--epochs", "2",
      "--batch", "16", "--checkpoint", directory + "/ckpt.safetensors", "--plot",
      directory + "/loss.svg", "-o", directory + "/w.safetensors",
    ]
    let status = try TrainCommand.train(
      Options(arguments, spec: TrainCommand.options), console: console, pipeline: Pipeline.inference
    ) { model, _, parameters in
      try InterpretedTrainable(
        model, parameters: parameters, gradients: InterpretedTrainable.digitsGradients)
    }
    #expect(status == 0, "\(console.standardError)")
    let lines = console.standardOutput.split(separator: "\n").map(String.init)
    #expect(lines.first?.hasPrefix("training DigitsMLP (sgd, loss loss) on 64 rows") == true)
    #expect(lines.filter { $0.hasPrefix("epoch 1/2  train loss") }.count == 1)
    #expect(lines.contains { $0.hasPrefix("epoch 2/2  train loss") && $0.contains("val acc") })
    #expect(lines.contains { $0.hasPrefix("trained 2 epochs (8 steps in all)") })
    #expect(!console.standardError.contains("\r"))
    #expect(FileManager.default.fileExists(atPath: directory + "/loss.svg"))
    #expect(try Checkpoint.read(contentsOf: directory + "/ckpt.safetensors").epoch == 2)
    #expect(try SafeTensors.readDictionary(contentsOf: directory + "/w.safetensors").count == 4)

    // Resuming a finished run with more epochs continues from the checkpoint.
    let more = Console.capturing()
    let resumed = try TrainCommand.train(
      Options(
        [
          Self.digitsPath, "--data", directory + "/train", "--epochs", "3", "--batch", "16",
          "--resume", directory + "/ckpt.safetensors", "--quiet",
        ], spec: TrainCommand.options), console: more, pipeline: Pipeline.inference
    ) { model, _, parameters in
      try InterpretedTrainable(
        model, parameters: parameters, gradients: InterpretedTrainable.digitsGradients)
    }
    #expect(resumed == 0, "\(more.standardError)")
    #expect(more.standardOutput.hasPrefix("trained 1 epoch (12 steps in all)"))
    #expect(try Checkpoint.read(contentsOf: directory + "/ckpt.safetensors").epoch == 3)
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
    func lamina(_ arguments: String...) -> (Int32, String) {
      let console = Console.capturing()
      let status = CommandLineTool.run(arguments, console: console)
      return (status, console.standardError)
    }
    let data = RepositoryPaths.path("examples/data/digits/train")
    #expect(lamina("train", Self.digitsPath, "--epochs", "1", "--batch", "8").0 == 2)
    #expect(lamina("train", Self.digitsPath, "--data", data, "--batch", "8").1.contains("--epochs"))
    #expect(
      lamina("train", Self.digitsPath, "--data", data, "--epochs", "0", "--batch", "8").1.contains(
        "positive integer"))
    // A data directory without the inputs' files (the stand-in's pipeline: no backward graph needed).
    let options = try Options(
      [
        Self.digitsPath, "--data", RepositoryPaths.path("examples"), "--epochs", "1", "--batch",
        "8",
      ],
      spec: TrainCommand.options)
    #expect {
      try TrainCommand.train(options, console: .capturing(), pipeline: Pipeline.inference) {
        model, _, parameters in
        try InterpretedTrainable(model, parameters: parameters)
      }
    } throws: {
      "\($0)".contains("missing label.npy, x.npy") || "\($0)".contains("missing x.npy, label.npy")
    }
  }

  @Test(
    "the stand-in reaches PyTorch's accuracy on digits through the Trainer (slow: LAMINA_SLOW_TESTS=1)",
    .enabled(if: ProcessInfo.processInfo.environment["LAMINA_SLOW_TESTS"] != nil))
  func standInAccuracy() throws {
    let model = try Model(contentsOf: Self.digitsPath)
    let trainable = try InterpretedTrainable(
      model, parameters: model.initialParameters(seed: 0),
      gradients: InterpretedTrainable.digitsGradients)
    let trainer = try Trainer(model: model, compiled: trainable)
    let test = try Self.digits("test")
    let history = try trainer.fit(
      train: try Self.digits("train"), validation: test, epochs: 20, batchSize: 32, seed: 0)
    if let plot = ProcessInfo.processInfo.environment["LAMINA_PLOT"] {
      try LossPlot.write(history.epochs, title: "DigitsMLP (stand-in)", to: plot)
    }
    #expect(history.epochs.last!.validationAccuracy! >= 0.965, "\(history.epochs)")
  }

  // MARK: Compiled

  @Test("digits_mlp trained 20 epochs at batch 32 reaches 96.5% test accuracy")
  func digitsAccuracy() throws {
    let model = try Model(contentsOf: Self.digitsPath, pipeline: Pipeline.training)
    let compiled = try model.compileForTraining(parameters: try model.initialParameters(seed: 0))
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

/// A test stand-in for the compiled train step: gradients from `gradients` (the interpreter's by
/// default; the digits MLP's written out by hand while main's ops have no gradient rules yet) and
/// PyTorch's SGD update (`buf = momentum * buf + g; p -= lr * buf`, with `buf = g` on the first step), in
/// f64 and rounded to the parameters' dtype. Evaluation runs the reference interpreter.
final class InterpretedTrainable: TrainableModel {
  typealias Gradients =
    @Sendable (Model, [String: Tensor], [String: Tensor], String?) throws -> [String: Tensor]
  let model: Model
  let signature: ModelSignature
  let gradients: Gradients
  private var params: [String: Tensor]
  private var momentum: [String: Tensor] = [:]
  private var steps: Int64 = 0

  init(_ model: Model, parameters: [String: Tensor], gradients: Gradients? = nil) throws {
    self.model = model
    self.params = parameters
    self.gradients =
      gradients ?? { model, inputs, parameters, step in
        try model.interpretGradients(inputs: inputs, parameters: parameters, step: step)
      }
    let graph = model.graph
    func entry(_ value: ValueID) -> ModelSignature.Entry {
      let type = graph.type(of: value)
      return ModelSignature.Entry(
        name: graph[value].name, dtype: type.dtype.rawValue,
        shape: type.shape.map { "\($0)" })
    }
    signature = ModelSignature(
      abi: 1, model: graph.name, symbols: [],
      inputs: graph.inputs.map { entry($0.value) }, params: graph.params.map { entry($0.value) },
      outputs: graph.outputs.map { entry($0.value) }, losses: graph.losses.map { entry($0.value) })
  }

  /// The digits MLP's loss and gradients, by hand: relu(x @ w1 + b1) @ w2 + b2, mean cross-entropy.
  static let digitsGradients: Gradients = { _, inputs, parameters, _ in
    let x = inputs["x"]!.doubles()
    let labels = inputs["label"]!.doubles().map { Int($0) }
    let (w1, b1) = (parameters["w1"]!.doubles(), parameters["b1"]!.doubles())
    let (w2, b2) = (parameters["w2"]!.doubles(), parameters["b2"]!.doubles())
    let (n, d, hidden, classes) = (labels.count, 64, 128, 10)
    var z1 = [Double](repeating: 0, count: n * hidden)
    for i in 0..<n {
      for j in 0..<hidden {
        var sum = b1[j]
        for k in 0..<d { sum += x[i * d + k] * w1[k * hidden + j] }
        z1[i * hidden + j] = sum
      }
    }
    let h = z1.map { max($0, 0) }
    var dlogits = [Double](repeating: 0, count: n * classes)
    var loss = 0.0
    for i in 0..<n {
      var logits = b2
      for c in 0..<classes {
        for j in 0..<hidden { logits[c] += h[i * hidden + j] * w2[j * classes + c] }
      }
      let top = logits.max()!
      let exps = logits.map { exp($0 - top) }
      let total = exps.reduce(0, +)
      loss -= log(exps[labels[i]] / total)
      for c in 0..<classes {
        dlogits[i * classes + c] = (exps[c] / total - (c == labels[i] ? 1 : 0)) / Double(n)
      }
    }
    var dw2 = [Double](repeating: 0, count: hidden * classes)
    var db2 = [Double](repeating: 0, count: classes)
    var dz1 = [Double](repeating: 0, count: n * hidden)
    for i in 0..<n {
      for c in 0..<classes {
        let g = dlogits[i * classes + c]
        db2[c] += g
        for j in 0..<hidden {
          dw2[j * classes + c] += h[i * hidden + j] * g
          dz1[i * hidden + j] += g * w2[j * classes + c]
        }
      }
    }
    for index in dz1.indices where z1[index] <= 0 { dz1[index] = 0 }
    var dw1 = [Double](repeating: 0, count: d * hidden)
    var db1 = [Double](repeating: 0, count: hidden)
    for i in 0..<n {
      for j in 0..<hidden {
        let g = dz1[i * hidden + j]
        if g == 0 { continue }
        db1[j] += g
        for k in 0..<d { dw1[k * hidden + j] += x[i * d + k] * g }
      }
    }
    return [
      "loss": Tensor(scalar: loss / Double(n), dtype: .f64),
      "w1": Tensor(dtype: .f64, shape: [d, hidden], doubles: dw1),
      "b1": Tensor(dtype: .f64, shape: [hidden], doubles: db1),
      "w2": Tensor(dtype: .f64, shape: [hidden, classes], doubles: dw2),
      "b2": Tensor(dtype: .f64, shape: [classes], doubles: db2),
    ]
  }

  func trainStep(_ inputs: [String: Tensor], step: String?) throws -> Double {
    let trainStep = try model.trainStep(named: step)
    let results = try gradients(model, inputs, params, step)
    let lr = trainStep.attributes["lr"]?.doubleValue ?? 0.01
    let beta = trainStep.attributes["momentum"]?.doubleValue ?? 0
    for (name, gradient) in results where name != "loss" {
      let parameter = params[name]!
      var velocity = gradient.doubles()
      if beta != 0, let previous = momentum[name]?.doubles() {
        for index in velocity.indices { velocity[index] += beta * previous[index] }
      }
      if beta != 0 {
        momentum[name] = Tensor(dtype: parameter.dtype, shape: parameter.shape, doubles: velocity)
        velocity = momentum[name]!.doubles()
      }
      let values = parameter.doubles()
      params[name] = Tensor(
        dtype: parameter.dtype, shape: parameter.shape,
        doubles: zip(values, velocity).map { $0 - lr * $1 })
    }
    steps += 1
    return results["loss"]!.doubles()[0]
  }

  func evaluate(_ inputs: [String: Tensor]) throws -> (
    outputs: [String: Tensor], losses: [String: Tensor]
  ) {
    let outputNames = signature.outputs.map(\.name)
    let lossNames = signature.losses.map(\.name)
    let values = try model.interpret(
      inputs: inputs, parameters: params, outputs: outputNames + lossNames)
    return (
      values.filter { outputNames.contains($0.key) }, values.filter { lossNames.contains($0.key) }
    )
  }

  func parameters() throws -> [String: Tensor] { params }
  func setParameters(_ tensors: [String: Tensor]) throws {
    for name in params.keys {
      guard let tensor = tensors[name] else { throw RunError("no value for parameter '\(name)'") }
      params[name] = tensor
    }
  }
  func state() throws -> [String: Tensor] {
    var state = momentum.reduce(into: [:]) { $0[$1.key + ".momentum"] = $1.value }
    state["step"] = Tensor(shape: [], scalars: [steps])
    return state
  }
  func setState(_ tensors: [String: Tensor]) throws {
    momentum = [:]
    for (name, tensor) in tensors where name.hasSuffix(".momentum") {
      momentum[String(name.dropLast(".momentum".count))] = tensor
    }
    steps = tensors["step"]?.scalars(as: Int64.self).first ?? 0
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
