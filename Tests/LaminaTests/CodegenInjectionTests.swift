import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// Issue 13, item 1: user strings (names, the model's path, source excerpts) reach generated C only
/// escaped, so a model file can never close a comment and have its own code compiled and run.
@Suite("Generated C injection")
struct CodegenInjectionTests {
  /// The sequences that end a comment, splice lines or start a directive in C.
  static let sequences = [
    "*/", "*\\\n/", "??/", "??/\n", "end\\", "\\", "#define x 1", "\n#include <stdio.h>\n", "/*",
    "*", "/", "\r\n*/", "%s%n", "\"", "'",
  ]

  /// Every Unicode scalar U+0000...U+00FF, in chunks of 16, and scalars whose UTF-8 holds every lead
  /// byte a valid string can have (0xC2...0xF4): every byte 0-255 that UTF-8 text can carry.
  static let byteStrings: [String] = {
    var strings: [String] = []
    for chunk in 0..<16 {
      var text = ""
      for value in (chunk * 16)..<(chunk * 16 + 16) {
        text.unicodeScalars.append(Unicode.Scalar(UInt8(value)))
      }
      strings.append(text)
    }
    var leads = ""
    for lead in 0xC2...0xDF {
      leads.unicodeScalars.append(Unicode.Scalar(UInt32(lead - 0xC0) << 6)!)
    }
    for lead in 0xE0...0xEF {
      leads.unicodeScalars.append(Unicode.Scalar(max(0x800, UInt32(lead - 0xE0) << 12))!)
    }
    for lead in 0xF0...0xF4 {
      leads.unicodeScalars.append(Unicode.Scalar(max(0x10000, UInt32(lead - 0xF0) << 18))!)
    }
    strings.append(leads)
    return strings
  }()

  static var hostileStrings: [String] { byteStrings + sequences }

  /// The characters of the user strings that are not printable ASCII (line breaks aside).
  static let hostileScalars: Set<Unicode.Scalar> = Set(
    hostileStrings.flatMap(\.unicodeScalars).filter {
      ($0.value < 0x20 && $0 != "\n") || $0.value > 0x7E
    })

