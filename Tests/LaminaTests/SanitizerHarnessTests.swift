import Foundation
import Lamina
import LaminaTestSupport
import Testing

// CCompiler.run: posix_spawn and waitpid, the child's output read from a pipe with EINTR retries
// (Foundation's Pipe once crashed the test runner reading a child's stderr).
@testable import LaminaRuntime

/// The generated C of every example, built with AddressSanitizer and UndefinedBehaviorSanitizer
/// into a small C program (`SanitizerHarness/harness.c`) run as a child process: an ASan build cannot
/// be loaded into the test process. The harness runs forward, evaluate and every training step at
/// batch 1 and 17 through the C interface, with buffers of exactly their size; a sanitizer report
/// (an out-of-bounds access, a leak, signed overflow, a misaligned load) fails the test, and the
/// results it writes are compared against the reference interpreter's.
///
/// Skipped, with the reason, only when the C compiler cannot build and run a sanitized program.
@Suite("Sanitizer harness")
struct SanitizerHarnessTests {
  static let models =
    RepositoryPaths.files(in: "examples", withExtension: "lam")
    + RepositoryPaths.files(in: "examples/bench", withExtension: "lam")

  /// Batch 17: not a multiple of any vector width or GEMM block, so every remainder loop runs.
  static let batches = [1, 17]

  /// -O1 keeps the sanitized compiles short; the kernels' loops and the GEMM's tails still run.
  /// The flags come after each unit's own, so they win over its -O2 or -O3.
  static let sanitizerFlags = [
    "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
  ]

  /// One instruction set, the widest this CPU runs (on an AVX-512 machine, the kernels a portable
  /// library's context picks): a portable build compiles model.c and the GEMM twice and runs one.
  static let target = CompileTarget.native

  /// The C compiler, or why it cannot build and run a sanitized program here.
  static let toolchain: Result<CCompiler, ToolchainProblem> = {
    do {
      let compiler = try CCompiler.find()
      let directory = try RepositoryPaths.temporaryDirectory()
      defer { try? FileManager.default.removeItem(atPath: directory) }
      let probe = directory + "/probe.c"
      try "int main(void) { return 0; }\n".write(toFile: probe, atomically: true, encoding: .utf8)
      let build = try CCompiler.run(
        compiler.path, sanitizerFlags + [probe, "-o", directory + "/probe"])
      guard build.status == 0 else {
        return .failure(
          ToolchainProblem(
            "\(compiler.path) cannot build with \(sanitizerFlags.joined(separator: " ")): \(build.output)"
          ))
      }
      let run = try CCompiler.run(directory + "/probe", [])
      guard run.status == 0 else {
        return .failure(
          ToolchainProblem(
            "a program built with \(compiler.path) -fsanitize=address,undefined does not run here (status \(run.status)): \(run.output)"
          ))
      }
      return .success(compiler)
    } catch {
      return .failure(ToolchainProblem("\(error)"))
    }
  }()

