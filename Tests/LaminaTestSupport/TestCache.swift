import Foundation
import Lamina

/// The library cache of one test run, shared by every suite.
///
/// Compiling the C runtime and the example models is much of what the compiled tests cost, and the
/// suites compile many of the same sources (every example, with each C compiler): with one cache,
/// each distinct source is compiled once per run. The folder is made once per test process, under
/// the temporary directory with the process id in its name, so concurrent runs never share it and
/// the user's own cache (`~/.cache/lamina`) is never touched. It is left for the OS to clear with the
/// rest of the temporary directory.
///
/// A test that needs an empty or a separate cache (one that checks a first compile happens, or
/// corrupts a cached file) makes its own with `RepositoryPaths.temporaryDirectory()` and says why.
public enum TestCache {
  /// The shared cache folder, with the runtime object of the default C compiler built in it.
  public static var directory: String {
    prepareRuntime(compiler: nil)
    return folder
  }

  /// Default compile options with the shared cache, and `compiler` when given (nil: the usual search).
  public static func options(compiler: String? = nil) -> CompileOptions {
    prepareRuntime(compiler: compiler)
    var options = CompileOptions()
    options.compiler = compiler
    options.cacheDirectory = folder
    return options
  }

  private static let folder: String = {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent(
      "lamina-test-cache-\(ProcessInfo.processInfo.processIdentifier)"
    ).path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }()

  private static let lock = NSLock()
  nonisolated(unsafe) private static var preparedCompilers: Set<String> = []

  /// Builds the runtime object for `compiler` once, before any test compiles with it: tests run in
  /// parallel, and without this the first two to compile would both build the same runtime. A
  /// failure is left for the test's own compile to report.
  private static func prepareRuntime(compiler: String?) {
    lock.lock()
    defer { lock.unlock() }
    let key = compiler ?? ""
    guard !preparedCompilers.contains(key) else { return }
    preparedCompilers.insert(key)
    var options = CompileOptions()
    options.compiler = compiler
    options.cacheDirectory = folder
    let model = try? Model(
      source: """
        model RuntimeWarmUp {
          input x: f32[n]
          output y = x + 1
        }
        """)
    _ = try? model?.buildLibrary(options: options)
  }
}
