import LaminaSupport

/// Splits `.lam` source into tokens.
///
/// Reports every bad character, unterminated comment or string and malformed number, and keeps going,
/// so one stray byte does not hide the rest of the file's problems.
public struct Lexer {
  private let scalars: [Unicode.Scalar]
  private let path: String
  private var index = 0
  private var line = 1
  private var column = 1
  private var sawNewline = true
  /// An unterminated block comment ran to the end of the file, which is reported once, here.
  private var swallowedEnd = false
  public private(set) var diagnostics = DiagnosticBag()
  /// Many unexpected characters: the file is probably not a model, and syntax errors would be noise.
  public private(set) var looksBinary = false

  public init(text: String, path: String) {
    scalars = Array(text.unicodeScalars)
    self.path = path
  }

  public mutating func tokenize() -> [Token] {
    var tokens: [Token] = []
    var reportedGarbage = 0
    while true {
      skipSpaceAndComments()
      let start = location()
      guard index < scalars.count else {
        tokens.append(
          Token(kind: .end, text: "", location: start, startsLine: true, isMalformed: swallowedEnd))
        return tokens
      }
      let startsLine = sawNewline
      sawNewline = false
      let scalar = scalars[index]
      if Lexer.isIdentifierStart(scalar) {
        let word = read { Lexer.isIdentifierStart($0) || Lexer.isDigit($0) }
        tokens.append(
          Token(kind: .identifier, text: word, location: span(start), startsLine: startsLine))
      } else if Lexer.isDigit(scalar) || (scalar == "." && peekIsDigit(1)) {
        tokens.append(readNumber(start, startsLine: startsLine))
      } else if scalar == "\"" {
        // An unterminated string still makes a token, so the parser does not report it again.
        let (text, terminated) = readString(start)
        tokens.append(
          Token(
            kind: .string, text: text, location: span(start), startsLine: startsLine,
            isMalformed: !terminated))
      } else if scalar == "|", peek(1) == ">" {
        advance()
        advance()
        tokens.append(
          Token(kind: .symbol, text: "|>", location: span(start), startsLine: startsLine))
      } else if "{}()[],:=+-*/@".unicodeScalars.contains(scalar) {
        advance()
        tokens.append(
          Token(kind: .symbol, text: String(scalar), location: start, startsLine: startsLine))
      } else if scalar == "\u{1B}", peek(1) == "[" {
        // A terminal color code pasted along with text (ESC [ 31 m): one error for the whole sequence.
        var sequence = "\\u{1B}["
        advance()
        advance()
        sequence += read { !("@"..."~").contains($0) && $0 != "\n" }
        if index < scalars.count, scalars[index] != "\n" {
          sequence.unicodeScalars.append(scalars[index])
          advance()
        }
        diagnostics.error(
          "unexpected terminal escape sequence '\(sequence)'", at: span(start),
          help: "it was probably copied from a terminal along with the text; delete it")
      } else {
        // Binary garbage would give one error per byte; a few are enough to see the problem.
        if reportedGarbage < 3 {
          let code = String(scalar.value, radix: 16, uppercase: true)
          let unicode = "U+" + String(repeating: "0", count: max(0, 4 - code.count)) + code
          let shown =
            scalar.isASCII
            ? "'\(scalar.escaped(asASCII: true))'"
            : scalar.properties.isAlphabetic ? "'\(scalar)' (\(unicode))" : unicode
          diagnostics.error(
            "unexpected character \(shown)", at: start,
            help: scalar.properties.isAlphabetic
              ? "names use ASCII letters, digits and underscores" : nil)
        } else if reportedGarbage == 3 {
          diagnostics.error("more unexpected characters follow; is this a model file?", at: start)
          looksBinary = true
        }
        reportedGarbage += 1
        advance()
      }
    }
  }

  private func location() -> SourceLocation {
    SourceLocation(file: path, line: line, column: column)
  }

  private func span(_ start: SourceLocation) -> SourceLocation {
    var location = start
    location.length = line == start.line ? max(1, column - start.column) : 1
    return location
  }

  private func peek(_ offset: Int) -> Unicode.Scalar? {
    index + offset < scalars.count ? scalars[index + offset] : nil
  }

  private func peekIsDigit(_ offset: Int) -> Bool { peek(offset).map(Lexer.isDigit) ?? false }

  private mutating func advance() {
    if scalars[index] == "\n" {
      line += 1
      column = 1
      sawNewline = true
    } else {
      column += 1
    }
    index += 1
  }

  private mutating func read(while predicate: (Unicode.Scalar) -> Bool) -> String {
    var text = ""
    while index < scalars.count, predicate(scalars[index]) {
      text.unicodeScalars.append(scalars[index])
      advance()
    }
    return text
  }

