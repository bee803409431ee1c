import Foundation
import LaminaSupport

/// The system C compiler, found at run time.
///
/// Search order: an explicit path (`--cc`), `LAMINA_CC`, then `cc`, `clang`, `gcc` on `PATH`.
public struct CCompiler: Sendable {
  /// The compiler's executable.
  public var path: String
  /// The first line of `cc --version`; part of the cache key, so a compiler upgrade recompiles.
  public var version: String
  /// The user's flags (`--cflags`), after the target's on every compiler call: the user's word wins.
  public var flags: [String]

  /// Flags of every translation unit, before the target's and the optimization level.
  /// `-fno-math-errno`: libm calls such as sqrt become instructions and loops with them vectorize;
  /// Lamina never reads errno. Fused multiply-adds stay allowed (the GEMM needs them); they change
  /// results by about one rounding, far inside the tolerance against the interpreter.
  /// `-fno-trapping-math`: nothing reads floating-point exception flags, and without it gcc will not
  /// turn float comparisons (ReLU, clamps) into vector selects. `-fopenmp-simd`: the `omp simd`
  /// pragmas of fused reductions (vectorized row sums), without the OpenMP runtime. `-pipe`: no
  /// temporary assembly files between the compiler and the assembler.
  public static let commonFlags = [
    "-std=gnu11", "-pipe", "-fPIC", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd",
    "-Wall", "-Wno-unused-function", "-Wno-unused-variable", "-Wno-unused-but-set-variable",
  ]

  /// Whether the compiler is clang (its `--version` says so), else gcc or a compatible one.
  public var isClang: Bool { version.contains("clang") }

