import LaminaSupport

/// Which kernel computes a forward convolution (`conv2d`), decided from its geometry before any C is
/// written; the C backend passes the choice to `lamina_conv.h` in the geometry it states, and
/// `lamina dump --after fusion` prints it with the other kernel schedules.
///
/// - `directWidth`: direct, vectorized over output columns, a block of output channels in
///   registers: few output channels per group (at most `directWidthMaxChannels`), few taps, stride 1
///   along the width (LeNet's first layer, 1 → 6 channels).
/// - `directChannels`: direct, vectorized over output channels, a tile of output positions in
///   registers, taps and positions read through offset tables (any stride, dilation and padding):
///   few input channels per group (at most `directChannelsMaxInputChannels`), where im2col would
///   copy the input once per tap for a short GEMM (LeNet's second layer, 6 → 16 channels: 2.9x
///   faster than im2col and the GEMM at batch 1 and 64), unless the GEMM reads the input in place
///   (`gemmReadsInputInPlace`: an unpadded 1x1 at stride 1); and strided convolutions wider than 1x1
///   with up to 512 input channels of a 3x3 kernel (`stridedTakesChannelKernel`), whose im2col
///   gathers every other element (ResNet-50's and Inception v2's 3x3 stride-2 layers: 10-31%
///   faster).
/// - `depthwise`: direct, one input channel per group (`groups` equal to the input channels:
///   MobileNet's and ShuffleNet's 3x3 layers), vectorized over output columns at any stride and
///   dilation: each (image, group)'s input plane is copied once into a zero-padded buffer whose
///   rows are split into `stride` phases, so every tap of a vector of outputs is one contiguous load
///   (ShuffleNet's stride-2 layers ran on the channel kernel at one lane in 16, 3.7 GFLOP/s).
/// - `im2colGemm`: the input's columns and the packed GEMM, for everything else (many input
///   channels: the GEMM's packing pays off).
/// - `winograd2`, `winograd4`: Winograd F(2x2, 3x3) or F(4x4, 3x3) (`lamina_winograd.h`): 3x3
///   kernels at stride 1, dilation 1, one group, f32, with enough channels (`winogradMinChannels`)
///   and output positions (`winogradMinPositions`). Weights that are a parameter keep their
///   packed transform between calls (`packsWeightsOnce`): any channel count takes F(4x4) from 10x10,
///   and F(2x2) below that down to 6x6, where F(4x4) has too few tiles for its 36 weight matrices.
///   Weights transformed at every call (not a parameter) take F(4x4) only with at most
///   `winogradWeightsPerPosition` weight elements per position. F(4x4)'s error (about 7e-6 of the
///   largest output at 512 channels, against 4e-7 for the GEMM and F(2x2)) is far inside the ONNX
///   tolerances (1e-3); BENCHMARKS.md, "session 11: Winograd" and "session 12: wino-derived".
///
/// Both direct kernels split their work over the thread pool only above a work size
/// (`LAMINA_CONV_DIRECT_PARALLEL_WORK` multiply-adds in `lamina_conv.c`), in bands of output rows or
/// positions when the images are fewer than the threads, so a small convolution runs on the calling
/// thread without waking the pool and a batch-1 one still uses the threads.
public struct ConvolutionSchedule: Sendable, Hashable {
  public enum Algorithm: Int, Sendable, Hashable {
    case im2colGemm = 1
    case directWidth = 2
    case directChannels = 3
    case winograd2 = 4
    case winograd4 = 5
    case depthwise = 6

    /// The output tile size m of Winograd F(m x m, 3 x 3); nil for the other kernels.
    public var winogradTile: Int? {
      switch self {
      case .winograd2: 2
      case .winograd4: 4
      default: nil
      }
    }
  }

  public var algorithm: Algorithm
  /// Multiply-adds of one image, for the thread decision of the direct kernels.
  public var multiplyAddsPerImage: Int
  /// Whether the kernel can write a max pool of its result (`EpilogueProducer.poolsWindowMaximum`):
  /// a direct kernel, whose (image, group) block of result rows is pooled in a thread's 2 MiB
  /// scratch memory beside the padded input, in bands of rows of at most `pooledBlockBytes` each
  /// (the depthwise kernel's whole block must fit). im2col and the GEMM would need the whole
  /// result in a buffer of its own.
  public var poolsInScratch = false

