import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// The `lamina` commands, run in-process on real files.
@Suite("Command line")
struct CommandLineTests {
  struct Result {
    var status: Int32
    var output: String
    var errors: String
  }

  func lamina(_ arguments: String...) -> Result { lamina(arguments) }

  func lamina(_ arguments: [String]) -> Result {
    let console = Console.capturing()
    let status = CommandLineTool.run(arguments, console: console)
    return Result(status: status, output: console.standardOutput, errors: console.standardError)
  }

  @Test("init, then run with the weights, writes outputs equal to the interpreter's")
  func initAndRun() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let modelPath = RepositoryPaths.path("examples/digits_mlp.lam")
    let weights = directory + "/w.safetensors"
    #expect(lamina("init", modelPath, "-o", weights, "--seed", "3").status == 0)

    let x = Tensor(shape: [2, 64], scalars: (0..<128).map { Float($0) / 128 })
    let labels = Tensor(shape: [2], scalars: [3, 7] as [Int64])
    try NPY.write(x, to: directory + "/x.npy")
    try NPY.write(labels, to: directory + "/label.npy")
    let result = lamina(
      "run", modelPath, "--interpret", "--weights", weights, "--input", "x=\(directory)/x.npy",
      "--input", "label=\(directory)/label.npy", "--output", "probs=\(directory)/probs.npy",
      "--output", "loss=\(directory)/loss.npy")
    #expect(result.status == 0, "\(result.errors)")

