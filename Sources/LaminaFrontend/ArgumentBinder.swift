import LaminaIR
import LaminaSupport

/// What a call of a built-in (op, layer, optimizer, initializer) accepts: tensor inputs taken
/// positionally, then named slots declared in a table with their kinds and defaults.
///
/// The one binder (`Lowering.bindArguments`) checks every such call against its signature, so the four kinds
/// of built-in report unknown labels (with "did you mean"), duplicates, wrong kinds and missing
/// arguments alike.
struct CallSignature {
  /// The callee as written (`dense`, `softmax`, `adam`).
  var callee: String
  /// What a named slot is called in messages: "argument", "option", "hyperparameter".
  var noun: String
  var slots: [ArgumentSlot]
  /// How many tensors are taken positionally (a variadic op takes up to `Int.max`).
  var maximumTensors = 0
  /// Labels that name a tensor input instead of a slot (`mse(prediction: y, target: t)`).
  var tensorLabels: [String] = []
  /// A list given where tensors go spreads into them (`concat([a, b])`, `l2(params)`).
  var spreadsLists = false
  /// Positional tensors must be tensors here (layers); an op also takes numbers, as constants.
  var requiresTensors = false
  /// Positional arguments after the tensors fill the slots in order (`leaky_relu(x, 0.2)`).
  var fillsSlotsPositionally = false
  /// Extra positional arguments are kept as tensors for the op's own operand-count check.
  var keepsExtraPositionals = false
  /// The signature, for help lines; without it, help lists the slots.
  var signature: String?
  /// Labels other libraries use for a slot (`learning_rate` for `lr`): suggestions edit distance
  /// would miss.
  var aliases: [String: String] = [:]
}

/// One named slot of a signature.
struct ArgumentSlot {
  enum Kind {
    /// A compile-time constant of an op, optimizer or initializer; bare words read as strings.
    case attribute(AttributeKind)
    /// A layer option.
    case option(LayerOptionKind)
    /// A name that is not evaluated (`loss: d_loss`), or a string.
    case name
  }
  var name: String
  var kind: Kind
  var defaultValue: BoundValue?
  var isRequired: Bool
  var summary: String

  init(attribute spec: AttributeSpec) {
    name = spec.name
    kind = .attribute(spec.kind)
    defaultValue = spec.defaultValue.map(BoundValue.attribute)
    isRequired = spec.isRequired
    summary = spec.summary
  }

  init(option spec: LayerOptionSpec) {
    name = spec.name
    kind = .option(spec.kind)
    // A default is bound like a given value: `kernel: 3` declared for an "int or list" option is `[3]`.
    defaultValue = spec.defaultValue.map { .option(spec.kind.accept($0) ?? $0) }
    isRequired = spec.isRequired
    summary = spec.summary
  }

  /// What a value of the slot is, for messages.
  var phrase: String {
    switch kind {
    case .attribute(let kind): kind.description
    case .option(let kind): kind.phrase
    case .name: "a name"
    }
  }

  /// A value for a help line.
  var example: String {
    switch kind {
    case .option(let kind): kind.example
    case .name: "loss"
    case .attribute(let kind):
      switch kind {
      case .int: "1"
      case .float: "0.1"
      case .bool: "true"
      case .string: "\"...\""
      case .ints: "[0, 1]"
      case .floats: "[0.1, 0.2]"
      case .dims: "[batch, 64]"
      case .slices: "[:, 0]"
      case .dtype: "f32"
      }
    }
  }
}

/// A slot's value after binding.
enum BoundValue {
  case attribute(Attribute)
  case option(LayerOption)
}

/// The arguments of a call, matched to its signature.
struct BoundArguments {
  /// The positional (and tensor-labelled) arguments, evaluated, in the order written.
  var tensors: [(value: Lowering.Value, location: SourceLocation)] = []
  /// Every slot given or with a default.
  var values: [String: BoundValue] = [:]
  /// Whether any argument was positional.
  var hasPositional = false
  /// An error was reported; the call yields a poisoned value.
  var failed = false

  var attributes: [String: Attribute] {
    values.compactMapValues { if case .attribute(let value) = $0 { value } else { nil } }
  }

  var options: [String: LayerOption] {
    values.compactMapValues { if case .option(let value) = $0 { value } else { nil } }
  }
}