  /// Whether the GEMM's packed weights are kept between calls: an im2col-and-GEMM convolution whose
  /// weights are a parameter packs them (`lamina_gemm_pack_a_*`) into a buffer of the context's
  /// (`lamina_derived`, one slot per call site the code generator numbers) and packs them again only
  /// when a parameter may have changed (`lamina_set_param`, `lamina_param_data`, a training step,
  /// `lamina_params_changed`), instead of in every call, on every thread and for every block of
  /// columns. The cost is one copy of the packed weights per such convolution for the context's
  /// life. Every entry point but a training step reads the kept copy; a training step, whose weights
  /// change every step, packs per call. A Winograd convolution keeps its weights' transform the same
  /// way, packed for its products (36 or 16 values per 3x3 filter: 4x or 1.8x the weights' memory).
  public var packsWeightsOnce = false

  /// Bytes of a band of one (image, group)'s result that a direct kernel pools in scratch memory
  /// (`LAMINA_CONV_POOLED_BLOCK_BYTES`).
  public static let pooledBlockBytes = 1 << 20

  /// Output channels per group the width kernel takes (`LAMINA_CONV_DIRECT_MAX_CHANNELS`).
  public static let directWidthMaxChannels = 8
  /// Taps (in channels per group × kernel area) the width kernel takes (`LAMINA_CONV_DIRECT_MAX_TAPS`).
  public static let directWidthMaxTaps = 64
  /// Input channels per group up to which the channel kernel beats im2col and the GEMM (when im2col
  /// copies the input: not for `gemmReadsInputInPlace`).
  public static let directChannelsMaxInputChannels = 16
  /// Taps the channel kernel takes (`LAMINA_CONV_CHANNEL_MAX_TAPS`): 512 channels of a 3x3 kernel,
  /// whose pair of output-channel vectors' weights (590 KB) stays in a 1 MiB L2.
  public static let directChannelsMaxTaps = 4608
  /// Whether the GEMM path multiplies the input as it is stored (a 1x1 kernel at stride 1 without
  /// padding, one group): no im2col copy, so few input channels are no reason for the channel
  /// kernel, whose register transposes cost more than the GEMM's short k loop. Zen 4, two threads
  /// (one): 3 → 64 at 56x56 22.5 → 17.6 µs (41 → 31), 8 → 64 38.7 → 32.8 (67 → 55),
  /// 12 → 96 61 → 56 (115 → 107), SqueezeNet's 16 → 64 at 55x55 66 → 48 (98 → 91).
  public static func gemmReadsInputInPlace(_ geometry: ConvolutionGeometry) -> Bool {
    geometry.groups == 1 && geometry.kernel == [1, 1] && geometry.stride == [1, 1]
      && geometry.padding.allSatisfy { $0 == 0 }
  }

  /// Whether a strided convolution with many input channels takes the channel kernel rather than
  /// im2col and the GEMM: a kernel wider than 1x1 at stride 2 or more in both dimensions, one
  /// group, at most `directChannelsMaxTaps` taps. im2col's packer gathers every other input
  /// element, in runs of an output row (28, 14 or 7 long), which cost ResNet-50's first 3x3
  /// stride-2 layer a fifth of its time; the channel kernel reads the taps through offset tables
  /// and keeps its transposed weights between calls. Zen 5, 2 threads, batch 1, one kernel timed
  /// alone (median of 400 calls), im2col and the GEMM against the channel kernel: 128 → 128 at
  /// 56x56 608 → 470 µs, 256 → 256 at 28x28 606 → 502, 96 → 96 at 28x28 104 → 77, 128 → 160 at
  /// 28x28 199 → 153, 128 → 192 at 14x14 92 → 63, 256 → 256 at 14x14 213 → 159, 512 → 512 at
  /// 14x14 737 → 664. 1x1 projections lose (512 → 1024 at 28x28: 475 → 537, 1024 → 2048 at
  /// 14x14: 496 → 670): their packing is a plain strided copy, and the GEMM reads the weights once
  /// per tile of many positions.
  public static func stridedTakesChannelKernel(_ geometry: ConvolutionGeometry) -> Bool {
    geometry.groups == 1 && geometry.stride[0] > 1 && geometry.stride[1] > 1
      && geometry.kernel[0] > 1 && geometry.kernel[1] > 1
      && geometry.inChannels * geometry.kernel[0] * geometry.kernel[1] <= directChannelsMaxTaps
  }

