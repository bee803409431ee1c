import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// Inputs that once crashed the tool (an overflow trap, an abort allocating, SIGBUS in dlopen) give
/// a located error or a clear run-time error instead, with exit status 1.
@Suite("Crash hardening")
struct CrashHardeningTests {
  struct Result {
    var status: Int32
    var output: String
    var errors: String
  }

  func lamina(_ arguments: String...) -> Result {
    let console = Console.capturing()
    let status = CommandLineTool.run(arguments, console: console)
    return Result(status: status, output: console.standardOutput, errors: console.standardError)
  }

  func write(_ text: String, to path: String) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
  }

  @Test(
    "integer overflow at compile time is a located error",
    arguments: [
      ("let k = -(-9223372036854775807 - 1)", "3:11", "integer overflow"),
      ("let k = 9223372036854775807 * 2", "3:11", "integer overflow"),
      ("let k = -9223372036854775807 - 2", "3:11", "integer overflow"),
      (
        "let n = 9223372036854775807\n  input z: f32[n, n]", "4:16",
        "its dimensions multiply past 2^40 elements"
      ),
      (
        "let n = 4194304\n  input z: f32[n, n, n]", "4:19",
        "its dimensions multiply past 2^40 elements"
      ),
      (
        "output b = broadcast_to(x, shape: [9223372036854775807, batch, 4])", "3:14",
        "broadcast_to would give f32[9223372036854775807, batch, 4], too large"
      ),
      (
        "output b = broadcast_to(x, shape: [4611686018427387904, 2, batch, 4])", "3:14",
        "too large"
      ),
      ("output b = reshape(x, [9223372036854775807, 2])", "3:14", "too large"),
    ])
  func compileTimeOverflow(line: String, location: String, message: String) throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let path = directory + "/overflow.lam"
    try write("model M {\n  input x: f32[batch, 4]\n  \(line)\n  output y = x\n}\n", to: path)
    let result = lamina("check", path)
    #expect(result.status == 1)
    #expect(result.errors.contains("overflow.lam:\(location): error:"), "\(result.errors)")
    #expect(result.errors.contains(message), "\(result.errors)")
  }

  @Test("an IR dimension whose product overflows is an error, not a trap")
  func irDimensionOverflow() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    for (shape, message) in [
      ("9223372036854775807*4, 4", "dimension too large"),
      ("4611686018427387904, 4", "too large: its dimensions multiply past 2^40 elements"),
    ] {
      let path = directory + "/big.ir"
      try write(
        "graph @M {\n  input %x : f32[\(shape)]\n  %y = neg(%x) : f32[\(shape)]\n  output y = %y\n}\n",
        to: path)
      let result = lamina("check", path)
      #expect(result.status == 1)
      #expect(result.errors.contains(message), "\(result.errors)")
    }
  }

  /// A model whose output is larger than any machine's memory for the given batch.
  static let hugeOutputs: [(source: String, message: String)] = [
    // 2^31 - 1 rows of 512: 2^40 elements (4 TiB), within the static bound, not within memory.
    (
      "model M {\n  input x: f32[batch, 512]\n  output y = x[0:2147483647]\n}\n",
      "cannot allocate"
    ),
    // 2^39 columns: 4 TiB at batch 2.
    (
      "model M {\n  input x: f32[batch, 1]\n  output y = broadcast_to(x, shape: [batch, 549755813888])\n}\n",
      "cannot allocate"
    ),
  ]

  @Test("an output too large for memory is a run-time error naming it, interpreted and compiled")
  func hugeOutput() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    for (source, message) in Self.hugeOutputs {
      let model = try Model(source: source)
      let width = model.graph.inputs.map { model.graph.type(of: $0.value).shape[1].factor }[0]
      let x = Tensor(zeros: .f32, shape: [2, width])
      #expect {
        _ = try model.interpret(inputs: ["x": x], parameters: [:], outputs: ["y"])
      } throws: { error in
        "\(error)".contains(message) && "\(error)".contains("%y")
      }
      let compiled = try model.compile(options: TestCache.options())
      #expect {
        _ = try compiled.forward(["x": x])
      } throws: { error in
        "\(error)".contains(message) && "\(error)".contains("'y'")
      }
    }
  }

  @Test("the issue's slice: lamina run exits with 1 and a message, compiled and interpreted")
  func sliceThroughTheCommandLine() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    try write(Self.hugeOutputs[0].source, to: directory + "/slice.lam")
    try NPY.write(Tensor(zeros: .f32, shape: [2, 512]), to: directory + "/x.npy")
    for extra in [["--interpret"], ["--cache-dir", directory + "/cache"]] {
      let console = Console.capturing()
      let status = CommandLineTool.run(
        ["run", directory + "/slice.lam", "--input", "x=\(directory)/x.npy"] + extra,
        console: console)
      #expect(status == 1)
      #expect(console.standardError.contains("cannot allocate"), "\(console.standardError)")
    }
  }

  @Test("a size past Int.max at run time is an error, not a trap")
  func runTimeSizeOverflow() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    // 2^40 * batch elements: past 2^63 once batch passes 2^23.
    let model = try Model(
      source: """
        model M {
          input x: f32[batch, 1]
          output y = flatten(broadcast_to(x, shape: [batch, 1099511627776]), start_axis: 0)
        }
        """)
    let x = Tensor(zeros: .f32, shape: [(1 << 23) + 1, 1])
    #expect {
      _ = try model.interpret(inputs: ["x": x], parameters: [:], outputs: ["y"])
    } throws: { error in
      "\(error)".contains("past 2^63 bytes")
    }
    let compiled = try model.compile(options: TestCache.options())
    #expect {
      _ = try compiled.forward(["x": x])
    } throws: { error in
      "\(error)".contains("past 2^63 bytes")
    }
  }

  /// A compiled library of a small model, and weights for it.
  func library(in directory: String) throws -> String {
    try write(
      "model M {\n  input x: f32[batch, 4]\n  param w: f32[4] = ones()\n  output y = x * w\n}\n",
      to: directory + "/m.lam")
    let result = lamina(
      "compile", directory + "/m.lam", "-o", directory + "/lib.so", "--cache-dir",
      directory + "/cache")
    #expect(result.status == 0, "\(result.errors)")
    #expect(lamina("init", directory + "/m.lam", "-o", directory + "/w.safetensors").status == 0)
    try NPY.write(
      Tensor(shape: [1, 4], scalars: [1, 2, 3, 4] as [Float]), to: directory + "/x.npy")
    return directory + "/lib.so"
  }

  @Test("a truncated or foreign library is refused before dlopen maps it")
  func truncatedLibrary() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let library = try Data(contentsOf: URL(fileURLWithPath: try self.library(in: directory)))
    let cases: [(name: String, bytes: Data, message: String)] = [
      ("truncated.so", library.prefix(5000), "truncated"),
      ("tail.so", library.dropLast(64), "truncated"),
      ("half.so", library.prefix(library.count / 2), "truncated"),
      ("empty.so", Data(), "not an ELF file"),
      (
        "random.so", Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }),
        "not an ELF file"
      ),
      ("text.so", Data("model M {}\n".utf8), "not an ELF file"),
    ]
    for (name, bytes, message) in cases {
      let path = directory + "/" + name
      try bytes.write(to: URL(fileURLWithPath: path))
      #expect {
        _ = try CompiledModel(libraryPath: path)
      } throws: { error in
        "\(error)".contains(message)
      }
      let result = lamina("run", path, "--weights", directory + "/w.safetensors")
      #expect(result.status == 1, "\(name)")
      #expect(result.errors.contains(message), "\(name): \(result.errors)")
    }
    // A shared library that is not a Lamina model.
    let other = directory + "/other.so"
    try write("int other(void) { return 1; }\n", to: directory + "/other.c")
    let compiler = try ReferenceCheckTests.runProcess([
      TestData.compilers.first ?? "cc", "-shared", "-fPIC", directory + "/other.c", "-o", other,
    ])
    #expect(compiler.status == 0, "\(compiler.output)")
    #expect {
      _ = try CompiledModel(libraryPath: other)
    } throws: { error in
      "\(error)".contains("does not export lamina_abi_version")
    }
  }

  @Test("lamina run lib.so loads the file in the current directory, not a system library")
  func bareLibraryName() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    _ = try library(in: directory)
    let lamina = try #require(
      ReferenceCheckTests.laminaExecutable(), "the lamina executable is built with the tests")
    let result = try ReferenceCheckTests.runProcess(
      [
        lamina, "run", "lib.so", "--weights", "w.safetensors", "--input", "x=x.npy", "--output",
        "y=y.npy",
      ], in: URL(fileURLWithPath: directory))
    #expect(result.status == 0, "\(result.output)")
    #expect(
      try NPY.read(contentsOf: directory + "/y.npy")
        == Tensor(shape: [1, 4], scalars: [1, 2, 3, 4] as [Float]))
  }

  @Test("a column sum nothing reads (dead-code elimination disabled) compiles and runs")
  func unusedColumnSumWithoutDeadCodeElimination() throws {
    // The fused kernel's store of such a sum unwrapped a missing result buffer and trapped.
    let model = try Model(
      source: """
        model ColumnSum {
          input x: f32[batch, 8]
          let t = exp(x)
          let unused = sum(t * 2, axes: [0])
          output y = t + 1
        }
        """, pipeline: Pipeline.inference.filter { $0.name != DeadCodeElimination.name })
    let x = Tensor(shape: [3, 8], scalars: (0..<24).map { Float($0) / 24 })
    let expected = try model.interpret(inputs: ["x": x], parameters: [:], outputs: ["y"])
    let compiled = try model.compile(options: TestCache.options(), parameters: [:])
    let problem = TestData.mismatch(
      try compiled.forward(["x": x])["y"]!, expected["y"]!, rtol: 1e-6, atol: 1e-6)
    #expect(problem == nil, "\(problem ?? "")")
  }
}
