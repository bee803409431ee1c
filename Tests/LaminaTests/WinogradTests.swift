import Foundation
import Lamina
import LaminaTestSupport
import Testing

@testable import LaminaIR

/// Winograd F(2x2, 3x3) and F(4x4, 3x3) (`lamina_winograd.h`) against the reference interpreter:
/// one model of several 3x3 stride-1 convolutions, compiled once per kernel path, at batch 1 and 3.
@Suite("Winograd convolution", .serialized)
struct WinogradTests {
  /// Odd sizes (13x13, 7x9: partial tiles on the right and bottom), padding 1 and 0, channel counts
  /// that are not whole vectors (33, 36, 40), bias, no bias, a fused relu, a batch norm folded into
  /// the epilogue, and one convolution (`e`, 32 → 32 at 16x16) the schedule gives Winograd itself.
  static let source = """
    model WinogradCases {
      input x: f32[batch, 32, 13, 13]
      input z: f32[batch, 40, 7, 9]
      input s: f32[batch, 32, 16, 16]
      let a = x |> conv2d(filters: 36, kernel: 3, padding: 1, activation: "relu")
      let b = a |> conv2d(filters: 33, kernel: 3) |> batch_norm |> relu
      let c = z |> conv2d(filters: 48, kernel: 3, padding: 1, bias: false)
      let d = z |> conv2d(filters: 32, kernel: 3)
      let e = s |> conv2d(filters: 32, kernel: 3, padding: 1)
      output a
      output b
      output c
      output d
      output e
    }
    """

