import Foundation
import LaminaSupport

/// The system C compiler, found at run time.
///
/// Search order: an explicit path (`--cc`), `LAMINA_CC`, then `cc`, `clang`, `gcc` on `PATH`.
public struct CCompiler: Sendable {
  public var path: String
  /// The first line of `cc --version`; part of the cache key, so a compiler upgrade recompiles.
  public var version: String
  public var flags: [String]

  /// `-O3 -march=native`: the machine's widest vectors (AVX2 or AVX-512).
  /// `-fno-math-errno`: libm calls such as sqrt become instructions and loops with them vectorize;
  /// Lamina never reads errno. Fused multiply-adds stay allowed (the GEMM needs them); they change
  /// results by about one rounding, far inside the tolerance against the interpreter.
  /// `-fno-trapping-math`: nothing reads floating-point exception flags, and without it gcc will not
  /// turn float comparisons (ReLU, clamps) into vector selects. `-fopenmp-simd`: the `omp simd`
  /// pragmas of fused reductions (vectorized row sums), without the OpenMP runtime.
  public static let defaultFlags = [
    "-std=gnu11", "-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno",
    "-fno-trapping-math", "-fopenmp-simd",
    "-Wall", "-Wno-unused-function", "-Wno-unused-variable", "-Wno-unused-but-set-variable",
  ]

  /// Finds a compiler; `explicitPath` (from `--cc`) wins, then `LAMINA_CC`, then the usual names.
  public static func find(explicitPath: String? = nil, flags: [String]? = nil) throws -> CCompiler {
    let environment = ProcessInfo.processInfo.environment
    let candidates =
      [explicitPath, environment["LAMINA_CC"]].compactMap { $0 } + ["cc", "clang", "gcc"]
    for candidate in candidates {
      guard let resolved = resolve(candidate) else {
        if candidate == explicitPath || candidate == environment["LAMINA_CC"] {
          throw CompilerError(
            message: "C compiler '\(candidate)' not found", compilerOutput: "", sourceExcerpt: "")
        }
        continue
      }
      let version =
        (try? run(resolved, ["--version"]))?.output.split(separator: "\n").first.map(String.init)
        ?? "unknown"
      return CCompiler(path: resolved, version: version, flags: flags ?? defaultFlags)
    }
    throw CompilerError(
      message: "no C compiler found: install clang or gcc, or set LAMINA_CC", compilerOutput: "",
      sourceExcerpt: "")
  }

  /// Compiles `sourcePath` and links it with `objects` into the shared library `outputPath`.
  public func compile(
    sourcePath: String, objects: [String] = [], outputPath: String, source: String
  ) throws {
    let result = try CCompiler.run(
      path, flags + [sourcePath] + objects + ["-o", outputPath, "-lm", "-lpthread"])
    guard result.status == 0 else {
      throw CompilerError(
        message: "\(path) failed with status \(result.status)", compilerOutput: result.output,
        sourceExcerpt: CCompiler.excerpt(of: source, around: result.output, path: sourcePath))
    }
  }

  /// Compiles `sourcePath` into a position-independent object whose symbols the libraries that link
  /// it do not export (`-fvisibility=hidden`).
  public func compileObject(sourcePath: String, outputPath: String, source: String) throws {
    let objectFlags = flags.filter { $0 != "-shared" } + ["-c", "-fvisibility=hidden"]
    let result = try CCompiler.run(path, objectFlags + [sourcePath, "-o", outputPath])
    guard result.status == 0 else {
      throw CompilerError(
        message: "\(path) failed with status \(result.status)", compilerOutput: result.output,
        sourceExcerpt: CCompiler.excerpt(of: source, around: result.output, path: sourcePath))
    }
  }

  static func resolve(_ name: String) -> String? {
    if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") {
      let candidate = "\(directory)/\(name)"
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
  }

  /// Runs a program, returning its exit status and combined output.
  static func run(_ executable: String, _ arguments: [String]) throws -> (
    status: Int32, output: String
  ) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  /// The lines of the generated C around the first `file:line:` the compiler complained about.
  static func excerpt(of source: String, around output: String, path: String) -> String {
    guard let range = output.range(of: path + ":"),
      let line = Int(output[range.upperBound...].prefix { $0.isNumber })
    else { return "" }
    let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
    let first = max(0, line - 4)
    let last = min(lines.count, line + 3)
    guard first < last else { return "" }
    return (first..<last).map { String(format: "%6d | ", $0 + 1) + lines[$0] }.joined(
      separator: "\n")
  }
}

/// The C compiler failed or could not be found.
public struct CompilerError: Error, Sendable, CustomStringConvertible {
  public var message: String
  public var compilerOutput: String
  public var sourceExcerpt: String

  public var description: String {
    var text = "C compilation failed: \(message)"
    if !compilerOutput.isEmpty {
      text += "\n" + compilerOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    if !sourceExcerpt.isEmpty { text += "\nin the generated C:\n" + sourceExcerpt }
    return text
  }
}
