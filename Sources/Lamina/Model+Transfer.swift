import Foundation
import LaminaIR
import LaminaSupport

/// A rule `--rename OLD=NEW`: a name in a weights file that starts with `OLD` is read as the name
/// that starts with `NEW` instead (`encoder.=features.` maps `encoder.conv2d_0.weight` to
/// `features.conv2d_0.weight`).
public struct PrefixRename: Sendable, Equatable {
  public var old: String
  public var new: String

  public init(old: String, new: String) {
    self.old = old
    self.new = new
  }

  /// Parses `OLD=NEW` (either side may be empty: `=head.` adds a prefix, `head.=` removes one).
  public init(parsing text: String) throws {
    guard let equals = text.firstIndex(of: "=") else {
      throw RunError(
        "a rename is OLD=NEW (a name prefix in the file, the prefix in the model), got '\(TerminalText.escaped(text))'"
      )
    }
    self.init(old: String(text[..<equals]), new: String(text[text.index(after: equals)...]))
  }

  /// `name` with the first rule whose prefix it starts with applied; unchanged when none does.
  public static func apply(_ rules: [PrefixRename], to name: String) -> String {
    for rule in rules where name.hasPrefix(rule.old) {
      return rule.new + name.dropFirst(rule.old.count)
    }
    return name
  }
}

/// What loading another model's weights into this one matched: the tensors to load and the
/// table `lamina train --init-from` prints.
public struct WeightTransfer: Sendable {
  /// One name of the table.
  public struct Entry: Sendable, Equatable {
    /// The name in the model (for `unexpected`: the name in the file, after renaming).
    public var name: String
    /// The name in the file (for `missing`: nil).
    public var fileName: String?
    /// The model's type (`f32[16, 1, 3, 3]`); for `unexpected`, the file's.
    public var type: String
    /// For a shape mismatch: the file's type.
    public var fileType: String?
    /// Model state (running statistics) rather than a parameter.
    public var isState: Bool
  }

  /// The weights file.
  public var path: String
  /// Parameters and model state whose name and type match: they get the file's values.
  public var loaded: [Entry] = []
  /// Parameters and model state the file lacks: they keep their initializer's values.
  public var missing: [Entry] = []
  /// Tensors of the file the model has no use for (ignored).
  public var unexpected: [Entry] = []
  /// Names both have, with different dtypes or shapes (an error unless partial loading is allowed).
  public var mismatched: [Entry] = []
  /// The loaded values by their names in the model.
  public var tensors: [String: Tensor] = [:]

  /// The table, one line per name, every name escaped for a terminal.
  public func table() -> String {
    var rows: [[String]] = []
    func add(_ status: String, _ entries: [Entry], _ detail: (Entry) -> String) {
      for entry in entries {
        rows.append([
          status, TerminalText.escaped(entry.name), TerminalText.escaped(entry.type),
          TerminalText.escaped(detail(entry)),
        ])
      }
    }
    add("loaded", loaded) { entry in
      entry.fileName.map { $0 == entry.name ? "" : "from \($0)" } ?? ""
    }
    add("mismatch", mismatched) { entry in
      "file has \(entry.fileType ?? "?")"
        + (entry.fileName.map { $0 == entry.name ? "" : " as \($0)" } ?? "")
    }
    add("missing", missing) { entry in
      entry.isState ? "state kept at its initial value" : "kept at its initializer"
    }
    add("unexpected", unexpected) { entry in
      "ignored" + (entry.fileName.map { $0 == entry.name ? "" : " (\($0) in the file)" } ?? "")
    }
    var out =
      "init from \(TerminalText.escaped(path)): \(loaded.count) loaded, \(missing.count) missing, \(unexpected.count) unexpected, \(mismatched.count) shape mismatch\(mismatched.count == 1 ? "" : "es")\n"
    guard !rows.isEmpty else { return out }
    let widths = (0..<3).map { column in rows.map { $0[column].count }.max()! }
    for row in rows {
      let padded = (0..<3).map {
        row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0)
      }
      out +=
        ("  " + (padded + [row[3]]).joined(separator: "  "))
        .trimmingCharacters(in: .whitespaces) + "\n"
    }
    return out
  }
}