extension Lowering {
  /// Matches a call's arguments to a signature, evaluates them, and fills in defaults.
  ///
  /// `leading` is a first tensor input given by a pipe or an instance call. Every problem is reported
  /// at the argument it concerns; the missing-argument check is skipped after another error, which
  /// is usually its cause.
  mutating func bindArguments(
    _ arguments: [Argument], to signature: CallSignature, leading: Value? = nil,
    at location: SourceLocation
  ) -> BoundArguments {
    var bound = BoundArguments()
    var given: [String: SourceLocation] = [:]
    var positionalSlots = signature.slots.makeIterator()
    if let leading { addTensor(leading, at: location, to: &bound, signature) }

    func checkFirst(_ label: String, at argumentLocation: SourceLocation) -> Bool {
      if let first = given[label] {
        diagnostics.error(
          "\(signature.callee): \(signature.noun) '\(label)' is given twice", at: argumentLocation,
          notes: [.init("first given here", at: first)])
        bound.failed = true
        return false
      }
      given[label] = argumentLocation
      return true
    }

    for argument in arguments {
      if let label = argument.label {
        if signature.tensorLabels.contains(label) {
          if checkFirst(label, at: argument.location) {
            let value = evaluate(argument.value)
            // A list spreads into tensors where the signature says so (`initial: [h0, c0]`).
            if signature.spreadsLists, case .list(let items) = value {
              for item in items { addTensor(item, at: argument.location, to: &bound, signature) }
            } else {
              addTensor(value, at: argument.location, to: &bound, signature)
            }
          }
          continue
        }
        guard let slot = signature.slots.first(where: { $0.name == label }) else {
          reportUnknownLabel(label, at: argument.location, signature)
          bound.failed = true
          continue
        }
        guard checkFirst(label, at: argument.location) else { continue }
        bindSlot(slot, argument.value, into: &bound, signature)
        continue
      }
      bound.hasPositional = true
      if bound.tensors.count < signature.maximumTensors {
        let value = evaluate(argument.value)
        if case .list(let elements) = value, signature.spreadsLists {
          for element in elements {
            addTensor(element, at: argument.location, to: &bound, signature)
          }
        } else {
          addTensor(value, at: argument.location, to: &bound, signature)
        }
        continue
      }
      if signature.fillsSlotsPositionally, let slot = positionalSlots.next() {
        guard checkFirst(slot.name, at: argument.location) else { continue }
        bindSlot(slot, argument.value, into: &bound, signature)
        continue
      }
      if signature.keepsExtraPositionals {
        addTensor(evaluate(argument.value), at: argument.location, to: &bound, signature)
        continue
      }
      reportExtraPositional(argument, signature)
      bound.failed = true
    }

    for slot in signature.slots where bound.values[slot.name] == nil {
      if let value = slot.defaultValue {
        bound.values[slot.name] = value
      } else if slot.isRequired && !bound.failed {
        let what = slot.summary.isEmpty ? slot.phrase : slot.summary
        diagnostics.error(
          "\(signature.callee) needs the \(signature.noun) '\(slot.name)' (\(what))", at: location,
          help: "add it, as in \(signature.callee)(\(slot.name): \(slot.example))")
        bound.failed = true
      }
    }
    return bound
  }

  private mutating func addTensor(
    _ value: Value, at location: SourceLocation, to bound: inout BoundArguments,
    _ signature: CallSignature
  ) {
    switch value {
    case .poisoned:
      bound.failed = true
    case .tensor:
      break
    default:
      if signature.requiresTensors {
        diagnostics.error(
          "\(signature.callee) takes a tensor input, got \(value.kindDescription)", at: location)
        bound.failed = true
        return
      }
    }
    bound.tensors.append((value, location))
  }

  private mutating func bindSlot(
    _ slot: ArgumentSlot, _ expr: Expr, into bound: inout BoundArguments,
    _ signature: CallSignature
  ) {
    switch slot.kind {
    case .name:
      if case .name(let name) = expr.kind {
        bound.values[slot.name] = .attribute(.string(name))
      } else {
        bindAttribute(slot.name, .string, expr, into: &bound, signature)
      }
    case .attribute(let kind):
      bindAttribute(slot.name, kind, expr, into: &bound, signature)
    case .option(let kind):
      guard let option = layerOption(expr, kind: kind, slot: slot.name, signature) else {
        bound.failed = true
        return
      }
      bound.values[slot.name] = .option(option)
    }
  }

