import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// Issue 16's GAN half: `random_normal` and `random_uniform`, alternating training steps,
/// `run --seed/--dim`, and PNG image grids.
@Suite("GANs", .serialized)
struct GANTests {
  static let noiseSource = """
    model Noise {
      input x: f32[batch, 3]
      output normal = random_normal(shape: [batch, 4001], mean: 0.5, std: 2)
      output standard = random_normal(shape: [batch, 4001], dtype: f64)
      output uniform = random_uniform(shape: [batch, 4001], lo: -1, hi: 3)
      output wide = random_uniform(shape: [batch, 4001], dtype: f64)
      param w: f32[3] = ones()
      output y = x * w
      loss = mean(y * y)
      train with sgd(lr: 0.1)
    }
    """

  func noiseModel(_ pipeline: [any GraphPass] = Pipeline.inference) throws -> Model {
    try Model(source: Self.noiseSource, pipeline: pipeline)
  }

  func generatorState(seed: Int64, step: Int64) -> [String: Tensor] {
    [
      RandomGenerator.seedName: Tensor(shape: [], scalars: [seed]),
      RandomGenerator.stepName: Tensor(shape: [], scalars: [step]),
    ]
  }

  // MARK: Random ops

  @Test(
    "random_normal and random_uniform are bit-identical compiled and interpreted",
    arguments: TestData.compilers)
  func compiledEqualsInterpreter(_ compiler: String) throws {
    let model = try noiseModel()
    let weights = ["w": Tensor(shape: [3], scalars: [Float](repeating: 1, count: 3))]
    for (batch, seed, step) in [(1, Int64(0), Int64(0)), (3, 42, 7), (2, -5, 1 << 40)] {
      let parameters = generatorState(seed: seed, step: step).merging(weights) { a, _ in a }
      let compiled = try model.compile(
        options: TestCache.options(compiler: compiler), parameters: parameters)
      let x = Tensor(shape: [batch, 3], scalars: [Float](repeating: 1, count: batch * 3))
      let compiledOutputs = try compiled.forward(["x": x])
      let interpreted = try model.interpret(
        inputs: ["x": x], parameters: parameters,
        outputs: ["normal", "standard", "uniform", "wide"])
      for name in ["normal", "standard", "uniform", "wide"] {
        #expect(compiledOutputs[name] == interpreted[name], "\(name) at batch \(batch)")
      }
    }
  }

