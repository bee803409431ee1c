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
///   faster than im2col and the GEMM at batch 1 and 64).
/// - `depthwise`: direct, one input channel per group (`groups` equal to the input channels:
///   MobileNet's and ShuffleNet's 3x3 layers), vectorized over output columns at any stride and
///   dilation: each (image, group)'s input plane is copied once into a zero-padded buffer whose
///   rows are split into `stride` phases, so every tap of a vector of outputs is one contiguous load
///   (ShuffleNet's stride-2 layers ran on the channel kernel at one lane in 16, 3.7 GFLOP/s).
/// - `im2colGemm`: the input's columns and the packed GEMM, for everything else (many input
///   channels: the GEMM's packing pays off).
/// - `winograd2`, `winograd4`: Winograd F(2x2, 3x3) or F(4x4, 3x3) (`lamina_winograd.h`): 3x3
///   kernels at stride 1, dilation 1, one group, f32, with enough channels (`winogradMinChannels`)
///   and output positions (`winogradMinPositions`, and `winogradWeightsPerPosition` weight elements per position at most
///   element, because the weights are transformed at every call). Only F(4x4) is chosen: F(2x2)
///   was slower than the GEMM on every ResNet-50 and VGG-19 shape measured (its transforms touch
///   4 input elements per output against 2.25), and F(4x4)'s error (about 7e-6 of the largest
///   output at 512 channels, against 4e-7 for the GEMM) is far inside the ONNX tolerances (1e-3);
///   `LAMINA_WINOGRAD_FORCE=2` runs F(2x2) (BENCHMARKS.md, "session 11: Winograd").
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
  /// a direct kernel, whose (image, group) block of result rows, pooled in a thread's 2 MiB
  /// scratch memory beside the padded input, is at most `pooledBlockBytes`. im2col and the GEMM
  /// would need the whole result in a buffer of its own.
  public var poolsInScratch = false

  /// Whether the GEMM's packed weights are kept between calls: an im2col-and-GEMM convolution whose
  /// weights are a parameter packs them (`lamina_gemm_pack_a_*`) into a buffer of the context's
  /// (`lamina_derived`, one slot per call site the code generator numbers) and packs them again only
  /// when a parameter may have changed (`lamina_set_param`, `lamina_param_data`, a training step,
  /// `lamina_params_changed`), instead of in every call, on every thread and for every block of
  /// columns. The cost is one copy of the packed weights per such convolution for the context's
  /// life. Every entry point but a training step reads the kept copy; a training step, whose weights
  /// change every step, packs per call.
  public var packsWeightsOnce = false

  /// Bytes of one (image, group)'s result up to which a direct kernel pools it in scratch memory.
  public static let pooledBlockBytes = 1 << 20

  /// Output channels per group the width kernel takes (`LAMINA_CONV_DIRECT_MAX_CHANNELS`).
  public static let directWidthMaxChannels = 8
  /// Taps (in channels per group × kernel area) the width kernel takes (`LAMINA_CONV_DIRECT_MAX_TAPS`).
  public static let directWidthMaxTaps = 64
  /// Input channels per group up to which the channel kernel beats im2col and the GEMM.
  public static let directChannelsMaxInputChannels = 16
  /// Taps the channel kernel takes (`LAMINA_CONV_CHANNEL_MAX_TAPS`).
  public static let directChannelsMaxTaps = 4096
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
  /// Output positions (per call: images × height × width) from which Winograd beats the GEMM: 14x14
  /// (64 and 128 channels 1.5x faster; 7x7 was slower at every channel count).
  public static let winogradMinPositions = 196
  /// Weight elements (out × in channels) one output position amortizes: the weights are transformed
  /// (36 per pair) and packed at every call, which at 256 → 256 channels costs as much as Winograd
  /// saves at 14x14 (a tie) and at 512 → 512 more than it saves at 28x28. Once the transformed
  /// weights are kept between calls (a derived buffer), only `winogradMinPositions` remains.
  public static let winogradWeightsPerPosition = 256

  public init(algorithm: Algorithm, multiplyAddsPerImage: Int) {
    self.algorithm = algorithm
    self.multiplyAddsPerImage = multiplyAddsPerImage
  }

  /// The schedule of a forward convolution with this geometry.
  public init(_ geometry: ConvolutionGeometry) {
    let inPerGroup = geometry.inChannels / max(geometry.groups, 1)
    let outPerGroup = geometry.outChannels / max(geometry.groups, 1)
    let taps = inPerGroup * geometry.kernel[0] * geometry.kernel[1]
    multiplyAddsPerImage = geometry.outChannels * geometry.outHeight * geometry.outWidth * taps
    if Self.prefersWinograd(geometry) {
      algorithm = .winograd4
    } else if inPerGroup == 1 && geometry.groups > 1 {
      algorithm = .depthwise
    } else if geometry.stride[1] == 1 && outPerGroup <= Self.directWidthMaxChannels
      && taps <= Self.directWidthMaxTaps
    {
      algorithm = .directWidth
    } else if inPerGroup <= Self.directChannelsMaxInputChannels
      && taps <= Self.directChannelsMaxTaps
    {
      algorithm = .directChannels
    } else {
      algorithm = .im2colGemm
    }
    let blockBytes = outPerGroup * geometry.outHeight * geometry.outWidth * geometry.dtype.byteSize
    poolsInScratch =
      (algorithm == .directWidth || algorithm == .directChannels || algorithm == .depthwise)
      && blockBytes <= Self.pooledBlockBytes
  }

  /// Whether Winograd F(4x4, 3x3) computes this convolution: its traits (3x3, stride 1, dilation 1,
  /// one group, f32) and sizes (channels, positions per call, positions per weight element; a
  /// symbolic batch counts as one image).
  public static func prefersWinograd(_ geometry: ConvolutionGeometry) -> Bool {
    guard geometry.dtype == .f32, geometry.kernel == [3, 3], geometry.stride == [1, 1],
      geometry.dilation == [1, 1], geometry.groups == 1,
      geometry.inChannels >= winogradMinChannels, geometry.outChannels >= winogradMinChannels
    else { return false }
    let positions = (geometry.batch.staticValue ?? 1) * geometry.outHeight * geometry.outWidth
    return positions >= winogradMinPositions
      && positions * winogradWeightsPerPosition >= geometry.inChannels * geometry.outChannels
  }

  /// The schedule of a `conv2d` node; nil for other nodes.
  public init?(_ node: Node, in graph: Graph) {
    guard case .kernel(.convolution)? = node.definition?.c,
      let geometry = try? OpRegistry.conv2dGeometry(
        operands: node.operands.map { graph.type(of: $0) }, attributes: node.attributes)
    else { return nil }
    self.init(geometry)
    packsWeightsOnce =
      algorithm == .im2colGemm && node.operands.count > 1
      && graph.param(for: node.operands[1]) != nil
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
          ? "convolution weights: a parameter, packed for the GEMM once per parameter version (a kept copy), per call in training steps"
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
        "convolution: winograd(\(m)): F(\(m)x\(m), 3x3) tiles, \((m + 2) * (m + 2)) GEMMs over the channels, weights transformed at every call",
        "convolution threads: blocks of tile rows; each pass split over channels, the GEMMs one per task",
      ]
    }
    return [
      kernel,
      "convolution threads: none below \(Self.directParallelWork) multiply-adds in all (\(multiplyAddsPerImage) per image), else images, or bands of one image's rows when the images are fewer than the threads",
    ]
  }
}