  /// Each flag set is one library: the schedule's choice (only `e`), F(4x4) and F(2x2) forced on
  /// every convolution with blocks of one or two rows of tiles (across images at batch 3) and the
  /// passes on the threads whatever their size, the same with each thread taking blocks of rows
  /// through all three passes (`LAMINA_WINOGRAD_SPATIAL`, here from one tile a thread: uneven
  /// blocks of several rows, and one row a block), F(4x4) with the passes in turn where the output
  /// channels would otherwise split (`LAMINA_WINOGRAD_CHANNEL_SPLIT=0`), and F(4x4) forced on AVX2
  /// and on the portable C.
  @Test(
    "Winograd convolutions equal the interpreter",
    arguments: [
      [],
      [
        "-DLAMINA_WINOGRAD_FORCE=4", "-DLAMINA_WINOGRAD_BLOCK_ELEMENTS=1",
        "-DLAMINA_WINOGRAD_PARALLEL_WORK=0",
      ],
      [
        "-DLAMINA_WINOGRAD_FORCE=2", "-DLAMINA_WINOGRAD_BLOCK_ELEMENTS=20000",
        "-DLAMINA_WINOGRAD_PARALLEL_WORK=0",
      ],
      [
        "-DLAMINA_WINOGRAD_FORCE=4", "-DLAMINA_WINOGRAD_SPATIAL_MIN_TILES=1",
        "-DLAMINA_WINOGRAD_BLOCK_ELEMENTS=20000", "-DLAMINA_WINOGRAD_PARALLEL_WORK=0",
      ],
      [
        "-DLAMINA_WINOGRAD_FORCE=2", "-DLAMINA_WINOGRAD_SPATIAL_MIN_TILES=1",
        "-DLAMINA_WINOGRAD_BLOCK_ELEMENTS=1", "-DLAMINA_WINOGRAD_PARALLEL_WORK=0",
      ],
      [
        "-DLAMINA_WINOGRAD_FORCE=4", "-DLAMINA_WINOGRAD_CHANNEL_SPLIT=0",
        "-DLAMINA_WINOGRAD_PARALLEL_WORK=0",
      ],
      ["x86-64-v3", "-DLAMINA_WINOGRAD_FORCE=4"],
      ["generic", "-DLAMINA_WINOGRAD_FORCE=4", "-DLAMINA_WINOGRAD_PARALLEL_WORK=0"],
    ])
  func matchesInterpreter(_ arguments: [String]) throws {
    let target = arguments.first.flatMap { CompileTarget(rawValue: $0) }
    if target == .x86_64_v3 && !CompileTarget.hostIsX86 { return }
    let model = try Model(source: Self.source, pipeline: Pipeline.inference)
    let parameters = try model.initialParameters(seed: 5)
    var options = TestCache.options()
    options.flags = target == nil ? arguments : Array(arguments.dropFirst())
    if let target { options.target = target }
    let compiled = try model.compile(options: options, parameters: parameters)
    let names = ["a", "b", "c", "d", "e"]
    for batch in [1, 3] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 9)
      let (outputs, _) = try compiled.evaluate(inputs)
      let expected = try model.interpret(inputs: inputs, parameters: parameters, outputs: names)
      for name in names {
        let reference = try #require(expected[name])
        let scale = TestData.largestFiniteMagnitude(reference) ?? 1
        let problem = TestData.mismatch(
          try #require(outputs[name]), reference, rtol: 1e-4, atol: 1e-5 * max(scale, 1))
        #expect(problem == nil, "\(arguments) batch \(batch), \(name): \(problem ?? "")")
      }
    }
  }

  /// Layers with too few tiles to split by rows (fewer than `LAMINA_WINOGRAD_SPATIAL_MIN_TILES` a
  /// thread) split their output channels over the threads in runs of 32, each thread taking its
  /// channels through the three passes with the whole input transformed on its own: 80 channels
  /// are 32 + 32 + 16 on three threads and 64 + 16 on two, 40 are 32 + 8 on both. With the whole
  /// image one block, and (F(2x2)) one row of tiles a block.
  @Test(
    "Winograd split by output channels equals the interpreter",
    arguments: [2, 3],
    [
      ["-DLAMINA_WINOGRAD_FORCE=4", "-DLAMINA_WINOGRAD_PARALLEL_WORK=0"],
      [
        "-DLAMINA_WINOGRAD_FORCE=2", "-DLAMINA_WINOGRAD_BLOCK_ELEMENTS=1",
        "-DLAMINA_WINOGRAD_PARALLEL_WORK=0",
      ],
    ])
  func channelSplitMatchesInterpreter(threads: Int, flags: [String]) throws {
    let model = try Model(
      source: """
        model WinogradChannels {
          input x: f32[batch, 24, 13, 13]
          input z: f32[batch, 40, 7, 9]
          let a = x |> conv2d(filters: 80, kernel: 3, padding: 1, activation: "relu")
          let c = z |> conv2d(filters: 40, kernel: 3, bias: false)
          output a
          output c
        }
        """, pipeline: Pipeline.inference)
    let parameters = try model.initialParameters(seed: 6)
    var options = TestCache.options()
    options.flags = flags
    options.threads = threads
    let compiled = try model.compile(options: options, parameters: parameters)
    for batch in [1, 2] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 10)
      let (outputs, _) = try compiled.evaluate(inputs)
      let expected = try model.interpret(
        inputs: inputs, parameters: parameters, outputs: ["a", "c"])
      for name in ["a", "c"] {
        let reference = try #require(expected[name])
        let scale = TestData.largestFiniteMagnitude(reference) ?? 1
        let problem = TestData.mismatch(
          try #require(outputs[name]), reference, rtol: 1e-4, atol: 1e-5 * max(scale, 1))
        #expect(
          problem == nil, "\(threads) threads, \(flags), batch \(batch), \(name): \(problem ?? "")")
      }
    }
  }

  /// A 256-channel layer at 14x14 (ResNet-50's stage 3): more weights per output position than a
  /// transform in every call pays for, so it takes Winograd only because its weights are a
  /// parameter whose packed transform the context keeps (`lamina_derived`). Checked against the
  /// same model compiled with Winograd vetoed (im2col and the GEMM, which the other tests check
  /// against the interpreter; the interpreter itself takes seconds on a layer this wide), on two
  /// parameter versions: the kept transform is derived again after `setParameters`.
  @Test("a wide layer takes Winograd with its kept transform and equals im2col and the GEMM")
  func wideLayerKeepsTransform() throws {
    let model = try Model(
      source: """
        model WideWinograd {
          input x: f32[1, 256, 14, 14]
          let y = x |> conv2d(filters: 256, kernel: 3, padding: 1)
          output y
        }
        """, pipeline: Pipeline.inference)
    let printed = KernelSchedulePrinter().print(model.graph)
    #expect(printed.contains("winograd(4)"), "\(printed)")
    #expect(
      printed.contains("transformed and packed once per parameter version"), "\(printed)")
    let versions = try [7, 8].map { try model.initialParameters(seed: UInt64($0)) }
    var options = TestCache.options()
    let winograd = try model.compile(options: options, parameters: versions[0])
    options.flags = ["-DLAMINA_WINOGRAD_KERNEL=0"]
    let gemm = try model.compile(options: options, parameters: versions[0])
    let inputs = TestData.inputs(for: model.graph, symbols: [:], seed: 4)
    for (index, parameters) in versions.enumerated() {
      if index > 0 {
        try winograd.setParameters(parameters)
        try gemm.setParameters(parameters)
      }
      let reference = try #require(try gemm.evaluate(inputs).0["y"])
      let scale = TestData.largestFiniteMagnitude(reference) ?? 1
      for call in 0..<2 {
        // Twice the narrow layers' absolute tolerance: F(4x4)'s fp32 error grows with the sums over
        // the 256 input channels, which the AVX-512 GEMM takes in one k-block (KC 256). Measured:
        // an error of up to 1.1e-5 of the output's largest magnitude, 2.0e-6 rms at KC 192 and
        // 2.8e-6 at 256 against the interpreter.
        let problem = TestData.mismatch(
          try #require(try winograd.evaluate(inputs).0["y"]), reference, rtol: 1e-4,
          atol: 2e-5 * max(scale, 1))
        #expect(problem == nil, "parameter version \(index), call \(call): \(problem ?? "")")
      }
    }
  }

  /// The schedule gives Winograd F(4x4) to 3x3 stride-1 convolutions with enough channels and
  /// positions, never to too few of either, to strides, dilations, groups or other kernel sizes;
  /// the dump and the generated C say so.
  @Test("the schedule chooses Winograd from the geometry and prints it")
  func schedule() throws {
    let model = try Model(source: Self.source, pipeline: Pipeline.inference)
    let printed = KernelSchedulePrinter().print(model.graph)
    #expect(printed.contains("winograd(4): F(4x4, 3x3) tiles, 36 GEMMs"), "\(printed)")
    func algorithm(
      _ channels: Int, _ size: Int, kernel: Int = 3, stride: Int = 1, dilation: Int = 1,
      groups: Int = 1, batch: Dim = Dim(1), outChannels: Int? = nil, weightsKept: Bool = false
    ) -> ConvolutionSchedule.Algorithm {
      let out = (size - dilation * (kernel - 1) - 1 + 2 * (kernel / 2)) / stride + 1
      let geometry = ConvolutionGeometry(
        dtype: .f32, batch: batch, inChannels: channels, inHeight: size, inWidth: size,
        outChannels: outChannels ?? channels, outHeight: out, outWidth: out,
        kernel: [kernel, kernel], stride: [stride, stride],
        padding: [kernel / 2, kernel / 2, kernel / 2, kernel / 2],
        dilation: [dilation, dilation], groups: groups)
      return ConvolutionSchedule(geometry, weightsKept: weightsKept).algorithm
    }
    // ResNet-50's and VGG-19's 3x3 layers at batch 1.
    #expect(algorithm(64, 56) == .winograd4)
    #expect(algorithm(128, 28) == .winograd4)
    #expect(algorithm(256, 56) == .winograd4)
    #expect(algorithm(256, 14) != .winograd4)  // the per-call weight transform costs what it saves
    #expect(algorithm(256, 14, batch: Dim(4)) == .winograd4)
    #expect(algorithm(512, 7) != .winograd4)
    #expect(algorithm(512, 28) != .winograd4)
    #expect(algorithm(16, 56) != .winograd4)
    #expect(algorithm(64, 56, outChannels: 16) != .winograd4)
    #expect(algorithm(64, 56, kernel: 5) != .winograd4)
    #expect(algorithm(64, 56, stride: 2) != .winograd4)
    #expect(algorithm(64, 56, dilation: 2) != .winograd4)
    #expect(algorithm(64, 56, groups: 2) != .winograd4)
    // Weights whose transform is kept: F(4x4) from 10x10 whatever the width (ResNet-50's stage 3,
    // VGG-19's 512 channels), F(2x2) from 6x6 (ResNet-50's stage 4), nothing below.
    #expect(algorithm(256, 14, weightsKept: true) == .winograd4)
    #expect(algorithm(512, 14, weightsKept: true) == .winograd4)
    #expect(algorithm(512, 28, weightsKept: true) == .winograd4)
    #expect(algorithm(128, 28, outChannels: 192, weightsKept: true) == .winograd4)
    #expect(algorithm(512, 7, weightsKept: true) == .winograd2)
    #expect(algorithm(192, 7, outChannels: 384, weightsKept: true) == .winograd2)
    #expect(algorithm(256, 10, weightsKept: true) == .winograd4)
    #expect(algorithm(256, 9, weightsKept: true) == .winograd2)
    #expect(algorithm(192, 6, outChannels: 384, weightsKept: true) == .winograd2)
    #expect(algorithm(512, 5, weightsKept: true) == .im2colGemm)
    #expect(algorithm(16, 56, weightsKept: true) != .winograd4)
    #expect(algorithm(64, 56, stride: 2, weightsKept: true) == .directChannels)
    // Strided layers with many channels: the channel kernel up to 512 input channels of a 3x3
    // kernel; im2col and the GEMM above, for 1x1 projections and for groups.
    #expect(algorithm(128, 56, stride: 2) == .directChannels)
    #expect(algorithm(256, 28, stride: 2) == .directChannels)
    #expect(algorithm(256, 14, stride: 2) == .directChannels)
    #expect(algorithm(512, 14, stride: 2) == .directChannels)
    #expect(algorithm(1024, 14, stride: 2) == .im2colGemm)
    #expect(algorithm(256, 56, kernel: 1, stride: 2) == .im2colGemm)
    #expect(algorithm(128, 56, stride: 2, groups: 2) == .im2colGemm)
    // Few input channels: the channel kernel where im2col would copy the input (3x3, a strided 1x1,
    // groups), the GEMM where it reads the input in place (an unpadded 1x1 at stride 1: SqueezeNet's
    // 16 -> 64 expand layers).
    #expect(algorithm(16, 55, kernel: 1, outChannels: 64) == .im2colGemm)
    #expect(algorithm(3, 56, kernel: 1, outChannels: 64) == .im2colGemm)
    #expect(algorithm(16, 55, outChannels: 64) == .directChannels)
    #expect(algorithm(16, 56, kernel: 1, stride: 2, outChannels: 64) == .directChannels)
    #expect(algorithm(32, 28, kernel: 1, groups: 4, outChannels: 64) == .directChannels)
  }
}