  struct ToolchainProblem: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
  }

  static var sanitizersWork: Bool {
    if case .success = toolchain { return true }
    if case .failure(let problem) = toolchain {
      print("Sanitizer harness skipped: \(problem)")
    }
    return false
  }

  @Test(
    "the generated C of every example runs clean under ASan and UBSan and matches the interpreter",
    .enabled(
      if: sanitizersWork, "the C compiler cannot build and run -fsanitize=address,undefined here"),
    arguments: models)
  func sanitizedExample(_ path: String) throws {
    let compiler = try Self.toolchain.get()
    let name = URL(fileURLWithPath: path).lastPathComponent
    let model = try Self.load(path)
    let generated = try model.generateC()
    let signature = generated.signature
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }

    // Build: the model's units here, the runtime's shared with the other examples.
    let executable = try Self.build(generated, compiler: compiler, in: directory)

    // One plan for both batches; each batch starts from a fresh context.
    let parameters = try model.initialParameters(seed: 11)
    try Self.concatenated(signature.params.map { parameters[$0.name]! }).write(
      to: URL(fileURLWithPath: directory + "/params.bin"))
    var plan: [String] = []
    var expectations: [(batch: Int, inputs: [String: Tensor], bindings: [String: Int])] = []
    for batch in Self.batches {
      let bindings = Dictionary(uniqueKeysWithValues: signature.symbols.map { ($0, batch) })
      let inputs = TestData.inputs(for: model.graph, symbols: bindings, seed: UInt64(30 + batch))
      expectations.append((batch, inputs, bindings))
      // Files are named by index: names are the model's, and may hold any character.
      for (index, entry) in signature.inputs.enumerated() {
        try Self.concatenated([inputs[entry.name]!]).write(
          to: URL(fileURLWithPath: directory + "/b\(batch)_input\(index).bin"))
      }
      func files(_ entries: [ModelSignature.Entry], _ kind: String) throws -> String {
        try
          (["\(entries.count)"]
          + entries.enumerated().map { index, entry in
            let shape = try #require(entry.concreteShape(bindings), "\(name): \(entry.name)")
            let bytes = shape.reduce(1, *) * (try #require(entry.elementType)).byteSize
            return "\(bytes) b\(batch)_\(kind)\(index).bin"
          }).joined(separator: " ")
      }
      let inputFiles = signature.inputs.indices.map { "b\(batch)_input\($0).bin" }
      plan.append("create 2")
      plan.append("set_params params.bin")
      plan.append(
        "dims \(signature.symbols.count) "
          + signature.symbols.map { "\(bindings[$0]!)" }.joined(separator: " "))
      // forward takes only the inputs marked forward: the others are NULL, as the interface allows.
      plan.append(
        "inputs \(signature.inputs.count) "
          + zip(signature.inputs, inputFiles).map { $0.forward == true ? $1 : "-" }.joined(
            separator: " "))
      plan.append("forward " + (try files(signature.outputs, "forward")))
      plan.append("inputs \(signature.inputs.count) " + inputFiles.joined(separator: " "))
      plan.append(
        "evaluate " + (try files(signature.outputs, "evaluate")) + " "
          + (try files(signature.losses, "loss")))
      for (index, step) in signature.steps.enumerated() {
        let loss = try #require(signature.losses.first { $0.name == step.loss })
        plan.append(
          "train \(index) \((try #require(loss.elementType)).byteSize) b\(batch)_train\(index)_loss.bin"
        )
        plan.append("get_params b\(batch)_train\(index)_params.bin")
        plan.append("get_state b\(batch)_train\(index)_state.bin")
      }
      plan.append("destroy")
    }
    try (plan.joined(separator: "\n") + "\n").write(
      toFile: directory + "/plan.txt", atomically: true, encoding: .utf8)

    let run = try CCompiler.run(executable, [directory])
    try #require(
      run.status == 0 && run.output.contains("harness: done"),
      "\(name): the sanitized harness failed with status \(run.status)\(run.status == 99 ? " (a sanitizer report)" : ""):\n\(run.output)"
    )

    // Against the interpreter.
    let mixed = Self.hasF32(model.graph)
    let outputNames = signature.outputs.map(\.name)
    for (batch, inputs, bindings) in expectations {
      let label = "\(name) batch \(batch)"
      func read(_ entries: [ModelSignature.Entry], _ index: Int, _ kind: String) throws -> Tensor {
        try Self.tensor(
          entries[index], bindings, file: directory + "/b\(batch)_\(kind)\(index).bin")
      }
      let expectedOutputs = try model.interpret(
        inputs: inputs, parameters: parameters, outputs: outputNames + signature.losses.map(\.name))
      for (index, entry) in signature.outputs.enumerated() {
        for kind in ["forward", "evaluate"] {
          let problem = Self.mismatch(
            try read(signature.outputs, index, kind), expectedOutputs[entry.name]!, mixed: mixed)
          #expect(problem == nil, "\(label): \(kind) \(entry.name): \(problem ?? "")")
        }
      }
      for (index, entry) in signature.losses.enumerated() {
        let problem = Self.mismatch(
          try read(signature.losses, index, "loss"), expectedOutputs[entry.name]!, mixed: mixed)
        #expect(problem == nil, "\(label): loss \(entry.name): \(problem ?? "")")
      }
      // Training steps in order, each from the values the previous one left, as in the harness.
      var values = parameters.merging(try model.graph.initialState()) { given, _ in given }
      for (index, step) in signature.steps.enumerated() {
        let reference = try model.interpretTrainStep(inputs, values: values, step: step.name)
        values = reference.values
        let lossEntry = signature.losses.first { $0.name == step.loss }!
        let loss = try Self.tensor(
          ModelSignature.Entry(name: step.loss, dtype: lossEntry.dtype, shape: []), [:],
          file: directory + "/b\(batch)_train\(index)_loss.bin"
        ).doubles()[0]
        #expect(
          abs(loss - reference.loss) <= 1e-5 * max(1, abs(reference.loss)),
          "\(label): step \(step.name) loss \(loss), interpreted \(reference.loss)")
        let trained =
          try Self.split(
            signature.params, file: directory + "/b\(batch)_train\(index)_params.bin")
          + Self.split(signature.states, file: directory + "/b\(batch)_train\(index)_state.bin")
        for (entryName, actual) in trained {
          guard let expected = reference.values[entryName] else {
            Issue.record("\(label): step \(step.name): the interpreter has no value \(entryName)")
            continue
          }
          let problem: String?
          if let optimizer = model.graph.trainSteps.first(where: { $0.name == step.name }),
            ["adam", "adamw"].contains(optimizer.optimizer),
            let firstMoment = reference.values[entryName + ".m"]
          {
            let lr = optimizer.attributes["lr"]?.doubleValue ?? 1e-3
            // The model's largest first moment: a whole tensor can be rounding noise (a conv's bias
            // before a batch norm has a gradient of exactly zero in exact arithmetic).
            let scale = reference.values.filter { $0.key.hasSuffix(".m") }.values.compactMap {
              TestData.largestFiniteMagnitude($0)
            }.max()
            problem = Self.adamMismatch(
              actual, expected, firstMoment: firstMoment, scale: scale ?? 0, lr: lr, mixed: mixed)
          } else {
            problem = Self.mismatch(actual, expected, mixed: mixed)
          }
          #expect(problem == nil, "\(label): step \(step.name): \(entryName): \(problem ?? "")")
        }
      }
    }
  }

  // MARK: Loading

  /// The model with its training steps when it has any. RMSprop and Adagrad are replaced by SGD
  /// with momentum, as in FusionTests: their first step moves a weight by about lr·g/|g|, so a
  /// gradient within rounding of zero can step either way, and their state (squares) does not
  /// say which elements those are. Adam and AdamW keep theirs (`adamTolerance`): no example uses
  /// the other two, and TrainStepTests compares every optimizer's update against the interpreter.
  static func load(_ path: String) throws -> Model {
    let inference = try Model(contentsOf: path)
    let training = try Model(contentsOf: path, pipeline: Pipeline.training)
    guard !training.graph.trainSteps.isEmpty else { return inference }
    let source = try String(contentsOfFile: path, encoding: .utf8).replacing(
      #/train with (rmsprop|adagrad)\([^)]*\)/#,
      with: "train with sgd(lr: 0.01, momentum: 0.9)")
    return try Model(source: source, path: path, pipeline: Pipeline.training)
  }

  /// A parameter after an Adam or AdamW step against the interpreter's. Adam's first step moves a
  /// weight by lr·g/(|g| + ε): where the gradient is within rounding of zero, the compiled and the
  /// interpreted step can go opposite ways, up to 2·lr apart. The first moment m = (1-β₁)g (itself
  /// compared as usual) says where: an element whose expected m is within the relative tolerance
  /// times the model's largest |m| (`scale`) of zero may differ by 2·lr; every other element is held to the
  /// usual tolerance.
  static func adamMismatch(
    _ actual: Tensor, _ expected: Tensor, firstMoment: Tensor, scale: Double, lr: Double,
    mixed: Bool
  ) -> String? {
    let nearZero = tolerance(firstMoment, mixed: mixed).rtol * scale
    let moments = firstMoment.doubles()
    var (a, e) = (actual.doubles(), expected.doubles())
    guard a.count == e.count, moments.count == e.count else {
      return mismatch(actual, expected, mixed: mixed)
    }
    for index in e.indices
    where abs(moments[index]) <= nearZero && abs(a[index] - e[index]) <= 2 * lr * (1 + 1e-3) {
      a[index] = e[index]
    }
    return mismatch(
      Tensor(dtype: actual.dtype, shape: actual.shape, doubles: a),
      Tensor(dtype: expected.dtype, shape: expected.shape, doubles: e), mixed: mixed)
  }

  // MARK: Building

  /// Compiles the model's units in `directory` and links them with the shared runtime objects and
  /// the harness into an executable.
  static func build(_ generated: GeneratedModel, compiler: CCompiler, in directory: String) throws
    -> String
  {
    let units = try Model.translationUnits(generated, target: target, compiler: compiler)
    try writeSources(generated, to: directory)
    var objects: [String] = []
    for (index, unit) in units.enumerated() {
      if unit.shared {
        objects.append(try SharedRuntime.object(unit, compiler: compiler))
      } else {
        let object = directory + "/unit\(index).o"
        try compiler.compileObject(
          sourcePath: directory + "/" + unit.file, flags: unit.flags + sanitizerFlags,
          outputPath: object, source: unit.source)
        objects.append(object)
      }
    }
    let executable = directory + "/harness"
    let link = try CCompiler.run(
      compiler.path,
      ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-I", directory] + sanitizerFlags + [
        RepositoryPaths.path("Tests/LaminaTests/SanitizerHarness/harness.c")
      ] + objects + ["-o", executable, "-lm", "-lpthread"])
    try #require(link.status == 0, "building the harness failed:\n\(link.output)")
    return executable
  }

  /// model.c, model.h (the generated header, which the harness includes) and the C runtime.
  static func writeSources(_ generated: GeneratedModel, to directory: String) throws {
    for (name, text) in CRuntimeSources.files {
      try text.write(toFile: directory + "/" + name, atomically: false, encoding: .utf8)
    }
    try generated.source.write(toFile: directory + "/model.c", atomically: false, encoding: .utf8)
    try generated.header.write(toFile: directory + "/model.h", atomically: false, encoding: .utf8)
  }

  /// The runtime's sanitized objects, the same for every example: each compiled once per test
  /// process, in a folder of its own.
  enum SharedRuntime {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var objects: [String: String] = [:]
    private static let directory: String = {
      let path = FileManager.default.temporaryDirectory.appendingPathComponent(
        "lamina-sanitized-runtime-\(ProcessInfo.processInfo.processIdentifier)"
      ).path
      try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
      return path
    }()

    static func object(_ unit: TranslationUnit, compiler: CCompiler) throws -> String {
      // Held while compiling: two examples needing the same GEMM wait for one compile.
      lock.lock()
      defer { lock.unlock() }
      let key = ([unit.file] + unit.flags).joined(separator: "\u{0}")
      if let object = objects[key] { return object }
      if objects.isEmpty {
        for (name, text) in CRuntimeSources.files {
          try text.write(toFile: directory + "/" + name, atomically: false, encoding: .utf8)
        }
      }
      let object = directory + "/runtime\(objects.count).o"
      try compiler.compileObject(
        sourcePath: directory + "/" + unit.file, flags: unit.flags + sanitizerFlags,
        outputPath: object, source: unit.source)
      objects[key] = object
      return object
    }
  }

  // MARK: Results

  static func concatenated(_ tensors: [Tensor]) -> Data {
    var data = Data()
    for tensor in tensors { tensor.withUnsafeBytes { data.append(contentsOf: $0) } }
    return data
  }

  static func tensor(_ entry: ModelSignature.Entry, _ bindings: [String: Int], file: String) throws
    -> Tensor
  {
    let data = try Data(contentsOf: URL(fileURLWithPath: file))
    let shape = try #require(entry.concreteShape(bindings))
    let dtype = try #require(entry.elementType)
    return try #require(
      data.withUnsafeBytes { Tensor(dtype: dtype, shape: shape, bytes: $0) },
      "\(file): \(data.count) bytes, not \(entry.typeDescription)")
  }

  /// Parameters or state tensors written one after the other, in signature order.
  static func split(_ entries: [ModelSignature.Entry], file: String) throws -> [(String, Tensor)] {
    let data = try Data(contentsOf: URL(fileURLWithPath: file))
    var offset = 0
    var result: [(String, Tensor)] = []
    for entry in entries {
      let shape = try #require(entry.concreteShape([:]))
      let dtype = try #require(entry.elementType)
      let bytes = shape.reduce(1, *) * dtype.byteSize
      try #require(offset + bytes <= data.count, "\(file) is too short for \(entry.name)")
      let tensor = try #require(
        data[offset..<offset + bytes].withUnsafeBytes {
          Tensor(dtype: dtype, shape: shape, bytes: $0)
        })
      result.append((entry.name, tensor))
      offset += bytes
    }
    #expect(offset == data.count, "\(file) is longer than the signature's tensors")
    return result
  }

  /// FusionTests' tolerance against the interpreter: 1e-4 relative plus 1e-4 of the tensor's
  /// largest magnitude for f32 (and f64 computed from f32), 1e-12 for pure f64, integers exactly.
  static func mismatch(_ actual: Tensor, _ expected: Tensor, mixed: Bool) -> String? {
    let (rtol, atol) = tolerance(expected, mixed: mixed)
    return TestData.mismatch(actual, expected, rtol: rtol, atol: atol)
  }

  static func tolerance(_ expected: Tensor, mixed: Bool) -> (rtol: Double, atol: Double) {
    let scale = max(TestData.largestFiniteMagnitude(expected) ?? 1, 1)
    return switch expected.dtype {
    case .f32: (1e-4, 1e-4 * scale)
    case .f64: mixed ? (1e-4, 1e-4 * scale) : (1e-12, 1e-14 * scale)
    case .i32, .i64: (0, 0)
    }
  }

  static func hasF32(_ graph: Graph) -> Bool {
    (graph.inputs.map(\.value) + graph.params.map(\.value)).contains {
      graph.type(of: $0).dtype == .f32
    }
  }
}