    let model = try Model(contentsOf: modelPath)
    let expected = try model.interpret(
      inputs: ["x": x, "label": labels.converted(to: .i32)],
      parameters: try model.initialParameters(seed: 3), outputs: ["probs", "loss"])
    #expect(try NPY.read(contentsOf: directory + "/probs.npy") == expected["probs"])
    #expect(try NPY.read(contentsOf: directory + "/loss.npy") == expected["loss"])
    // The written weights are the initializers' values.
    let written = try SafeTensors.readDictionary(contentsOf: weights)
    #expect(written == (try model.initialParameters(seed: 3)))
  }

  @Test("compile writes a library and header that run loads, matching the interpreter")
  func compileAndRunLibrary() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let modelPath = RepositoryPaths.path("examples/digits_mlp.lam")
    let library = directory + "/libdigits.so"
    #expect(
      lamina("compile", modelPath, "-o", library, "--no-cache", "--emit-c", directory + "/c").status
        == 0)
    let header = try String(contentsOfFile: directory + "/libdigits.h", encoding: .utf8)
    #expect(header.contains("#define DIGITSMLP_INPUT_X 0"))
    #expect(header.contains("int lamina_forward("))
    let source = try String(contentsOfFile: directory + "/c/model.c", encoding: .utf8)
    // Kernels carry the IR they compute: here the first dense layer's matmul, bias and ReLU.
    #expect(source.contains("/* fused matmul kernel, 3 ops in one pass:"))
    #expect(source.contains("     %h = relu(%1) : f32[batch, 128]"))

    #expect(
      lamina("init", modelPath, "-o", directory + "/w.safetensors", "--seed", "5").status == 0)
    let x = Tensor(shape: [9, 64], scalars: (0..<576).map { Float($0 % 17) / 16 })
    let labels = Tensor(shape: [9], scalars: (0..<9).map { Int32($0) })
    try NPY.write(x, to: directory + "/x.npy")
    try NPY.write(labels, to: directory + "/label.npy")
    let run = lamina(
      "run", library, "--weights", directory + "/w.safetensors", "--input", "x=\(directory)/x.npy",
      "--input", "label=\(directory)/label.npy", "--output", "probs=\(directory)/probs.npy",
      "--output",
      "loss=\(directory)/loss.npy")
    #expect(run.status == 0, "\(run.errors)")
    // In batches of 4 (4 + 4 + 1 rows), the outputs are the same.
    let batched = lamina(
      "run", library, "--weights", directory + "/w.safetensors", "--input", "x=\(directory)/x.npy",
      "--batch", "4", "--output", "probs=\(directory)/probs4.npy")
    #expect(batched.status == 0, "\(batched.errors)")

    let model = try Model(contentsOf: modelPath)
    let expected = try model.interpret(
      inputs: ["x": x, "label": labels], parameters: try model.initialParameters(seed: 5),
      outputs: ["probs", "loss"])
    for (file, name) in [("probs.npy", "probs"), ("probs4.npy", "probs"), ("loss.npy", "loss")] {
      let actual = try NPY.read(contentsOf: directory + "/" + file)
      let problem = TestData.mismatch(actual, expected[name]!, rtol: 1e-5, atol: 1e-6)
      #expect(problem == nil, "\(file): \(problem ?? "")")
    }
    let noWeights = lamina("run", library, "--input", "x=\(directory)/x.npy")
    #expect(noWeights.status == 2)
    #expect(noWeights.errors.contains("pass --weights"))
  }

  @Test("compile --train exports the training step, which trains like the Swift API")
  func compileWithTraining() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let modelPath = RepositoryPaths.path("examples/regressor.lam")
    let library = directory + "/libregressor.so"
    let result = lamina(
      "compile", modelPath, "--train", "-o", library, "--cache-dir", TestCache.directory)
    #expect(result.status == 0, "\(result.errors)")
    let header = try String(contentsOfFile: directory + "/libregressor.h", encoding: .utf8)
    #expect(header.contains("int lamina_train_step("))
    let compiled = try CompiledModel(libraryPath: library)
    #expect(compiled.signature.steps.map(\.name) == ["train"])
    let model = try Model(contentsOf: modelPath, pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 1)
    try compiled.setParameters(parameters)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 6], seed: 3)
    let loss = try compiled.trainStep(inputs)
    let reference = try model.interpretTrainStep(inputs, values: parameters)
    #expect(abs(loss - reference.loss) <= 1e-5 * max(1, abs(reference.loss)))
    let problem = TestData.mismatch(
      try compiled.parameter(named: "dense_0.weight"), reference.values["dense_0.weight"]!,
      rtol: 1e-5,
      atol: 1e-6)
    #expect(problem == nil, "\(problem ?? "")")
  }

  @Test("run reports bad inputs by name and exits non-zero")
  func runErrors() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let modelPath = RepositoryPaths.path("examples/digits_mlp.lam")
    try NPY.write(
      Tensor(shape: [2, 65], scalars: [Float](repeating: 0, count: 130)), to: directory + "/x.npy")
    let wrongShape = lamina("run", modelPath, "--interpret", "--input", "x=\(directory)/x.npy")
    #expect(wrongShape.status == 1)
    #expect(wrongShape.errors.contains("input 'x': expected f32[batch, 64], got f32[2, 65]"))

    let unknown = lamina("run", modelPath, "--interpret", "--input", "images=\(directory)/x.npy")
    #expect(unknown.status == 2)
    #expect(unknown.errors.contains("the model has no input 'images'"))

    try Data("not an npy file".utf8).write(to: URL(fileURLWithPath: directory + "/bad.npy"))
    let badFile = lamina("run", modelPath, "--interpret", "--input", "x=\(directory)/bad.npy")
    #expect(badFile.status == 1)
    #expect(badFile.errors.contains("bad.npy"))

    let missingWeights = lamina(
      "run", modelPath, "--interpret", "--weights", directory + "/none.safetensors")
    #expect(missingWeights.status == 1)
  }

  @Test("check accepts every example")
  func checkExamples() {
    for path in RepositoryPaths.files(in: "examples", withExtension: "lam") {
      let result = lamina("check", path)
      #expect(result.status == 0, "\(path): \(result.errors)")
      #expect(result.output.contains(": ok: model"))
    }
  }

  @Test("dump round-trips through its own output")
  func dumpRoundTrip() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let first = lamina("dump", RepositoryPaths.path("examples/deep_mlp.lam"))
    try first.output.write(toFile: directory + "/deep.ir", atomically: true, encoding: .utf8)
    let second = lamina("dump", directory + "/deep.ir")
    #expect(second.status == 0)
    #expect(second.output == first.output)
  }

  @Test("bench --compare checks, times and tabulates fused against unfused, inference and training")
  func benchCompare() throws {
    let model = RepositoryPaths.path("examples/regressor.lam")
    for mode in [[], ["--train"]] {
      let arguments =
        [
          "bench", model, "--compare", "fused,unfused", "--batch", "4", "--runs", "12", "--seconds",
          "0", "--cache-dir", TestCache.directory,
        ]
        + mode
      let json = lamina(arguments + ["--json"])
      #expect(json.status == 0, "\(json.errors)")
      let report = try #require(
        try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
      let fused = try #require(report["fused"] as? [String: Any])
      let unfused = try #require(report["unfused"] as? [String: Any])
      #expect((fused["kernels"] as? Int ?? 0) < (unfused["kernels"] as? Int ?? 0))
      #expect((fused["runs"] as? Int ?? 0) >= 12)
      // The baseline against itself is exactly 1; the candidate's interval contains its median.
      #expect(unfused["paired_speedup"] as? Double == 1)
      let (low, median, high) = (
        fused["paired_speedup_low"] as? Double ?? .nan, fused["paired_speedup"] as? Double ?? .nan,
        fused["paired_speedup_high"] as? Double ?? .nan
      )
      #expect(low <= median && median <= high && low > 0, "\(low) \(median) \(high)")

      let table = lamina(arguments)
      #expect(table.status == 0, "\(table.errors)")
      #expect(table.output.contains("paired (95% CI)"))
      let rows = table.output.split(separator: "\n").map(String.init)
      #expect(
        rows.contains { $0.hasPrefix("fused ") } && rows.contains { $0.hasPrefix("unfused ") })
    }
    let unknown = lamina("bench", model, "--compare", "fused,fast")
    #expect(unknown.status == 2)
    #expect(unknown.errors.contains("got 'fast'"))
  }

  @Test("the paired speedup's interval brackets the median ratio and excludes 1 only for real gaps")
  func pairedSpeedup() throws {
    #expect(PairedSpeedup(baseline: [1, 1, 1, 1, 1], candidate: [1, 1, 1, 1, 1]) == nil)
    // Twice as fast in every round, whatever the round's noise.
    let noise = (0..<200).map { 1 + Double(($0 * 37) % 11) / 10 }
    let twice = try #require(PairedSpeedup(baseline: noise.map { $0 * 2 }, candidate: noise))
    #expect(twice == PairedSpeedup(median: 2, low: 2, high: 2))
    // Rounds alternately 10% faster and 10% slower: no difference, and the interval says so.
    let alternating = (0..<200).map { $0 % 2 == 0 ? 1.1 : 1 / 1.1 }
    let even = try #require(
      PairedSpeedup(
        baseline: alternating.map { $0 * 3 }, candidate: [Double](repeating: 3, count: 200)))
    #expect(even.low < 1 && 1 < even.high)
    // 70% of rounds faster by 5%: the interval sits above 1.
    let mostly = (0..<200).map { $0 % 10 < 7 ? 1.05 : 0.99 }
    let faster = try #require(
      PairedSpeedup(baseline: mostly, candidate: [Double](repeating: 1, count: 200)))
    #expect(faster.median == 1.05 && faster.low > 1)
    // Whoever goes first in a round is slower (rounds rotate the order): per round the ratios
    // split into two clusters, per block of one rotation the order cancels.
    let first = (0..<200).map { $0 % 2 == 0 ? 1.2 : 1.0 }
    let second = (0..<200).map { $0 % 2 == 0 ? 1.0 : 1.2 }
    let rotated = try #require(PairedSpeedup(baseline: first, candidate: second, blockSize: 2))
    #expect(rotated == PairedSpeedup(median: 1, low: 1, high: 1))
    let unblocked = try #require(PairedSpeedup(baseline: first, candidate: second))
    #expect(unblocked.low < 0.9 && unblocked.high > 1.1)
  }

  @Test("unknown commands and options suggest the right one")
  func usageErrors() {
    let command = lamina("chek")
    #expect(command.status == 2)
    #expect(command.errors.contains("did you mean 'check'?"))
    let option = lamina("dump", RepositoryPaths.path("examples/regressor.lam"), "--formt", "dot")
    #expect(option.status == 2)
    #expect(option.errors.contains("did you mean --format?"))
    #expect(lamina("passes").output.contains("shape-inference"))
  }
}
