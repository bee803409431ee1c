import Foundation

/// A small FileCheck, after LLVM's: checks text against `// CHECK:` directives in a golden file.
///
/// Directives, each on its own comment line:
/// - `CHECK: pattern` finds the pattern on a line after the previous match;
/// - `CHECK-NEXT: pattern` on the very next line;
/// - `CHECK-SAME: pattern` on the same line as the previous match, after it;
/// - `CHECK-NOT: pattern` must not occur between the previous match and the next;
/// - `CHECK-LABEL: pattern` like CHECK, but also splits the input so errors stay local;
/// - `CHECK-EMPTY:` the next line is empty.
///
/// Patterns match literally except `{{regex}}`, `[[NAME:regex]]` (captures into NAME) and `[[NAME]]`
/// (what NAME captured). Leading and trailing spaces of a pattern are ignored.
public struct FileCheck {
  public struct Directive: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
      case check = "CHECK"
      case next = "CHECK-NEXT"
      case same = "CHECK-SAME"
      case not = "CHECK-NOT"
      case label = "CHECK-LABEL"
      case empty = "CHECK-EMPTY"
    }
    public var kind: Kind
    public var pattern: String
    /// Line of the directive in the golden file, for failure messages.
    public var line: Int
  }

  public var directives: [Directive]

  /// Reads directives from `// CHECK...:` comment lines of a golden file.
  public init(checkFileText: String, prefix: String = "CHECK") {
    var directives: [Directive] = []
    for (index, line) in checkFileText.split(separator: "\n", omittingEmptySubsequences: false)
      .enumerated()
    {
      let trimmed = line.trimmingCharacters(in: .whitespaces)
      guard trimmed.hasPrefix("//") else { continue }
      let body = trimmed.dropFirst(2).trimmingCharacters(in: .whitespaces)
      // Longest kind first, so CHECK-NEXT is not read as CHECK.
      for kind in Directive.Kind.allCases.sorted(by: { $0.rawValue.count > $1.rawValue.count }) {
        let marker = kind.rawValue.replacingOccurrences(of: "CHECK", with: prefix) + ":"
        if body.hasPrefix(marker) {
          let pattern = body.dropFirst(marker.count).trimmingCharacters(in: .whitespaces)
          directives.append(Directive(kind: kind, pattern: pattern, line: index + 1))
          break
        }
      }
    }
    self.directives = directives
  }

  /// Checks `output`; returns nil on success or a message naming the failed directive.
  public func check(_ output: String) -> String? {
    if directives.isEmpty { return "no CHECK directives found" }
    let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    var variables: [String: String] = [:]
    var lineIndex = 0
    // Column after the previous match on `lineIndex - 1`, for CHECK-SAME.
    var lastMatch: (line: Int, end: String.Index)?
    var pendingNots: [Directive] = []

    func fail(_ directive: Directive, _ message: String) -> String {
      let context =
        lastMatch.map { "after line \($0.line + 1) of the output" }
        ?? "from the start of the output"
      return
        "directive at line \(directive.line) (\(directive.kind.rawValue): \(directive.pattern)) \(message) \(context)\n--- output ---\n\(output)"
    }

    func checkNots(upTo end: Int, from start: Int) -> String? {
      for not in pendingNots {
        guard let regex = try? compile(not.pattern, variables: variables, capturing: false) else {
          return "bad pattern at line \(not.line)"
        }
        for index in start..<min(end, lines.count) where regex.firstMatch(in: lines[index]) != nil {
          return
            "CHECK-NOT at line \(not.line) (\(not.pattern)) matched output line \(index + 1): \(lines[index])"
        }
      }
      return nil
    }

    for directive in directives {
      guard let regex = try? compile(directive.pattern, variables: variables, capturing: true)
      else {
        return "bad pattern at line \(directive.line): \(directive.pattern)"
      }
      switch directive.kind {
      case .not:
        pendingNots.append(directive)
        continue
      case .same:
        guard let previous = lastMatch else { return fail(directive, "has no previous match") }
        let line = lines[previous.line]
        guard let match = regex.firstMatch(in: line, from: previous.end) else {
          return fail(directive, "did not match on the same line")
        }
        capture(match, regex, line, into: &variables)
        lastMatch = (previous.line, match.range.upperBound)
      case .next, .empty:
        let target = lastMatch.map { $0.line + 1 } ?? 0
        guard target < lines.count else { return fail(directive, "found no next line") }
        if directive.kind == .empty {
          guard lines[target].isEmpty else {
            return fail(directive, "found a non-empty next line: \(lines[target])")
          }
          lastMatch = (target, lines[target].endIndex)
        } else {
          guard let match = regex.firstMatch(in: lines[target]) else {
            return fail(directive, "did not match the next line: \(lines[target])")
          }
          capture(match, regex, lines[target], into: &variables)
          lastMatch = (target, match.range.upperBound)
        }
        if let error = checkNots(upTo: target, from: lineIndex) { return error }
        pendingNots = []
        lineIndex = target + 1
      case .check, .label:
        var found: Int?
        for index in lineIndex..<lines.count {
          if let match = regex.firstMatch(in: lines[index]) {
            capture(match, regex, lines[index], into: &variables)
            lastMatch = (index, match.range.upperBound)
            found = index
            break
          }
        }
        guard let found else { return fail(directive, "did not match") }
        if let error = checkNots(upTo: found, from: lineIndex) { return error }
        pendingNots = []
        lineIndex = found + 1
      }
    }
    if let error = checkNots(upTo: lines.count, from: lineIndex) { return error }
    return nil
  }

  /// A compiled pattern with the names of its capture groups, in order.
  struct Pattern {
    var regex: NSRegularExpression
    var captureNames: [String]

    func firstMatch(in line: String, from start: String.Index? = nil) -> (
      range: Range<String.Index>, groups: [String]
    )? {
      let searchRange = NSRange((start ?? line.startIndex)..<line.endIndex, in: line)
      guard let match = regex.firstMatch(in: line, range: searchRange),
        let range = Range(match.range, in: line)
      else { return nil }
      var groups: [String] = []
      for index in 0..<captureNames.count {
        let groupRange = match.range(at: index + 1)
        groups.append(Range(groupRange, in: line).map { String(line[$0]) } ?? "")
      }
      return (range, groups)
    }
  }

  private func capture(
    _ match: (range: Range<String.Index>, groups: [String]), _ pattern: Pattern, _ line: String,
    into variables: inout [String: String]
  ) {
    for (name, value) in zip(pattern.captureNames, match.groups) { variables[name] = value }
  }

  private func compile(_ pattern: String, variables: [String: String], capturing: Bool) throws
    -> Pattern
  {
    var regex = ""
    var names: [String] = []
    var rest = Substring(pattern)
    while !rest.isEmpty {
      if rest.hasPrefix("{{"), let close = rest.range(of: "}}") {
        regex += "(?:" + rest[rest.index(rest.startIndex, offsetBy: 2)..<close.lowerBound] + ")"
        rest = rest[close.upperBound...]
      } else if rest.hasPrefix("[["), let close = rest.range(of: "]]") {
        let inner = rest[rest.index(rest.startIndex, offsetBy: 2)..<close.lowerBound]
        if let colon = inner.firstIndex(of: ":") {
          names.append(String(inner[..<colon]))
          regex += "(" + inner[inner.index(after: colon)...] + ")"
        } else {
          regex += NSRegularExpression.escapedPattern(
            for: variables[String(inner)] ?? "\u{0}undefined")
        }
        rest = rest[close.upperBound...]
      } else {
        regex += NSRegularExpression.escapedPattern(for: String(rest.first!))
        rest = rest.dropFirst()
      }
    }
    return Pattern(
      regex: try NSRegularExpression(pattern: regex), captureNames: capturing ? names : [])
  }
}
