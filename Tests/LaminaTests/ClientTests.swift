import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// The programs in examples/ that use a compiled model from outside Lamina: a C program with only the
/// generated header, and a Swift package depending on Lamina. Each is built and run as a user would
/// (the Swift package against the Lamina this test run was built from, see `swiftClient`), and its
/// printed results are checked against the reference interpreter.
///
/// `lamina run` on a compiled `.so` does not exist yet; when it does, it belongs here too.
@Suite("Clients")
struct ClientTests {
  static let modelPath = RepositoryPaths.path("examples/digits_mlp.lam")

  // MARK: C

  /// The fixed parameter pattern of examples/c_client/main.c (`pattern_weight`), in signature order.
  static func patternParameters(_ model: Model) -> [String: Tensor] {
    var result: [String: Tensor] = [:]
    for (p, param) in model.graph.params.enumerated() {
      let shape = model.graph.type(of: param.value).concreteShape([:])!
      let values = (0..<shape.reduce(1, *)).map { i in Float((i * 7 + p * 3) % 23 - 11) / 64 }
      result[model.graph[param.value].name] = Tensor(shape: shape, scalars: values)
    }
    return result
  }

  /// Images `rows` of main.c's input pattern (`pattern_pixel`), as x: f32[rows.count, 64].
  static func patternImages(_ rows: Range<Int>) -> Tensor {
    let values = rows.flatMap { row in (0..<64).map { j in Float((row * 64 + j) * 5 % 17) / 16 } }
    return Tensor(shape: [rows.count, 64], scalars: values)
  }

  /// The rows main.c prints (`probs image N: v0 ... v9 | sum S class C`), by image.
  static func parseProbabilities(_ output: String) -> [Int: [Float]] {
    var rows: [Int: [Float]] = [:]
    for line in output.split(separator: "\n") where line.hasPrefix("probs image ") {
      let afterPrefix = line.dropFirst("probs image ".count)
      guard let colon = afterPrefix.firstIndex(of: ":"), let image = Int(afterPrefix[..<colon])
      else { continue }
      let numbers = afterPrefix[afterPrefix.index(after: colon)...].split(separator: "|")[0]
      rows[image] = numbers.split(separator: " ").compactMap { Float($0) }
    }
    return rows
  }