  private mutating func bindAttribute(
    _ name: String, _ kind: AttributeKind, _ expr: Expr, into bound: inout BoundArguments,
    _ signature: CallSignature
  ) {
    guard let attribute = attributeValue(expr) else {
      bound.failed = true
      return
    }
    guard let coerced = attribute.coerced(to: kind) else {
      diagnostics.error(
        "\(signature.callee): '\(name)' must be \(kind), got \(attribute)", at: expr.location,
        help: signature.signature.map { "the signature is \($0)" })
      bound.failed = true
      return
    }
    bound.values[name] = .attribute(coerced)
  }

  /// A layer option's value: an initializer call is built; anything else is evaluated and checked.
  private mutating func layerOption(
    _ expr: Expr, kind: LayerOptionKind, slot: String, _ signature: CallSignature
  ) -> LayerOption? {
    if kind.isInitializer { return lowerInitializer(expr).map(LayerOption.initializer) }
    let value = evaluate(expr)
    if case .poisoned = value { return nil }
    let option: LayerOption? =
      switch value {
      case .integer(let value): .integer(value)
      case .number(let value): .number(value)
      case .string(let value): .string(value)
      case .bool(let value): .bool(value)
      case .tensor(let id): .tensors([id])
      case .list(let elements):
        elements.allSatisfy { if case .integer = $0 { true } else { false } }
          ? .integers(elements.map { if case .integer(let value) = $0 { value } else { 0 } })
          : elements.allSatisfy { if case .tensor = $0 { true } else { false } }
            ? .tensors(elements.compactMap { if case .tensor(let id) = $0 { id } else { nil } })
            : nil
      default: nil
      }
    if let option, let accepted = kind.accept(option) { return accepted }
    var help: String?
    if case .string(let word)? = option {
      help = closestName(to: word, among: kind.words).map { "did you mean \"\($0)\"?" }
    }
    diagnostics.error(
      "\(signature.callee): '\(slot)' must be \(kind.phrase), got \(option?.description ?? value.kindDescription)",
      at: expr.location, help: help)
    return nil
  }

  private mutating func reportUnknownLabel(
    _ label: String, at location: SourceLocation, _ signature: CallSignature
  ) {
    let known = signature.tensorLabels + signature.slots.map(\.name)
    let suggestion = signature.aliases[label] ?? closestName(to: label, among: known)
    // With nothing to list, the help names the positional form instead of an empty list.
    let listing =
      signature.signature.map { "the signature is \($0)" }
      ?? (known.isEmpty
        ? "call it with its tensor input only: \(signature.callee)(x)"
        : "its \(signature.noun)s are \(known.joined(separator: ", "))")
    diagnostics.error(
      known.isEmpty
        ? "\(signature.callee) takes no labelled arguments, got '\(label)'"
        : "\(signature.callee) has no \(signature.noun) '\(label)'",
      at: location, help: suggestion.map { "did you mean '\($0)'?" } ?? listing)
  }

  private mutating func reportExtraPositional(_ argument: Argument, _ signature: CallSignature) {
    let tensors = signature.maximumTensors
    let example = signature.slots.first(where: \.isRequired) ?? signature.slots.first
    if tensors == 0 && !signature.fillsSlotsPositionally {
      diagnostics.error(
        "\(signature.callee) takes labelled arguments only, got a positional one",
        at: argument.location,
        help: example.map {
          "name it, as in \(signature.callee)(\($0.name): \(literalText(argument.value) ?? $0.example))"
        })
    } else if tensors == 0 {
      let count = signature.slots.count
      diagnostics.error(
        count == 0
          ? "\(signature.callee) takes no arguments"
          : "\(signature.callee) takes at most \(count) argument\(count == 1 ? "" : "s")",
        at: argument.location, help: signature.signature.map { "the signature is \($0)" })
    } else {
      diagnostics.error(
        "\(signature.callee) takes \(tensors) tensor input\(tensors == 1 ? "" : "s"); name its \(signature.noun)s, as in \(example.map { "\($0.name): \($0.example)" } ?? "name: value")",
        at: argument.location)
    }
  }
}

extension LayerOptionKind {
  /// The words a string option accepts, for "did you mean".
  fileprivate var words: [String] {
    switch self {
    case .oneOf(let words): words
    case .anyOf(let kinds): kinds.flatMap(\.words)
    default: []
    }
  }
}