  /// The optimization flags of the generated kernels and the GEMM. gcc: `-O2` with the vectorizer
  /// cost model of `-O3` (`dynamic`), which vectorizes the loops `-O3` does and compiles model.c in
  /// 22% less time (mlp_784 --train: 0.33 s instead of 0.42 s of CPU). Measured against `-O3`
  /// (thread CPU time, interleaved calls): W6 has the same instructions; mlp_784's training step
  /// takes 0.96-1.00x the time. clang: `-O3` (its `-O2` runs the vectorizer already).
  public var kernelOptimization: [String] {
    isClang ? ["-O3"] : ["-O2", "-fvect-cost-model=dynamic"]
  }

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
      return CCompiler(path: resolved, version: version(of: resolved), flags: flags ?? [])
    }
    throw CompilerError(
      message: "no C compiler found: install clang or gcc, or set LAMINA_CC", compilerOutput: "",
      sourceExcerpt: "")
  }

  private static let versions = Memo<String>()

  private static func version(of path: String) -> String {
    versions.value(for: path) {
      (try? run(path, ["--version"]))?.output.split(separator: "\n").first.map(String.init)
        ?? "unknown"
    }
  }

  /// Compiles `sourcePath` into a position-independent object with `flags` then the user's.
  public func compileObject(
    sourcePath: String, flags unitFlags: [String], outputPath: String, source: String
  ) throws {
    let result = try CCompiler.run(
      path, unitFlags + flags + ["-c", sourcePath, "-o", outputPath])
    guard result.status == 0 else {
      throw CompilerError(
        message: "\(path) failed with status \(result.status)", compilerOutput: result.output,
        sourceExcerpt: CCompiler.excerpt(of: source, around: result.output, path: sourcePath))
    }
  }

  /// Links objects into the shared library `outputPath`.
  public func link(objects: [String], outputPath: String) throws {
    let result = try CCompiler.run(
      path, ["-shared", "-fPIC"] + flags + objects + ["-o", outputPath, "-lm", "-lpthread"])
    guard result.status == 0 else {
      throw CompilerError(
        message: "\(path) failed to link with status \(result.status)",
        compilerOutput: result.output, sourceExcerpt: "")
    }
  }

  private static let nativeMacros = Memo<String>()

  /// The predefined macros of `-march=native` (with the user's flags): what native code may use.
  public func nativeMacroDump() throws -> String {
    let key = ([path] + flags).joined(separator: "\u{0}")
    let flags = self.flags
    let path = self.path
    return try CCompiler.nativeMacros.value(for: key) {
      let result = try CCompiler.run(
        path, ["-march=native"] + flags + ["-dM", "-E", "-x", "c", "/dev/null"])
      guard result.status == 0 else {
        throw CompilerError(
          message: "\(path) cannot tell what -march=native means here (status \(result.status))",
          compilerOutput: result.output, sourceExcerpt: "")
      }
      return result.output
    }
  }

  /// The CPU features `-march=native` enables, as `lamina_cpu.c` names them.
  public func nativeFeatures() throws -> [String] {
    let defined = Set(
      try nativeMacroDump().split(separator: "\n").compactMap { line -> String? in
        let words = line.split(separator: " ")
        return words.count >= 2 && words[0] == "#define" ? String(words[1]) : nil
      })
    return CCompiler.featureMacros.filter { defined.contains($0.macro) }.map(\.feature)
  }

  /// Predefined macros of x86 instruction-set extensions and the CPUID features they stand for.
  static let featureMacros: [(macro: String, feature: String)] = [
    ("__SSE3__", "sse3"), ("__SSSE3__", "ssse3"), ("__SSE4_1__", "sse4.1"),
    ("__SSE4_2__", "sse4.2"),
    ("__POPCNT__", "popcnt"), ("__AVX__", "avx"), ("__AVX2__", "avx2"), ("__FMA__", "fma"),
    ("__F16C__", "f16c"), ("__BMI__", "bmi"), ("__BMI2__", "bmi2"), ("__LZCNT__", "lzcnt"),
    ("__MOVBE__", "movbe"), ("__AES__", "aes"), ("__SHA__", "sha"), ("__ADX__", "adx"),
    ("__RDRND__", "rdrnd"), ("__RDSEED__", "rdseed"), ("__XSAVE__", "xsave"), ("__GFNI__", "gfni"),
    ("__VAES__", "vaes"), ("__VPCLMULQDQ__", "vpclmulqdq"), ("__AVX512F__", "avx512f"),
    ("__AVX512BW__", "avx512bw"), ("__AVX512CD__", "avx512cd"), ("__AVX512DQ__", "avx512dq"),
    ("__AVX512VL__", "avx512vl"), ("__AVX512VNNI__", "avx512vnni"),
    ("__AVX512VBMI__", "avx512vbmi"), ("__AVX512VBMI2__", "avx512vbmi2"),
    ("__AVX512BITALG__", "avx512bitalg"), ("__AVX512VPOPCNTDQ__", "avx512vpopcntdq"),
    ("__AVX512IFMA__", "avx512ifma"),
  ]

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
  ///
  /// Spawned with `posix_spawn` and reaped with `waitpid`: Foundation's `Process` on Linux waits for
  /// the child by polling its run loop, which added tens of milliseconds to each of the compiler calls
  /// a compile makes (a fully cached `lamina compile` took 0.18 s of wall time for 0.03 s of CPU).
  static func run(_ executable: String, _ arguments: [String]) throws -> (
    status: Int32, output: String
  ) {
    var descriptors: [Int32] = [-1, -1]
    guard pipe(&descriptors) == 0 else {
      throw CompilerError(
        message: "cannot create a pipe for \(executable): \(String(cString: strerror(errno)))",
        compilerOutput: "", sourceExcerpt: "")
    }
    // Close-on-exec: compilers spawned at the same time from other threads must not inherit this
    // pipe's write end, or this read would wait for them too (the child's dup2 copies lose the flag).
    for descriptor in descriptors { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
    let (readEnd, writeEnd) = (descriptors[0], descriptors[1])
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
    posix_spawn_file_actions_adddup2(&actions, writeEnd, 2)
    let argumentStrings = ([executable] + arguments).map { strdup($0) }
    let environmentStrings = ProcessInfo.processInfo.environment.map {
      strdup("\($0.key)=\($0.value)")
    }
    defer { (argumentStrings + environmentStrings).forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(
      &pid, executable, &actions, nil, argumentStrings + [nil], environmentStrings + [nil])
    close(writeEnd)
    guard spawned == 0 else {
      close(readEnd)
      throw CompilerError(
        message: "cannot run \(executable): \(String(cString: strerror(spawned)))",
        compilerOutput: "", sourceExcerpt: "")
    }
    var output = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
      let count = read(readEnd, &buffer, buffer.count)
      if count > 0 {
        output.append(contentsOf: buffer[0..<count])
      } else if count < 0 && errno == EINTR {
        continue
      } else {
        break
      }
    }
    close(readEnd)
    var waitStatus: Int32 = 0
    while waitpid(pid, &waitStatus, 0) < 0 {
      guard errno == EINTR else { break }
    }
    // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import.
    let signal = waitStatus & 0x7f
    let status = signal == 0 ? (waitStatus >> 8) & 0xff : 128 + signal
    return (status, String(decoding: output, as: UTF8.self))
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

/// Values computed once per key for the whole process (compiler versions, native features).
final class Memo<Value: Sendable>: @unchecked Sendable {
  private var values: [String: Value] = [:]
  private let lock = NSLock()

  func value(for key: String, _ make: () throws -> Value) rethrows -> Value {
    lock.lock()
    defer { lock.unlock() }
    if let value = values[key] { return value }
    let value = try make()
    values[key] = value
    return value
  }
}
