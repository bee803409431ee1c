/// Builds C source text with indentation.
struct CWriter {
  private(set) var text = ""
  private var depth = 0

  mutating func line(_ line: String = "") {
    text += line.isEmpty ? "\n" : String(repeating: "  ", count: depth) + line + "\n"
  }

  /// Writes `header {`, the body one level deeper, then `}`.
  mutating func block(_ header: String, _ body: (inout CWriter) -> Void) {
    line(header + " {")
    depth += 1
    body(&self)
    depth -= 1
    line("}")
  }

  mutating func append(_ other: String) { text += other }
}
