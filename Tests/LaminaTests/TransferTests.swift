import Foundation
import Lamina
import LaminaTestSupport
import Testing

@testable import LaminaCommandLine

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// Transfer learning (`--init-from`, frozen parameters and frozen batch norm) and gradient norms
/// (`--gradients`, the vanishing and exploding warnings).
@Suite("Transfer and gradients")
struct TransferTests {
  /// A pretrained model: an encoder block and a head.
  static let sourceModel = """
    block Encoder(x) {
      return x |> dense(units: 8, activation: "relu") |> batch_norm |> dense(units: 6, activation: "relu")
    }
    model Source {
      input x: f32[batch, 4]
      input label: i32[batch]
      let encoder = Encoder()
      let logits = dense(encoder(x), units: 3, name: "head")
      output probs = softmax(logits)
      loss = cross_entropy(logits, label)
      train with sgd(lr: 0.1)
    }
    """

  /// The fine-tuned model: the encoder's layers under `features`, frozen, and a new head.
  static func targetModel(units: Int = 6, freeze: Bool = true) -> String {
    """
    block Encoder(x) {
      return x |> dense(units: 8, activation: "relu") |> batch_norm |> dense(units: \(units), activation: "relu")
    }
    model Target {
      input x: f32[batch, 4]
      input label: i32[batch]
      let features = Encoder()
      let logits = dense(features(x), units: 2, name: "classifier")
      output probs = softmax(logits)
      loss = cross_entropy(logits, label)
      train with adamw(lr: 0.05, weight_decay: 0.1)
      \(freeze ? "freeze \"features.*\"" : "")
    }
    """
  }

  struct Result {
    var status: Int32
    var output: String
    var errors: String
  }

  func lamina(_ arguments: [String]) -> Result {
    let console = Console.capturing()
    let status = CommandLineTool.run(arguments, console: console)
    return Result(status: status, output: console.standardOutput, errors: console.standardError)
  }

  /// Source weights with running statistics that are not the initial ones, so loading them shows.
  func writeSourceWeights(to path: String) throws -> [String: Tensor] {
    let source = try Model(source: Self.sourceModel, pipeline: Pipeline.training)
    var weights = try source.initialParameters(seed: 11)
    for state in source.graph.modelStates {
      let name = source.graph[state.value].name
      let count = source.graph.type(of: state.value).concreteShape([:])!.reduce(1, *)
      weights[name] = Tensor(shape: [count], scalars: (0..<count).map { Float($0) * 0.25 + 0.5 })
    }
    try SafeTensors.write(
      weights.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, metadata: [:], to: path)
    return weights
  }

  static func data(rows: Int, seed: UInt64) throws -> Dataset {
    var generator = SeededGenerator(seed: seed, stream: "transfer-test")
    let x = (0..<(rows * 4)).map { _ in Float.random(in: -1...1, using: &generator) }
    let label = (0..<rows).map { row in Int32((x[row * 4] + x[row * 4 + 1] > 0) ? 1 : 0) }
    return try Dataset([
      "x": Tensor(shape: [rows, 4], scalars: x), "label": Tensor(shape: [rows], scalars: label),
    ])
  }

  // MARK: Loading

