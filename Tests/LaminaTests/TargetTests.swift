import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `--target`: every target builds and equals the interpreter where this CPU runs it; the instruction
/// sets in the libraries are the ones the target allows (read back with objdump); a library refuses
/// to start, naming what is missing, on a CPU without its instruction set. The missing CPU is
/// simulated for one thread (`CompiledModel(libraryPath:disabledCPUFeatures:)`), and with
/// LAMINA_CPU_DISABLE only in a child process, so the suite runs beside the others.
@Suite("Compile targets")
struct TargetTests {
  static var cacheDirectory: String { TestCache.directory }

  static let models = [
    "Tests/LaminaTests/Fixtures/every_op.lam", "examples/bench/w6_layer_norm_gelu.lam",
    "examples/digits_mlp.lam",
  ]

  struct Case: CustomStringConvertible, Sendable {
    var model: String
    var target: CompileTarget
    var description: String { "\(URL(fileURLWithPath: model).lastPathComponent) for \(target)" }
  }

  /// The targets this machine can build: the x86 ones only on x86-64.
  static let targets = CompileTarget.allCases.filter {
    CompileTarget.hostIsX86 || $0 == .native || $0 == .generic
  }

  static let cases: [Case] = targets.flatMap { target in
    models.map { Case(model: $0, target: target) }
  }

  static func options(_ target: CompileTarget) -> CompileOptions {
    var options = CompileOptions()
    options.target = target
    options.cacheDirectory = cacheDirectory
    return options
  }

  /// Whether this CPU runs AVX-512 code, by CPUID (/proc/cpuinfo), independently of Lamina's check.
  static let cpuHasAVX512: Bool = {
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else {
      return false
    }
    let flags = info.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
    let words = Set(flags.split(separator: " ").map(String.init))
    return ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"].allSatisfy(words.contains)
  }()

  /// Runs `body` with the libraries' CPU check treating `features` as missing on this thread
  /// (`lamina_disable_cpu_features` of the library at `library`), which other tests running at the
  /// same time, and the processes they start, do not see: LAMINA_CPU_DISABLE would change the
  /// environment of all of them.
  static func withDisabledFeatures<Result>(
    _ features: String, in library: UnsafeMutableRawPointer, _ body: () throws -> Result
  ) throws -> Result {
    typealias Disable = @convention(c) (UnsafePointer<CChar>?) -> Void
    let disable = unsafeBitCast(
      try #require(dlsym(library, "lamina_disable_cpu_features")), to: Disable.self)
    disable(features)
    defer { disable(nil) }
    return try body()
  }

  /// Compiled outputs and losses against the interpreter at batch 1 and 7.
  static func expectMatchesInterpreter(
    _ model: Model, _ compiled: CompiledModel, parameters: [String: Tensor], label: String
  ) throws {
    for problem in try TestData.compiledMismatches(
      model, compiled, parameters: parameters, batches: [1, 7])
    {
      Issue.record("\(label) \(problem)")
    }
  }

  /// The mnemonics and operands of every instruction in a library (`objdump -d`).
  static func disassembly(_ library: String) throws -> [(mnemonic: String, operands: String)] {
    let objdump = ["/usr/bin/objdump", "/bin/objdump", "/usr/local/bin/objdump"].first {
      FileManager.default.isExecutableFile(atPath: $0)
    }
    let tool = try #require(objdump, "objdump (binutils) is needed to read the instructions back")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = ["-d", "--no-show-raw-insn", library]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0)
    // Instruction lines look like "    1234:\tvmovups %zmm0,(%rax)".
    return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
      let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
      guard fields.count >= 2, fields[0].hasSuffix(":"), fields[0].hasPrefix(" ") else {
        return nil
      }
      let instruction = fields[1].trimmingCharacters(in: .whitespaces)
      let mnemonic = instruction.prefix { !$0.isWhitespace }
      return (String(mnemonic), String(instruction.dropFirst(mnemonic.count)))
    }
  }

