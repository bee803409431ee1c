import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// The smaller findings of the hardening review (issue 13): each reproduced, then fixed.
@Suite("Hardening")
struct HardeningTests {
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

  func lamina(_ arguments: String...) -> Result { lamina(arguments) }

  func write(_ text: String, to path: String) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
  }

  static let labelOnlySymbol = """
    model M {
      input x: f32[2, 4]
      input target: f32[batch]
      output y = x * 2.0
      loss = mean(target * target)
    }
    """

  @Test("compiled forward runs when a symbol appears only in an input the outputs do not use")
  func symbolOnlyInUnusedInput() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let model = try Model(source: Self.labelOnlySymbol)
    let x = Tensor(shape: [2, 4], scalars: (0..<8).map { Float($0) - 3 })
    let target = Tensor(shape: [3], scalars: [1, 2, 3] as [Float])
    let expected = try model.interpret(inputs: ["x": x], parameters: [:], outputs: ["y"])
    let compiled = try model.compile(options: TestCache.options())
    #expect(try compiled.forward(["x": x]) == expected)
    #expect(try compiled.forward(["x": x, "target": target]) == expected)
    // The loss needs the symbol: without the input that binds it, evaluating is still an error.
    #expect(throws: RunError.self) { _ = try compiled.evaluate(["x": x]) }
    let (_, losses) = try compiled.evaluate(["x": x, "target": target])
    #expect(losses["loss"] == Tensor(scalar: 14.0 / 3, dtype: .f32))

    // Through `lamina run`, which gives the compiled forward only the inputs it uses.
    try write(Self.labelOnlySymbol, to: directory + "/m.lam")
    try NPY.write(x, to: directory + "/x.npy")
    try NPY.write(target, to: directory + "/target.npy")
    let result = lamina(
      "run", directory + "/m.lam", "--input", "x=\(directory)/x.npy", "--input",
      "target=\(directory)/target.npy", "--output", "y=\(directory)/y.npy", "--cache-dir",
      directory + "/cache")
    #expect(result.status == 0, "\(result.errors)")
    #expect(try NPY.read(contentsOf: directory + "/y.npy") == expected["y"])
  }

  static let classifier = """
    model C {
      input x: f32[batch, 3]
      input label: i32[batch]
      param w: f32[3, 4] = glorot_uniform()
      output logits = x @ w
      loss = cross_entropy(logits, label)
      train with sgd(lr: 0.1)
    }
    """

  /// A classifier with `rows` rows of data in `directory/data`; `labels` and `x` override the data.
  func classifierData(
    _ directory: String, rows: Int = 20, labels: [Int32]? = nil, x: [Float]? = nil
  ) throws {
    try write(Self.classifier, to: directory + "/c.lam")
    try FileManager.default.createDirectory(
      atPath: directory + "/data", withIntermediateDirectories: true)
    try NPY.write(
      Tensor(shape: [rows, 3], scalars: x ?? (0..<rows * 3).map { Float($0 % 7) / 7 }),
      to: directory + "/data/x.npy")
    try NPY.write(
      Tensor(shape: [rows], scalars: labels ?? (0..<rows).map { Int32($0 % 4) }),
      to: directory + "/data/label.npy")
  }

  func train(_ directory: String, _ extra: [String] = []) -> Result {
    lamina(
      [
        "train", directory + "/c.lam", "--data", directory + "/data", "--epochs", "2", "--batch",
        "4", "--interpret", "--checkpoint", directory + "/ck.safetensors",
      ] + extra)
  }

  @Test("train checks its -o, --plot and --checkpoint paths before training")
  func trainOutputsCheckedFirst() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    try classifierData(directory)
    for extra in [
      ["-o", directory + "/missing/w.safetensors"], ["--plot", directory + "/missing/loss.svg"],
      ["--plot", directory],
    ] {
      let result = train(directory, extra)
      #expect(result.status == 1)
      #expect(result.errors.contains(extra[1]), "\(result.errors)")
      // Nothing was trained: no epoch line, no checkpoint.
      #expect(!result.output.contains("epoch"), "\(result.output)")
      #expect(!FileManager.default.fileExists(atPath: directory + "/ck.safetensors"))
    }
    #expect(train(directory, ["-o", directory + "/w.safetensors"]).status == 0)
  }

  @Test("a checkpoint with a negative epoch, step or batch size is rejected")
  func negativeCheckpointMetadata() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    try classifierData(directory)
    #expect(train(directory).status == 0)
    let (tensors, metadata) = try SafeTensors.readWithMetadata(
      contentsOf: directory + "/ck.safetensors")
    #expect(try Checkpoint.read(contentsOf: directory + "/ck.safetensors").epoch == 2)
    for (key, value) in [
      ("epoch", "-1"), ("global_step", "-5"), ("batch_size", "0"), ("epochs_since_best", "-2"),
      ("best_epoch", "-1"), ("batch_size", "four"),
    ] {
      var changed = metadata
      changed[key] = value
      let path = directory + "/bad.safetensors"
      try SafeTensors.write(tensors, metadata: changed, to: path)
      #expect {
        _ = try Checkpoint.read(contentsOf: path)
      } throws: { error in
        "\(error)".contains("checkpoint metadata '\(key)'")
      }
      let resumed = train(directory, ["--resume", path])
      #expect(resumed.status == 1, "\(key) = \(value)")
    }
  }

  @Test("a label outside the classes is reported with its row in the dataset")
  func badLabelRow() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    var labels = (0..<20).map { Int32($0 % 4) }
    labels[13] = 9
    try classifierData(directory, labels: labels)
    let result = train(directory)
    #expect(result.status == 1)
    #expect(
      result.errors.contains("row 13 of the training data's 'label' holds 9"), "\(result.errors)")
  }

  @Test("NaN in the data is reported as such, with the input and row")
  func nanInData() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    var x = (0..<60).map { Float($0 % 7) / 7 }
    x[17 * 3 + 1] = .nan
    try classifierData(directory, x: x)
    let result = train(directory)
    #expect(result.status == 1)
    #expect(
      result.errors.contains("the training data holds nan in input 'x', row 17"), "\(result.errors)"
    )
    #expect(!result.errors.contains("learning rate"), "\(result.errors)")
  }

  @Test("check rejects a training step with no parameter to update, as compile --train does")
  func checkTrainStepWithoutParameters() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    try write(
      """
      model M {
        input x: f32[batch, 4]
        output y = x * 2.0
        loss = mean(y)
        train with sgd(lr: 0.1)
      }
      """, to: directory + "/m.lam")
    let check = lamina("check", directory + "/m.lam")
    let compile = lamina(
      "compile", directory + "/m.lam", "--train", "-o", directory + "/m.so", "--cache-dir",
      directory + "/cache")
    #expect(compile.status == 1)
    #expect(check.status == 1)
    #expect(check.errors.contains("5:3: error: training step 'train' has no trainable parameter"))
    // A model with parameters still checks.
    try write(Self.classifier, to: directory + "/c.lam")
    #expect(lamina("check", directory + "/c.lam").status == 0)
  }

  @Test("bench names an input too large for its random values instead of aborting")
  func benchHugeInput() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    try write(
      """
      model M {
        input x: f32[batch, 1000000, 1000000]
        output y = x * 2.0
      }
      """, to: directory + "/m.lam")
    let bench = lamina(
      "bench", directory + "/m.lam", "--batch", "1000", "--runs", "1", "--cache-dir",
      directory + "/cache")
    #expect(bench.status == 1)
    #expect(bench.errors.contains("cannot allocate the random values of input 'x'"))
  }

  @Test("the top-level help shows every command name whole")
  func helpNames() throws {
    let result = lamina("--help")
    for name in ["check", "dump", "compile", "run", "gradients", "gradcheck", "train"] {
      #expect(result.output.contains("  \(name)  "), "\(name) in \(result.output)")
    }
  }

  @Test("a .safetensors header naming a key twice is rejected")
  func duplicateSafetensorsKeys() throws {
    let entry = #"{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}"#
    for header in [
      #"{"a": \#(entry), "a": \#(entry)}"#,
      #"{"a": \#(entry), "\u0061": \#(entry)}"#,
      #"{"__metadata__": {"k": "1", "k": "2"}, "a": \#(entry)}"#,
    ] {
      let bytes = Array(header.utf8)
      var data = Data((0..<8).map { UInt8(truncatingIfNeeded: bytes.count >> (8 * $0)) })
      data += bytes + [0, 0, 128, 63]
      #expect {
        _ = try SafeTensors.decodeWithMetadata(data, name: "dup.safetensors")
      } throws: { error in
        "\(error)".contains("twice")
      }
    }
    // Equal keys in different objects are fine.
    let header = #"{"__metadata__": {"a": "x"}, "a": \#(entry)}"#
    let bytes = Array(header.utf8)
    var data = Data((0..<8).map { UInt8(truncatingIfNeeded: bytes.count >> (8 * $0)) })
    data += bytes + [0, 0, 128, 63]
    let (tensors, metadata) = try SafeTensors.decodeWithMetadata(data, name: "ok.safetensors")
    #expect(tensors.map(\.name) == ["a"])
    #expect(metadata == ["a": "x"])
  }

  @Test("control characters in names are escaped on the terminal")
  func controlCharactersEscaped() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    // A layer name holding ESC, BEL, a carriage return and a newline, written raw in the source.
    try write(
      "model M {\n  input x: f32[batch, 4]\n  output y = x |> dense(units: 2, name: \"a\u{1B}]0;owned\u{07}\rb\")\n}\n",
      to: directory + "/m.lam")
    let dump = lamina("dump", directory + "/m.lam", "--params")
    #expect(dump.status == 0, "\(dump.errors)")
    #expect(dump.output.contains(#"a\u{1B}]0;owned\u{7}\rb.weight"#), "\(dump.output)")
    let everything = dump.output + dump.errors
    #expect(!everything.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })

    // Names in a weights file reach error messages (here as the suggestion for the missing one).
    try SafeTensors.write(
      [
        (
          "a\u{1B}]0;owned\u{07}\rb.weights",
          Tensor(shape: [4, 2], scalars: [Float](repeating: 0, count: 8))
        )
      ],
      metadata: [:], to: directory + "/w.safetensors")
    let run = lamina(
      "run", directory + "/m.lam", "--weights", directory + "/w.safetensors", "--interpret")
    #expect(run.status == 1)
    #expect(run.errors.contains(#"(there is 'a\u{1B}]0;owned\u{7}\rb.weights')"#), "\(run.errors)")
    #expect(!run.errors.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })

    // A diagnostic quoting a line with a control character shows it as one replacement character.
    try write(
      "model M {\n  input x: f32[batch, 4]\n  output y = \u{1B}x\n}\n", to: directory + "/bad.lam")
    let check = lamina("check", directory + "/bad.lam")
    #expect(check.status == 1)
    #expect(
      !check.errors.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }, "\(check.errors)")
  }

  @Test("a path with a newline or an escape sequence cannot forge lines in messages")
  func pathsEscaped() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let forged = "x\nlamina: ok: \u{1B}[2Jforged"
    try write(
      "model M {\n  input x: f32[2]\n  output y = relu(x) +\n}\n", to: directory + "/" + forged)
    let check = lamina("check", directory + "/" + forged)
    #expect(check.status == 1)
    let lines = check.errors.split(separator: "\n")
    #expect(
      lines.contains { $0.contains(#"x\nlamina: ok: \u{1B}[2Jforged:4:1: error"#) },
      "\(check.errors)")
    #expect(
      lines.contains { $0.hasSuffix(#"x\nlamina: ok: \u{1B}[2Jforged: 1 error"#) },
      "\(check.errors)")
    #expect(!lines.contains { $0.hasPrefix("lamina: ok") }, "\(check.errors)")

    let missing = lamina("check", directory + "/" + forged + ".missing")
    #expect(missing.status == 1)
    #expect(!missing.errors.split(separator: "\n").contains { $0.hasPrefix("lamina: ok") })

    // A file written into a folder that does not exist, named with a newline.
    try write(Self.classifier, to: directory + "/c.lam")
    let initialize = lamina(
      "init", directory + "/c.lam", "-o", directory + "/" + forged + "/w.safetensors")
    #expect(initialize.status == 1)
    let everything = initialize.output + initialize.errors
    #expect(
      !everything.split(separator: "\n").contains { $0.hasPrefix("lamina: ok") }, "\(everything)")
    #expect(!everything.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }, "\(everything)")
  }

  @Test("a cache folder that cannot be created is reported as PATH: reason")
  func uncreatableCacheDirectory() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    try write("not a folder", to: directory + "/file")
    try write(Self.classifier, to: directory + "/c.lam")
    let result = lamina(
      "compile", directory + "/c.lam", "-o", directory + "/c.so", "--cache-dir",
      directory + "/file/cache")
    #expect(result.status == 1)
    #expect(result.errors.contains("/file/cache: Not a directory"), "\(result.errors)")
    #expect(!result.errors.contains("Domain="), "\(result.errors)")
  }
}
