import Foundation
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// Golden tests: each file in `ir-specs/tests` has `// RUN: lamina ARGS` lines (`%s` is the file) and
/// `// CHECK:` lines that the command's output must satisfy.
@Suite("Golden IR tests")
struct GoldenTests {
  static let files =
    RepositoryPaths.files(in: "ir-specs/tests", withExtension: "lam")
    + RepositoryPaths.files(in: "ir-specs/tests", withExtension: "ir")

  @Test("the golden corpus is there")
  func corpusExists() {
    #expect(Self.files.count >= 10)
  }

  @Test("golden file", arguments: files)
  func golden(path: String) throws {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    let runs = text.split(separator: "\n").compactMap { line -> [String]? in
      let trimmed = line.trimmingCharacters(in: .whitespaces)
      guard trimmed.hasPrefix("// RUN: lamina ") else { return nil }
      return trimmed.dropFirst("// RUN: lamina ".count).split(separator: " ").map {
        $0 == "%s" ? path : String($0)
      }
    }
    #expect(!runs.isEmpty, "no RUN line in \(path)")
    var output = ""
    for arguments in runs {
      let console = Console.capturing()
      _ = CommandLineTool.run(arguments, console: console)
      // Diagnostics name the file by the path given; make them repository-relative for stable checks.
      output += (console.standardOutput + console.standardError)
        .replacingOccurrences(of: RepositoryPaths.root.path + "/", with: "")
    }
    let failure = FileCheck(checkFileText: text).check(output)
    #expect(failure == nil, "\(URL(fileURLWithPath: path).lastPathComponent): \(failure ?? "")")
  }
}