  @Test(
    "a C program using only the generated header matches the interpreter",
    arguments: TestData.compilers)
  func cClient(compiler: String) throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }

    // Compile the model with the CLI. The `lib` prefix lets the C program link with -ldigits_mlp.
    // --no-cache: the CLI has no option for the cache folder, and the user's cache must stay untouched.
    let console = Console.capturing()
    let library = directory + "/libdigits_mlp.so"
    let status = CommandLineTool.run(
      ["compile", Self.modelPath, "-o", library, "--cc", compiler, "--no-cache"], console: console)
    try #require(status == 0, "lamina compile: \(console.standardError)")
    #expect(FileManager.default.fileExists(atPath: directory + "/libdigits_mlp.h"))

    // Build the C program as its README says, warnings as errors.
    let program = directory + "/c_client"
    let build = try Self.run(
      [
        compiler, "-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror",
        RepositoryPaths.path("examples/c_client/main.c"),
        "-I", directory, "-L", directory, "-ldigits_mlp", "-Wl,-rpath,\(directory)", "-o", program,
      ])
    try #require(build.status == 0, "\(compiler) failed:\n\(build.output)\(build.errors)")
    #expect(
      build.output.isEmpty && build.errors.isEmpty,
      "\(compiler) printed:\n\(build.output)\(build.errors)")

    let model = try Model(contentsOf: Self.modelPath)
    // Its batches: images 0-2 together, then image 3 alone.
    func expectedProbabilities(_ parameters: [String: Tensor]) throws -> [Int: [Float]] {
      var rows: [Int: [Float]] = [:]
      for images in [0..<3, 3..<4] {
        let probs = try model.interpret(
          inputs: ["x": Self.patternImages(images)], parameters: parameters, outputs: ["probs"])[
            "probs"]!
        let values = probs.scalars(as: Float.self)
        for (offset, image) in images.enumerated() {
          rows[image] = Array(values[offset * 10..<(offset + 1) * 10])
        }
      }
      return rows
    }
    func check(_ output: String, against expected: [Int: [Float]], _ label: String) {
      let printed = Self.parseProbabilities(output)
      #expect(printed.keys.sorted() == [0, 1, 2, 3], "\(label): printed rows\n\(output)")
      for (image, row) in printed.sorted(by: { $0.key < $1.key }) {
        let problem = TestData.mismatch(
          Tensor(shape: [row.count], scalars: row), Tensor(shape: [10], scalars: expected[image]!),
          rtol: 1e-5, atol: 0)
        #expect(problem == nil, "\(label), image \(image): \(problem ?? "")")
      }
      #expect(
        output.components(separatedBy: "| sum 1.000000 class ").count == 5,
        "\(label): row sums\n\(output)")
      #expect(output.contains("forward with batch 3: images 0 to 2"))
      #expect(output.contains("forward with batch 1: images 3 to 3"))
      #expect(
        output.contains("expected error: code 1 (LAMINA_ERROR_ARGUMENT): input x is NULL"),
        "\(label): the error path\n\(output)")
    }

    // Without arguments the program sets main.c's fixed pattern itself.
    let patternRun = try Self.run([program])
    #expect(patternRun.status == 0, "c_client: \(patternRun.errors)")
    #expect(patternRun.output.hasPrefix("weights: fixed pattern\n"))
    let pattern = Self.patternParameters(model)
    check(patternRun.output, against: try expectedProbabilities(pattern), "fixed pattern")

    // The same library loaded by the Swift runtime agrees with the C program.
    let compiled = try CompiledModel(libraryPath: library)
    try compiled.setParameters(pattern)
    let fromSwift = try compiled.forward(["x": Self.patternImages(0..<3)])["probs"]!.scalars(
      as: Float.self)
    let fromC = Self.parseProbabilities(patternRun.output)
    for image in 0..<3 where fromC[image] != nil {
      let problem = TestData.mismatch(
        Tensor(shape: [10], scalars: fromC[image]!),
        Tensor(shape: [10], scalars: Array(fromSwift[image * 10..<(image + 1) * 10])), rtol: 1e-5,
        atol: 0)
      #expect(problem == nil, "CompiledModel, image \(image): \(problem ?? "")")
    }

    // With a weights file: every parameter's raw bytes in signature order (the initializers' values).
    let initial = try model.initialParameters(seed: 7)
    var weights = Data()
    for entry in compiled.signature.params {
      initial[entry.name]!.withUnsafeBytes { weights.append(contentsOf: $0) }
    }
    try weights.write(to: URL(fileURLWithPath: directory + "/weights.bin"))
    let fileRun = try Self.run([program, directory + "/weights.bin"])
    #expect(fileRun.status == 0, "c_client weights.bin: \(fileRun.errors)")
    check(fileRun.output, against: try expectedProbabilities(initial), "weights.bin")

    // A weights file of the wrong size is refused, with a message.
    try weights.dropLast(4).write(to: URL(fileURLWithPath: directory + "/short.bin"))
    let shortRun = try Self.run([program, directory + "/short.bin"])
    #expect(shortRun.status == 1)
    #expect(shortRun.errors.contains("too short for parameter 3"), "\(shortRun.errors)")
  }

  // MARK: Swift

  @Test(
    "the Swift package example resolves, builds against Lamina and classifies five digits",
    .timeLimit(.minutes(10)))
  func swiftClient() throws {
    let package = RepositoryPaths.path("examples/swift_client")
    let scratch = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    // The manifest: its path dependency resolves and has the product it names (an error otherwise).
    let graph = try Self.run([
      "swift", "package", "--package-path", package, "--scratch-path", scratch + "/resolve",
      "show-dependencies",
    ])
    try #require(graph.status == 0, "the example's manifest:\n\(graph.output)\(graph.errors)")

    let executable: String
    let packageBuildAsked =
      ProcessInfo.processInfo.environment["LAMINA_TEST_CLIENT_PACKAGE_BUILD"] != nil
    if !packageBuildAsked, let modules = try Self.builtLaminaModules() {
      // The program's sources compiled against, and linked with, the Lamina modules this test run
      // was built from: what `swift build` of the example does, without building Lamina a second
      // time (that second debug build was a sixth of the suite's CPU time).
      executable = scratch + "/SwiftClient"
      let sources = RepositoryPaths.files(
        in: "examples/swift_client/Sources/SwiftClient", withExtension: "swift")
      let compile = try Self.run(
        ["swiftc", "-Onone", "-I", modules.moduleDirectory] + sources + modules.objects + [
          "-o", executable,
        ])
      try #require(compile.status == 0, "swiftc failed:\n\(compile.output)\(compile.errors)")
    } else {
      // No build folder beside the test binary (or asked for): build the package as a user does.
      let build = try Self.run([
        "swift", "build", "--package-path", package, "--scratch-path", scratch + "/build",
      ])
      try #require(build.status == 0, "swift build failed:\n\(build.output)\(build.errors)")
      let binPath = try Self.run([
        "swift", "build", "--package-path", package, "--scratch-path", scratch + "/build",
        "--show-bin-path",
      ])
      executable = binPath.output.trimmingCharacters(in: .whitespacesAndNewlines) + "/SwiftClient"
    }

    let cache = TestCache.directory
    let run = try Self.run([executable], environment: ["LAMINA_CACHE_DIR": cache])
    try #require(run.status == 0, "SwiftClient failed:\n\(run.output)\(run.errors)")
    #expect(
      run.output.contains("compiled DigitsMLP to \(cache)/"), "the library goes to LAMINA_CACHE_DIR"
    )

    // The classes the interpreter gives the same five images with the same weights (seed 42).
    let model = try Model(contentsOf: Self.modelPath)
    let images = try NPY.read(contentsOf: RepositoryPaths.path("examples/data/digits/test/x.npy"))
    let x = Tensor(shape: [5, 64], scalars: Array(images.scalars(as: Float.self).prefix(5 * 64)))
    let probs = try model.interpret(
      inputs: ["x": x], parameters: try model.initialParameters(seed: 42), outputs: ["probs"]
    )["probs"]!.scalars(as: Float.self)
    let lines = run.output.split(separator: "\n").filter { $0.hasPrefix("image ") }
    #expect(lines.count == 5, "\(run.output)")
    for (image, line) in lines.enumerated() {
      let row = probs[image * 10..<(image + 1) * 10]
      let expectedClass = row.indices.max { row[$0] < row[$1] }! - image * 10
      #expect(
        line == "image \(image): class \(expectedClass), probabilities sum to 1.000000",
        "\(run.output)")
    }
  }

  /// The modules of the `Lamina` product and their objects in the build folder holding this test
  /// binary (SwiftPM's layout: `Modules/` and one `<target>.build/` folder of objects per target),
  /// or nil when that folder does not look like one. The targets are the product's dependency
  /// closure, read from `swift package describe`.
  static func builtLaminaModules() throws -> (moduleDirectory: String, objects: [String])? {
    guard let binary = Bundle.main.executableURL else { return nil }
    let buildDirectory = binary.deletingLastPathComponent().path
    let moduleDirectory = buildDirectory + "/Modules"
    guard FileManager.default.fileExists(atPath: moduleDirectory + "/Lamina.swiftmodule") else {
      return nil
    }
    // A scratch folder of its own: the running `swift test` may hold the lock of the package's.
    let scratch = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let describe = try run([
      "swift", "package", "--package-path", RepositoryPaths.root.path, "--scratch-path", scratch,
      "describe", "--type", "json",
    ])
    guard describe.status == 0,
      let json = try JSONSerialization.jsonObject(with: Data(describe.output.utf8))
        as? [String: Any],
      let products = json["products"] as? [[String: Any]],
      let targets = json["targets"] as? [[String: Any]],
      let product = products.first(where: { $0["name"] as? String == "Lamina" }),
      let roots = product["targets"] as? [String]
    else { return nil }
    var dependencies: [String: [String]] = [:]
    for target in targets {
      if let name = target["name"] as? String {
        dependencies[name] = target["target_dependencies"] as? [String] ?? []
      }
    }
    var closure: Set<String> = []
    var pending = roots
    while let name = pending.popLast() {
      if closure.insert(name).inserted { pending += dependencies[name] ?? [] }
    }
    var objects: [String] = []
    for name in closure.sorted() {
      let folder = buildDirectory + "/\(name).build"
      guard let enumerator = FileManager.default.enumerator(atPath: folder) else { return nil }
      let found = enumerator.compactMap { $0 as? String }.filter { $0.hasSuffix(".o") }
      guard !found.isEmpty else { return nil }
      objects += found.sorted().map { folder + "/" + $0 }
    }
    return (moduleDirectory, objects)
  }

  // MARK: Processes

  /// Runs a program found on PATH (or by path), with extra environment variables; output goes through
  /// files so a chatty program cannot fill a pipe and block.
  static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (
    status: Int32, output: String, errors: String
  ) {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let outputPath = directory + "/stdout"
    let errorsPath = directory + "/stderr"
    for path in [outputPath, errorsPath] {
      guard FileManager.default.createFile(atPath: path, contents: nil) else {
        throw RunError("cannot create \(path)")
      }
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorsPath))
    try process.run()
    process.waitUntilExit()
    return (
      process.terminationStatus, try String(contentsOfFile: outputPath, encoding: .utf8),
      try String(contentsOfFile: errorsPath, encoding: .utf8)
    )
  }
}
