/// User text (names, paths, source excerpts) made safe to place in generated C.
///
/// A model file is untrusted: a name such as `*/ __attribute__((constructor)) ... /*`, or one ending
/// in a backslash that splices the next line into it, would end a comment early and have the rest
/// compiled into the library. Everything from a user that reaches generated C goes through here, and
/// C identifiers are never built from unchecked user text.
enum CText {
  /// `text` as the inside of a `/* ... */` comment: printable ASCII stays; a backslash, every
  /// other byte of the UTF-8 (controls, line breaks, non-ASCII) and the second character of `*/`,
  /// `/*` and `??` (a trigraph start) become `\xNN`. A backslash in the result is always followed by
  /// `x`, so it can never splice lines, and the result holds no comment delimiter.
  static func comment(_ text: String) -> String {
    var result = ""
    var previous: UInt8 = 0
    for byte in text.utf8 {
      let breaksSequence =
        (previous == UInt8(ascii: "*") && byte == UInt8(ascii: "/"))
        || (previous == UInt8(ascii: "/") && byte == UInt8(ascii: "*"))
        || (previous == UInt8(ascii: "?") && byte == UInt8(ascii: "?"))
      if isPlain(byte) && !breaksSequence {
        result.unicodeScalars.append(Unicode.Scalar(byte))
        previous = byte
      } else {
        result += "\\x" + hex(byte)
        previous = 0
      }
    }
    return result
  }

  /// `text` as a C string literal, quotes included: printable ASCII stays, except `"` and `\`;
  /// those, every other byte of the UTF-8 and the second `?` of `??` become three-digit octal
  /// escapes, which unlike `\x` cannot swallow the characters after them. The literal holds exactly
  /// the bytes of `text`. Never use it as a printf format: pass it to `%s`.
  static func stringLiteral(_ text: String) -> String {
    var result = "\""
    var previous: UInt8 = 0
    for byte in text.utf8 {
      let trigraph = previous == UInt8(ascii: "?") && byte == UInt8(ascii: "?")
      if isPlain(byte) && byte != UInt8(ascii: "\"") && !trigraph {
        result.unicodeScalars.append(Unicode.Scalar(byte))
        previous = byte
      } else {
        result += "\\" + octal(byte)
        previous = 0
      }
    }
    return result + "\""
  }

  /// `text` as part of a C identifier: ASCII letters, digits and `_` stay, anything else becomes
  /// `_`. Callers keep the result unique themselves (a node index, `MacroNames`).
  static func identifierPart(_ text: String) -> String {
    String(
      text.unicodeScalars.map { scalar -> Character in
        isIdentifierCharacter(scalar) ? Character(scalar) : "_"
      })
  }

  /// Whether `text` is already a C identifier of ASCII letters, digits and `_`.
  static func isIdentifier(_ text: String) -> Bool {
    guard let first = text.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
    return text.unicodeScalars.allSatisfy(isIdentifierCharacter)
  }

  static func isIdentifierCharacter(_ scalar: Unicode.Scalar) -> Bool {
    ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
      || scalar == "_"
  }

  /// Printable ASCII other than the backslash.
  private static func isPlain(_ byte: UInt8) -> Bool {
    byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\\")
  }

  private static func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
  }

  private static func octal(_ byte: UInt8) -> String {
    String(byte >> 6) + String((byte >> 3) & 7) + String(byte & 7)
  }
}

/// C macro names for the header, each used once.
struct MacroNames {
  private var taken: Set<String>

  /// `reserved`: names already defined (the counts), and every macro of the runtime's interface.
  init(reserved: [String]) {
    taken = Set(reserved)
    for line in CRuntimeSources.interface.split(separator: "\n") {
      let words = line.split(separator: " ", omittingEmptySubsequences: true)
      if words.count >= 2, words[0] == "#define" {
        taken.insert(String(words[1].prefix { $0 != "(" }))
      }
    }
  }

  /// `candidate`, or `candidate_2`, `candidate_3`, ... if it was taken; then it is taken.
  mutating func claim(_ candidate: String) -> String {
    var name = candidate
    var suffix = 2
    while taken.contains(name) {
      name = "\(candidate)_\(suffix)"
      suffix += 1
    }
    taken.insert(name)
    return name
  }
}