  private mutating func skipSpaceAndComments() {
    while index < scalars.count {
      let scalar = scalars[index]
      if scalar == " " || scalar == "\t" || scalar == "\r" || scalar == "\n" {
        advance()
      } else if scalar == "/", peek(1) == "/" {
        while index < scalars.count, scalars[index] != "\n" { advance() }
      } else if scalar == "/", peek(1) == "*" {
        let start = location()
        advance()
        advance()
        var depth = 1
        // Block comments nest, so commenting out code that has a comment works.
        while index < scalars.count, depth > 0 {
          if scalars[index] == "*", peek(1) == "/" {
            depth -= 1
            advance()
          } else if scalars[index] == "/", peek(1) == "*" {
            depth += 1
            advance()
          }
          advance()
        }
        if depth > 0 {
          swallowedEnd = true
          diagnostics.error(
            "unterminated block comment",
            at: SourceLocation(file: path, line: start.line, column: start.column, length: 2),
            help: "close it with */")
        }
      } else {
        return
      }
    }
  }

  /// A number token; a malformed one is reported and stands in as `0`, so the parser goes on quietly.
  private mutating func readNumber(_ start: SourceLocation, startsLine: Bool) -> Token {
    func malformed(_ kind: Token.Kind) -> Token {
      Token(kind: kind, text: "0", location: span(start), startsLine: startsLine, isMalformed: true)
    }
    var text = read { Lexer.isDigit($0) || $0 == "_" }
    var isFloat = false
    if index < scalars.count, scalars[index] == ".",
      peek(1).map({ !Lexer.isIdentifierStart($0) }) ?? true
    {
      isFloat = true
      advance()
      text += "." + read { Lexer.isDigit($0) || $0 == "_" }
    }
    if index < scalars.count, scalars[index] == "e" || scalars[index] == "E" {
      isFloat = true
      text += "e"
      advance()
      if index < scalars.count, scalars[index] == "-" || scalars[index] == "+" {
        text.unicodeScalars.append(scalars[index])
        advance()
      }
      let exponent = read { Lexer.isDigit($0) }
      if exponent.isEmpty {
        consumeRestOfWord()
        diagnostics.error(
          "malformed number '\(text)': the exponent has no digits", at: span(start),
          help: "write it like 1e-3")
        return malformed(.float)
      }
      text += exponent
    }
    // `1.2.3`, `12abc`, `0x1F`: report the whole word once.
    if index < scalars.count, Lexer.isIdentifierStart(scalars[index]) || scalars[index] == "." {
      let rest = consumeRestOfWord()
      diagnostics.error("malformed number '\(text)\(rest)'", at: span(start))
      return malformed(isFloat ? .float : .integer)
    }
    let clean = text.replacingOccurrences(of: "_", with: "")
    if isFloat {
      guard let value = Double(clean), value.isFinite else {
        diagnostics.error("number '\(text)' is out of range", at: span(start))
        return malformed(.float)
      }
      return Token(kind: .float, text: clean, location: span(start), startsLine: startsLine)
    }
    guard Int(clean) != nil else {
      diagnostics.error(
        "integer '\(text)' is too large", at: span(start),
        help: "integers are 64-bit, up to \(Int.max); write a large number as a float, like 1e20")
      return malformed(.integer)
    }
    return Token(kind: .integer, text: clean, location: span(start), startsLine: startsLine)
  }

  @discardableResult
  private mutating func consumeRestOfWord() -> String {
    read { Lexer.isIdentifierStart($0) || Lexer.isDigit($0) || $0 == "." }
  }

  /// The contents of a string literal, and whether its closing quote was found.
  private mutating func readString(_ start: SourceLocation) -> (String, Bool) {
    advance()
    var text = ""
    while index < scalars.count {
      let scalar = scalars[index]
      if scalar == "\n" { break }
      advance()
      if scalar == "\"" { return (text, true) }
      if scalar == "\\", index < scalars.count {
        let escaped = scalars[index]
        advance()
        switch escaped {
        case "n": text += "\n"
        case "t": text += "\t"
        case "\"", "\\": text.unicodeScalars.append(escaped)
        default:
          diagnostics.error("unknown escape '\\\(escaped)' in string", at: span(start))
        }
      } else {
        text.unicodeScalars.append(scalar)
      }
    }
    diagnostics.error("unterminated string", at: start, help: "close it with \" on the same line")
    return (text, false)
  }

  static func isIdentifierStart(_ scalar: Unicode.Scalar) -> Bool {
    ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || scalar == "_"
  }

  static func isDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }
}