  /// Multiply-adds in all below which a direct kernel runs on the calling thread
  /// (`LAMINA_CONV_DIRECT_PARALLEL_WORK`): about 5 µs of one core. LeNet's convolutions at batch 1
  /// (117600 and 240000) stay on the caller: split into bands they were slower in alternating
  /// rounds (13.7 against 12.1 µs for the whole forward, load 16), and the session-8 quiet figures
  /// agree (20 µs with the bands on 2 threads); from 2 images on, the threads share the work.
  public static let directParallelWork = 1 << 18

  /// Multiply-adds in all below which the depthwise kernel runs on the calling thread
  /// (`LAMINA_CONV_DEPTHWISE_PARALLEL_WORK`): its per-channel copies and epilogues make them slow
  /// (5-30 GFLOP/s on one core), so 2^15 are about 5 µs; ShuffleNet's 7x7 layers (240k) took ~50 µs.
  public static let depthwiseParallelWork = 1 << 15

  /// Input and output channels from which Winograd beats the GEMM (16 → 16 at 56x56 was a tie, 32
  /// → 32 at 28x28 and 56x56 already 2x faster).
  public static let winogradMinChannels = 32
  /// Input channels from which Winograd beats the direct kernels when the weights' transform is
  /// kept: SqueezeNet's 16 → 64 at 55x55 took 103 µs against the channel kernel's 158 (Zen 5, 2
  /// threads, per-kernel times of the whole forward, 2 alternating runs of 300 calls each).
  public static let winogradKeptMinInChannels = 16
  /// Output positions (per call: images × height × width) from which F(4x4) beats the GEMM: 14x14
  /// (64 and 128 channels 1.5x faster with the per-call transform; 7x7 was slower at every channel
  /// count).
  public static let winogradMinPositions = 196
  /// Output positions from which F(2x2) beats the GEMM when the weights' transform is kept: 6x6
  /// (48 → 48 and 192 → 384 2.1-2.8x faster than the GEMM; 7x7, 32 to 512 channels, 1.9-2.2x).
  public static let winogradKeptMinPositions = 36
  /// Output positions from which F(4x4) beats F(2x2) when the weights' transform is kept: 10x10
  /// (256 channels 11% faster, 512 a tie). At 7x7 F(4x4) has 4 tiles per product for 36
  /// transformed weight matrices to read, F(2x2) 16 tiles for 16 matrices (512 channels: 2.13
  /// against 1.43 ms).
  public static let winogradKeptTile4MinPositions = 100
  /// Weight elements (out × in channels) one output position amortizes when the weights are
  /// transformed (36 per pair) and packed at every call (weights that are not a parameter, a
  /// training step): at 256 → 256 channels that costs as much as Winograd saves at 14x14 (a tie)
  /// and at 512 → 512 more than it saves at 28x28 (`LAMINA_WINOGRAD_PER_CALL_WEIGHTS_PER_POSITION`
  /// in `lamina_winograd.h` holds a training step's forward to it). Kept weights have no such limit.
  ///
  /// With the transform kept (a derived buffer per layer, refilled once per parameter version), 1
  /// thread, batch 1, C in → C out at H x W, padding 1, minimum over 60-100 calls of `lamina bench
  /// --threads 1` (BENCHMARKS.md, "session 12: wino-derived"; the GEMM's weights are kept packed
  /// too), im2col + GEMM / F(4x4) / F(2x2) in ms:
  ///
  ///      48→48    6x6   0.053 / 0.036 / 0.025
  ///     192→384   6x6   0.86 / 0.45 / 0.31     Inception v1's last layers (Caffe's 6x6)
  ///     512→512   7x7   3.08 / 2.13 / 1.43     ResNet-50 stage 4: F(2x2)
  ///     256→256   7x7   0.83 / 0.44 / 0.39
  ///      32→32    7x7   0.034 / 0.021 / 0.019
  ///     128→128   7x7   0.25 / 0.13 / 0.12
  ///     192→384   7x7   0.88 / 0.46 / 0.41     Inception v1's 7x7 layers
  ///     256→256  10x10  1.55 / 0.65 / 0.73
  ///     512→512  10x10  6.11 / 3.03 / 3.11
  ///      32→32   14x14  0.084 / 0.035 / 0.049
  ///     128→128  14x14  0.76 / 0.25 / 0.38
  ///     256→256  14x14  2.66 / 0.85 / 1.28     ResNet-50 stage 3: F(4x4)
  ///     512→512  14x14  10.5 / 4.3 / 5.3       VGG-19
  ///     160→320  14x14  2.03 / 0.64 / 0.97     Inception v1 (96-160 → 208-320)
  ///     112→224  13x13  0.90 / 0.34 / 0.52     Inception v1 (Caffe's 13x13)
  ///     128→128  28x28  2.45 / 0.85 / 1.31
  ///     256→256  28x28  9.2 / 3.4 / 4.7
  ///     512→512  28x28  35.2 / 13.7 / 24.7     VGG-19 (with the per-call transform: 38.1 / 62.3)
  ///     128→192  28x28  3.49 / 1.18 / 1.82     Inception v1 and v2 (64-128 → 96-192)
  ///      64→192  56x56  6.60 / 2.37 / 3.99
  public static let winogradWeightsPerPosition = 256

