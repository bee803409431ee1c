import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// The ONNX translators of onnx-ops2 (Sources/LaminaONNX/ONNXImport+Spatial.swift): 1-D and 3-D
/// Conv, ConvTranspose, MaxPool, AveragePool, BatchNormalization on [N, C, L] and
/// [N, C, D, H, W], InstanceNormalization and LRN, on fixtures made by tools/make_onnx_fixtures.py
/// (PyTorch exports checked against PyTorch, references from ONNX Runtime): imported, compiled and
/// interpreted, against the reference and each other.
@Suite("ONNX spatial import", .serialized)
struct ONNXSpatialImportTests {
  @Test("1-D ops from PyTorch: Conv1d, BatchNorm1d, dilated MaxPool1d, AvgPool1d, ConvTranspose1d")
  func spatial1D() throws {
    let imported = try ONNXImportTests.checkFixture("spatial_1d")
    let source = imported.source
    // Lowered to the 2-D layers on [N, C, 1, L]: a unit kernel height.
    #expect(source.contains("conv2d(") && source.contains("kernel: [1, 3]"))
    #expect(source.contains("conv_transpose2d(") && source.contains("output_padding: [0, 1]"))
    #expect(source.contains("max_pool2d(") && source.contains("dilation: [1, 2]"))
    #expect(source.contains("avg_pool2d(") && source.contains("ceil_mode: true"))
    #expect(source.contains("batch_norm("))
  }

  @Test(
    "3-D ops from PyTorch: Conv3d, BatchNorm3d, MaxPool3d, AvgPool3d, ConvTranspose3d, InstanceNorm3d"
  )
  func spatial3D() throws {
    let imported = try ONNXImportTests.checkFixture("spatial_3d")
    let source = imported.source
    for op in [
      "conv3d(", "max_pool3d(", "avg_pool3d(", "conv_transpose3d(", "instance_norm(", "batch_norm(",
    ] {
      #expect(source.contains(op), "the import writes \(op)")
    }
    // The grouped convolution has no bias: the scalar 0.
    #expect(source.contains(", 0.0, stride:"))
    // The volume's weights keep ONNX's 5-D shapes.
    #expect(imported.weights.contains { $0.tensor.shape.count == 5 })
  }

  @Test("LRN (sizes 5 and 3) and InstanceNormalization, opset 13")
  func localResponseAndInstanceNorm() throws {
    let imported = try ONNXImportTests.checkFixture("lrn_instance_norm")
    #expect(imported.source.contains("lrn(x, size: 5"))
    #expect(imported.source.contains("instance_norm("))
  }

  /// An imported 3-D model trains: its gradients (through the 3-D ops' gradient rules, the batch
  /// norm's and the instance norm's) against finite differences of the interpreted loss. The loss
  /// weighs each output element by a random input (a loss of the instance norm's output alone, such
  /// as its mean square, hardly depends on what comes before it).
  @Test("the imported 3-D model's gradients equal finite differences")
  func spatial3DGradients() throws {
    let imported = try ONNXImporter.importModel(
      contentsOf: ONNXImportTests.fixture("spatial_3d") + "/model.onnx")
    let output = try #require(imported.outputNames.first?.lam)
    var lines = imported.source.replacingOccurrences(of: "f32", with: "f64")
      .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let inputLine = try #require(lines.firstIndex { $0.hasPrefix("  input x:") })
    lines.insert("  input weighting: f64[N, 3, 10, 6, 6]", at: inputLine + 1)
    let closing = try #require(lines.lastIndex { $0 == "}" })
    lines.insert(
      contentsOf: ["  loss = sum(\(output) * weighting)", "  train with sgd(lr: 0.01)"],
      at: closing)
    let model = try Model(source: lines.joined(separator: "\n"), pipeline: Pipeline.training)
    let parameters = Dictionary(
      uniqueKeysWithValues: imported.weights.map {
        ($0.name, Tensor(dtype: .f64, shape: $0.tensor.shape, doubles: $0.tensor.doubles()))
      })
    let inputs = TestData.inputs(for: model.graph, symbols: ["N": 1], seed: 3)
    let checks = try model.checkGradients(inputs: inputs, parameters: parameters, samples: 6)
    #expect(checks.count >= 6)
    for check in checks {
      if ["conv1_bias", "up_bias"].contains(check.parameter) {
        // A per-channel shift right before a normalization over each channel (the training-step
        // batch norm, the instance norm) cancels: its gradient is zero, the finite difference noise.
        #expect(
          abs(check.analytic) < 1e-12 && abs(check.numeric) < 1e-7, "\(check.parameter): \(check)")
      } else {
        #expect(check.worstRelativeError < 1e-6, "\(check.parameter): \(check)")
      }
    }
  }
}