/// Starting a model from another model's trained weights (transfer learning).
extension Model {
  /// Matches the tensors of the `.safetensors` file at `path` against this model's parameters and
  /// model state by name (after `renames`) and type.
  ///
  /// A Lamina checkpoint works too: its model state (`state.NAME`) is matched under NAME, its
  /// optimizer state and best weights are unexpected. The random generator's state (dropout's)
  /// is neither loaded nor reported: training seeds it. Reads the file only; nothing is loaded
  /// anywhere until the result is applied (`parameters(startingFrom:seed:)`,
  /// `TrainableModel.load(_:)`).
  ///
  /// - Throws: when the file cannot be read or is not a safetensors file, when none of its tensors
  ///   matches (an unrelated file), and on a dtype or shape mismatch unless `allowPartial`.
  public func transfer(
    from path: String, renames: [PrefixRename] = [], allowPartial: Bool = false
  ) throws -> WeightTransfer {
    let file = try SafeTensors.read(contentsOf: path)
    var wanted: [String: (type: TensorType, isState: Bool)] = [:]
    var order: [String] = []
    for param in graph.params {
      wanted[graph[param.value].name] = (graph.type(of: param.value), false)
      order.append(graph[param.value].name)
    }
    // The random generator's state is where dropout's stream stands, not something learned: the
    // seed comes from training (`--seed`), so neither model's is matched.
    let generatorState: Set<String> = [RandomGenerator.seedName, RandomGenerator.stepName]
    for state in graph.modelStates where !generatorState.contains(graph[state.value].name) {
      wanted[graph[state.value].name] = (graph.type(of: state.value), true)
      order.append(graph[state.value].name)
    }
    var result = WeightTransfer(path: path)
    var matched: Set<String> = []
    for (fileName, tensor) in file
    where !generatorState.contains(fileName)
      && !generatorState.map({ Checkpoint.statePrefix + $0 }).contains(fileName)
    {
      var name = fileName
      if name.hasPrefix(Checkpoint.statePrefix),
        wanted[String(name.dropFirst(Checkpoint.statePrefix.count))]?.isState == true
      {
        name = String(name.dropFirst(Checkpoint.statePrefix.count))
      }
      name = PrefixRename.apply(renames, to: name)
      guard let (type, isState) = wanted[name], !matched.contains(name) else {
        result.unexpected.append(
          .init(name: name, fileName: fileName, type: tensor.typeDescription, isState: false))
        continue
      }
      matched.insert(name)
      let entry = WeightTransfer.Entry(
        name: name, fileName: fileName, type: type.description, fileType: tensor.typeDescription,
        isState: isState)
      guard tensor.dtype == type.dtype, type.concreteShape([:]) == tensor.shape else {
        result.mismatched.append(entry)
        continue
      }
      result.loaded.append(entry)
      result.tensors[name] = tensor
    }
    for name in order where !matched.contains(name) {
      let (type, isState) = wanted[name]!
      result.missing.append(
        .init(name: name, fileName: nil, type: type.description, isState: isState))
    }
    let position = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) })
    result.loaded.sort { position[$0.name]! < position[$1.name]! }
    result.mismatched.sort { position[$0.name]! < position[$1.name]! }
    guard !result.loaded.isEmpty || !result.mismatched.isEmpty else {
      let sample = file.prefix(3).map { TerminalText.escaped($0.name) }.joined(separator: ", ")
      throw RunError(
        "\(TerminalText.escaped(path)): none of its \(file.count) tensors (\(sample)\(file.count > 3 ? ", ..." : "")) is a parameter or state of model \(graph.name) (\(order.prefix(3).map { TerminalText.escaped($0) }.joined(separator: ", "))\(order.count > 3 ? ", ..." : "")); is it another model's file? --rename OLD=NEW maps name prefixes"
      )
    }
    if !allowPartial, !result.mismatched.isEmpty {
      let list = result.mismatched.map {
        "\(TerminalText.escaped($0.name)): model \($0.type), file \($0.fileType ?? "?")"
      }
      throw RunError(
        "\(TerminalText.escaped(path)): \(result.mismatched.count) tensor\(result.mismatched.count == 1 ? " has" : "s have") another shape or dtype than the model's (\(list.joined(separator: "; "))); pass --allow-partial to keep them at their initializers"
      )
    }
    return result
  }

  /// The initial parameters under `seed` with `transfer`'s loaded values in place, and the model
  /// state it loaded (running statistics): what `compile(parameters:)` and `Trainer` start from.
  public func parameters(startingFrom transfer: WeightTransfer, seed: UInt64 = 0) throws
    -> [String: Tensor]
  {
    try initialParameters(seed: seed).merging(transfer.tensors) { _, loaded in loaded }
  }
}

extension TrainableModel {
  /// Loads `transfer`'s parameters and model state into the model; every other parameter and
  /// state keeps its current value. All or nothing: a tensor the model rejects changes nothing.
  public func load(_ transfer: WeightTransfer) throws {
    try setParameters(try parameters().merging(transfer.tensors) { _, loaded in loaded })
  }
}
