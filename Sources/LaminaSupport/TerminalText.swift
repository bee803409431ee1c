/// User text (names, paths, file contents) made safe to print on a terminal.
///
/// A control character in a name (`name: "\u{1B}]0;pwned\u{07}"` in a model, a key of a
/// `.safetensors` file) would otherwise move the cursor, recolour or retitle the terminal, or hide
/// what follows it. Everything Lamina prints that came from a file goes through here.
public enum TerminalText {
  /// `text` with every control character (C0, DEL, C1) written as an escape: `\n`, `\t`, `\r`,
  /// `\u{1B}`. With `keepingNewlines`, line breaks stay (for multi-line messages).
  public static func escaped(_ text: String, keepingNewlines: Bool = false) -> String {
    var result = ""
    result.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
    for scalar in text.unicodeScalars {
      guard isControl(scalar) else {
        result.unicodeScalars.append(scalar)
        continue
      }
      switch scalar {
      case "\n" where keepingNewlines: result += "\n"
      case "\n": result += "\\n"
      case "\t": result += "\\t"
      case "\r": result += "\\r"
      default: result += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
      }
    }
    return result
  }

  /// `text` with each character holding a control character shown as one `�` (a tab as a space),
  /// so columns stay where they were: for source lines printed above a caret.
  public static func columnPreserving(_ text: String) -> String {
    String(
      text.map { character -> Character in
        if character == "\t" { return " " }
        return character.unicodeScalars.contains(where: isControl) ? "\u{FFFD}" : character
      })
  }

  /// C0 controls, DEL and C1 controls: the characters a terminal may act on.
  public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
    scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
  }
}