  /// `text` as a string literal of the model language.
  static func lamString(_ text: String) -> String {
    var literal = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\\": literal += "\\\\"
      case "\"": literal += "\\\""
      case "\n": literal += "\\n"
      default: literal.unicodeScalars.append(scalar)
      }
    }
    return literal + "\""
  }

  /// What C compiles of `text`: the text outside comments and string and character literals, after
  /// line splicing and trigraphs (`??/` is a backslash under -trigraphs), as a C compiler reads it.
  static func codeOutsideComments(_ text: String) -> String {
    var characters = Array(text.replacingOccurrences(of: "??/", with: "\\"))
    // Phase 2: a backslash before a newline joins the lines.
    var spliced: [Character] = []
    var index = 0
    while index < characters.count {
      if characters[index] == "\\", index + 1 < characters.count, characters[index + 1] == "\n" {
        index += 2
        continue
      }
      spliced.append(characters[index])
      index += 1
    }
    characters = spliced
    var code = ""
    index = 0
    while index < characters.count {
      let character = characters[index]
      let next = index + 1 < characters.count ? characters[index + 1] : nil
      if character == "/", next == "*" {
        index += 2
        while index + 1 < characters.count,
          !(characters[index] == "*" && characters[index + 1] == "/")
        {
          index += 1
        }
        index += 2
        code += " "
      } else if character == "/", next == "/" {
        while index < characters.count, characters[index] != "\n" { index += 1 }
      } else if character == "\"" || character == "'" {
        index += 1
        while index < characters.count, characters[index] != character {
          if characters[index] == "\\" { index += 1 }
          index += 1
        }
        index += 1
        code += "\"\""
      } else {
        code.append(character)
        index += 1
      }
    }
    return code
  }

  /// Checks the generated C and header: no splice, no trigraph, nothing from `strings` outside
  /// comments and literals (each carries a marker word only the payloads use).
  static func expectSafe(_ text: String, file: String) {
    #expect(!text.contains("\\\n"), "\(file) has a backslash at the end of a line")
    #expect(!text.contains("\\\r"), "\(file) has a backslash before a carriage return")
    #expect(!text.contains("??"), "\(file) has a trigraph start")
    let code = codeOutsideComments(text)
    #expect(!code.contains("payload"), "\(file) compiles text from a user string")
    #expect(!code.contains("lamina_pwn"), "\(file) compiles text from a user string")
    // No control character or non-ASCII character of the user strings is copied raw.
    let raw = text.unicodeScalars.filter { hostileScalars.contains($0) }
    #expect(raw.isEmpty, "\(file) holds raw characters \(raw.prefix(8).map(\.value))")
  }

  func options(_ directory: String, passes: [any GraphPass] = Pipeline.codegen) -> CompileOptions {
    var options = TestCache.options()
    options.codegenPasses = passes
    return options
  }

  /// Compiles `model` (with and without the backend passes), checks its C and header, and compares
  /// its outputs with the interpreter's.
  func expectCompiledMatchesInterpreter(_ model: Model, directory: String) throws {
    let parameters = try model.initialParameters(seed: 3)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 3], seed: 5)
    let outputs = model.graph.outputs.map(\.name)
    let expected = try model.interpret(inputs: inputs, parameters: parameters, outputs: outputs)
    for passes in [Pipeline.codegen, []] {
      let generated = try model.generateC(passes: passes)
      Self.expectSafe(generated.source, file: "model.c")
      Self.expectSafe(generated.header, file: "the header")
      try expectHeaderCompiles(generated.header, directory: directory)
      let compiled = try model.compile(
        options: options(directory, passes: passes), parameters: parameters)
      let actual = try compiled.forward(inputs)
      for name in outputs {
        let mismatch = TestData.mismatch(actual[name]!, expected[name]!, rtol: 1e-5, atol: 1e-6)
        #expect(mismatch == nil, "output \(name): \(mismatch ?? "")")
      }
    }
  }

  /// A C file including the header compiles without a warning about comments.
  func expectHeaderCompiles(_ header: String, directory: String) throws {
    try header.write(toFile: directory + "/model.h", atomically: true, encoding: .utf8)
    try "#include \"model.h\"\nint main(void) { return 0; }\n".write(
      toFile: directory + "/client.c", atomically: true, encoding: .utf8)
    let result = try ClientTests.run([
      "cc", "-std=c11", "-trigraphs", "-Wall", "-Werror", "-fsyntax-only", directory + "/client.c",
    ])
    #expect(result.status == 0, "the header does not compile: \(result.errors)")
  }

  static let block = """
    block Twice(x) {
      let h = x * 2.0 |> relu
      let g = h + 1.0
      return g * h - x
    }

    """

  @Test("hostile layer, block and instance names compile safely and run like the interpreter")
  func hostileNamesInTheLanguage() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var lines = ["model Hostile {", "  input x: f32[batch, 3]", "  let h0 = x"]
    for (index, text) in Self.hostileStrings.enumerated() {
      let layer = Self.lamString("payload layer \(index) " + text)
      let call = Self.lamString("payload block \(index) " + text)
      lines.append(
        "  let h\(index + 1) = h\(index) |> dense(units: 3, name: \(layer)) |> Twice(name: \(call))"
      )
    }
    let last = Self.hostileStrings.count
    let instance = Self.lamString("payload instance " + Self.hostileStrings.joined())
    lines.append("  let shared = dense(units: 3, name: \(instance))")
    lines.append("  output y = shared(shared(h\(last)))")
    lines.append("}")
    let source = Self.block + lines.joined(separator: "\n") + "\n"
    let model = try Model(source: source, path: "payload */ \\\n/ ??/ #x.lam")
    #expect(model.graph.params.count > 2 * Self.hostileStrings.count)
    try expectCompiledMatchesInterpreter(model, directory: directory)
  }

  @Test("hostile names in a training step: safe C, and the step matches the interpreter")
  func hostileNamesInTraining() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let names = [
      Self.byteStrings[0], Self.byteStrings[2], Self.byteStrings[15], Self.byteStrings[16],
      Self.sequences.joined(),
    ]
    var layers = ""
    for (index, name) in names.enumerated() {
      layers += " |> dense(units: 3, name: \(Self.lamString("payload \(index) " + name))) |> tanh"
    }
    let source = """
      model Trained {
        input x: f32[batch, 3]
        input target: f32[batch, 3]
        output y = x\(layers)
        loss = mse(y, target)
        train with adam(lr: 0.01)
      }
      """
    let model = try Model(source: source, pipeline: Pipeline.training)
    let generated = try model.generateC()
    Self.expectSafe(generated.source, file: "model.c")
    Self.expectSafe(generated.header, file: "the header")
    let parameters = try model.initialParameters(seed: 2)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 4], seed: 9)
    let compiled = try model.compile(options: options(directory), parameters: parameters)
    let loss = try compiled.trainStep(inputs)
    let expected = try model.interpretTrainStep(inputs, values: parameters)
    #expect(abs(loss - expected.loss) <= 1e-5 * abs(expected.loss) + 1e-6)
    let after = try compiled.parameters()
    #expect(after.count == 2 * names.count)
    for (name, value) in after {
      let mismatch = TestData.mismatch(value, expected.values[name]!, rtol: 1e-4, atol: 1e-6)
      #expect(mismatch == nil, "\(name.debugDescription): \(mismatch ?? "")")
    }
  }

  @Test("hostile model, input, output, loss and parameter names in IR text compile safely")
  func hostileNamesInIR() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let base = try Model(
      source: """
        model M {
          input x: f32[batch, 3]
          input target: f32[batch, 3]
          param w: f32[3, 3] = glorot_uniform()
          let h = x @ w |> tanh
          output y = h * 2.0
          output z = h + x
          loss = mse(y, target)
        }
        """)
    // The IR text can name values and the graph anything: rename them all through the printer.
    var ir = base.ir(locations: true)
    for (old, text) in [
      ("%x", Self.hostileStrings[0]), ("%target", Self.hostileStrings[1]),
      ("%w", Self.hostileStrings[2] + Self.sequences.joined()),
      ("%y", Self.hostileStrings[8]), ("%z", Self.hostileStrings[15] + "*/"),
      ("%h", Self.hostileStrings[16]),
    ] {
      for end in [" ", ",", ")", "\n"] {
        ir = ir.replacingOccurrences(
          of: old + end, with: "%" + Self.irString("payload " + text) + end)
      }
    }
    let graphName = Self.irString("payload model " + Self.sequences.joined())
    ir = ir.replacingOccurrences(of: "graph @M {", with: "graph @\(graphName) {")
    // A path with a line break, `*/`, a trigraph and a final backslash.
    let folder = directory + "/payload\n\\ */??"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let path = folder + "/ #x\\"
    try ir.write(toFile: path, atomically: true, encoding: .utf8)
    let model = try Model(contentsOf: path)
    #expect(model.graph.name.hasPrefix("payload model"))
    #expect(model.graph.inputs.allSatisfy { model.graph[$0.value].name.hasPrefix("payload") })
    try expectCompiledMatchesInterpreter(model, directory: directory)
  }

  /// `text` quoted for the IR (`\"`, `\\`, `\n`, `\t` escapes).
  static func irString(_ text: String) -> String {
    var literal = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\\": literal += "\\\\"
      case "\"": literal += "\\\""
      case "\n": literal += "\\n"
      case "\t": literal += "\\t"
      default: literal.unicodeScalars.append(scalar)
      }
    }
    return literal + "\""
  }

  /// A name that, copied into a C comment, closes it and defines a constructor that creates
  /// `marker` when the library (or a program including the header) is loaded.
  static func constructorPayload(marker: String) -> String {
    let bytes = Array("touch '\(marker)'".utf8).map(String.init).joined(separator: ",")
    return
      "*/ __attribute__((constructor)) static void lamina_pwn(void) { extern int system(const char*); system((const char[]){\(bytes),0}); } /*"
  }

  @Test("the constructor injection of issue 13 does not run its payload")
  func constructorInjectionDoesNotRun() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let marker = directory + "/marker"
    let payload = Self.constructorPayload(marker: marker)
    let spliced = "*\\\n/" + payload.dropFirst(2)
    let source = """
      model Evil {
        input x: f32[batch, 3]
        let y = x |> dense(units: 2, bias: false, name: \(Self.lamString(payload))) |> dense(units: 2, name: \(Self.lamString(spliced)))
        output y
      }
      """
    try source.write(toFile: directory + "/evil.lam", atomically: true, encoding: .utf8)
    let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6] as [Float])
    try NPY.write(x, to: directory + "/x.npy")
    let lamina = try #require(
      ReferenceCheckTests.laminaExecutable(), "the lamina executable is built with the tests")
    for passes in [[], ["--passes", ""]] {
      let run = try ClientTests.run(
        [lamina, "run", directory + "/evil.lam", "--input", "x=" + directory + "/x.npy"] + passes,
        environment: ["LAMINA_CACHE_DIR": directory + "/cache"])
      #expect(run.status == 0, "lamina run: \(run.errors)")
      #expect(!FileManager.default.fileExists(atPath: marker), "the model ran its payload")
    }
    // A C program including the generated header.
    let model = try Model(contentsOf: directory + "/evil.lam")
    let generated = try model.generateC()
    try generated.header.write(toFile: directory + "/evil.h", atomically: true, encoding: .utf8)
    try "#include \"evil.h\"\nint main(void) { return 0; }\n".write(
      toFile: directory + "/client.c", atomically: true, encoding: .utf8)
    let build = try ClientTests.run([
      "cc", "-std=c11", directory + "/client.c", "-o", directory + "/client",
    ])
    #expect(build.status == 0, "the client does not build: \(build.errors)")
    if build.status == 0 {
      _ = try ClientTests.run([directory + "/client"])
      #expect(!FileManager.default.fileExists(atPath: marker), "the header ran its payload")
    }
  }

  /// Issue 13, item 7: names that differ only in characters a C identifier cannot hold.
  @Test("header index macros are unique, and a C client gets each name's own index")
  func headerMacrosAreUnique() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let model = try Model(
      source: """
        model Clash {
          input x: f32[batch, 2]
          input count: f32[BATCH, 2]
          let h = x |> dense(units: 2, name: "a.b") |> dense(units: 2, name: "a_b")
          output y = h |> dense(units: 2, name: "A-B")
          output z = count * 2.0
        }
        """)
    let generated = try model.generateC()
    let header = generated.header
    // Every name's macro, in the order the names come in the signature, as documented.
    let expected: [(macro: String, index: Int)] = [
      ("CLASH_DIM_BATCH", 0), ("CLASH_DIM_BATCH_2", 1),
      ("CLASH_INPUT_X", 0), ("CLASH_INPUT_COUNT_2", 1), ("CLASH_INPUT_COUNT", 2),
      ("CLASH_PARAM_A_B_WEIGHT", 0), ("CLASH_PARAM_A_B_BIAS", 1),
      ("CLASH_PARAM_A_B_WEIGHT_2", 2), ("CLASH_PARAM_A_B_BIAS_2", 3),
      ("CLASH_PARAM_A_B_WEIGHT_3", 4), ("CLASH_PARAM_A_B_BIAS_3", 5),
    ]
    #expect(
      model.graph.params.map(\.value).map { model.graph[$0].name } == [
        "a.b.weight", "a.b.bias", "a_b.weight", "a_b.bias", "A-B.weight", "A-B.bias",
      ])
    #expect(generated.signature.symbols == ["batch", "BATCH"])
    // No macro is defined twice.
    let defined = header.split(separator: "\n").filter { $0.hasPrefix("#define CLASH_") }.map {
      $0.split(separator: " ")[1]
    }
    #expect(Set(defined).count == defined.count, "a macro is defined twice: \(defined)")

    // A C client built against the header prints each macro; -Werror catches a redefinition.
    try header.write(toFile: directory + "/clash.h", atomically: true, encoding: .utf8)
    var program = "#include <stdio.h>\n#include \"clash.h\"\nint main(void) {\n"
    for (macro, _) in expected { program += "  printf(\"%d\\n\", (int)\(macro));\n" }
    program += "  return 0;\n}\n"
    try program.write(toFile: directory + "/client.c", atomically: true, encoding: .utf8)
    let build = try ClientTests.run([
      "cc", "-std=c11", "-Wall", "-Werror", directory + "/client.c", "-o", directory + "/client",
    ])
    try #require(build.status == 0, "the client does not build: \(build.errors)")
    let run = try ClientTests.run([directory + "/client"])
    #expect(run.output.split(separator: "\n").map { Int($0) } == expected.map(\.index))
  }

  /// Issue 13, item 9: the C named the model's path, so the same model elsewhere recompiled.
  @Test("the same model text at two paths compiles once")
  func cacheKeyIgnoresThePath() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let text = """
      model Moved {
        input x: f32[batch, 3]
        output y = x |> dense(units: 4) |> relu |> dense(units: 2)
      }
      """
    for folder in ["first", "second"] {
      try FileManager.default.createDirectory(
        atPath: directory + "/" + folder, withIntermediateDirectories: true)
      try text.write(
        toFile: directory + "/\(folder)/model.lam", atomically: true, encoding: .utf8)
    }
    try text.write(toFile: directory + "/renamed.lam", atomically: true, encoding: .utf8)
    let first = try Model(contentsOf: directory + "/first/model.lam")
    let compiled = try first.buildLibrary(options: options(directory))
    #expect(compiled.compiledNow)
    for path in ["/second/model.lam", "/renamed.lam"] {
      let moved = try Model(contentsOf: directory + path)
      let again = try moved.buildLibrary(options: options(directory))
      #expect(!again.compiledNow, "\(path) compiled again")
      #expect(again.libraryPath == compiled.libraryPath)
      #expect(again.generated.source == compiled.generated.source)
      #expect(again.generated.header == compiled.generated.header)
    }
    // The kernels still say where each node came from.
    #expect(compiled.generated.source.contains("from line 3, column"))
  }

  /// Makes `folder` read-only in a way that stops even root: `chmod a-w`, and as root the immutable
  /// attribute (`chattr +i`; file permissions do not apply to root). Returns how, or nil when
  /// neither stops a write here.
  static func makeReadOnly(_ folder: String) throws -> String? {
    try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: folder)
    var method = "chmod 555"
    if !FileManager.default.createFile(atPath: folder + "/probe", contents: Data()) {
      return method
    }
    try FileManager.default.removeItem(atPath: folder + "/probe")
    let chattr = try ClientTests.run(["chattr", "+i", folder])
    guard chattr.status == 0 else { return nil }
    method = "chattr +i (running as root)"
    if FileManager.default.createFile(atPath: folder + "/probe", contents: Data()) {
      try? FileManager.default.removeItem(atPath: folder + "/probe")
      return nil
    }
    return method
  }

  /// Issue 13, item 9: an empty read-only cache folder made compiling fail.
  @Test("an existing cache folder that cannot be written falls back to a temporary one")
  func unwritableCacheFallsBack() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let readOnly = directory + "/read-only"
    try FileManager.default.createDirectory(atPath: readOnly, withIntermediateDirectories: true)
    defer {
      _ = try? ClientTests.run(["chattr", "-i", readOnly])
      try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: readOnly)
      try? FileManager.default.removeItem(atPath: directory)
    }
    // A cache whose parent is a regular file cannot be created by anyone: that stays an error
    // naming the folder (HardeningTests), checked below to tell the two cases apart.
    try "not a folder".write(toFile: directory + "/file", atomically: true, encoding: .utf8)
    var caches: [(String, String)] = []
    if let method = try Self.makeReadOnly(readOnly) {
      caches.append((readOnly, "an empty folder made read-only with \(method)"))
    } else {
      // Root without a working chattr (tmpfs, a container without CAP_LINUX_IMMUTABLE).
      print("note: no way to make a folder read-only for root here: only the error case ran")
    }
    let text = """
      model Fallback {
        input x: f32[batch, 3]
        output y = x |> dense(units: 2) |> tanh
      }
      """
    try text.write(toFile: directory + "/m.lam", atomically: true, encoding: .utf8)
    let model = try Model(contentsOf: directory + "/m.lam")
    let parameters = try model.initialParameters(seed: 1)
    let x = Tensor(shape: [2, 3], scalars: [1, -2, 3, 0.5, 0, -1] as [Float])
    try NPY.write(x, to: directory + "/x.npy")
    let expected = try model.interpret(inputs: ["x": x], parameters: parameters, outputs: ["y"])
    let lamina = try #require(ReferenceCheckTests.laminaExecutable())
    for (cache, how) in caches {
      var options = CompileOptions()
      options.cacheDirectory = cache
      let compiled = try model.compile(options: options, parameters: parameters)
      let mismatch = TestData.mismatch(
        try compiled.forward(["x": x])["y"]!, expected["y"]!, rtol: 1e-5, atol: 1e-6)
      #expect(mismatch == nil, "\(how): \(mismatch ?? "")")
      #expect(!compiled.libraryPath.hasPrefix(cache), "\(how)")

      let run = try ClientTests.run(
        [lamina, "run", directory + "/m.lam", "--input", "x=" + directory + "/x.npy"],
        environment: ["LAMINA_CACHE_DIR": cache])
      #expect(run.status == 0, "\(how): \(run.errors)")
      #expect(run.errors.contains("note: cannot write the library cache \(cache)"), "\(how)")
    }
    let uncreatable = try ClientTests.run(
      [lamina, "run", directory + "/m.lam", "--input", "x=" + directory + "/x.npy"],
      environment: ["LAMINA_CACHE_DIR": directory + "/file/cache"])
    #expect(uncreatable.status == 1)
    #expect(uncreatable.errors.contains("/file/cache: Not a directory"), "\(uncreatable.errors)")
    #expect(!uncreatable.errors.contains("note:"), "\(uncreatable.errors)")
    let left = (try? FileManager.default.contentsOfDirectory(atPath: readOnly)) ?? []
    #expect(left.isEmpty, "the read-only cache was written: \(left)")
  }
}
