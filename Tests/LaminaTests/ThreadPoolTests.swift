import Foundation
import LaminaCodegenC
import LaminaTestSupport
import Testing

@testable import LaminaRuntime

/// The C runtime's thread pool (`lamina_pool.c`) on its own: `PoolHarness/pool_check.c` runs
/// thousands of parallel loops of every shape (no task, one, fewer than threads, uneven splits,
/// tasks of uneven length so threads steal from each other's home ranges, loops longer than one job)
/// on pools of 1 to 5 threads and fails at the first task run twice or never. Built as a child
/// process, and again with ThreadSanitizer where the compiler can build and run it, so a data race
/// in the claiming protocol is a report, not a rare wrong result.
@Suite("Thread pool")
struct ThreadPoolTests {
  static func build(flags: [String], in directory: String) throws -> (
    executable: String?, problem: String
  ) {
    let compiler = try CCompiler.find()
    for (name, text) in CRuntimeSources.files where name == "lamina_pool.c" || name.hasSuffix(".h")
    {
      try text.write(toFile: directory + "/" + name, atomically: false, encoding: .utf8)
    }
    let executable = directory + "/pool_check"
    let build = try CCompiler.run(
      compiler.path,
      ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-I", directory] + flags + [
        RepositoryPaths.path("Tests/LaminaTests/PoolHarness/pool_check.c"),
        directory + "/lamina_pool.c", "-o", executable, "-lpthread",
      ])
    return build.status == 0 ? (executable, "") : (nil, build.output)
  }

  @Test("every task of every run executes exactly once, on 1 to 5 threads")
  func everyTaskOnce() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let built = try Self.build(flags: ["-O2"], in: directory)
    let executable = try #require(built.executable, "building pool_check failed:\n\(built.problem)")
    let run = try CCompiler.run(executable, [])
    #expect(run.status == 0, "\(run.output)")
    #expect(run.output.contains("threads 5: every task ran once"), "\(run.output)")
  }

  @Test("the same, under ThreadSanitizer (skipped where the compiler cannot build it)")
  func everyTaskOnceUnderThreadSanitizer() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let built = try Self.build(flags: ["-O1", "-g", "-fsanitize=thread"], in: directory)
    guard let executable = built.executable else {
      print("Thread pool under ThreadSanitizer skipped: the C compiler cannot build it")
      return
    }
    // A program that built but cannot run (no ThreadSanitizer runtime for this kernel's memory
    // layout) says so before main; a report exits 66.
    let run = try CCompiler.run(executable, [])
    if run.status != 0 && !run.output.contains("ThreadSanitizer: ")
      && !run.output.contains("threads 1")
    {
      print("Thread pool under ThreadSanitizer skipped: it does not run here: \(run.output)")
      return
    }
    #expect(run.status == 0, "\(run.output)")
    #expect(!run.output.contains("WARNING: ThreadSanitizer"), "\(run.output)")
    #expect(run.output.contains("threads 5: every task ran once"), "\(run.output)")
  }
}
