import LaminaTestSupport
import Testing

/// The golden tests are only as good as FileCheck: it must fail when output differs.
@Suite("FileCheck")
struct FileCheckTests {
  let output = """
    graph @M {
      %0 = matmul(%x, %w) : f32[batch, 4]
      %y = relu(%0) : f32[batch, 4]
    }
    """

  func check(_ directives: String) -> String? { FileCheck(checkFileText: directives).check(output) }

  @Test func matchesInOrder() {
    #expect(check("// CHECK: matmul\n// CHECK: relu") == nil)
    #expect(check("// CHECK: relu\n// CHECK: matmul") != nil)
  }

  @Test func nextMustBeTheFollowingLine() {
    #expect(check("// CHECK: graph @M\n// CHECK-NEXT: matmul") == nil)
    #expect(check("// CHECK: graph @M\n// CHECK-NEXT: relu") != nil)
  }

  @Test func notForbidsBetweenMatches() {
    #expect(check("// CHECK: graph\n// CHECK-NOT: sigmoid\n// CHECK: relu") == nil)
    #expect(check("// CHECK: graph\n// CHECK-NOT: matmul\n// CHECK: relu") != nil)
  }

  @Test func variablesCaptureAndMatchAgain() {
    #expect(check("// CHECK: [[T:%[0-9]+]] = matmul\n// CHECK: relu([[T]])") == nil)
    #expect(check("// CHECK: [[T:%[a-z]+]] = relu\n// CHECK: relu([[T]])") != nil)
  }

  @Test func regexAndSame() {
    #expect(check("// CHECK: matmul({{.*}}) :\n// CHECK-SAME: f32[batch, 4]") == nil)
    #expect(check("// CHECK: matmul\n// CHECK-SAME: f64") != nil)
  }

  @Test func noDirectivesIsAFailure() {
    #expect(check("no directives here") != nil)
  }
}
