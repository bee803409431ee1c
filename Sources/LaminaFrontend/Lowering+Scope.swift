import LaminaIR
import LaminaSupport

/// Names: scopes and their bindings, declaring and looking up names, use-before-definition, unused
/// warnings, and the `KIND_N` names of layer and block instances.
extension Lowering {
  struct Binding {
    var value: Value
    var location: SourceLocation
    var used = false
    /// Unused lets warn; block parameters and model inputs are reported separately.
    var warnsWhenUnused: Bool
    var kind: String
  }

  struct Scope {
    /// Qualified name of the block instance (`residual_3`); empty at model level.
    var prefix: String
    var bindings: [String: Binding] = [:]
    /// Names the scope's statements define, with where, to explain use-before-definition.
    var laterDefinitions: [String: SourceLocation] = [:]
    /// The expressions of those definitions, to tell a cycle from a simple misordering.
    var laterExpressions: [String: Expr] = [:]
    /// The name the statement being lowered defines (`a` while lowering `let a = ...`).
    var defining: String?
    var instanceCounters: [String: Int] = [:]
    /// True while an instance is called again: its parameters exist and are shared, not created.
    var sharesParameters = false

    func qualified(_ name: String) -> String { prefix.isEmpty ? name : "\(prefix).\(name)" }
  }

  /// Opens the scope of a block call; the caller's scope waits on the stack.
  mutating func enterScope(_ inner: Scope) {
    outerScopes.append(scope)
    scope = inner
  }

  mutating func exitScope() {
    scope = outerScopes.removeLast()
  }

  mutating func recordDefinitions(_ statements: [Statement]) {
    for statement in statements {
      if let name = statement.definedName, scope.laterDefinitions[name] == nil {
        scope.laterDefinitions[name] = statement.location
        scope.laterExpressions[name] = statement.definingExpression
      }
    }
  }

  mutating func reportUnused() {
    for (name, binding) in scope.bindings.sorted(by: {
      $0.value.location.line < $1.value.location.line
    })
    where !binding.used {
      if binding.warnsWhenUnused || binding.kind == "input" {
        diagnostics.warning("\(binding.kind) '\(name)' is never used", at: binding.location)
      }
    }
  }

  /// Checks that `name` is not yet defined in this scope.
  mutating func declareName(_ name: String, at location: SourceLocation) -> Bool {
    if let existing = scope.bindings[name] {
      diagnostics.error(
        "'\(name)' is already defined", at: location,
        notes: [.init("previous definition is here", at: existing.location)])
      return false
    }
    if name == "params" {
      diagnostics.error("'params' is reserved: it means all parameters of the model", at: location)
      return false
    }
    return true
  }

  mutating func bind(
    _ name: String, _ value: Value, at location: SourceLocation, kind: String,
    warnsWhenUnused: Bool = false
  ) {
    scope.bindings[name] = Binding(
      value: value, location: location, warnsWhenUnused: warnsWhenUnused, kind: kind)
  }

  mutating func lookup(_ name: String, at location: SourceLocation) -> Value {
    if scope.bindings[name] != nil {
      scope.bindings[name]!.used = true
      return scope.bindings[name]!.value
    }
    switch name {
    case "params":
      return .list(graph.params.filter(\.trainable).map { .tensor($0.value) })
    case "true": return .bool(true)
    case "false": return .bool(false)
    default: break
    }
    if let later = scope.laterDefinitions[name] {
      if name == scope.defining {
        diagnostics.error(
          "'\(name)' is used in its own definition", at: location,
          help:
            "a value cannot depend on itself; to compute a new value from an old one, give it a new name"
        )
      } else {
        let isCycle =
          scope.defining.map { scope.laterExpressions[name]?.mentions($0) ?? false } ?? false
        diagnostics.error(
          "'\(name)' is used before its definition", at: location,
          notes: [.init("'\(name)' is defined here", at: later)],
          help: isCycle
            ? "'\(name)' in turn uses '\(scope.defining!)'; two values cannot depend on each other"
            : "definitions run top to bottom; move the definition of '\(name)' above this line")
      }
    } else if OpRegistry.definition(name) != nil || layers[name] != nil
      || blocks[name] != nil
    {
      diagnostics.error("'\(name)' is a function; call it, as in \(name)(x)", at: location)
    } else {
      let suggestion = closestName(to: name, among: Array(scope.bindings.keys))
      diagnostics.error(
        "undefined name '\(name)'", at: location, help: suggestion.map { "did you mean '\($0)'?" })
    }
    return .poisoned
  }

  mutating func nameIfTemporary(_ value: ValueID, _ name: String) {
    // Numeric names are temporaries; give the value the name the user wrote.
    if graph[value].name.first?.isNumber == true { graph.rename(value, to: name) }
  }

  mutating func nextInstanceName(_ kind: String) -> String {
    let base = snakeCase(kind)
    let index = scope.instanceCounters[base, default: 0]
    scope.instanceCounters[base] = index + 1
    return "\(base)_\(index)"
  }

}

/// `Residual` → `residual`, `ConvBlock` → `conv_block`, `dense` → `dense`.
func snakeCase(_ name: String) -> String {
  var out = ""
  for (index, character) in name.enumerated() {
    if character.isUppercase {
      if index > 0 { out += "_" }
      out += character.lowercased()
    } else {
      out.append(character)
    }
  }
  return out
}
