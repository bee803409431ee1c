import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// `lamina dump --after fusion --explain`: every pair of neighbouring ops that fusion leaves in
/// separate kernels gets the rule that kept them apart.
@Suite("Fusion explanation")
struct FusionExplanationTests {
  func pairs(_ source: String, training: Bool = false) throws -> [UnfusedPair] {
    let model = try Model(
      source: source, pipeline: training ? Pipeline.training : Pipeline.inference)
    return Fusion.explain(model.graph)
  }

  func reason(_ pairs: [UnfusedPair], _ producer: String, _ consumer: String) -> String? {
    pairs.first { $0.producer == producer && $0.consumer == consumer }?.reason
  }

  @Test("a join that would need its own result is a cycle")
  func cycle() throws {
    let pairs = try pairs(
      """
      model Cycle {
        input x: f32[batch, 16]
        let a = exp(x)
        let d = softmax(a)
        output y = a + d
      }
      """)
    #expect(reason(pairs, "%a = exp", "%y = add")?.contains("would need its own result") == true)
    #expect(reason(pairs, "%a = exp", "%d = softmax")?.contains("has its own kernel") == true)
    #expect(
      reason(pairs, "%d = softmax", "%y = add")?.contains("no epilogue to run consumers in") == true
    )
    #expect(pairs.count == 3)
  }

  @Test("epilogues keep the product's dtype and shape; backward work stays out of inference")
  func matmulEpilogues() throws {
    let pairs = try pairs(
      """
      model Epilogue {
        input x: f32[batch, 8]
        input label: i32[batch]
        param w: f32[8, 4] = glorot_uniform()
        let h = relu(x @ w)
        output wide = cast(h, dtype: f64)
        output total = sum(h, axes: [0])
        loss = cross_entropy(h, label)
        train with sgd(lr: 0.1)
      }
      """, training: true)
    #expect(
      reason(pairs, "%h = relu", "%wide = cast")?.contains("keeps the product's dtype") == true)
    #expect(
      pairs.contains { $0.consumer.hasSuffix("= sign") && $0.reason.contains("backward graph") })
    #expect(
      reason(pairs, "%h = relu", "%total = sum")?.contains(
        "accumulates only inside an elementwise loop")
        == true)
  }

  @Test("every unfused pair of every example and fixture names a specific rule")
  func everyPairHasARule() throws {
    let files =
      RepositoryPaths.files(in: "examples", withExtension: "lam")
      + RepositoryPaths.files(in: "examples/bench", withExtension: "lam")
    var cases = files.map { ($0, String?.none) }
    let fixture = RepositoryPaths.path("Tests/LaminaTests/Fixtures/fusion_patterns.lam")
    for name in ["Elementwise", "Epilogues", "Reductions", "Double", "Edges"] {
      cases.append((fixture, name))
    }
    for (path, name) in cases {
      for pipeline in [Pipeline.inference, Pipeline.training] {
        guard let model = try? Model(contentsOf: path, modelName: name, pipeline: pipeline) else {
          continue
        }
        for pair in Fusion.explain(model.graph) {
          #expect(!pair.reason.hasPrefix("no rule joins"), "\(path) \(name ?? ""): \(pair)")
        }
      }
    }
  }

  @Test("dump --explain prints the pairs as comments after the fused IR, and reads back")
  func dumpCommand() throws {
    let path = RepositoryPaths.path("examples/digits_mlp.lam")
    let console = Console.capturing()
    let status = CommandLineTool.run(
      ["dump", path, "--after", "fusion", "--explain"], console: console)
    #expect(status == 0, "\(console.standardError)")
    let output = console.standardOutput
    #expect(output.contains("// fusion: why neighbouring ops stay in separate kernels"))
    #expect(output.contains("//   %logits = add -> %probs = softmax"))
    // The explanation is comments: the dump still parses back as IR.
    let irText = output.split(separator: "\n").filter { !$0.hasPrefix("//") }.joined(
      separator: "\n")
    #expect(throws: Never.self) { try Model(source: irText) }
    let refused = Console.capturing()
    #expect(CommandLineTool.run(["dump", path, "--explain"], console: refused) != 0)
    #expect(refused.standardError.contains("--explain goes with --after fusion"))
  }
}
