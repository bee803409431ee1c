import Foundation
import LaminaTestSupport
import Testing

/// Runs `tools/reference_check.py` on every example: the reference interpreter, through the `lamina`
/// command, must agree with an independent numpy evaluation of the same IR.
///
/// The script needs `python3` with numpy on PATH; without them the check shows as skipped. It runs the
/// `lamina` executable that `swift test` builds next to the test bundle, whatever the scratch path.
@Suite("Reference check against numpy")
struct ReferenceCheckTests {
  /// The example models, by file name.
  static let examples = RepositoryPaths.files(in: "examples", withExtension: "lam").map {
    URL(fileURLWithPath: $0).lastPathComponent
  }

  /// Whether `python3` from PATH can import numpy; checked once.
  static let pythonWithNumpyAvailable: Bool = {
    (try? runProcess(["python3", "-c", "import numpy"]).status) == 0
  }()

  @Test("There are examples to check")
  func examplesExist() {
    #expect(!Self.examples.isEmpty, "no .lam files in \(RepositoryPaths.path("examples"))")
  }

  @Test(
    "The interpreter agrees with numpy",
    .enabled(if: pythonWithNumpyAvailable, "needs python3 with numpy on PATH"),
    arguments: examples, [1, 5])
  func interpreterAgreesWithNumpy(example: String, batch: Int) throws {
    let lamina = try #require(
      Self.laminaExecutable(),
      """
      no lamina executable next to the test bundle (looked in \
      \(Self.productFolders().map(\.path).joined(separator: ", "))); `swift test` builds it, \
      so this means the build layout is not the expected one
      """)
    let result = try Self.runProcess(
      [
        "python3", RepositoryPaths.path("tools/reference_check.py"), "--lamina", lamina, "--batch",
        String(batch), "examples/\(example)",
      ],
      in: RepositoryPaths.root)
    #expect(
      result.status == 0,
      "reference_check.py exited with \(result.status) for \(example) at batch \(batch):\n\(result.output)"
    )
  }

  /// Folders that may hold the build's products: the one with the test bundle (macOS runs a `.xctest`
  /// bundle inside a runner) and the one with the running test executable (Linux).
  static func productFolders() -> [URL] {
    var folders = Bundle.allBundles.filter { $0.bundlePath.hasSuffix(".xctest") }.map {
      $0.bundleURL.deletingLastPathComponent()
    }
    folders.append(Bundle.main.bundleURL)
    if let executable = CommandLine.arguments.first {
      folders.append(
        URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent())
    }
    var seen: Set<String> = []
    return folders.filter { seen.insert($0.standardizedFileURL.path).inserted }
  }

  /// The `lamina` executable built alongside the tests, if there is one.
  static func laminaExecutable() -> String? {
    productFolders().map { $0.appendingPathComponent("lamina").path }.first {
      FileManager.default.isExecutableFile(atPath: $0)
    }
  }

  /// Runs a command found on PATH and returns its exit status and its standard output and error,
  /// interleaved.
  static func runProcess(_ command: [String], in directory: URL? = nil) throws -> (
    status: Int32, output: String
  ) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    if let directory { process.currentDirectoryURL = directory }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    // Read before waiting, so a child with a lot of output never blocks on a full pipe.
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
  }
}
