import Foundation
import Lamina

/// One `lamina` subcommand.
protocol Command: SendableMetatype {
  static var name: String { get }
  static var summary: String { get }
  static var help: String { get }
  static var options: OptionSpec { get }
  /// Runs the command and returns the exit status.
  static func run(_ options: inout Options, console: Console) throws -> Int32
}

/// Which flags a command takes: ones with a value (`--seed 3`), repeatable ones, and switches.
struct OptionSpec {
  var valued: Set<String> = []
  var repeatable: Set<String> = []
  var switches: Set<String> = []

  /// This spec plus `--passes` and `--disable-pass`, for commands that run a pipeline.
  var selectingPasses: OptionSpec {
    var spec = self
    spec.valued.insert("--passes")
    spec.repeatable.insert("--disable-pass")
    return spec
  }

  /// The help lines for `--passes` and `--disable-pass`.
  static let passSelectionHelp = """
      --passes A,B     run only these optional passes, in pipeline order (required ones always run;
                       `lamina passes` lists them; --passes "" runs none)
      --disable-pass P skip pass P (repeatable, or comma-separated: --disable-pass simplify,cse)
    """
}

/// A mistake in how the command was called.
struct UsageError: Error {
  var message: String
  init(_ message: String) { self.message = message }
}

/// Parsed command-line arguments: positional arguments, flag values and switches.
struct Options {
  var positional: [String] = []
  private var values: [String: [String]] = [:]
  private var switchesSet: Set<String> = []

  init(_ arguments: [String], spec: OptionSpec) throws {
    var index = 0
    while index < arguments.count {
      var argument = arguments[index]
      index += 1
      guard argument.hasPrefix("-"), argument.count > 1, Double(argument) == nil else {
        positional.append(argument)
        continue
      }
      var inlineValue: String?
      if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
        inlineValue = String(argument[argument.index(after: equals)...])
        argument = String(argument[..<equals])
      }
      if spec.switches.contains(argument) {
        switchesSet.insert(argument)
      } else if spec.valued.contains(argument) || spec.repeatable.contains(argument) {
        guard let value = inlineValue ?? (index < arguments.count ? arguments[index] : nil) else {
          throw UsageError("\(argument) needs a value")
        }
        if inlineValue == nil { index += 1 }
        if !spec.repeatable.contains(argument), values[argument] != nil {
          throw UsageError("\(argument) is given twice")
        }
        values[argument, default: []].append(value)
      } else {
        let known = Array(spec.valued) + Array(spec.repeatable) + Array(spec.switches)
        let suggestion = closestName(to: argument, among: known)
        throw UsageError(
          "unknown option \(argument)" + (suggestion.map { "; did you mean \($0)?" } ?? ""))
      }
    }
  }

  func value(_ name: String) -> String? { values[name]?.last }
  func values(_ name: String) -> [String] { values[name] ?? [] }
  func isSet(_ name: String) -> Bool { switchesSet.contains(name) }

  func seed() throws -> UInt64 {
    guard let text = value("--seed") else { return 0 }
    guard let seed = UInt64(text) else {
      throw UsageError("--seed takes a non-negative integer, got '\(text)'")
    }
    return seed
  }

  /// `pipeline` as `--passes` and `--disable-pass` select it (the whole pipeline without them).
  /// - Throws: `UsageError` for an unknown pass name or disabling a pass the command needs.
  func selectedPasses(_ pipeline: [any GraphPass]) throws -> [any GraphPass] {
    func names(_ text: String) -> [String] {
      text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
        !$0.isEmpty
      }
    }
    do {
      return try Pipeline.select(
        from: pipeline, passes: value("--passes").map(names),
        disabled: values("--disable-pass").flatMap(names))
    } catch let error as PassSelectionError {
      throw UsageError(error.message)
    }
  }

  /// `name=path` pairs from a repeatable option.
  func pairs(_ name: String) throws -> [(name: String, path: String)] {
    try values(name).map { item in
      guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
        throw UsageError("\(name) takes NAME=FILE, got '\(item)'")
      }
      return (String(item[..<equals]), String(item[item.index(after: equals)...]))
    }
  }

  /// The single model file argument.
  func modelPath() throws -> String {
    guard positional.count == 1 else {
      throw UsageError(
        positional.isEmpty
          ? "missing the model file" : "expected one model file, got \(positional.count)")
    }
    return positional[0]
  }
}

/// Loads a model, printing its warnings to standard error.
/// - Parameter pipeline: the passes to run (`--passes` and `--disable-pass` already applied).
func loadModel(
  _ path: String, modelName: String?, pipeline: [any GraphPass] = Pipeline.inference,
  console: Console
) throws -> Model {
  let model = try Model(contentsOf: path, modelName: modelName, pipeline: pipeline)
  if !model.warnings.isEmpty {
    console.error(DiagnosticRenderer(sources: [model.source]).render(model.warnings))
  }
  return model
}

/// Reads a weights file (parameters, and the model state it holds), or draws the initial weights
/// when there is none.
func loadParameters(_ model: Model, weightsPath: String?, seed: UInt64) throws -> [String: Tensor] {
  guard let weightsPath else { return try model.initialParameters(seed: seed) }
  let weights = try SafeTensors.readDictionary(contentsOf: weightsPath)
  var parameters: [String: Tensor] = [:]
  for param in model.graph.params {
    let name = model.graph[param.value].name
    guard let tensor = weights[name] else {
      let suggestion = closestName(to: name, among: Array(weights.keys))
      throw RunError(
        "\(weightsPath): no tensor for parameter '\(name)'"
          + (suggestion.map { " (there is '\($0)')" } ?? ""))
    }
    parameters[name] = tensor
  }
  // Model state (running statistics) the file holds comes with the parameters; what it lacks
  // starts at its initializer.
  for state in model.graph.modelStates {
    let name = model.graph[state.value].name
    if let tensor = weights[name] ?? weights["state." + name] { parameters[name] = tensor }
  }
  return parameters
}
