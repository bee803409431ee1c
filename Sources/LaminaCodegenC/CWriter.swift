/// Builds C source text with indentation.
struct CWriter {
  private(set) var text = ""
  private var depth = 0

  mutating func line(_ line: String = "") {
    text += line.isEmpty ? "\n" : String(repeating: "  ", count: depth) + line + "\n"
  }

  /// Writes `header {`, the body one level deeper, then `}`.
  mutating func block(_ header: String, _ body: (inout CWriter) throws -> Void) rethrows {
    line(header + " {")
    depth += 1
    defer {
      depth -= 1
      line("}")
    }
    try body(&self)
  }

  mutating func append(_ other: String) { text += other }

  /// Appends another writer's lines at this writer's indentation.
  mutating func nest(_ other: CWriter) {
    for line in other.text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
      self.line(String(line))
    }
  }
}