  @Test("each target builds and equals the interpreter where this CPU runs it", arguments: cases)
  func targetMatchesInterpreter(_ testCase: Case) throws {
    let model = try Model(contentsOf: RepositoryPaths.path(testCase.model))
    let parameters = try model.initialParameters(seed: 11)
    let compilation = try model.buildLibrary(options: Self.options(testCase.target))
    #expect(FileManager.default.fileExists(atPath: compilation.libraryPath))
    if testCase.target == .x86_64_v4 && !Self.cpuHasAVX512 {
      #expect(throws: RunError.self) {
        try CompiledModel(libraryPath: compilation.libraryPath)
      }
      return
    }
    let compiled = try CompiledModel(libraryPath: compilation.libraryPath)
    try compiled.setParameters(parameters)
    let expectedSet: String =
      switch testCase.target {
      case .portable: Self.cpuHasAVX512 ? "x86-64-v4" : "x86-64-v3"
      case .x86_64_v3: "x86-64-v3"
      case .x86_64_v4: "x86-64-v4"
      case .native: "native"
      case .generic: "generic"
      }
    #expect(compiled.instructionSet == expectedSet)
    try Self.expectMatchesInterpreter(
      model, compiled, parameters: parameters, label: testCase.description)
  }

  @Test(
    "a portable library runs its AVX2 code without AVX-512, and equals the interpreter both ways",
    .enabled(if: CompileTarget.hostIsX86))
  func portableWithAndWithoutAVX512() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("examples/bench/w6_layer_norm_gelu.lam"))
    let parameters = try model.initialParameters(seed: 3)
    let compiled = try model.compile(options: Self.options(.portable), parameters: parameters)
    #expect(compiled.instructionSet == (Self.cpuHasAVX512 ? "x86-64-v4" : "x86-64-v3"))
    try Self.expectMatchesInterpreter(model, compiled, parameters: parameters, label: "portable")

    let narrow = try CompiledModel(
      libraryPath: compiled.libraryPath, disabledCPUFeatures: ["avx512f"])
    try narrow.setParameters(parameters)
    #expect(narrow.instructionSet == "x86-64-v3")
    try Self.expectMatchesInterpreter(
      model, narrow, parameters: parameters, label: "portable without AVX-512")

    // The list was this thread's for that load only: the next one takes the AVX-512 code again.
    if Self.cpuHasAVX512 {
      #expect(try CompiledModel(libraryPath: compiled.libraryPath).instructionSet == "x86-64-v4")
    }
    // Both instruction sets are in the one library.
    let mnemonics = try Self.disassembly(compiled.libraryPath)
    #expect(mnemonics.contains { $0.operands.contains("%zmm") })
    #expect(mnemonics.contains { $0.operands.contains("%ymm") })
  }

  @Test(
    "an x86-64-v4 library refuses to start without AVX-512, naming what is missing",
    .enabled(if: CompileTarget.hostIsX86))
  func refusesMissingInstructionSet() throws {
    let model = try Model(contentsOf: RepositoryPaths.path("examples/digits_mlp.lam"))
    let library = try model.buildLibrary(options: Self.options(.x86_64_v4)).libraryPath
    #expect {
      try CompiledModel(libraryPath: library, disabledCPUFeatures: ["avx512f", "avx512vl"])
    } throws: { error in
      let message = "\(error)"
      return message.contains("x86-64-v4") && message.contains("avx512f")
        && message.contains("avx512vl") && !message.contains("avx512bw")
    }
    // The C interface refuses too: lamina_create returns NULL rather than run AVX-512 code.
    let handle = try #require(dlopen(library, RTLD_NOW | RTLD_LOCAL))
    defer { dlclose(handle) }
    typealias Create = @convention(c) (Int32) -> OpaquePointer?
    typealias Destroy = @convention(c) (OpaquePointer?) -> Void
    typealias Text = @convention(c) () -> UnsafePointer<CChar>?
    let create = unsafeBitCast(try #require(dlsym(handle, "lamina_create")), to: Create.self)
    let destroy = unsafeBitCast(try #require(dlsym(handle, "lamina_destroy")), to: Destroy.self)
    let missing = unsafeBitCast(
      try #require(dlsym(handle, "lamina_missing_cpu_features")), to: Text.self)
    try Self.withDisabledFeatures("avx512f", in: handle) {
      #expect(create(1) == nil)
      #expect(missing().map { String(cString: $0) } == "avx512f")
    }
    if Self.cpuHasAVX512 {
      let context = create(1)
      #expect(context != nil)
      destroy(context)
      #expect(missing().map { String(cString: $0) } == "")
    }

    // A portable library needs AVX2 and says so in the same way.
    let portable = try model.buildLibrary(options: Self.options(.portable)).libraryPath
    #expect {
      try CompiledModel(libraryPath: portable, disabledCPUFeatures: ["avx2"])
    } throws: { error in "\(error)".contains("avx2") && "\(error)".contains("portable") }
  }

  @Test(
    "LAMINA_CPU_DISABLE makes an x86-64-v4 library refuse to start in the process it is set for",
    .enabled(if: CompileTarget.hostIsX86))
  func environmentDisablesFeatures() throws {
    let lamina = try #require(
      ReferenceCheckTests.laminaExecutable(), "the lamina executable is built with the tests")
    let model = RepositoryPaths.path("examples/digits_mlp.lam")
    // /usr/bin/env sets the variable for the child alone.
    func bench(disabling features: String?) throws -> (status: Int32, output: String) {
      try ReferenceCheckTests.runProcess(
        (features.map { ["LAMINA_CPU_DISABLE=\($0)"] } ?? []) + [
          lamina, "bench", model, "--target", "x86-64-v4", "--cache-dir", Self.cacheDirectory,
          "--runs", "1", "--seconds", "0", "--no-interpreter",
        ])
    }
    let refused = try bench(disabling: "avx512f")
    #expect(refused.status != 0)
    #expect(
      refused.output.contains("lacks avx512f") && refused.output.contains("LAMINA_CPU_DISABLE"),
      "\(refused.output)")
    if Self.cpuHasAVX512 {
      let runs = try bench(disabling: nil)
      #expect(runs.status == 0, "\(runs.output)")
    }
  }

  @Test("an x86-64-v3 library has no AVX-512 instruction", .enabled(if: CompileTarget.hostIsX86))
  func x86_64_v3HasNoAVX512() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("examples/bench/w6_layer_norm_gelu.lam"))
    let compilation = try model.buildLibrary(options: Self.options(.x86_64_v3))
    let instructions = try Self.disassembly(compilation.libraryPath)
    #expect(instructions.count > 1000)
    #expect(instructions.contains { $0.operands.contains("%ymm") })
    let wide = instructions.filter {
      $0.operands.contains("%zmm") || $0.operands.contains("%k1") || $0.operands.contains("{%k")
    }
    #expect(wide.isEmpty, "AVX-512 in an x86-64-v3 library: \(wide.prefix(3))")
  }

  @Test(
    "a generic library is built with -march=x86-64 and has no AVX instruction at all",
    .enabled(if: CompileTarget.hostIsX86))
  func genericHasNoAVX() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("examples/bench/w6_layer_norm_gelu.lam"))
    let compilation = try model.buildLibrary(options: Self.options(.generic))
    #expect(!compilation.units.isEmpty)
    for unit in compilation.units {
      #expect(unit.flags.contains("-march=x86-64"), "\(unit.label): \(unit.flags)")
      #expect(!unit.flags.contains { $0.hasPrefix("-march=") && $0 != "-march=x86-64" })
    }
    let instructions = try Self.disassembly(compilation.libraryPath)
    #expect(instructions.count > 1000)
    // Every VEX- or EVEX-encoded instruction's mnemonic starts with "v" (vmovups, vfmadd231ps, ...);
    // no instruction of baseline x86-64 that a compiler emits does.
    let avx = instructions.filter {
      $0.mnemonic.hasPrefix("v") || $0.operands.contains("%ymm") || $0.operands.contains("%zmm")
    }
    #expect(avx.isEmpty, "AVX in a generic library: \(avx.prefix(3))")
    #expect(instructions.contains { $0.operands.contains("%xmm") })
  }

  @Test(
    "the target is part of the cache key, and --cflags come after the target's flags",
    .enabled(if: CompileTarget.hostIsX86))
  func cacheKeyAndUserFlags() throws {
    let model = try Model(contentsOf: RepositoryPaths.path("examples/digits_mlp.lam"))
    let paths = try CompileTarget.allCases.map {
      try model.buildLibrary(options: Self.options($0)).libraryPath
    }
    #expect(Set(paths).count == CompileTarget.allCases.count)

    // The user's -march wins over the target's: an x86-64-v4 library built with -march=x86-64-v3
    // last has no AVX-512 code left.
    var options = Self.options(.x86_64_v4)
    options.flags = ["-march=x86-64-v3", "-mno-avx512f"]
    let compilation = try model.buildLibrary(options: options)
    let instructions = try Self.disassembly(compilation.libraryPath)
    #expect(!instructions.contains { $0.operands.contains("%zmm") })
    #expect(instructions.contains { $0.operands.contains("%ymm") })
  }

  @Test(
    "lamina compile --timings names every stage; --emit-c writes files that build.sh compiles",
    .enabled(if: CompileTarget.hostIsX86))
  func timingsAndEmittedBuild() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let console = Console.capturing()
    let status = CommandLineTool.run(
      [
        "compile", RepositoryPaths.path("examples/bench/mlp_784.lam"), "--train", "-o",
        directory + "/libmlp.so", "--cache-dir", directory + "/cache", "--timings", "--emit-c",
        directory + "/c",
      ], console: console)
    #expect(status == 0, "\(console.standardError)")
    let lines = console.standardOutput.split(separator: "\n").map(String.init)
    for stage in [
      "parse and lower", "pass autodiff", "pass fusion", "pass memory-plan", "generate C",
      "cc model.c [x86-64-v4]", "cc model.c [x86-64-v3]", "cc lamina_gemm.c [f32, x86-64-v4]",
      "cc lamina_gemm.c [f32, x86-64-v3]", "cc lamina_pool.c", "cc lamina_cpu.c",
      "cc lamina_model_setup.c", "link",
    ] {
      #expect(lines.contains { $0.hasSuffix("ms  " + stage) }, "no timing for \(stage)")
    }
    // An f32 model does not build the f64 GEMM.
    #expect(!lines.contains { $0.contains("f64") })

    // The emitted files and build.sh make a library that loads and matches the cached one's signature.
    let build = Process()
    build.executableURL = URL(fileURLWithPath: "/bin/sh")
    build.arguments = ["build.sh"]
    build.currentDirectoryURL = URL(fileURLWithPath: directory + "/c")
    try build.run()
    build.waitUntilExit()
    #expect(build.terminationStatus == 0)
    let rebuilt = try CompiledModel(libraryPath: directory + "/c/libmodel.so")
    let compiled = try CompiledModel(libraryPath: directory + "/libmlp.so")
    #expect(rebuilt.signature == compiled.signature)

    let wrong = Console.capturing()
    #expect(
      CommandLineTool.run(
        [
          "compile", RepositoryPaths.path("examples/digits_mlp.lam"), "-o", directory + "/x.so",
          "--target", "pentium",
        ], console: wrong) != 0)
    #expect(wrong.standardError.contains("unknown --target 'pentium'"))
  }

  @Test("the C interface's version is the one the runtime reads")
  func interfaceVersion() throws {
    #expect(
      CRuntimeSources.interface.contains(
        "#define LAMINA_ABI_VERSION \(CompiledModel.abiVersion)\n"))
    let model = try Model(contentsOf: RepositoryPaths.path("examples/digits_mlp.lam"))
    #expect(try model.generateC().signature.abi == Int(CompiledModel.abiVersion))
  }
}