  public init(algorithm: Algorithm, multiplyAddsPerImage: Int) {
    self.algorithm = algorithm
    self.multiplyAddsPerImage = multiplyAddsPerImage
  }

  /// The schedule of a forward convolution with this geometry.
  ///
  /// `weightsKept`: the weights are a parameter whose Winograd transform the context keeps between
  /// calls (`packsWeightsOnce`), which lifts the per-call transform's limit on weights per position.
  public init(_ geometry: ConvolutionGeometry, weightsKept: Bool = false) {
    let inPerGroup = geometry.inChannels / max(geometry.groups, 1)
    let outPerGroup = geometry.outChannels / max(geometry.groups, 1)
    let taps = inPerGroup * geometry.kernel[0] * geometry.kernel[1]
    multiplyAddsPerImage = geometry.outChannels * geometry.outHeight * geometry.outWidth * taps
    if let tile = Self.winogradTile(geometry, weightsKept: weightsKept) {
      algorithm = tile == 2 ? .winograd2 : .winograd4
    } else if inPerGroup == 1 && geometry.groups > 1 {
      algorithm = .depthwise
    } else if geometry.stride[1] == 1 && outPerGroup <= Self.directWidthMaxChannels
      && taps <= Self.directWidthMaxTaps
    {
      algorithm = .directWidth
    } else if inPerGroup <= Self.directChannelsMaxInputChannels
      && taps <= Self.directChannelsMaxTaps && !Self.gemmReadsInputInPlace(geometry)
    {
      algorithm = .directChannels
    } else if Self.stridedTakesChannelKernel(geometry) {
      algorithm = .directChannels
    } else {
      algorithm = .im2colGemm
    }
    let blockBytes = outPerGroup * geometry.outHeight * geometry.outWidth * geometry.dtype.byteSize
    // Fusion asks this without knowing whether the weights are a parameter: a layer whose kept
    // weights would take Winograd (which pools only after computing the whole result) is not
    // offered a pool either way.
    // The width and channel kernels cut a larger block into bands of rows that fit
    // (`lamina_conv_pooled_bands`): a band of 4 rows must.
    let rowBytes = outPerGroup * geometry.outWidth * geometry.dtype.byteSize
    let fits =
      algorithm == .depthwise
      ? blockBytes <= Self.pooledBlockBytes : 4 * rowBytes <= Self.pooledBlockBytes
    poolsInScratch =
      (algorithm == .directWidth || algorithm == .directChannels || algorithm == .depthwise)
      && fits && Self.winogradTile(geometry, weightsKept: true) == nil
  }

  /// Whether Winograd computes this convolution (F(4x4, 3x3) or F(2x2, 3x3):
  /// `winogradTile(_:weightsKept:)`).
  public static func prefersWinograd(_ geometry: ConvolutionGeometry, weightsKept: Bool = false)
    -> Bool
  {
    winogradTile(geometry, weightsKept: weightsKept) != nil
  }

  /// The Winograd tile (4 for F(4x4, 3x3), 2 for F(2x2, 3x3)) that computes this convolution, or
  /// nil: its traits (3x3, stride 1, dilation 1, one group, f32) and sizes (channels, positions per
  /// call; a symbolic batch counts as one image). Weights transformed at every call take F(4x4)
  /// from `winogradMinPositions` with enough positions per weight element
  /// (`winogradWeightsPerPosition`); kept ones (`weightsKept`) take F(4x4) from
  /// `winogradKeptTile4MinPositions` and F(2x2) from `winogradKeptMinPositions`, whatever their
  /// width.
  public static func winogradTile(_ geometry: ConvolutionGeometry, weightsKept: Bool = false)
    -> Int?
  {
    guard geometry.dtype == .f32, geometry.kernel == [3, 3], geometry.stride == [1, 1],
      geometry.dilation == [1, 1], geometry.groups == 1,
      geometry.inChannels >= (weightsKept ? winogradKeptMinInChannels : winogradMinChannels),
      geometry.outChannels >= winogradMinChannels
    else { return nil }
    let positions = (geometry.batch.staticValue ?? 1) * geometry.outHeight * geometry.outWidth
    if weightsKept {
      return positions >= winogradKeptTile4MinPositions
        ? 4 : positions >= winogradKeptMinPositions ? 2 : nil
    }
    guard positions >= winogradMinPositions else { return nil }
    return positions * winogradWeightsPerPosition >= geometry.inChannels * geometry.outChannels
      ? 4 : nil
  }

