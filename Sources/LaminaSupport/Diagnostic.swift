/// A message about the user's model or data, located in its source when possible.
///
/// The headline is one line, starts lowercase and names the offending op or value; notes and a help
/// line may follow. `DiagnosticRenderer` turns it into compiler-style text with the source line and a caret.
public struct Diagnostic: Error, Hashable, Sendable, CustomStringConvertible {
  public enum Severity: String, Sendable, Hashable {
    case error
    case warning
    case note
  }

  /// A secondary message, optionally at another location ("`batch` was bound here").
  public struct Note: Hashable, Sendable {
    public var message: String
    public var location: SourceLocation?
    public init(_ message: String, at location: SourceLocation? = nil) {
      self.message = message
      self.location = location
    }
  }

  public var severity: Severity
  public var message: String
  public var location: SourceLocation?
  public var notes: [Note]
  /// A suggestion for fixing the problem ("did you mean 'relu'?").
  public var help: String?

  public init(
    _ severity: Severity = .error, _ message: String, at location: SourceLocation? = nil,
    notes: [Note] = [], help: String? = nil
  ) {
    self.severity = severity
    self.message = message
    self.location = location
    self.notes = notes
    self.help = help
  }

  public static func error(
    _ message: String, at location: SourceLocation? = nil, notes: [Note] = [], help: String? = nil
  ) -> Diagnostic {
    Diagnostic(.error, message, at: location, notes: notes, help: help)
  }

  public static func warning(
    _ message: String, at location: SourceLocation? = nil, notes: [Note] = [], help: String? = nil
  ) -> Diagnostic {
    Diagnostic(.warning, message, at: location, notes: notes, help: help)
  }

  /// The one-line headline: `file:line:col: error: message`.
  public var description: String {
    if let location, location.isKnown {
      return "\(location): \(severity.rawValue): \(message)"
    }
    return "\(severity.rawValue): \(message)"
  }
}

/// Several diagnostics thrown together, so a user sees every mistake in a file at once.
public struct DiagnosticError: Error, Sendable, CustomStringConvertible {
  public var diagnostics: [Diagnostic]
  public init(_ diagnostics: [Diagnostic]) { self.diagnostics = diagnostics }
  public init(_ diagnostic: Diagnostic) { self.diagnostics = [diagnostic] }

  public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
  public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// Collects diagnostics while a stage keeps going, so all errors in a file are reported together.
public struct DiagnosticBag: Sendable {
  public private(set) var diagnostics: [Diagnostic] = []
  public init() {}

  public var hasErrors: Bool { diagnostics.contains { $0.severity == .error } }

  public mutating func append(_ diagnostic: Diagnostic) {
    // The same message at the same place twice helps nobody (a block called many times, say).
    let isRepeat = diagnostics.contains {
      $0.severity == diagnostic.severity && $0.message == diagnostic.message
        && $0.location == diagnostic.location
    }
    if !isRepeat { diagnostics.append(diagnostic) }
  }

  public mutating func append(contentsOf other: [Diagnostic]) {
    for diagnostic in other { append(diagnostic) }
  }

  public mutating func error(
    _ message: String, at location: SourceLocation?, notes: [Note] = [], help: String? = nil
  ) {
    append(.error(message, at: location, notes: notes, help: help))
  }

  public mutating func warning(_ message: String, at location: SourceLocation?, help: String? = nil)
  {
    append(.warning(message, at: location, help: help))
  }

  /// Throws the collected diagnostics when any is an error.
  public func throwIfErrors() throws {
    if hasErrors { throw DiagnosticError(diagnostics) }
  }

  public typealias Note = Diagnostic.Note
}

/// Renders diagnostics as compiler-style text:
///
///     model.lam:12:15: error: cannot add f32[batch, 64] and f32[32]
///        12 |   let h = x + b
///           |           ^^^^^
public struct DiagnosticRenderer: Sendable {
  public var sources: [String: SourceFile]

  public init(sources: [SourceFile] = []) {
    var byPath: [String: SourceFile] = [:]
    for source in sources { byPath[source.path] = source }
    self.sources = byPath
  }

  public func render(_ diagnostic: Diagnostic) -> String {
    TerminalText.escaped(unescapedRender(diagnostic), keepingNewlines: true)
  }

  private func unescapedRender(_ diagnostic: Diagnostic) -> String {
    var out = diagnostic.description
    if let location = diagnostic.location { out += excerpt(at: location) }
    for note in diagnostic.notes {
      if let location = note.location, location.isKnown {
        out += "\n\(location): note: \(note.message)"
        out += excerpt(at: location)
      } else {
        out += "\n  note: \(note.message)"
      }
    }
    if let help = diagnostic.help { out += "\n  help: \(help)" }
    return out
  }

  public func render(_ diagnostics: [Diagnostic]) -> String {
    diagnostics.map(render).joined(separator: "\n")
  }

  private func excerpt(at location: SourceLocation) -> String {
    guard location.isKnown, let source = sources[location.file],
      let line = source.line(location.line)
    else { return "" }
    // Tabs and control characters would misplace the caret (or act on the terminal); each shows as
    // one character.
    let text = TerminalText.columnPreserving(String(line))
    let number = String(location.line)
    let gutter = String(repeating: " ", count: number.count)
    let caretStart = max(0, min(location.column - 1, text.count))
    let caretWidth = max(1, min(location.length, max(1, text.count - caretStart)))
    return "\n \(number) | \(text)\n \(gutter) | "
      + String(repeating: " ", count: caretStart) + String(repeating: "^", count: caretWidth)
  }
}

/// A problem with what a caller passed to a model: a missing, unknown or mis-shaped tensor, or a
/// failure the compiled code reported.
public struct RunError: Error, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}