  @Test("--init-from's table: loaded after renaming, missing, unexpected, with the file's values")
  func loadedMissingUnexpected() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let weights = try writeSourceWeights(to: directory + "/source.safetensors")
    let target = try Model(source: Self.targetModel(), pipeline: Pipeline.training)
    let transfer = try target.transfer(
      from: directory + "/source.safetensors",
      renames: [PrefixRename(parsing: "encoder.=features.")])
    let encoderNames = weights.keys.filter { $0.hasPrefix("encoder.") }.sorted()
    #expect(
      transfer.loaded.map(\.name).sorted()
        == encoderNames.map { "features." + $0.dropFirst("encoder.".count) })
    #expect(
      transfer.loaded.contains { $0.name == "features.batch_norm_0.running_mean" && $0.isState })
    #expect(transfer.missing.map(\.name) == ["classifier.weight", "classifier.bias"])
    #expect(transfer.unexpected.map(\.name).sorted() == ["head.bias", "head.weight"])
    #expect(transfer.mismatched.isEmpty)
    for entry in transfer.loaded {
      #expect(transfer.tensors[entry.name] == weights[entry.fileName!], "\(entry.name)")
    }
    let table = transfer.table()
    #expect(table.contains("8 loaded, 2 missing, 2 unexpected, 0 shape mismatches"))
    #expect(table.contains("from encoder.dense_0.weight"))

    // Applied: loaded values in place, the others at their initializers.
    let start = try target.parameters(startingFrom: transfer, seed: 5)
    let initial = try target.initialParameters(seed: 5)
    #expect(start["features.dense_1.weight"] == weights["encoder.dense_1.weight"])
    #expect(start["classifier.weight"] == initial["classifier.weight"])
    #expect(
      start["features.batch_norm_0.running_var"] == weights["encoder.batch_norm_0.running_var"])
  }

  @Test("a shape mismatch is an error naming it, unless partial loading is allowed")
  func shapeMismatch() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    _ = try writeSourceWeights(to: directory + "/source.safetensors")
    let target = try Model(source: Self.targetModel(units: 5), pipeline: Pipeline.training)
    let renames = [PrefixRename(old: "encoder.", new: "features.")]
    #expect {
      try target.transfer(from: directory + "/source.safetensors", renames: renames)
    } throws: { error in
      "\(error)".contains("features.dense_1.weight: model f32[8, 5], file f32[8, 6]")
        && "\(error)".contains("--allow-partial")
    }
    let partial = try target.transfer(
      from: directory + "/source.safetensors", renames: renames, allowPartial: true)
    #expect(partial.mismatched.map(\.name) == ["features.dense_1.weight", "features.dense_1.bias"])
    #expect(partial.tensors["features.dense_1.weight"] == nil)
    #expect(partial.loaded.count == 6)
  }

  @Test("a corrupt or unrelated --init-from file is a clear error and nothing is written")
  func badInitFrom() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let target = try Model(source: Self.targetModel(), pipeline: Pipeline.training)
    let corrupt = directory + "/corrupt.safetensors"
    try Data("not a safetensors file at all".utf8).write(to: URL(fileURLWithPath: corrupt))
    #expect(throws: (any Error).self) { try target.transfer(from: corrupt) }
    // Unrelated: another model's names (no renaming makes them match).
    let unrelated = directory + "/unrelated.safetensors"
    try SafeTensors.write(
      [("conv.weight", Tensor(shape: [2, 2], scalars: [1, 2, 3, 4] as [Float]))], metadata: [:],
      to: unrelated)
    #expect {
      try target.transfer(from: unrelated)
    } throws: { error in
      "\(error)".contains("none of its 1 tensors (conv.weight)") && "\(error)".contains("--rename")
    }

    // The command: the error, status 1, and the weights file it would write left as it was.
    let modelPath = directory + "/target.lam"
    try Self.targetModel().write(toFile: modelPath, atomically: true, encoding: .utf8)
    let data = try Self.data(rows: 16, seed: 1)
    try NPY.write(data.tensors["x"]!, to: directory + "/x.npy")
    try NPY.write(data.tensors["label"]!, to: directory + "/label.npy")
    let output = directory + "/out.safetensors"
    try Data("previous weights".utf8).write(to: URL(fileURLWithPath: output))
    for bad in [corrupt, unrelated, directory + "/missing.safetensors"] {
      let result = lamina([
        "train", modelPath, "--data", directory, "--epochs", "1", "--batch", "8", "--init-from",
        bad, "-o", output, "--cache-dir", TestCache.directory,
      ])
      #expect(result.status != 0)
      #expect(result.errors.contains(bad), "\(result.errors)")
      #expect(try String(contentsOfFile: output, encoding: .utf8) == "previous weights")
    }
    let result = lamina([
      "train", modelPath, "--data", directory, "--epochs", "1", "--batch", "8", "--rename", "a=b",
    ])
    #expect(result.status != 0 && result.errors.contains("--init-from"))
  }

  @Test(
    "the transfer example: pretrain, then fine-tune with the features loaded and left as they were")
  func transferExample() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let data = RepositoryPaths.path("examples/data")
    let pretrained = directory + "/pretrained.safetensors"
    let pretrain = lamina([
      "train", RepositoryPaths.path("examples/transfer/pretrain.lam"), "--data",
      "\(data)/digits_0to4/train", "--epochs", "1", "--batch", "64", "--seed", "1", "-o",
      pretrained, "--quiet", "--cache-dir", TestCache.directory,
    ])
    #expect(pretrain.status == 0, "\(pretrain.errors)")
    let finetuned = directory + "/finetuned.safetensors"
    let finetune = lamina([
      "train", RepositoryPaths.path("examples/transfer/finetune.lam"), "--data",
      "\(data)/digits_5to9/train", "--val", "\(data)/digits_5to9/test", "--epochs", "2", "--batch",
      "16", "--seed", "1", "--init-from", pretrained, "-o", finetuned, "--cache-dir",
      TestCache.directory,
    ])
    #expect(finetune.status == 0, "\(finetune.errors)")
    #expect(
      finetune.output.contains("12 loaded, 4 missing, 4 unexpected, 0 shape mismatches"),
      "\(finetune.output)")
    let before = try SafeTensors.readDictionary(contentsOf: pretrained)
    let after = try SafeTensors.readDictionary(contentsOf: finetuned)
    let features = before.keys.filter { $0.hasPrefix("features.") }
    #expect(features.count == 12)
    for name in features { #expect(after[name] == before[name], "\(name)") }
    #expect(after["classifier.weight"] != nil && after["head.weight"] == nil)
  }

  @Test("the overfitting pair trains, the regularized one with early stopping")
  func overfittingExamples() throws {
    let data = RepositoryPaths.path("examples/data/digits_10pct")
    for (example, extra) in [("plain", [String]()), ("regularized", ["--early-stopping", "1"])] {
      let directory = try RepositoryPaths.temporaryDirectory()
      let result = lamina(
        [
          "train", RepositoryPaths.path("examples/overfitting/\(example).lam"), "--data",
          "\(data)/train", "--val", "\(data)/test", "--epochs", "3", "--batch", "32", "--seed",
          "1", "--plot", directory + "/loss.svg", "--cache-dir", TestCache.directory,
        ] + extra)
      #expect(result.status == 0, "\(result.errors)")
      let svg = try String(contentsOfFile: directory + "/loss.svg", encoding: .utf8)
      #expect(svg.contains("validation-loss") && svg.contains("train-loss"))
    }
  }

  // MARK: Freezing

  @Test("frozen parameters and frozen batch-norm state stay bit for bit; the head trains")
  func frozenStaysExact() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    _ = try writeSourceWeights(to: directory + "/source.safetensors")
    let target = try Model(source: Self.targetModel(), pipeline: Pipeline.training)
    let transfer = try target.transfer(
      from: directory + "/source.safetensors",
      renames: [PrefixRename(old: "encoder.", new: "features.")])
    let start = try target.parameters(startingFrom: transfer, seed: 2)
    let data = try Self.data(rows: 40, seed: 3)
    for interpreted in [false, true] {
      let trainable: any TrainableModel =
        interpreted
        ? try InterpretedModel(target, parameters: start)
        : try target.compileForTraining(options: TestCache.options(), parameters: start)
      let trainer = try Trainer(model: target, compiled: trainable)
      try trainer.fit(train: data, epochs: 3, batchSize: 8, seed: 4)
      let parameters = try trainable.parameters()
      let state = try trainable.state()
      for (name, tensor) in transfer.tensors {
        let now = name.contains("running_") ? state[name] : parameters[name]
        // Bit for bit: the same bytes, not merely close values.
        #expect(
          now?.withUnsafeBytes { Array($0) } == tensor.withUnsafeBytes { Array($0) },
          "\(name) changed (\(interpreted ? "interpreted" : "compiled"))")
      }
      #expect(parameters["classifier.weight"] != start["classifier.weight"])
    }
  }

  @Test("a frozen batch_norm normalizes with its running statistics in a training step too")
  func frozenBatchNormUsesRunningStatistics() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    _ = try writeSourceWeights(to: directory + "/source.safetensors")
    let renames = [PrefixRename(old: "encoder.", new: "features.")]
    let x = try Self.data(rows: 6, seed: 9).tensors["x"]!
    for freeze in [true, false] {
      let target = try Model(source: Self.targetModel(freeze: freeze), pipeline: Pipeline.training)
      let start = try target.parameters(
        startingFrom: target.transfer(from: directory + "/source.safetensors", renames: renames),
        seed: 2)
      let training = try target.interpret(
        inputs: ["x": x], parameters: start, outputs: ["probs"], mode: .training)["probs"]!
      let inference = try target.interpret(
        inputs: ["x": x], parameters: start, outputs: ["probs"], mode: .inference)["probs"]!
      // Unfrozen, batch statistics differ from the loaded running ones: the modes differ.
      #expect((TestData.mismatch(training, inference, rtol: 1e-6, atol: 1e-7) == nil) == freeze)
    }
    let frozen = try Model(source: Self.targetModel(), pipeline: Pipeline.training)
    #expect(frozen.graph.stateUpdates.isEmpty)
  }

  @Test("lamina dump --params marks frozen parameters and frozen state")
  func dumpShowsFrozen() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let modelPath = directory + "/target.lam"
    try Self.targetModel().write(toFile: modelPath, atomically: true, encoding: .utf8)
    let result = lamina(["dump", modelPath, "--params"])
    #expect(result.status == 0, "\(result.errors)")
    let lines = result.output.split(separator: "\n").map(String.init)
    func row(_ name: String) -> String? { lines.first { $0.hasPrefix(name + " ") } }
    #expect(row("features.dense_0.weight")?.hasSuffix("frozen") == true)
    #expect(row("features.batch_norm_0.running_mean")?.hasSuffix("frozen state") == true)
    #expect(row("classifier.weight")?.hasSuffix("yes") == true)
    #expect(!result.errors.contains("matches no parameter"))
  }

  // MARK: Gradients

  @Test("the compiled gradient probe gives the interpreter's gradients")
  func compiledProbeMatchesInterpreter() throws {
    let model = try Model(source: Self.targetModel(freeze: false), pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 3)
    let state = try model.graph.initialModelState()
    let inputs = try Self.data(rows: 8, seed: 5).gather(0..<8)
    let compiled = try CompiledGradientProbe(model: model, options: TestCache.options())
      .gradients(inputs: inputs, parameters: parameters, state: state)
    let interpreted = try InterpretedGradientProbe(model: model)
      .gradients(inputs: inputs, parameters: parameters, state: state)
    #expect(Set(compiled.keys) == Set(model.graph.params.map { model.graph[$0.value].name }))
    #expect(Set(compiled.keys) == Set(interpreted.keys))
    for (name, gradient) in interpreted {
      let mismatch = TestData.mismatch(compiled[name]!, gradient, rtol: 1e-4, atol: 1e-6)
      #expect(mismatch == nil, "\(name): \(mismatch ?? "")")
    }
  }

  /// Trains `example` for one short epoch with `--gradients`; returns the result and the CSV.
  func trainWithGradients(_ example: String, every: Int? = nil) throws -> (Result, String, String) {
    let directory = try RepositoryPaths.temporaryDirectory()
    let data = try Dataset(
      directory: RepositoryPaths.path("examples/data/digits/train"), inputs: ["x", "label"])
    let subset = try Dataset(data.gather(0..<192))
    try NPY.write(subset.tensors["x"]!, to: directory + "/x.npy")
    try NPY.write(subset.tensors["label"]!, to: directory + "/label.npy")
    let result = lamina(
      [
        "train", RepositoryPaths.path("examples/\(example)"), "--data", directory, "--epochs",
        "1", "--batch", "32", "--seed", "1", "--gradients", directory + "/grads.svg",
        "--cache-dir", TestCache.directory,
      ] + (every.map { ["--gradients-every", String($0)] } ?? []))
    let csv = (try? String(contentsOfFile: directory + "/grads.csv", encoding: .utf8)) ?? ""
    let svg = (try? String(contentsOfFile: directory + "/grads.svg", encoding: .utf8)) ?? ""
    return (result, csv, svg)
  }

  @Test("the vanishing warning fires on the deep sigmoid network, naming its first layer")
  func vanishingOnSigmoid() throws {
    let (result, csv, svg) = try trainWithGradients("deep_sigmoid.lam")
    #expect(result.status == 0, "\(result.errors)")
    #expect(result.errors.contains("vanishing gradients"), "\(result.errors)")
    #expect(result.errors.contains("sigmoid_layer_0.dense_0.weight"), "\(result.errors)")
    #expect(result.errors.contains("He initialization") && result.errors.contains("clip_norm"))
    let rows = csv.split(separator: "\n")
    // Before training and after the epoch; a column per trained parameter (21 layers of 2).
    #expect(rows.count == 3)
    #expect(rows.first?.split(separator: ",").count == 2 + 42)
    // The first layer's norm is far below the last's.
    let last = rows.last!.split(separator: ",").compactMap { Double($0) }
    #expect(last[2] < 1e-6 * last[last.count - 2], "\(last)")
    #expect(svg.contains("<polyline") && svg.contains("head"))
    #expect(throws: Never.self) { try XMLDocument(data: Data(svg.utf8)) }
  }

  @Test("no vanishing warning on the deep ReLU network with batch norm; every N steps recorded")
  func noWarningOnReluBatchNorm() throws {
    let (result, csv, _) = try trainWithGradients("gradients/deep_relu_bn.lam", every: 2)
    #expect(result.status == 0, "\(result.errors)")
    #expect(!result.errors.contains("vanishing"), "\(result.errors)")
    // Step 0, then steps 2, 4, 6 of the 6 steps.
    #expect(
      csv.split(separator: "\n").dropFirst().map { $0.split(separator: ",")[0] } == [
        "0", "2", "4", "6",
      ])
  }

  /// Gradients scripted per record, to check the monitor's warnings and files.
  final class ScriptedProbe: GradientProbe {
    var scale: [Double]
    let names: [String]
    init(names: [String], scale: [Double]) {
      self.names = names
      self.scale = scale
    }
    func gradients(
      inputs: [String: Tensor], parameters: [String: Tensor], state: [String: Tensor]
    ) throws -> [String: Tensor] {
      let factor = scale.removeFirst()
      var result: [String: Tensor] = [:]
      for name in names {
        result[name] = Tensor(shape: [1], scalars: [Float(factor)])
      }
      return result
    }
  }

  @Test("a norm growing 1000x within an epoch is exploding; names are escaped in every file")
  func explodingAndEscaping() throws {
    let source = """
      model Odd {
        input x: f32[batch, 2]
        input label: i32[batch]
        let h = dense(x, units: 3, name: "a<b&\\"c")
        let logits = dense(h, units: 2, name: "=cmd")
        loss = cross_entropy(logits, label)
        train with sgd(lr: 0.1)
      }
      """
    let model = try Model(source: source, pipeline: Pipeline.training)
    let names = model.graph.gradients.map { model.graph[$0.parameter].name }
    let trainable = try InterpretedModel(model, parameters: try model.initialParameters(seed: 0))
    // Record 0 (start), then 1 and 2000 within epoch 1, then flat in epoch 2.
    let monitor = try GradientMonitor(
      model: model, trainable: trainable,
      probe: ScriptedProbe(names: names, scale: [1, 2000, 2000, 2000]),
      batch: [:], every: 1)
    for step in 1...3 {
      try monitor.stepEnded(
        StepProgress(
          epoch: step == 3 ? 2 : 1, epochs: 2, step: step, steps: 2, loss: 1,
          samplesPerSecond: 1, elapsed: 1, globalStep: step))
    }
    let warnings = monitor.warnings()
    #expect(warnings.map(\.kind) == [.exploding])
    #expect(warnings.first?.parameters.sorted() == names.sorted())
    #expect(warnings.first?.message.contains("in epoch 1") == true)
    let svg = monitor.svg(title: "Odd")
    #expect(svg.contains("a&lt;b&amp;&quot;c"))
    #expect(throws: Never.self) { try XMLDocument(data: Data(svg.utf8)) }
    let header = monitor.csv().split(separator: "\n")[0]
    #expect(header.contains("\"a<b&\"\"c.weight\"") && header.contains("'=cmd.weight"))
  }
}
