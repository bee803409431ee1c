import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// `conv2d`, `conv_transpose2d` and `conv2d_backward_weight`: compiled C (forward and every
/// parameter's gradient) against the reference interpreter at batch 1 and 37, the interpreter's
/// gradients against finite differences, shape errors, and a small CNN that trains.
@Suite("Convolution")
struct ConvolutionTests {
  struct Case: CustomStringConvertible, Sendable {
    var name: String
    var dtype = "f32"
    var input: String
    var layers: String
    var description: String { name }

    var source: String {
      """
      model Conv {
        input x: \(dtype)[batch, \(input)]
        input target: \(dtype)[batch, 3]
        let h = x
          |> \(layers)
        let y = h |> flatten |> dense(units: 3)
        output y
        output h
        loss = mse(y, target)
        train with sgd(lr: 0.01)
      }
      """
    }
  }

  static let cases: [Case] = [
    Case(
      name: "odd spatial size 7x9, padding 1, fused relu", input: "3, 7, 9",
      layers: "conv2d(filters: 4, kernel: 3, padding: 1, activation: \"relu\")"),
    Case(
      name: "stride 2 with [ph, pw] padding", input: "2, 7, 9",
      layers: "conv2d(filters: 5, kernel: [3, 2], stride: 2, padding: [1, 0])"),
    Case(
      name: "stride [2, 1] and dilation 2", input: "2, 9, 8",
      layers: "conv2d(filters: 3, kernel: 3, stride: [2, 1], dilation: 2, padding: 2)"),
    Case(
      name: "groups 2", input: "4, 6, 7",
      layers: "conv2d(filters: 6, kernel: 3, groups: 2, padding: 1, activation: \"tanh\")"),
    Case(
      name: "depthwise (groups = channels) then pointwise 1x1", input: "3, 7, 9",
      layers:
        "conv2d(filters: 3, kernel: 3, groups: 3, padding: \"same\") |> conv2d(filters: 4, kernel: 1)"
    ),
    Case(
      name: "\"same\" padding with an even kernel and stride 2", input: "2, 7, 9",
      layers: "conv2d(filters: 3, kernel: 4, stride: 2, padding: \"same\")"),
    Case(
      name: "\"same\" padding with an even kernel, stride 1, no bias", input: "2, 6, 5",
      layers: "conv2d(filters: 3, kernel: [2, 4], padding: \"same\", bias: false)"),
    Case(
      name: "asymmetric padding [top, left, bottom, right]", input: "2, 5, 6",
      layers: "conv2d(filters: 3, kernel: 3, padding: [0, 2, 1, 0], activation: \"sigmoid\")"),
    Case(
      name: "conv_transpose2d stride 2 with output_padding", input: "3, 4, 5",
      layers:
        "conv_transpose2d(filters: 2, kernel: 3, stride: 2, padding: 1, output_padding: [1, 0], activation: \"relu\")"
    ),
    Case(
      name: "conv_transpose2d with groups, dilation and no bias", input: "4, 3, 4",
      layers:
        "conv_transpose2d(filters: 6, kernel: [2, 3], groups: 2, dilation: [1, 2], bias: false)"
    ),
    Case(
      name: "16x16 images: im2col of many images at once, the weight gradient split over threads",
      input: "3, 16, 16", layers: "conv2d(filters: 8, kernel: 3, padding: 1, activation: \"relu\")"),
    Case(
      name: "an output one column wide (the epilogue walks a column), fused activations",
      input: "2, 6, 3",
      layers:
        "conv2d(filters: 2, kernel: 3, activation: \"relu\") |> conv2d(filters: 2, kernel: [3, 1], stride: 2, padding: [1, 0], activation: \"softplus\")"
    ),
    Case(
      name: "16 filters on 3 channels, 7x9, padding 1: the channel kernel (one full vector)",
      input: "3, 7, 9",
      layers: "conv2d(filters: 16, kernel: 3, padding: 1, activation: \"relu\")"),
    Case(
      name: "20 filters, stride 2, dilation 2: the channel kernel with a partial vector",
      input: "2, 9, 8",
      layers: "conv2d(filters: 20, kernel: 3, stride: 2, dilation: 2, padding: 2)"),
    Case(
      name:
        "40 filters on 3 channels, stride 2, padding 1, 17x15: the channel kernel's pairs of vectors and a partial last one, bands copying only their rows",
      input: "3, 17, 15",
      layers: "conv2d(filters: 40, kernel: 3, stride: 2, padding: 1, activation: \"relu\")"),
    Case(
      name: "18 filters in 2 groups, asymmetric padding: the channel kernel per group",
      input: "4, 7, 9",
      layers: "conv2d(filters: 18, kernel: 3, groups: 2, padding: [0, 2, 1, 0], bias: false)"),
    Case(
      name:
        "depthwise 5x5 at stride 2, padding 2, 9x16, 2 filters per channel: the phases' split with an even left padding",
      input: "3, 9, 16",
      layers: "conv2d(filters: 6, kernel: 5, stride: 2, groups: 3, padding: 2)"),
    Case(
      name: "depthwise 3x3 at stride 2, padding 1, 13x11, relu: the depthwise kernel's phases",
      input: "5, 13, 11",
      layers:
        "conv2d(filters: 5, kernel: 3, stride: 2, groups: 5, padding: 1, activation: \"relu\")"),
    Case(
      name:
        "depthwise, 2 filters per channel, dilation 2 then stride [1, 3], padding 0 then [2, 1]",
      input: "4, 13, 17",
      layers:
        "conv2d(filters: 8, kernel: 3, groups: 4, dilation: 2, bias: false) |> conv2d(filters: 8, kernel: [5, 3], stride: [1, 3], groups: 8, padding: [2, 1], activation: \"tanh\")"
    ),
    Case(
      name: "encoder and decoder in f64, then the width kernel with a partial vector (8x7)",
      dtype: "f64", input: "2, 8, 8",
      layers:
        "conv2d(filters: 4, kernel: 3, stride: 2, padding: 1, activation: \"relu\") |> conv_transpose2d(filters: 2, kernel: 4, stride: 2, padding: 1) |> conv2d(filters: 3, kernel: [3, 2], padding: [1, 0])"
    ),
  ]

