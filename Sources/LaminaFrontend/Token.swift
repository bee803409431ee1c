import LaminaSupport

/// A token of the `.lam` language.
public struct Token: Sendable, Hashable, CustomStringConvertible {
  public enum Kind: Sendable, Hashable {
    case identifier
    case integer
    case float
    case string
    /// Operators and punctuation: `{ } ( ) [ ] , : = + - * / @ |>`.
    case symbol
    case end
  }

  public var kind: Kind
  /// The token's text; for strings, the contents without quotes and with escapes resolved.
  public var text: String
  public var location: SourceLocation
  /// True when the token is the first on its line; statement recovery resynchronizes there.
  public var startsLine: Bool
  /// The lexer already reported an error for this token (a malformed number, an unterminated string,
  /// the end of a file swallowed by a comment); the parser does not report its follow-ups again.
  public var isMalformed = false

  public func isSymbol(_ symbol: String) -> Bool { kind == .symbol && text == symbol }
  public func isWord(_ word: String) -> Bool { kind == .identifier && text == word }

  public var description: String {
    switch kind {
    case .end: "end of file"
    case .string: "string \"\(text)\""
    default: "'\(text)'"
    }
  }
}
