/// A place in a source file: 1-based line and column, and how many columns the construct spans.
///
/// Every token, AST node and IR node keeps one, so a diagnostic can point at the model source.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
  public var file: String
  public var line: Int
  public var column: Int
  /// Number of columns the located construct covers on `line`; the caret is drawn that wide.
  public var length: Int

  public init(file: String, line: Int, column: Int, length: Int = 1) {
    self.file = file
    self.line = line
    self.column = column
    self.length = max(1, length)
  }

  /// A location for values that come from nowhere in a source file (built from Swift, say).
  public static let unknown = SourceLocation(file: "<unknown>", line: 0, column: 0)

  public var isKnown: Bool { line > 0 }

  public var description: String { "\(TerminalText.escaped(file)):\(line):\(column)" }

  /// The location covering both `self` and `other` when they are on the same line.
  public func extended(to other: SourceLocation) -> SourceLocation {
    guard other.file == file, other.line == line, other.column >= column else { return self }
    return SourceLocation(
      file: file, line: line, column: column, length: other.column + other.length - column)
  }
}

/// The text of a source file, kept so diagnostics can quote the offending line.
public struct SourceFile: Sendable {
  public let path: String
  public let text: String
  public let lines: [Substring]

  public init(path: String, text: String) {
    self.path = path
    self.text = text
    self.lines = text.split(separator: "\n", omittingEmptySubsequences: false)
  }

  /// The text of a 1-based line, without its newline, or nil when out of range.
  public func line(_ number: Int) -> Substring? {
    guard number >= 1, number <= lines.count else { return nil }
    let line = lines[number - 1]
    return line.hasSuffix("\r") ? line.dropLast() : line
  }
}