  @Test("samples have the distribution's moments, in range, and differ by seed, step and node")
  func statistics() throws {
    let model = try noiseModel()
    let x = Tensor(shape: [10, 3], scalars: [Float](repeating: 0, count: 30))
    func sample(seed: Int64, step: Int64) throws -> [String: [Double]] {
      try model.interpret(
        inputs: ["x": x],
        parameters: generatorState(seed: seed, step: step).merging([
          "w": Tensor(shape: [3], scalars: [Float](repeating: 1, count: 3))
        ]) { a, _ in a }, outputs: ["normal", "standard", "uniform", "wide"]
      ).mapValues { $0.doubles() }
    }
    let first = try sample(seed: 3, step: 0)
    let count = Double(first["normal"]!.count)  // 40,010
    func moments(_ values: [Double]) -> (mean: Double, std: Double) {
      let mean = values.reduce(0, +) / Double(values.count)
      let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
      return (mean, variance.squareRoot())
    }
    // Five standard errors: a correct generator fails one of these bounds about once in 10^6.
    let normal = moments(first["normal"]!)
    #expect(abs(normal.mean - 0.5) < 5 * 2 / count.squareRoot())
    #expect(abs(normal.std - 2) < 5 * 2 / (2 * count).squareRoot())
    let standard = moments(first["standard"]!)
    #expect(abs(standard.mean) < 5 / count.squareRoot())
    #expect(abs(standard.std - 1) < 5 / (2 * count).squareRoot())
    // The tails of a normal: about 4.55% beyond two standard deviations.
    let beyond = Double(first["standard"]!.filter { abs($0) > 2 }.count) / count
    #expect(abs(beyond - 0.0455) < 5 * (0.0455 * 0.9545 / count).squareRoot())
    let uniform = first["uniform"]!
    #expect(uniform.allSatisfy { $0 >= -1 && $0 <= 3 })
    #expect(abs(moments(uniform).mean - 1) < 5 * (16.0 / 12 / count).squareRoot())
    let wide = first["wide"]!
    #expect(wide.allSatisfy { $0 >= 0 && $0 < 1 })
    #expect(abs(moments(wide).std - (1.0 / 12).squareRoot()) < 0.01)

    // A fixed seed and step reproduce; another step or seed draws other numbers; two nodes with
    // the same distribution draw different ones (their streams differ).
    #expect(try sample(seed: 3, step: 0) == first)
    let nextStep = try sample(seed: 3, step: 1)
    let otherSeed = try sample(seed: 4, step: 0)
    for name in ["normal", "uniform"] {
      let matchingStep = zip(first[name]!, nextStep[name]!).filter { $0 == $1 }.count
      let matchingSeed = zip(first[name]!, otherSeed[name]!).filter { $0 == $1 }.count
      #expect(matchingStep < 10, "\(name): \(matchingStep) equal values after a step")
      #expect(matchingSeed < 10, "\(name): \(matchingSeed) equal values under another seed")
    }
    let standardized = first["normal"]!.map { ($0 - 0.5) / 2 }
    let sameAsOtherNode = zip(standardized, first["standard"]!).filter { abs($0 - $1) < 1e-6 }
    #expect(sameAsOtherNode.count < 10)
  }

