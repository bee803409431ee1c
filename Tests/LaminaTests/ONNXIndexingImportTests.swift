import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// Importing the ops onnx-ops1 added: Gather of model tensors (i64 ids, negative indices), Pad
/// (attributes before opset 11, inputs after), Tile, PRelu (a per-channel slope of opset 6 and a
/// broadcasting one), Clip (attributes and optional inputs), Elu, Selu, Softsign and HardSigmoid.
/// Each fixture (tools/make_onnx_fixtures.py) is compiled and checked against its ONNX Runtime
/// (and PyTorch) reference and the interpreter.
@Suite("ONNX import: indexing and activations")
struct ONNXIndexingImportTests {
  @Test("a PyTorch model at opset 9: embedding by i64 ids, reflect and edge pads, PReLU, Hardtanh")
  func pytorchOpset9() throws {
    let imported = try ONNXImportTests.checkFixture("pytorch_indexing_opset9")
    let source = imported.source
    #expect(source.contains("input ids: i64[N, 5]"), "\(source)")
    for call in [
      "gather(", "pad(", "mode: \"reflect\"", "mode: \"edge\"", "tile(", "prelu(", "elu(",
      "selu(", "clip(",
    ] {
      #expect(source.contains(call), "no \(call) in \(source)")
    }
  }

  @Test(
    "opset 13: pads, fill, repeats and bounds as inputs; gathers by an i64 input and static indices"
  )
  func opset13() throws {
    let imported = try ONNXImportTests.checkFixture("indexing_opset13")
    let source = imported.source
    #expect(source.contains("input ids: i64[2, 3]"), "\(source)")
    #expect(source.contains("value: 0.25"), "\(source)")
    #expect(source.contains("hard_sigmoid("), "\(source)")
    // The static indices are a parameter of the model (i64), not folded away.
    #expect(
      imported.weights.contains { $0.tensor.dtype == .i64 }, "\(imported.weights.map(\.name))")
  }
}