  /// The schedule of a `conv2d` node; nil for other nodes.
  public init?(_ node: Node, in graph: Graph) {
    guard case .kernel(.convolution)? = node.definition?.c,
      let geometry = try? OpRegistry.conv2dGeometry(
        operands: node.operands.map { graph.type(of: $0) }, attributes: node.attributes)
    else { return nil }
    // A parameter, or weights of parameters alone (a batch norm's scale folded in, `scale-fold`):
    // either way they change only with the parameter version.
    let weightsAreFixed = node.operands.count > 1 && graph.isFixed(node.operands[1])
    self.init(geometry, weightsKept: weightsAreFixed)
    packsWeightsOnce =
      weightsAreFixed
      && (algorithm == .im2colGemm || algorithm == .directChannels
        || algorithm.winogradTile != nil)
  }

  /// The `LAMINA_CONV_ALGORITHM_*` constant of `lamina_conv.h`.
  public var cConstant: String {
    switch algorithm {
    case .im2colGemm: "LAMINA_CONV_ALGORITHM_IM2COL_GEMM"
    case .directWidth: "LAMINA_CONV_ALGORITHM_DIRECT_WIDTH"
    case .directChannels: "LAMINA_CONV_ALGORITHM_DIRECT_CHANNELS"
    case .winograd2: "LAMINA_CONV_ALGORITHM_WINOGRAD_2"
    case .winograd4: "LAMINA_CONV_ALGORITHM_WINOGRAD_4"
    case .depthwise: "LAMINA_CONV_ALGORITHM_DEPTHWISE"
    }
  }

  /// The lines of the schedule dump: the kernel and its thread split.
  public var summary: [String] {
    let kernel: String
    switch algorithm {
    case .im2colGemm:
      return [
        "convolution: im2col columns and the packed GEMM",
        "convolution threads: the GEMM's own split",
        packsWeightsOnce
          ? "convolution weights: fixed (parameters alone), packed for the GEMM once per parameter version (a kept copy), per call in training steps"
          : "convolution weights: packed for the GEMM in every call",
      ]
    case .directWidth:
      kernel =
        "convolution: direct, vectorized over output columns, a block of output channels in registers"
    case .directChannels:
      kernel =
        "convolution: direct, vectorized over output channels, a tile of output positions in registers"
    case .depthwise:
      return [
        "convolution: depthwise, vectorized over output columns, the padded input's rows split by the stride",
        "convolution threads: none below \(Self.depthwiseParallelWork) multiply-adds in all (\(multiplyAddsPerImage) per image), else runs of (image, group) pairs",
      ]
    case .winograd2, .winograd4:
      let m = algorithm.winogradTile ?? 4
      return [
        "convolution: winograd(\(m)): F(\(m)x\(m), 3x3) tiles, \((m + 2) * (m + 2)) GEMMs over the channels",
        packsWeightsOnce
          ? "convolution weights: fixed (parameters alone), transformed and packed once per parameter version (a kept copy), per call in training steps (im2col and the GEMM there above \(Self.winogradWeightsPerPosition) weight elements per output position)"
          : "convolution weights: transformed and packed in every call",
        "convolution threads: blocks of tile rows; each pass split over channels, the GEMMs one per task",
      ]
    }
    var lines = [
      kernel,
      "convolution threads: none below \(Self.directParallelWork) multiply-adds in all (\(multiplyAddsPerImage) per image), else images, or bands of one image's rows when the images are fewer than the threads",
    ]
    if algorithm == .directChannels {
      lines.append(
        packsWeightsOnce
          ? "convolution weights: fixed (parameters alone), transposed to vectors of output channels once per parameter version (a kept copy), per call in training steps"
          : "convolution weights: transposed to vectors of output channels in every call")
    }
    return lines
  }
}
