import Foundation
import LaminaFrontend
import LaminaIR
import LaminaPasses
import LaminaSupport

/// A model read from a `.lam` file (or IR text) and taken through the frontend pipeline.
///
///     let model = try Model(contentsOf: "examples/digits_mlp.lam")
///     let weights = try model.initialParameters(seed: 0)
///     let outputs = try model.interpret(inputs: ["x": x], parameters: weights, outputs: ["probs"])
public struct Model: Sendable {
  /// The typed graph after the frontend pipeline.
  public let graph: Graph
  /// Warnings found along the way (unused definitions, say).
  public let warnings: [Diagnostic]
  /// The source text, kept for rendering diagnostics later.
  public let source: SourceFile
  /// How long parsing and lowering, then each pass of the pipeline, took (`--timings`).
  public private(set) var timings: [StageTiming] = []

  /// Reads and compiles a model file. `.ir` files (and any text starting with `graph`) are read as IR.
  /// - Parameter modelName: which model, when the file defines several.
  /// - Throws: `CompileError` with every diagnostic in the file.
  /// - Parameter afterPass: called with each pass's name and the graph after it (`lamina dump --after`).
  /// - Parameter pipeline: the passes to run (`Pipeline.inference` by default; `Pipeline.training`
  ///   adds the backward graph).
  public init(
    contentsOf path: String, modelName: String? = nil,
    pipeline: [any GraphPass] = Pipeline.inference,
    afterPass: (@Sendable (String, Graph) -> Void)? = nil
  ) throws {
    let source = try Model.readSource(path)
    try self.init(source: source, modelName: modelName, pipeline: pipeline, afterPass: afterPass)
  }

  /// Compiles model source text; `path` names it in diagnostics.
  public init(
    source text: String, path: String = "<input>", modelName: String? = nil,
    pipeline: [any GraphPass] = Pipeline.inference
  ) throws {
    try self.init(
      source: SourceFile(path: path, text: text), modelName: modelName, pipeline: pipeline)
  }

  public init(
    source: SourceFile, modelName: String? = nil, pipeline: [any GraphPass] = Pipeline.inference,
    afterPass: (@Sendable (String, Graph) -> Void)? = nil
  ) throws {
    let ((graph, diagnostics), parsing) = StageTiming.measure("parse and lower") {
      Model.frontend(source, modelName: modelName)
    }
    let errors = diagnostics.filter { $0.severity == .error }
    guard let graph, errors.isEmpty else {
      throw CompileError(diagnostics: diagnostics, source: source.forDisplay)
    }
    var mutableGraph = graph
    do {
      let passTimings = try PassRunner(passes: pipeline, afterPass: afterPass).run(&mutableGraph)
      self.timings =
        [parsing] + passTimings.map { StageTiming(stage: "pass \($0.pass)", seconds: $0.seconds) }
    } catch let error as DiagnosticError {
      throw CompileError(diagnostics: diagnostics + error.diagnostics, source: source.forDisplay)
    }
    self.graph = mutableGraph
    self.warnings = diagnostics.filter { $0.severity != .error }
    self.source = source
  }

  /// Parses and lowers without running passes; the building block of `init` and `lamina dump --after`.
  public static func frontend(_ source: SourceFile, modelName: String?) -> (Graph?, [Diagnostic]) {
    if isIR(source.text) || source.path.hasSuffix(".ir") {
      do {
        return (try IRParser.parse(source.text, path: source.path), [])
      } catch let error as DiagnosticError {
        return (nil, error.diagnostics)
      } catch let diagnostic as Diagnostic {
        return (nil, [diagnostic])
      } catch {
        return (nil, [.error("\(error)")])
      }
    }
    let (program, parseDiagnostics) = Parser.parse(source: source)
    var diagnostics = parseDiagnostics.diagnostics
    for (index, model) in program.models.enumerated() {
      if let earlier = program.models[..<index].first(where: { $0.name == model.name }) {
        diagnostics.append(
          .error(
            "model \(model.name) is defined twice", at: model.location,
            notes: [.init("first defined here", at: earlier.location)]))
      }
    }
    let model: ModelDecl
    if let modelName {
      guard let found = program.models.first(where: { $0.name == modelName }) else {
        let names = program.models.map(\.name).joined(separator: ", ")
        diagnostics.append(
          .error(
            "\(source.path) has no model named '\(modelName)'\(names.isEmpty ? "" : " (it has \(names))")"
          ))
        return (nil, diagnostics)
      }
      model = found
    } else {
      guard let first = program.models.first else {
        if !diagnostics.contains(where: { $0.severity == .error }) {
          diagnostics.append(
            .error(
              "no model in this file", at: SourceLocation(file: source.path, line: 1, column: 1),
              help: "a model starts with `model Name {`"))
        }
        return (nil, diagnostics)
      }
      if program.models.count > 1 {
        diagnostics.append(
          .warning(
            "the file defines \(program.models.count) models; using \(first.name)",
            at: first.location,
            help: "choose one with --model NAME"))
      }
      model = first
    }
    // Syntax errors make lowering report confusing follow-ups; stop at them.
    if diagnostics.contains(where: { $0.severity == .error }) { return (nil, diagnostics) }
    let (graph, lowering) = Lowering.lower(model, in: program, sourcePath: source.path)
    return (graph, diagnostics + lowering)
  }

  /// Names of every model in a `.lam` file, in source order.
  public static func modelNames(in source: SourceFile) -> [String] {
    Parser.parse(source: source).0.models.map(\.name)
  }

