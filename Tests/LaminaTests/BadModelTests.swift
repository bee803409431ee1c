import Foundation
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// One expected diagnostic: `// EXPECT: 4:11: error: unknown function` means a diagnostic at line 4,
/// column 11, with that severity and a message containing the text (the rendered headline is
/// `FILE:4:11: error: MESSAGE`).
private struct Expectation: CustomStringConvertible {
  var line: Int
  var column: Int
  var severity: String
  var text: String

  var description: String { "\(line):\(column): \(severity): \(text)" }
}

/// A malformed EXPECT line.
private struct CorpusError: Error, CustomStringConvertible {
  var message: String
  var description: String { message }
}

/// What a corpus file expects, from its leading comments or, for files that cannot hold comments
/// (binary garbage, an empty file), from a sidecar `NAME.expected`.
private struct Expectations {
  var diagnostics: [Expectation] = []
  /// `// EXPECT-HELP: did you mean 'relu'?`: some help line contains the text.
  var helps: [String] = []
  /// `// EXPECT-COUNT: 3`: exactly that many errors.
  var errorCount: Int?

  init(contentsOf path: String) throws {
    let sidecar = String(path.dropLast(".lam".count)) + ".expected"
    let text: String
    if FileManager.default.fileExists(atPath: sidecar) {
      text = try String(contentsOfFile: sidecar, encoding: .utf8)
    } else {
      text = try #require(
        String(data: try Data(contentsOf: URL(fileURLWithPath: path)), encoding: .utf8),
        "\(path) is not UTF-8; put its EXPECT lines in \(sidecar)")
    }
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      if let rest = line.trimmingPrefix("// EXPECT-COUNT:") {
        guard let count = Int(rest.trimmingCharacters(in: .whitespaces)) else {
          throw CorpusError(message: "bad EXPECT-COUNT line: \(line)")
        }
        errorCount = count
      } else if let rest = line.trimmingPrefix("// EXPECT-HELP:") {
        helps.append(rest.trimmingCharacters(in: .whitespaces))
      } else if let rest = line.trimmingPrefix("// EXPECT:") {
        // LINE:COL: SEVERITY: TEXT
        let parts = rest.trimmingCharacters(in: .whitespaces).split(
          separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
        try #require(parts.count == 4, "bad EXPECT line: \(line)")
        diagnostics.append(
          Expectation(
            line: try #require(Int(parts[0]), "bad line in: \(line)"),
            column: try #require(Int(parts[1]), "bad column in: \(line)"),
            severity: parts[2].trimmingCharacters(in: .whitespaces),
            text: parts[3].trimmingCharacters(in: .whitespaces)))
      }
    }
  }

  var expectsError: Bool { diagnostics.contains { $0.severity == "error" } }
}

extension Substring {
  fileprivate func trimmingPrefix(_ prefix: String) -> Substring? {
    hasPrefix(prefix) ? dropFirst(prefix.count) : nil
  }
}

private let corpusDirectory = "Tests/LaminaTests/BadModels"
private let corpus = RepositoryPaths.files(in: corpusDirectory, withExtension: "lam")
  .map { URL(fileURLWithPath: $0).lastPathComponent }

/// Runs `lamina check` on every file of the bad-model corpus and compares its diagnostics with the
/// ones the file expects: location, severity, message, the quoted source line, and the error count.
@Suite struct BadModelTests {
  @Test func corpusIsLarge() {
    #expect(corpus.count >= 45, "the bad-model corpus has only \(corpus.count) files")
  }

  @Test(arguments: corpus)
  func diagnostics(_ name: String) throws {
    let path = RepositoryPaths.path("\(corpusDirectory)/\(name)")
    let expected = try Expectations(contentsOf: path)
    try #require(!expected.diagnostics.isEmpty, "\(name) states no EXPECT line")

    let console = Console.capturing()
    let status = CommandLineTool.run(["check", path], console: console)
    let output = console.standardError
    let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)

    #expect(
      status == (expected.expectsError ? 1 : 0), "exit status \(status); standard error:\n\(output)"
    )
    for marker in ["Fatal error", "crashed", "internal error"] {
      #expect(!output.contains(marker), "\(name) crashed:\n\(output)")
    }

    for expectation in expected.diagnostics {
      let prefix = "\(path):\(expectation.line):\(expectation.column): \(expectation.severity): "
      let index = lines.firstIndex {
        $0.hasPrefix(prefix) && $0.dropFirst(prefix.count).contains(expectation.text)
      }
      guard let index else {
        Issue.record("missing diagnostic \(expectation) in \(name); standard error:\n\(output)")
        continue
      }
      // The excerpt: ` 12 |   source line` and then the caret line `    |   ^^^`.
      let gutter = " \(expectation.line) | "
      let hasExcerpt =
        index + 2 < lines.count && lines[index + 1].hasPrefix(gutter)
        && lines[index + 2].hasPrefix(
          " " + String(repeating: " ", count: String(expectation.line).count) + " | ")
        && lines[index + 2].contains("^")
      #expect(hasExcerpt, "no source excerpt under \(lines[index]) in \(name):\n\(output)")
    }

    for help in expected.helps {
      #expect(
        lines.contains { $0.hasPrefix("  help: ") && $0.contains(help) },
        "no help line containing \"\(help)\" in \(name):\n\(output)")
    }

    if let count = expected.errorCount {
      let errors = lines.filter { $0.hasPrefix(path + ":") && $0.contains(": error: ") }
      #expect(
        errors.count == count,
        "expected \(count) error(s) in \(name), got \(errors.count):\n\(errors.joined(separator: "\n"))"
      )
    }
  }
}