  @Test(
    "compiled outputs and gradients equal the interpreter's at batch 1 and 37", arguments: cases)
  func compiledMatchesInterpreter(_ testCase: Case) throws {
    let model = try Model(source: testCase.source, pipeline: Pipeline.training)
      .withGradientOutputs()
    let parameters = try model.initialParameters(seed: 3)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    for batch in [1, 37] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 7)
      let (outputs, losses) = try compiled.evaluate(inputs)
      let names = model.graph.outputs.map(\.name) + model.graph.losses.map(\.name)
      #expect(names.contains { $0.hasPrefix("grad.conv") })
      let expected = try model.interpret(inputs: inputs, parameters: parameters, outputs: names)
      for (name, tensor) in outputs.merging(losses, uniquingKeysWith: { a, _ in a }) {
        let reference = try #require(expected[name])
        let scale = TestData.largestFiniteMagnitude(reference) ?? 1
        let (rtol, atol) =
          testCase.dtype == "f32" ? (1e-4, 1e-5 * max(scale, 1)) : (1e-11, 1e-13 * max(scale, 1))
        let problem = TestData.mismatch(tensor, reference, rtol: rtol, atol: atol)
        #expect(problem == nil, "\(testCase) batch \(batch), \(name): \(problem ?? "")")
      }
    }
  }

  /// lamina_conv.h picks among kernels by size: the direct kernels (few output channels: vectors
  /// along the rows; few input channels: vectors across the output channels, the work split in
  /// bands of positions when the images are too few for the threads), a GEMM over many images'
  /// columns side by side, a GEMM per image writing the result (and running the epilogue) in
  /// place, and the weight gradient split over threads. Smaller limits force the paths the sizes
  /// above do not reach; the channel kernel, forced, runs every case (stride, dilation, padding,
  /// groups, a one-column output), on the threads too. `x86-64-v3` runs the kernels on AVX2 (the
  /// width kernel on the cases of few filters, the channel kernel on the wider and strided ones).
  @Test(
    "every convolution kernel path equals the interpreter",
    arguments: [
      [
        "-DLAMINA_CONV_COLUMN_BUDGET=1", "-DLAMINA_CONV_DIRECT_MAX_CHANNELS=0",
        "-DLAMINA_CONV_CHANNEL_KERNEL=0",
      ],
      [
        "-DLAMINA_CONV_DIRECT_MAX_CHANNELS=0", "-DLAMINA_CONV_SPLIT_IMAGES_BELOW=0",
        "-DLAMINA_CONV_CHANNEL_KERNEL=0",
      ],
      ["-DLAMINA_CONV_FORCE_CHANNEL_KERNEL=1", "-DLAMINA_CONV_DIRECT_PARALLEL_WORK=0"],
      ["-DLAMINA_CONV_DIRECT_PARALLEL_WORK=0"],
      ["x86-64-v3"],
    ])
  func kernelPaths(_ arguments: [String]) throws {
    let avx2 = arguments.first == "x86-64-v3"
    if avx2 && !CompileTarget.hostIsX86 { return }
    let flags = avx2 ? Array(arguments.dropFirst()) : arguments
    // Every f32 case in one model, so each flag set compiles one library, not one per case.
    let model = try Model(source: Self.combinedF32Source, pipeline: Pipeline.training)
      .withGradientOutputs()
    let parameters = try model.initialParameters(seed: 3)
    var options = TestCache.options()
    options.flags = flags
    if avx2 { options.target = .x86_64_v3 }
    let compiled = try model.compile(options: options, parameters: parameters)
    let names = model.graph.outputs.map(\.name)
    // Each case's result h and output y, and a gradient for each of its layers' parameters.
    let f32Cases = Self.cases.filter { $0.dtype == "f32" }
    #expect(names.filter { $0.hasPrefix("grad.") }.count == model.graph.params.count)
    #expect(Set(names).isSuperset(of: f32Cases.indices.flatMap { ["h\($0)", "y\($0)"] }))
    // Batch 1: the direct kernels split one image in bands when the threshold allows.
    for batch in [1, 5] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 8)
      let (outputs, _) = try compiled.evaluate(inputs)
      let expected = try model.interpret(inputs: inputs, parameters: parameters, outputs: names)
      for name in names {
        let reference = try #require(expected[name])
        let scale = TestData.largestFiniteMagnitude(reference) ?? 1
        let problem = TestData.mismatch(
          try #require(outputs[name]), reference, rtol: 1e-4, atol: 1e-5 * max(scale, 1))
        let index = Int(name.drop { !$0.isNumber }.prefix { $0.isNumber })
        let testCase = name.hasPrefix("grad.") ? "" : index.map { "\(f32Cases[$0]) " } ?? ""
        #expect(
          problem == nil, "\(testCase)\(arguments) batch \(batch), \(name): \(problem ?? "")")
      }
    }
  }

  /// The f32 cases as one model: case i's layers on its own input `x{i}`, its result `h{i}` and
  /// output `y{i}`, and one loss summing every case's.
  static var combinedF32Source: String {
    let f32Cases = cases.filter { $0.dtype == "f32" }
    var lines = ["model ConvCases {"]
    for (index, testCase) in f32Cases.enumerated() {
      lines.append("  input x\(index): f32[batch, \(testCase.input)]")
    }
    lines.append("  input target: f32[batch, 3]")
    for (index, testCase) in f32Cases.enumerated() {
      lines.append("  let h\(index) = x\(index)")
      lines.append("    |> \(testCase.layers)")
      lines.append("  let y\(index) = h\(index) |> flatten |> dense(units: 3)")
      lines.append("  output y\(index)")
      lines.append("  output h\(index)")
    }
    let losses = f32Cases.indices.map { "mse(y\($0), target)" }
    lines.append("  loss = " + losses.joined(separator: " + "))
    lines.append("  train with sgd(lr: 0.01)")
    lines.append("}")
    return lines.joined(separator: "\n")
  }

  /// The GEMM path packs its columns straight from the input into the GEMM's panels, block by
  /// block (no column matrix): these sizes cross every boundary the packer walks — several
  /// k-blocks (216 and 300 taps), several column blocks (1188 positions), runs of an output row
  /// split between panels (`a`, 33 wide) and rows shorter than a panel row gathered into a line
  /// first (`b`, 11 wide), padding on every side, stride, dilation, groups — at batch 1 (one
  /// image, the result written in place; the groups of `b`, and of the 1x1 `c` with its fused
  /// relu, in one pool run over (group, band of columns)) and 3 (images side by side), on AVX-512
  /// and AVX2.
  @Test(
    "the GEMM path's columns packed from the input equal the interpreter", arguments: [false, true])
  func packedColumns(avx2: Bool) throws {
    if avx2 && !CompileTarget.hostIsX86 { return }
    let source = """
      model PackedColumns {
        input x: f32[batch, 24, 36, 33]
        let a = x |> conv2d(filters: 40, kernel: 3, padding: 1, activation: "relu")
        let b = a |> conv2d(filters: 18, kernel: [3, 5], stride: [2, 3], dilation: [1, 2], padding: [2, 1], groups: 2)
        let c = a |> conv2d(filters: 40, kernel: 1, groups: 2, activation: "relu")
        output a
        output b
        output c
      }
      """
    let model = try Model(source: source)
    let parameters = try model.initialParameters(seed: 4)
    var options = TestCache.options()
    if avx2 { options.target = .x86_64_v3 }
    let compiled = try model.compile(options: options, parameters: parameters)
    for batch in [1, 3] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 6)
      let (outputs, _) = try compiled.evaluate(inputs)
      let expected = try model.interpret(
        inputs: inputs, parameters: parameters, outputs: ["a", "b", "c"])
      for name in ["a", "b", "c"] {
        let reference = try #require(expected[name])
        let scale = TestData.largestFiniteMagnitude(reference) ?? 1
        let problem = TestData.mismatch(
          try #require(outputs[name]), reference, rtol: 1e-4, atol: 1e-5 * max(scale, 1))
        #expect(problem == nil, "avx2 \(avx2) batch \(batch), \(name): \(problem ?? "")")
      }
    }
  }

  /// Fused epilogues that read other tensors. A convolution hands its epilogue the result as planes
  /// [N·C, H·W] (a block of channels in one call) when every operand the epilogue reads is
  /// constant over H and W or has the result's H and W (a per-channel scale, a residual), and as
  /// rows [N·C·H, W] otherwise (`f`: an operand that varies along H only). Each kernel path,
  /// compiled, equals the interpreter: the GEMM (1x1 `a`, 3x3 `b`), im2col at stride 2 (1x1), the channel
  /// kernel (3 input channels), depthwise, a max pool the kernel writes, and Winograd (`w`).
  static let epilogueViewsSource = """
    model EpilogueViews {
      input x: f32[batch, 24, 14, 13]
      input x3: f32[batch, 3, 14, 13]
      input xw: f32[batch, 32, 40, 36]
      input s: f32[24, 1, 1]
      input t: f32[32, 1, 1]
      input h: f32[14, 1]
      let a = relu((x |> conv2d(filters: 24, kernel: 1)) * s + x)
      let b = relu((x |> conv2d(filters: 24, kernel: 3, padding: 1)) * s + x)
      let c = (x |> conv2d(filters: 24, kernel: 1, stride: 2)) * s
      let d = (x3 |> conv2d(filters: 24, kernel: 3, padding: 1)) * s + x
      let e = (x |> conv2d(filters: 24, kernel: 3, padding: 1, groups: 24)) * s + x
      let f = (x |> conv2d(filters: 24, kernel: 1)) * h + x
      let g = (x3 |> conv2d(filters: 24, kernel: 3, padding: 1) |> relu |> max_pool2d(kernel: 2)) * s
      let w = relu((xw |> conv2d(filters: 32, kernel: 3, padding: 1)) * t + xw)
      output a
      output b
      output c
      output d
      output e
      output f
      output g
      output w
    }
    """

  @Test(
    "fused epilogues reading a residual and per-channel operands equal the interpreter, as planes and as rows",
    arguments: [false, true])
  func epilogueViews(avx2: Bool) throws {
    if avx2 && !CompileTarget.hostIsX86 { return }
    let model = try Model(source: Self.epilogueViewsSource)
    let printed = KernelSchedulePrinter().print(
      try Model.lower(model.graph, passes: Pipeline.codegen))
    let groups = printed.components(separatedBy: "// schedule ").filter {
      $0.contains("producer conv2d")
    }
    let planes = groups.filter { $0.contains("as planes [N·C, H·W]") }
    #expect(groups.count == 8 && planes.count == 7, "\(printed)")
    #expect(groups.contains { $0.hasPrefix("%f ") && !$0.contains("as planes") }, "\(printed)")
    #expect(printed.contains("convolution: winograd"), "\(printed)")
    let problems = try Self.compiledMismatches(model, seed: 5, avx2: avx2, batches: [1, 2])
    #expect(problems.isEmpty, "avx2 \(avx2): \(problems)")
  }

  /// Every output of `model` compiled (for AVX2 through x86-64-v3 when `avx2`) against the
  /// interpreter at each batch size, relative tolerance 1e-4: the mismatches.
  static func compiledMismatches(_ model: Model, seed: UInt64, avx2: Bool, batches: [Int]) throws
    -> [String]
  {
    let parameters = try model.initialParameters(seed: seed)
    var options = TestCache.options()
    if avx2 { options.target = .x86_64_v3 }
    let compiled = try model.compile(options: options, parameters: parameters)
    return try TestData.compiledMismatches(
      model, compiled, parameters: parameters, batches: batches, relativeTolerance: 1e-4)
  }

  /// Products whose columns are few: a 7x7 map's 49 are a whole 32-column tile and 17 more (16 + 1
  /// on AVX2), split over the threads: a 1x1 (`a`), a dilated 3x3 whose columns the im2col packer
  /// writes (`b`) and a 1x1 at stride 2 from 14x14 (`c`); a 14x14 map's 196 columns, which two
  /// threads split as 96 + 100 (the last tile wider than the first), from the packer (`g`, a
  /// dilated 3x3) and read in place (`f`). The 1x1 layers read their input in place instead of
  /// packing it, rows 196 bytes apart (`a`, with a partial last panel, which is packed), 784 (`f`)
  /// and 256 (`d`, whole lines: in place on AVX-512 only), each with a last row panel of 4 rows.
  /// A 3x3 at stride 2 to 14x14 with 128 input channels takes the channel kernel (`e`), as does a
  /// 3x3 at stride 2 to 7x7 with 48 filters (`h`), whose 7 tiles of positions the threads would
  /// split 4 + 3: at batch 1 on AVX-512 they split its 3 vectors of output channels instead (2 + 1,
  /// the last alone), each thread all the tiles, and its sigmoid runs on its own channels. Batch 1
  /// (the GEMM writes the result) and 3 (images side by side), on AVX-512 and AVX2, against the
  /// interpreter.
  @Test(
    "few-column products (7x7 maps) and 1x1 inputs read in place equal the interpreter",
    arguments: [false, true])
  func smallMaps(avx2: Bool) throws {
    if avx2 && !CompileTarget.hostIsX86 { return }
    let source = """
      model SmallMaps {
        input x: f32[batch, 96, 7, 7]
        input w: f32[batch, 48, 14, 14]
        input v: f32[batch, 64, 8, 8]
        input u: f32[batch, 128, 28, 28]
        input t: f32[batch, 64, 14, 14]
        input s: f32[160, 1, 1]
        input r: f32[batch, 24, 8, 10]
        let a = relu((x |> conv2d(filters: 160, kernel: 1)) * s)
        let b = x |> conv2d(filters: 120, kernel: 3, padding: 2, dilation: 2)
        let c = w |> conv2d(filters: 160, kernel: 1, stride: 2, activation: "relu")
        let d = v |> conv2d(filters: 136, kernel: 1)
        let e = u |> conv2d(filters: 96, kernel: 3, stride: 2, padding: 1)
        let f = t |> conv2d(filters: 128, kernel: 1, activation: "relu")
        let g = t |> conv2d(filters: 96, kernel: 3, padding: 2, dilation: 2)
        let h = w |> conv2d(filters: 48, kernel: 3, stride: 2, padding: 1, activation: "sigmoid")
        let i = r |> conv2d(filters: 40, kernel: 3, stride: 2, padding: 1)
        output a
        output b
        output c
        output d
        output e
        output f
        output g
        output h
        output i
      }
      """
    let model = try Model(source: source)
    let printed = KernelSchedulePrinter().print(model.graph)
    let kernels = printed.split(separator: "\n").filter { $0.contains("convolution:") }
    // h and i: 7x7 and 4x5 results, which the channel kernel computes in tiles of 7 positions (the 4x5 one
    // with a partial last tile, and in bands of one tile per thread at batch 3).
    #expect(
      kernels.filter { $0.contains("vectorized over output channels") }.count == 3, "\(printed)")
    let problems = try Self.compiledMismatches(model, seed: 7, avx2: avx2, batches: [1, 3])
    #expect(problems.isEmpty, "avx2 \(avx2): \(problems)")
  }

  @Test(
    "the kernel schedule picks each forward convolution's kernel from its geometry and prints it")
  func convolutionSchedule() throws {
    let source = """
      model Schedules {
        input x: f32[batch, 1, 28, 28]
        let a = x |> conv2d(filters: 6, kernel: 5, padding: 2)
        let b = a |> conv2d(filters: 32, kernel: 5, stride: 2, activation: "relu")
        let c = b |> conv2d(filters: 8, kernel: 3)
        let d = c |> conv2d(filters: 8, kernel: 3, stride: 2, groups: 8)
        output d
      }
      """
    let model = try Model(source: source)
    let printed = KernelSchedulePrinter().print(model.graph)
    let lines = printed.split(separator: "\n").filter { $0.contains("convolution:") }
    // 1 -> 6 channels: few output channels and taps; 6 -> 32 at stride 2: few input channels;
    // 32 -> 8 with 288 taps: too many for either direct kernel; 8 groups of one channel: depthwise.
    #expect(lines.count == 4, "\(printed)")
    guard lines.count == 4 else { return }
    #expect(lines[0].contains("direct, vectorized over output columns"))
    #expect(lines[1].contains("direct, vectorized over output channels"))
    #expect(lines[2].contains("im2col columns and the packed GEMM"))
    #expect(lines[3].contains("depthwise, vectorized over output columns"))
    // The direct kernels' thread decision: 6 · 28 · 28 outputs of 25 taps per image.
    #expect(printed.contains("none below 262144 multiply-adds in all (117600 per image)"))
  }

  /// Compile options for one kernel path of a test's arguments: a first argument "x86-64-v3" or
  /// "generic" is the target (nil when this machine cannot run it), the rest are C flags.
  static func pathOptions(_ arguments: [String]) -> CompileOptions? {
    let target: CompileTarget? =
      arguments.first == "x86-64-v3" ? .x86_64_v3 : arguments.first == "generic" ? .generic : nil
    if target == .x86_64_v3 && !CompileTarget.hostIsX86 { return nil }
    var options = TestCache.options()
    options.flags = target == nil ? arguments : Array(arguments.dropFirst())
    if let target { options.target = target }
    return options
  }

  /// Convolutions whose max pool the forward kernel writes (inference: nothing else reads the
  /// convolution's result), one library: the width kernel on odd sizes whose last row and column
  /// no window reads, the channel kernel with stride 2 and dilation 2 under overlapping windows,
  /// groups with 3x3 windows at stride 2; a tanh (not declared non-decreasing) keeps its pool
  /// apart, and so does a convolution scheduled on im2col and the GEMM (20 input channels). Each
  /// path at batch 1 and 37: the default kernels, bands of one image over the threads with the
  /// channel kernel forced, im2col for all (the whole result pooled after the GEMM), AVX2 and the
  /// portable C.
  static let pooledSource = """
    model PooledConv {
      input x: f32[batch, 3, 9, 11]
      let a = x |> conv2d(filters: 6, kernel: 3, padding: 1) |> relu |> max_pool2d(kernel: 2)
      let b = x
        |> conv2d(filters: 20, kernel: 3, stride: 2, dilation: 2, padding: 2, activation: "relu")
        |> max_pool2d(kernel: 2, stride: 1)
      let c = x
        |> conv2d(filters: 18, kernel: 3, groups: 3, padding: "same", activation: "relu")
        |> max_pool2d(kernel: 3, stride: 2)
      let d = x |> conv2d(filters: 20, kernel: 3, padding: 1)
        |> conv2d(filters: 8, kernel: [3, 2], activation: "relu") |> max_pool2d(kernel: [2, 3])
      let e = x |> conv2d(filters: 4, kernel: 3, activation: "tanh") |> max_pool2d(kernel: 2)
      output a
      output b
      output c
      output d
      output e
    }
    """

  @Test(
    "a max pool written by the convolution before it equals the interpreter in every kernel path",
    arguments: [
      [],
      ["-DLAMINA_CONV_FORCE_CHANNEL_KERNEL=1", "-DLAMINA_CONV_DIRECT_PARALLEL_WORK=0"],
      ["-DLAMINA_CONV_DIRECT_MAX_CHANNELS=0", "-DLAMINA_CONV_CHANNEL_KERNEL=0"],
      ["x86-64-v3", "-DLAMINA_CONV_DIRECT_PARALLEL_WORK=0"],
      ["generic"],
    ])
  func pooledEpilogue(_ arguments: [String]) throws {
    guard let options = Self.pathOptions(arguments) else { return }
    let model = try Model(source: Self.pooledSource, pipeline: Pipeline.inference)
    let parameters = try model.initialParameters(seed: 5)
    let source = try model.generateC().source
    // Three convolutions write their pools (2x2, 2x2 at stride 1, 3x3); the tanh's and the
    // im2col convolution's stay apart.
    #expect(source.components(separatedBy: "written as its max pool").count - 1 == 3, "\(source)")
    #expect(
      source.components(separatedBy: "_max_pool2d(lamina_context*").count - 1 == 2,
      "the tanh's and the im2col convolution's pools have their own kernels, the others none")
    let compiled = try model.compile(options: options, parameters: parameters)
    for problem in try TestData.compiledMismatches(
      model, compiled, parameters: parameters, batches: [1, 37])
    {
      Issue.record("\(arguments): \(problem)")
    }
  }

  /// A convolution whose result (64 channels of 22x398: 2.2 MB an image) passes the 1 MiB block
  /// a direct kernel pools in scratch memory writes its max pool in bands of rows that fit
  /// (`lamina_conv_pooled_bands`): 3x3 windows at stride 2 (the row-maximum line and the stride-2
  /// permutes) and 2x2, on one thread and on two, equal the interpreter.
  @Test(
    "a convolution's max pool is written in bands when its result passes the scratch block",
    arguments: [[], ["-DLAMINA_CONV_DIRECT_PARALLEL_WORK=0"]])
  func pooledInBands(_ flags: [String]) throws {
    let model = try Model(
      source: """
        model PooledBands {
          input x: f32[batch, 3, 24, 400]
          let a = x |> conv2d(filters: 64, kernel: 3) |> relu |> max_pool2d(kernel: 3, stride: 2)
          let b = x |> conv2d(filters: 64, kernel: 3, activation: "relu") |> max_pool2d(kernel: 2)
          output a
          output b
        }
        """, pipeline: Pipeline.inference)
    let parameters = try model.initialParameters(seed: 7)
    let source = try model.generateC().source
    #expect(source.components(separatedBy: "written as its max pool").count - 1 == 2)
    var options = TestCache.options()
    options.flags = flags
    let compiled = try model.compile(options: options, parameters: parameters)
    for problem in try TestData.compiledMismatches(
      model, compiled, parameters: parameters, batches: [1])
    {
      Issue.record("\(flags): \(problem)")
    }
  }

  /// The channel kernel's pool is taken position-major (a position's channels together), by
  /// VMAXPS unless a tile's sums held a NaN: 52 channels (a pair of vectors, then a pair with a
  /// partial one), 64 and 20 with 3x3 windows at stride 2, 2x2 and a generic [2, 3] window; NaNs
  /// in the input reach the maxima (the exact rule), on one thread and two, AVX-512, AVX2 and the
  /// portable C. Without a pool (d), the relu is applied in the kernel's registers, NaNs kept.
  @Test(
    "the channel kernel's position-major pool equals the interpreter, NaNs included",
    arguments: [[], ["-DLAMINA_CONV_DIRECT_PARALLEL_WORK=0"], ["x86-64-v3"], ["generic"]])
  func channelKernelPool(_ arguments: [String]) throws {
    guard let options = Self.pathOptions(arguments + ["-DLAMINA_CONV_FORCE_CHANNEL_KERNEL=1"])
    else {
      return
    }
    let model = try Model(
      source: """
        model ChannelPool {
          input x: f32[batch, 3, 23, 37]
          let a = x |> conv2d(filters: 52, kernel: 3, activation: "relu") |> max_pool2d(kernel: 3, stride: 2)
          let b = x |> conv2d(filters: 64, kernel: 3, stride: 2) |> relu |> max_pool2d(kernel: 2)
          let c = x |> conv2d(filters: 20, kernel: 3, activation: "relu") |> max_pool2d(kernel: [2, 3])
          let d = x |> conv2d(filters: 20, kernel: 3, activation: "relu")
          output a
          output b
          output c
          output d
        }
        """, pipeline: Pipeline.inference)
    let parameters = try model.initialParameters(seed: 11)
    let source = try model.generateC().source
    #expect(source.components(separatedBy: "written as its max pool").count - 1 == 3)
    let compiled = try model.compile(options: options, parameters: parameters)
    var generator = SeededGenerator(seed: 23)
    for batch in [1, 3] {
      let x = (0..<(batch * 3 * 23 * 37)).map { _ -> Float in
        generator.nextUnit() < 1.0 / 200 ? .nan : Float(generator.nextNormal())
      }
      let inputs = ["x": Tensor(shape: [batch, 3, 23, 37], scalars: x)]
      let outputs = try compiled.forward(inputs)
      let expected = try model.interpret(
        inputs: inputs, parameters: parameters, outputs: ["a", "b", "c", "d"])
      #expect(
        expected["a"]?.doubles().contains { $0.isNaN } == true, "the NaNs reach a pooled result")
      for problem in TestData.compiledMismatches(outputs, expected, names: ["a", "b", "c", "d"]) {
        Issue.record("\(arguments) batch \(batch): \(problem)")
      }
    }
  }

  @Test("the interpreter's gradients equal finite differences", arguments: cases)
  func gradcheck(_ testCase: Case) throws {
    let model = try Model(source: testCase.source, pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 5)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 2], seed: 9)
    let checks = try model.checkGradients(
      inputs: inputs, parameters: parameters, samples: 12, compiled: TestCache.options())
    #expect(checks.contains { $0.parameter.hasPrefix("conv") })
    for check in checks {
      #expect(
        check.worstRelativeError < (testCase.dtype == "f32" ? 1e-3 : 1e-6),
        "\(testCase): \(check.parameter) analytic \(check.analytic) numeric \(check.numeric)")
    }
  }

  /// conv2d_backward_weight is differentiable too (second-order use, e.g. gradient penalties): its
  /// gradients are a conv_transpose2d and a conv2d.
  @Test("conv2d_backward_weight's gradients equal finite differences, compiled as interpreted")
  func backwardWeightGradient() throws {
    let source = """
      model SecondOrder {
        input target: f64[4, 3, 3, 2]
        param x: f64[2, 3, 7, 6] = normal(std: 1)
        param dy: f64[2, 4, 4, 3] = normal(std: 1)
        let dw = conv2d_backward_weight(x, dy, kernel: [3, 2], stride: [2, 2], padding: [1, 0, 1, 1], dilation: [1, 2])
        output dw
        loss = mse(dw, target)
        train with sgd(lr: 0.1)
      }
      """
    let model = try Model(source: source, pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 1)
    let inputs = TestData.inputs(for: model.graph, symbols: [:], seed: 2)
    for check in try model.checkGradients(inputs: inputs, parameters: parameters, samples: 40) {
      #expect(check.worstRelativeError < 1e-6, "\(check.parameter): \(check)")
    }
    let withGradients = model.withGradientOutputs()
    let names = withGradients.graph.outputs.map(\.name)
    let compiled = try withGradients.compile(options: TestCache.options(), parameters: parameters)
    let (outputs, _) = try compiled.evaluate(inputs)
    let expected = try withGradients.interpret(
      inputs: inputs, parameters: parameters, outputs: names)
    for name in names {
      let problem = TestData.mismatch(
        try #require(outputs[name]), try #require(expected[name]), rtol: 1e-11, atol: 1e-12)
      #expect(problem == nil, "\(name): \(problem ?? "")")
    }
  }

  @Test("shape errors name what was expected and what was found")
  func shapeErrors() throws {
    let conv = try #require(OpRegistry.definition("conv2d"))
    func message(_ operands: [TensorType], _ attributes: [String: Attribute]) -> String? {
      do {
        _ = try conv.inferTypes(operands: operands, attributes: attributes)
        return nil
      } catch {
        return error.message
      }
    }
    let x = TensorType(.f32, [Dim(symbol: "batch"), Dim(3), Dim(8), Dim(8)])
    let bias = TensorType(.f32, [Dim(4)])
    let channels = message([x, TensorType(.f32, [Dim(4), Dim(2), Dim(3), Dim(3)]), bias], [:])
    #expect(channels?.contains("the input has 3 channels") == true, "\(channels ?? "")")
    #expect(channels?.contains("expects 2") == true, "\(channels ?? "")")
    let large = message(
      [x, TensorType(.f32, [Dim(4), Dim(3), Dim(11), Dim(3)]), bias],
      ["padding": .ints([1, 1, 1, 1])])
    #expect(
      large?.contains("kernel height 11 is larger than the padded input height 10") == true
        && large?.contains("= 0") == true, "\(large ?? "")")
    let groups = message(
      [x, TensorType(.f32, [Dim(4), Dim(1), Dim(3), Dim(3)]), bias], ["groups": .int(2)])
    #expect(groups?.contains("groups 2 does not divide the input's 3 channels") == true)
    let badBias = message(
      [x, TensorType(.f32, [Dim(4), Dim(3), Dim(3), Dim(3)]), TensorType(.f32, [Dim(5)])], [:])
    #expect(badBias?.contains("the bias must be [4]") == true, "\(badBias ?? "")")
  }

  @Test("padding forms resolve as PyTorch and ONNX SAME_UPPER do")
  func paddingResolution() throws {
    func resolve(_ padding: SpatialPadding, kernel: [Int], stride: [Int] = [1, 1], input: [Int])
      throws -> [Int]
    {
      try resolvedPadding(
        padding, kernel: kernel, stride: stride, dilation: [1, 1], inputSize: input, op: "test")
    }
    #expect(try resolve(.explicit([2]), kernel: [3, 3], input: [5, 5]) == [2, 2, 2, 2])
    #expect(try resolve(.explicit([1, 2]), kernel: [3, 3], input: [5, 5]) == [1, 2, 1, 2])
    #expect(try resolve(.explicit([1, 2, 3, 4]), kernel: [3, 3], input: [5, 5]) == [1, 2, 3, 4])
    #expect(try resolve(.valid, kernel: [3, 3], input: [5, 5]) == [0, 0, 0, 0])
    // Even kernel, stride 1: total k - 1 = 3, the odd one at the bottom / right.
    #expect(try resolve(.same, kernel: [4, 2], input: [6, 6]) == [1, 0, 2, 1])
    // Stride 2 on 7: out 4, total (4 - 1)·2 + 3 - 7 = 2.
    #expect(try resolve(.same, kernel: [3, 3], stride: [2, 2], input: [7, 8]) == [1, 0, 1, 1])
    #expect(
      try resolvedPadding(
        .same, kernel: [3, 3], stride: [1, 1], dilation: [2, 2], inputSize: [5, 5], op: "test")
        == [2, 2, 2, 2])
    #expect(throws: ShapeError.self) {
      try resolve(.explicit([1, 2, 3]), kernel: [3, 3], input: [5, 5])
    }
  }

  @Test("conv layers make PyTorch-named parameters of PyTorch's shapes and fans")
  func layerParameters() throws {
    let model = try Model(
      source: """
        model Names {
          input x: f32[batch, 4, 8, 8]
          let h = x |> conv2d(filters: 6, kernel: [3, 5], groups: 2) |> conv_transpose2d(filters: 4, kernel: 2, stride: 2, bias: false)
          output h
        }
        """)
    let parameters = try model.initialParameters(seed: 1)
    #expect(parameters["conv2d_0.weight"]?.shape == [6, 2, 3, 5])
    #expect(parameters["conv2d_0.bias"]?.shape == [6])
    #expect(parameters["conv_transpose2d_0.weight"]?.shape == [6, 4, 2, 2])
    #expect(parameters["conv_transpose2d_0.bias"] == nil)
    // Glorot uniform: |w| ≤ √(6 / (fan_in + fan_out)), fan_in = 2·15, fan_out = 6·15.
    let limit = (6.0 / (30 + 90)).squareRoot()
    let weights = try #require(parameters["conv2d_0.weight"]).doubles()
    #expect(weights.allSatisfy { abs($0) <= limit })
    #expect(weights.map(abs).max()! > 0.8 * limit)
    let fans = fans(of: [6, 2, 3, 5], arguments: [:])
    #expect(fans.fanIn == 30 && fans.fanOut == 90)
  }

  @Test("a small CNN trains compiled: the loss falls")
  func trains() throws {
    let model = try Model(
      source: """
        model TinyCNN {
          input x: f32[batch, 1, 8, 8]
          input label: i32[batch]
          let h = x
            |> conv2d(filters: 4, kernel: 3, padding: 1, activation: "relu")
            |> conv2d(filters: 8, kernel: 3, stride: 2, padding: "same", activation: "relu")
          let logits = h |> flatten |> dense(units: 2)
          output logits
          loss = cross_entropy(logits, label)
          train with sgd(lr: 0.1, momentum: 0.9)
        }
        """, pipeline: Pipeline.training)
    let compiled = try model.compile(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 2))
    // Class 1: a bright vertical bar; class 0: a bright horizontal bar; noise on both.
    var generator = SeededGenerator(seed: 4, stream: "cnn")
    let batch = 32
    var pixels: [Float] = []
    var labels: [Int32] = []
    for index in 0..<batch {
      let label = index % 2
      let position = Int(generator.nextUnit() * 8)
      for row in 0..<8 {
        for column in 0..<8 {
          let onBar = label == 1 ? column == position : row == position
          pixels.append((onBar ? 1 : 0) + Float(0.2 * generator.nextUnit()))
        }
      }
      labels.append(Int32(label))
    }
    let inputs = [
      "x": Tensor(shape: [batch, 1, 8, 8], scalars: pixels),
      "label": Tensor(shape: [batch], scalars: labels),
    ]
    let first = try compiled.trainStep(inputs)
    var last = first
    for _ in 0..<60 { last = try compiled.trainStep(inputs) }
    #expect(first.isFinite && last.isFinite)
    #expect(last < 0.2 * first, "loss \(first) -> \(last)")
  }
}