  static func isIR(_ text: String) -> Bool {
    for line in text.split(separator: "\n") {
      let trimmed = line.drop { $0 == " " || $0 == "\t" }
      if trimmed.isEmpty || trimmed.hasPrefix("//") { continue }
      return trimmed.hasPrefix("graph ")
    }
    return false
  }

  static func readSource(_ path: String) throws -> SourceFile {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw FileError(path: path, reason: "cannot read the file (does it exist?)")
    }
    guard let text = String(data: data, encoding: .utf8) else {
      throw CompileError(
        diagnostics: [notUTF8(Array(data), path: path)],
        source: SourceFile(
          path: path, text: String(decoding: data, as: UTF8.self)
        ).forDisplay)
    }
    return SourceFile(path: path, text: text)
  }

  /// The error for a file that is not UTF-8, at its first bad byte.
  static func notUTF8(_ bytes: [UInt8], path: String) -> Diagnostic {
    var iterator = bytes.makeIterator()
    var decoder = UTF8()
    var (line, column, offset) = (1, 1, 0)
    decoding: while true {
      switch decoder.decode(&iterator) {
      case .scalarValue(let scalar):
        offset += UTF8.width(scalar)
        if scalar == "\n" {
          line += 1
          column = 1
        } else {
          column += 1
        }
      case .emptyInput, .error:
        break decoding
      }
    }
    let byte = offset < bytes.count ? String(bytes[offset], radix: 16, uppercase: true) : "?"
    return .error(
      "the file is not UTF-8 text (invalid byte 0x\(byte.count < 2 ? "0" : "")\(byte)); is it a model file?",
      at: SourceLocation(file: path, line: line, column: column),
      help: "model files are UTF-8 text; check that this is the .lam file you meant")
  }

  /// Initial values of every parameter, from the initializers, deterministic in `seed`.
  public func initialParameters(seed: UInt64 = 0) throws -> [String: Tensor] {
    try graph.initialParameters(seed: seed)
  }

  /// Evaluates outputs (or losses) with the reference interpreter. `parameters` may hold model
  /// state (running statistics); what it lacks starts at its initializer.
  /// - Parameter mode: `.training` to evaluate as a training step does (dropout trains, and so on).
  public func interpret(
    inputs: [String: Tensor], parameters: [String: Tensor], outputs: [String],
    mode: ExecutionMode = .inference, dims: [String: Int] = [:]
  ) throws -> [String: Tensor] {
    // Model state not given (running statistics) starts at its initializer, as when compiled.
    var stored = parameters
    for (name, tensor) in try graph.initialModelState() where stored[name] == nil {
      stored[name] = stored["state." + name] ?? tensor
    }
    return try Interpreter(graph: graph).run(
      inputs: inputs, parameters: stored, outputs: outputs, mode: mode, dims: dims)
  }

  /// The textual IR of the graph.
  public func ir(locations: Bool = false) -> String {
    IRPrinter(printLocations: locations).print(graph)
  }
}

/// A model that did not compile, with every diagnostic and the source to render them against.
public struct CompileError: Error, Sendable, CustomStringConvertible {
  public var diagnostics: [Diagnostic]
  public var source: SourceFile

  public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }

  /// Every diagnostic with the source line and a caret.
  public var rendered: String { DiagnosticRenderer(sources: [source]).render(diagnostics) }
  public var description: String { rendered }
}

extension SourceFile {
  /// The source with control characters shown as U+FFFD, so quoting a line of a damaged file in a
  /// diagnostic cannot drive the terminal (an escape sequence, a lone carriage return). One scalar
  /// stays one scalar, so carets still line up.
  var forDisplay: SourceFile {
    let scalars = Array(text.unicodeScalars)
    var clean = String.UnicodeScalarView()
    for (index, scalar) in scalars.enumerated() {
      let isLineEnd =
        scalar == "\n"
        || (scalar == "\r" && index + 1 < scalars.count && scalars[index + 1] == "\n")
      clean.append(
        TerminalText.isControl(scalar) && !isLineEnd && scalar != "\t" ? "\u{FFFD}" : scalar)
    }
    return SourceFile(path: path, text: String(clean))
  }
}

extension Model {
  private init(graph: Graph, warnings: [Diagnostic], source: SourceFile) {
    self.graph = graph
    self.warnings = warnings
    self.source = source
  }

  /// The model with every parameter gradient of its training steps also exposed as an output, named
  /// `grad.PARAM` (`grad.STEP.PARAM` when there are several steps), so the interpreter and compiled
  /// code can return gradients. Needs the training pipeline (the autodiff pass fills the gradients).
  ///
  ///     let model = try Model(contentsOf: path, pipeline: Pipeline.training).withGradientOutputs()
  ///     let (outputs, _) = try model.compile().evaluate(inputs)   // outputs["grad.w1"]
  public func withGradientOutputs() -> Model {
    var graph = self.graph
    let severalSteps = Set(graph.gradients.map(\.step)).count > 1
    for gradient in graph.gradients {
      let parameter = graph[gradient.parameter].name
      let name = severalSteps ? "grad.\(gradient.step).\(parameter)" : "grad.\(parameter)"
      guard !graph.outputs.contains(where: { $0.name == name }) else { continue }
      graph.outputs.append(NamedValue(name: name, value: gradient.gradient))
    }
    return Model(graph: graph, warnings: warnings, source: source)
  }
}
