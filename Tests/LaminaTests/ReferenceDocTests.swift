import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// `ir-specs/ops.md` is generated from the op table; it must not go stale.
@Suite("Generated reference")
struct ReferenceDocTests {
  @Test("ir-specs/ops.md matches the op table")
  func opsReferenceIsCurrent() throws {
    let path = RepositoryPaths.path("ir-specs/ops.md")
    let expected = Reference.markdown()
    if ProcessInfo.processInfo.environment["RECORD_SNAPSHOTS"] == "1" {
      try expected.write(toFile: path, atomically: true, encoding: .utf8)
    }
    let actual = try String(contentsOfFile: path, encoding: .utf8)
    #expect(
      actual == expected,
      "ir-specs/ops.md is stale: run `swift run lamina ops --markdown > ir-specs/ops.md` (or RECORD_SNAPSHOTS=1 swift test)"
    )
  }

  @Test("every op is documented with a summary and semantics")
  func everyOpIsDocumented() {
    for op in OpRegistry.all {
      #expect(!op.summary.isEmpty, "\(op.name) has no summary")
      #expect(!op.semantics.isEmpty, "\(op.name) has no semantics")
      #expect(!op.shape.description.isEmpty, "\(op.name) has no shape rule description")
    }
  }
}