  @Test("a training step advances the generator: each step draws new noise")
  func trainingAdvancesTheStep() throws {
    let model = try noiseModel(Pipeline.training)
    let compiled = try model.compileForTraining(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 0))
    let x = Tensor(shape: [2, 3], scalars: [Float](repeating: 1, count: 6))
    let before = try (compiled as! CompiledModel).forward(["x": x])["normal"]!
    _ = try compiled.trainStep(["x": x], step: nil)
    let state = try compiled.state()
    #expect(state[RandomGenerator.stepName] == Tensor(shape: [], scalars: [Int64(1)]))
    let after = try (compiled as! CompiledModel).forward(["x": x])["normal"]!
    #expect(before != after)
  }

  @Test("two identical random calls stay two draws through the whole pipeline, compiled")
  func identicalCallsAreNotMerged() throws {
    let model = try Model(
      source: """
        model Twice {
          output difference = random_normal(shape: [batch, 64]) - random_normal(shape: [batch, 64])
        }
        """)
    let compiled = try model.compile(options: TestCache.options(), parameters: [:])
    let difference = try compiled.forward([:], dims: ["batch": 2])["difference"]!.doubles()
    #expect(difference.filter { $0 == 0 }.count < 3)
    #expect(model.graph.nodes.filter { $0.op == "random_normal" }.count == 2)
  }

  @Test("bad random calls are located errors")
  func badCalls() throws {
    for (call, message) in [
      ("random_normal(shape: [batch, 2], std: -1)", "std must be at least 0"),
      ("random_uniform(shape: [batch, 2], lo: 2, hi: 1)", "lo must be at most hi"),
      ("random_normal(shape: [batch, 0])", "must be positive"),
      ("random_normal(shape: [batch, 2], dtype: i32)", "dtype must be f32 or f64"),
      ("random_normal(x, shape: [batch, 2])", "random_normal"),
    ] {
      let source = "model M {\n  input x: f32[batch, 2]\n  output y = x + \(call)\n}\n"
      #expect(throws: CompileError.self, "\(call)") { try Model(source: source) }
      do {
        _ = try Model(source: source)
      } catch let error as CompileError {
        #expect(error.description.contains(message), "\(call): \(error)")
      }
    }
  }

  // MARK: Alternating training steps

  /// A two-step model that records the calls: `discriminator` reads `real`, `generator` reads
  /// nothing and has the symbolic batch free.
  final class RecordingGAN: TrainableModel {
    let signature: ModelSignature
    var calls: [(step: String?, inputs: [String: Tensor], dims: [String: Int])] = []
    private var counter = 0.0

    init(generatorFirst: Bool = false) {
      var steps = [
        ModelSignature.Step(name: "discriminator", loss: "d_loss", inputs: ["real"]),
        ModelSignature.Step(name: "generator", loss: "g_loss", inputs: []),
      ]
      if generatorFirst { steps.reverse() }
      signature = ModelSignature(
        abi: 1, model: "Recording", symbols: ["batch"],
        inputs: [.init(name: "real", dtype: "f32", shape: ["batch", "2"])],
        params: [.init(name: "calls", dtype: "f64", shape: [])], outputs: [],
        losses: [
          .init(name: "d_loss", dtype: "f32", shape: []),
          .init(name: "g_loss", dtype: "f32", shape: []),
        ], steps: steps)
    }

    func trainStep(_ inputs: [String: Tensor], step: String?) throws -> Double {
      try trainStep(inputs, step: step, dims: [:])
    }

    func trainStep(_ inputs: [String: Tensor], step: String?, dims: [String: Int]) throws
      -> Double
    {
      calls.append((step, inputs, dims))
      counter += 1
      return step == "generator" ? 2 : 1
    }

    func evaluate(_ inputs: [String: Tensor]) throws -> (
      outputs: [String: Tensor], losses: [String: Tensor]
    ) {
      (
        [:],
        ["d_loss": Tensor(scalar: 0.5, dtype: .f32), "g_loss": Tensor(scalar: 0.25, dtype: .f32)]
      )
    }
    func parameters() throws -> [String: Tensor] {
      ["calls": Tensor(scalar: counter, dtype: .f64)]
    }
    func setParameters(_ tensors: [String: Tensor]) throws {
      counter = tensors["calls"]!.doubles()[0]
    }
    func state() throws -> [String: Tensor] { [:] }
    func setState(_ tensors: [String: Tensor]) throws {}
  }

  /// The first `count` rows of a f32 tensor.
  func firstRows(_ tensor: Tensor, _ start: Int, _ count: Int) -> Tensor {
    let width = tensor.count / tensor.shape[0]
    let values = tensor.doubles()[(start * width)..<((start + count) * width)].map { Float($0) }
    return Tensor(shape: [count] + tensor.shape.dropFirst(), scalars: values)
  }

  func ringData(rows: Int) throws -> Dataset {
    let values = (0..<rows * 2).map { Float($0) }
    return try Dataset(["real": Tensor(shape: [rows, 2], scalars: values)])
  }

  @Test("every step trains, once a round in file order; a data step takes a batch, the other none")
  func defaultAlternation() throws {
    let model = RecordingGAN()
    let trainer = try Trainer(model)
    #expect(trainer.schedule.map(\.step) == ["discriminator", "generator"])
    #expect(trainer.lossName == "d_loss")
    let history = try trainer.fit(train: try ringData(rows: 10), epochs: 2, batchSize: 4)
    // 10 rows in batches of 4: 3 batches, so 3 rounds of two calls an epoch.
    let steps = model.calls.map { $0.step ?? "" }
    #expect(steps == Array(repeating: ["discriminator", "generator"], count: 6).flatMap { $0 })
    #expect(history.globalStep == 12)
    #expect(trainer.callsPerEpoch(batches: 3) == 6)
    let epochRows = model.calls.prefix(6).compactMap { $0.inputs["real"]?.shape[0] }
    #expect(epochRows == [4, 4, 2])
    // Every row of the epoch, once.
    let seen = model.calls.prefix(6).compactMap { $0.inputs["real"]?.doubles() }.flatMap { $0 }
    #expect(Set(seen) == Set((0..<20).map(Double.init)))
    for call in model.calls {
      if call.step == "generator" {
        #expect(call.inputs.isEmpty, "the generator step is given no input")
        #expect(call.dims == ["batch": 4], "its free batch dimension is the batch size")
      } else {
        #expect(Array(call.inputs.keys) == ["real"])
        #expect(call.dims.isEmpty, "the discriminator's batch comes from its input")
      }
    }
    let last = history.epochs.last!
    #expect(last.stepLosses == ["discriminator": 1, "generator": 2])
    #expect(last.trainLoss == 1)
  }

  @Test("step counts: discriminator 5 times then the generator, until the data runs out")
  func countedAlternation() throws {
    let model = RecordingGAN()
    let trainer = try Trainer(model, steps: ["discriminator": 5, "generator": 1])
    try trainer.fit(train: try ringData(rows: 48), epochs: 1, batchSize: 4)
    // 12 batches: two full rounds (5 + 1), then 2 discriminator calls use up the data.
    let steps = model.calls.map { String(($0.step ?? "").prefix(1)) }.joined()
    #expect(steps == "dddddgdddddgdd")
    #expect(trainer.callsPerEpoch(batches: 12) == 14)
    #expect(model.calls.filter { $0.step == "discriminator" }.count == 12)
  }

  @Test("a generator written first runs first; the epoch ends when a data step finds no batch")
  func generatorFirst() throws {
    let model = RecordingGAN(generatorFirst: true)
    let trainer = try Trainer(model)
    try trainer.fit(train: try ringData(rows: 8), epochs: 1, batchSize: 4)
    #expect(
      model.calls.map { $0.step ?? "" } == [
        "generator", "discriminator", "generator", "discriminator",
      ])
    #expect(trainer.lossName == "g_loss")
  }

  @Test("one named step trains alone; a step name or loss can be monitored")
  func singleStepAndMonitor() throws {
    let model = RecordingGAN()
    let trainer = try Trainer(model, step: "generator")
    try trainer.fit(train: try ringData(rows: 8), epochs: 1, batchSize: 4)
    // Alone, a step that reads no data runs once per batch.
    #expect(model.calls.map { $0.step ?? "" } == ["generator", "generator"])
    #expect(try Trainer(RecordingGAN(), lossName: "g_loss").lossName == "g_loss")
    #expect(try Trainer(RecordingGAN(), lossName: "generator").lossName == "g_loss")
    let validated = try Trainer(RecordingGAN(), lossName: "g_loss")
    let history = try validated.fit(
      train: try ringData(rows: 8), validation: try ringData(rows: 4), epochs: 1, batchSize: 4)
    #expect(history.epochs[0].validationLoss == 0.25)
    #expect(history.epochs[0].validationLosses == ["d_loss": 0.5, "g_loss": 0.25])
  }

  @Test("unknown steps and bad counts are clear errors")
  func badSchedules() throws {
    #expect(throws: RunError.self) { try Trainer(RecordingGAN(), steps: ["critic": 2]) }
    do {
      _ = try Trainer(RecordingGAN(), steps: ["critic": 2])
    } catch {
      #expect("\(error)".contains("no training step 'critic'"))
      #expect("\(error)".contains("discriminator, generator"))
    }
    #expect(throws: RunError.self) { try Trainer(RecordingGAN(), steps: ["generator": -1]) }
    #expect(throws: RunError.self) {
      try Trainer(RecordingGAN(), steps: ["generator": 0, "discriminator": 0])
    }
    #expect(throws: RunError.self) { try Trainer(RecordingGAN(), lossName: "nothing") }
  }

  /// The contract GAN on a few ring points, compiled.
  func ringGAN() throws -> (Model, Dataset) {
    let model = try Model(
      contentsOf: RepositoryPaths.path("examples/gan_ring.lam"), pipeline: Pipeline.training)
    let all = try NPY.read(contentsOf: RepositoryPaths.path("examples/data/ring/real.npy"))
    return (model, try Dataset(["real": firstRows(all, 0, 96)]))
  }

  @Test(
    "the compiled GAN: steps read only their inputs, and a resumed run equals an uninterrupted one bit for bit"
  )
  func resumeIsExact() throws {
    let (model, data) = try ringGAN()
    let signature = try model.generateC().signature
    #expect(signature.steps.map(\.name) == ["discriminator", "generator"])
    #expect(signature.steps.map(\.inputs) == [["real"], []])
    func trained(epochs: Int, resume: Checkpoint? = nil, checkpoint: String? = nil) throws -> (
      any TrainableModel, TrainingHistory
    ) {
      let compiled = try model.compileForTraining(
        options: TestCache.options(), parameters: try model.initialParameters(seed: 5))
      let trainer = try Trainer(model: model, compiled: compiled, checkpointPath: checkpoint)
      let history = try trainer.fit(
        train: data, epochs: epochs, batchSize: 32, seed: 5, resume: resume)
      return (compiled, history)
    }
    let (straight, straightHistory) = try trained(epochs: 3)
    let path = try RepositoryPaths.temporaryDirectory() + "/gan.safetensors"
    _ = try trained(epochs: 2, checkpoint: path)
    let checkpoint = try Checkpoint.read(contentsOf: path)
    // Every step's optimizer state is in the checkpoint.
    let stateNames = checkpoint.state.keys
    #expect(stateNames.contains { $0.hasPrefix("critic.") || $0.contains("critic") })
    #expect(stateNames.contains { $0.contains("generator") })
    #expect(checkpoint.state[RandomGenerator.stepName] == Tensor(shape: [], scalars: [Int64(12)]))
    let (resumed, resumedHistory) = try trained(epochs: 3, resume: checkpoint)
    #expect(try resumed.parameters() == straight.parameters())
    #expect(try resumed.state() == straight.state())
    #expect(
      resumedHistory.epochs
        == straightHistory.epochs.map { epoch in
          var same = epoch
          same.seconds = resumedHistory.epochs[epoch.epoch - 1].seconds
          return same
        })
    #expect(straightHistory.globalStep == 18)
    // The generator moved and the critic moved.
    let initial = try model.initialParameters(seed: 5)
    let final = try straight.parameters()
    for name in ["generator.dense_2.weight", "critic.dense_2.weight"] {
      #expect(final[name] != initial[name], "\(name) trained")
    }
  }

  @Test("the interpreter trains the GAN as compiled code does")
  func interpretedAlternation() throws {
    let (model, data) = try ringGAN()
    let interpreted = try InterpretedModel(model, parameters: try model.initialParameters(seed: 2))
    let trainer = try Trainer(model: model, compiled: interpreted)
    let small = try Dataset(["real": firstRows(data.tensors["real"]!, 0, 16)])
    let history = try trainer.fit(train: small, epochs: 1, batchSize: 8, seed: 2)
    #expect(history.globalStep == 4)
    let compiled = try model.compileForTraining(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 2))
    let compiledHistory = try Trainer(model: model, compiled: compiled).fit(
      train: small, epochs: 1, batchSize: 8, seed: 2)
    let a = history.epochs[0].stepLosses!
    let b = compiledHistory.epochs[0].stepLosses!
    for name in ["discriminator", "generator"] {
      #expect(abs(a[name]! - b[name]!) < 1e-4, "\(name): \(a[name]!) vs \(b[name]!)")
    }
  }

  // MARK: Command line

  struct Result {
    var status: Int32
    var output: String
    var errors: String
  }

  func lamina(_ arguments: String...) -> Result {
    let console = Console.capturing()
    let status = CommandLineTool.run(arguments, console: console)
    return Result(status: status, output: console.standardOutput, errors: console.standardError)
  }

  @Test("train --steps with an unknown step fails clearly and overwrites nothing")
  func unknownStepOnTheCommandLine() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let weights = directory + "/w.safetensors"
    try Data("keep".utf8).write(to: URL(fileURLWithPath: weights))
    for steps in [
      "critic:5,generator:1", "discriminator:x", "discriminator", "generator:1,generator:2",
    ] {
      let result = lamina(
        "train", RepositoryPaths.path("examples/gan_ring.lam"), "--data",
        RepositoryPaths.path("examples/data/ring"), "--epochs", "1", "--batch", "64", "--steps",
        steps, "-o", weights, "--checkpoint", weights)
      #expect(result.status != 0, "\(steps)")
      #expect(result.errors.contains("--steps"), "\(steps): \(result.errors)")
      #expect(try String(contentsOfFile: weights, encoding: .utf8) == "keep")
    }
    let critic = lamina(
      "train", RepositoryPaths.path("examples/gan_ring.lam"), "--data",
      RepositoryPaths.path("examples/data/ring"), "--epochs", "1", "--batch", "64", "--steps",
      "critic:5,generator:1")
    #expect(critic.errors.contains("no training step 'critic'"))
    #expect(critic.errors.contains("discriminator, generator"))
  }

  @Test("train alternates the steps and prints every step's loss; run --dim and --seed sample it")
  func trainAndSample() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let all = try NPY.read(contentsOf: RepositoryPaths.path("examples/data/ring/real.npy"))
    try FileManager.default.createDirectory(
      atPath: directory + "/ring", withIntermediateDirectories: true)
    try NPY.write(firstRows(all, 0, 256), to: directory + "/ring/real.npy")
    let model = RepositoryPaths.path("examples/gan_ring.lam")
    let weights = directory + "/ring.safetensors"
    let trained = lamina(
      "train", model, "--data", directory + "/ring", "--epochs", "2", "--batch", "64", "--seed",
      "1", "--steps", "discriminator:2,generator:1", "-o", weights, "--plot",
      directory + "/loss.svg")
    #expect(trained.status == 0, "\(trained.errors)")
    #expect(trained.output.contains("discriminator: adam on d_loss x2, generator: adam on g_loss"))
    #expect(trained.output.contains("train discriminator "))
    #expect(trained.output.contains(" generator "))
    // 4 batches an epoch: d d g d d g, then no batch: 6 calls, 12 in all.
    #expect(trained.output.contains("(12 steps in all)"), "\(trained.output)")
    let plot = try String(contentsOfFile: directory + "/loss.svg", encoding: .utf8)
    #expect(plot.contains("discriminator") && plot.contains("generator"))

    func sample(_ seed: String, batch: Int = 1000) throws -> Tensor {
      let path = directory + "/fake_\(seed).npy"
      let result = lamina(
        "run", model, "--weights", weights, "--dim", "batch=\(batch)", "--seed", seed,
        "--output", "fake=\(path)")
      #expect(result.status == 0, "\(result.errors)")
      return try NPY.read(contentsOf: path)
    }
    let first = try sample("1")
    #expect(first.shape == [1000, 2])
    #expect(try sample("1") == first)
    #expect(try sample("2") != first)
    #expect(try sample("1", batch: 3).shape == [3, 2])
    // The interpreter samples the same noise.
    let interpreted = lamina(
      "run", model, "--weights", weights, "--dim", "batch=1000", "--seed", "1", "--interpret",
      "--output", "fake=\(directory)/interpreted.npy")
    #expect(interpreted.status == 0, "\(interpreted.errors)")
    let other = try NPY.read(contentsOf: directory + "/interpreted.npy").doubles()
    let worst = zip(first.doubles(), other).map { abs($0 - $1) }.max()!
    #expect(worst < 1e-4)

    let missing = lamina("run", model, "--weights", weights, "--output", "fake=\(directory)/x.npy")
    #expect(missing.status != 0)
    #expect(missing.errors.contains("no input determines the dimension 'batch'"))
    let unknown = lamina(
      "run", model, "--weights", weights, "--dim", "rows=3", "--output", "fake=\(directory)/x.npy")
    #expect(unknown.errors.contains("no symbolic dimension 'rows'"), "\(unknown.errors)")
    let bad = lamina(
      "run", model, "--weights", weights, "--dim", "batch=0", "--output", "fake=\(directory)/x.npy")
    #expect(bad.errors.contains("--dim takes SYMBOL=N"))
  }

  // MARK: PNG

  /// The chunks of a PNG file, checking the signature and every CRC.
  func chunks(_ bytes: [UInt8]) throws -> [(type: String, data: [UInt8])] {
    #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
    var result: [(String, [UInt8])] = []
    var offset = 8
    func word(_ at: Int) -> UInt32 {
      bytes[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }
    while offset < bytes.count {
      let length = Int(word(offset))
      let typeAndData = Array(bytes[(offset + 4)..<(offset + 8 + length)])
      #expect(word(offset + 8 + length) == crc32(typeAndData), "CRC of chunk at \(offset)")
      let type = String(decoding: Array(typeAndData.prefix(4)), as: UTF8.self)
      result.append((type, Array(typeAndData.dropFirst(4))))
      offset += 12 + length
    }
    #expect(offset == bytes.count)
    return result
  }

  /// CRC-32 written out here again, bit by bit, so the test does not trust the encoder's table.
  func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      crc ^= UInt32(byte)
      for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
  }

  /// Inflates a zlib stream of stored blocks (what the encoder writes), checking its header,
  /// every block's length complement and the Adler-32.
  func inflateStored(_ stream: [UInt8]) throws -> [UInt8] {
    #expect((Int(stream[0]) << 8 | Int(stream[1])) % 31 == 0, "zlib header check")
    #expect(stream[0] & 0x0F == 8, "deflate")
    var offset = 2
    var out: [UInt8] = []
    while true {
      let header = stream[offset]
      #expect(header >> 1 == 0, "a stored block")
      let length = Int(stream[offset + 1]) | Int(stream[offset + 2]) << 8
      let complement = Int(stream[offset + 3]) | Int(stream[offset + 4]) << 8
      #expect(length ^ complement == 0xFFFF)
      out += stream[(offset + 5)..<(offset + 5 + length)]
      offset += 5 + length
      if header & 1 == 1 { break }
    }
    var a = 1
    var b = 0
    for byte in out {
      a = (a + Int(byte)) % 65521
      b = (b + a) % 65521
    }
    let adler = stream[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
    #expect(adler == b << 16 | a)
    #expect(offset + 4 == stream.count)
    return out
  }

  /// The pixels of a grayscale PNG, decoded by the test's own reader.
  func decode(_ bytes: [UInt8]) throws -> (width: Int, height: Int, pixels: [UInt8]) {
    let parts = try chunks(bytes)
    #expect(parts.map(\.type) == ["IHDR", "IDAT", "IEND"])
    let header = parts[0].data
    let width = header[0..<4].reduce(0) { $0 << 8 | Int($1) }
    let height = header[4..<8].reduce(0) { $0 << 8 | Int($1) }
    #expect(Array(header[8...]) == [8, 0, 0, 0, 0])
    let raw = try inflateStored(parts[1].data)
    #expect(raw.count == (width + 1) * height)
    var pixels: [UInt8] = []
    for row in 0..<height {
      #expect(raw[row * (width + 1)] == 0, "filter none")
      pixels += raw[(row * (width + 1) + 1)..<((row + 1) * (width + 1))]
    }
    return (width, height, pixels)
  }

  @Test("an image grid decodes: signature, CRCs, stored blocks, Adler-32 and the pixels")
  func imageGrid() throws {
    // Two 2x3 images: a ramp 0..1 and its reverse; 5 images would make a 3x2 grid.
    let values: [Float] = [0, 0.2, 0.4, 0.6, 0.8, 1, 1, 0.8, 0.6, 0.4, 0.2, 0]
    let tensor = Tensor(shape: [2, 1, 2, 3], scalars: values)
    let (width, height, pixels) = try decode(try ImageGrid.png(tensor))
    // Cells scaled by 11 (3 · 11 ≥ 32): 2 columns of 33 plus 3 gap pixels; one row of 22 + 2.
    #expect(width == 2 * 33 + 3)
    #expect(height == 22 + 2)
    func pixel(_ image: Int, _ y: Int, _ x: Int) -> UInt8 {
      pixels[(1 + y * 11) * width + 1 + image * 34 + x * 11]
    }
    #expect(pixel(0, 0, 0) == 0)
    #expect(pixel(0, 1, 2) == 255)
    #expect(pixel(0, 0, 1) == 51)
    #expect(pixel(1, 0, 0) == 255)
    #expect(pixels[0] == 128, "the gap is gray")
    // The same images as [N, H*W] with a size, and [N, H, W].
    let flat = Tensor(shape: [2, 6], scalars: values)
    #expect(try ImageGrid.png(flat, imageSize: (2, 3)) == ImageGrid.png(tensor))
    #expect(try ImageGrid.png(Tensor(shape: [2, 2, 3], scalars: values)) == ImageGrid.png(tensor))
    #expect(throws: RunError.self) { try ImageGrid.png(flat) }
    #expect(throws: RunError.self) { try ImageGrid.png(flat, imageSize: (2, 2)) }
    // Outside [0, 1], the range is stretched: the minimum black, the maximum white.
    let stretched = try decode(
      try ImageGrid.png(Tensor(shape: [1, 1, 2], scalars: [-3, 5] as [Float])))
    #expect(stretched.pixels[stretched.width + 1] == 0)
    #expect(stretched.pixels[stretched.width + 1 + 16] == 255)
    // A large image spans several stored blocks.
    let big = Tensor(shape: [64, 64, 64], scalars: (0..<(64 * 64 * 64)).map { Float($0 % 7) / 6 })
    let decoded = try decode(try ImageGrid.png(big))
    #expect(decoded.width * decoded.height > 65_535)
  }

  @Test("run writes an output ending in .png as an image grid")
  func runWritesPNG() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let modelPath = directory + "/images.lam"
    try """
    model Images {
      output images = random_uniform(shape: [batch, 1, 4, 4])
      output flat = random_uniform(shape: [batch, 12])
    }
    """.write(toFile: modelPath, atomically: true, encoding: .utf8)
    let result = lamina(
      "run", modelPath, "--dim", "batch=5", "--seed", "9", "--output",
      "images=\(directory)/grid.png", "--output", "images=\(directory)/grid.npy")
    #expect(result.status == 0, "\(result.errors)")
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/grid.png")))
    let images = try NPY.read(contentsOf: directory + "/grid.npy")
    #expect(bytes == (try ImageGrid.png(images)))
    let (width, height, _) = try decode(bytes)
    #expect(width == 3 * 32 + 4 && height == 2 * 32 + 3)
    let flat = lamina(
      "run", modelPath, "--dim", "batch=2", "--output", "flat=\(directory)/flat.png",
      "--image-size", "3x4")
    #expect(flat.status == 0, "\(flat.errors)")
    let unsized = lamina(
      "run", modelPath, "--dim", "batch=2", "--output", "flat=\(directory)/f.png")
    #expect(unsized.errors.contains("--image-size"))
    #expect(!FileManager.default.fileExists(atPath: directory + "/f.png"))
  }
}
