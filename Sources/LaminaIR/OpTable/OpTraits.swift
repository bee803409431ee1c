import LaminaSupport

// The traits passes and the C backend ask instead of comparing op names. Each op's entry in the
// table sets the ones that apply to it; the defaults describe an ordinary pure op.

// MARK: Reductions

/// How a reduction folds the values of one output element: the one description the interpreter,
/// the unfused reduction kernels and the fused row kernels all follow.
public struct ReductionDescription: Sendable, Hashable {
  /// How two values combine.
  public enum Combine: Sendable, Hashable {
    /// `a + b`.
    case add
    /// The larger of the two, NaN winning (see `NaNRule`).
    case maximum
  }

  /// What the accumulated value becomes once every element is in.
  public enum Finalize: Sendable, Hashable {
    /// The accumulator is the result.
    case none
    /// The accumulator divided by the number of elements combined (an empty axis gives 0/0 = NaN).
    case divideByCount
  }

  /// How a NaN among the values reaches the result.
  public enum NaNRule: Sendable, Hashable {
    /// The combining arithmetic carries it (`NaN + x` is NaN): nothing to do.
    case arithmetic
    /// A comparison would drop it (`NaN >= x` is false): the update must pick a NaN explicitly.
    case explicit
  }

  /// What reducing an empty axis does.
  public enum EmptyAxis: Sendable, Hashable {
    /// The result is `finalize(identity)`: 0 for a sum, NaN for a mean.
    case identity
    /// An error at run time (a maximum of nothing has no value).
    case error
  }

  /// The accumulator's start value.
  public var identity: Double
  public var combine: Combine
  public var finalize: Finalize
  public var nanRule: NaNRule
  public var emptyAxis: EmptyAxis

  public init(
    identity: Double, combine: Combine, finalize: Finalize = .none, nanRule: NaNRule = .arithmetic,
    emptyAxis: EmptyAxis = .identity
  ) {
    self.identity = identity
    self.combine = combine
    self.finalize = finalize
    self.nanRule = nanRule
    self.emptyAxis = emptyAxis
  }

  /// Combines `value` into `accumulated` (the interpreter's update, in `Double`).
  public func combined(_ accumulated: Double, _ value: Double) -> Double {
    switch combine {
    case .add: return accumulated + value
    case .maximum:
      return value.isNaN || value >= accumulated ? value : accumulated
    }
  }

  /// The result for a finished accumulator over `count` elements.
  public func finalized(_ accumulated: Double, count: Int) -> Double {
    switch finalize {
    case .none: return accumulated
    case .divideByCount: return accumulated / Double(count)
    }
  }

  /// The reduction of `values`, as the interpreter computes it.
  public func reduce(_ values: [Double]) -> Double {
    finalized(values.reduce(identity, combined), count: values.count)
  }

  /// The reduction of integer `values`, exactly: a sum wraps around (two's complement) at the
  /// result's width once the caller truncates it (see `cAccumulatorType`).
  public func reduce(integers values: [Int64]) -> Int64 {
    switch combine {
    case .add: return values.reduce(0, &+)
    case .maximum: return values.max() ?? Int64.min
    }
  }

  // The C forms of the same rules. Every kernel that reduces builds its loop from these.

  /// The C type a reduction over `dtype` elements accumulates in. Floats: `double`. Integers: 64
  /// bits, exact (a double rounds i64 past 2^53, and converting an out-of-range double back is
  /// undefined behaviour); a sum in `uint64_t`, whose overflow is defined and whose low bits are
  /// the wrapped sum at either width, a maximum in `int64_t`.
  public func cAccumulatorType(_ dtype: DType) -> String {
    if dtype.isFloatingPoint { return "double" }
    return combine == .add ? "uint64_t" : "int64_t"
  }

  /// The start value as a C literal for an accumulator of `cAccumulatorType(dtype)`.
  public func cIdentity(_ dtype: DType) -> String {
    guard dtype.isInteger else { return cIdentity }
    return combine == .add ? "0" : "(-INT64_C(9223372036854775807) - 1)"
  }

  /// The start value as a C literal (`0`, `-INFINITY`).
  public var cIdentity: String {
    if identity == -.infinity { return "-INFINITY" }
    if identity == .infinity { return "INFINITY" }
    if identity == identity.rounded(), abs(identity) < 1e15 { return String(Int(identity)) }
    return formatFloat(identity)
  }

  /// The `omp simd reduction` operator when the update vectorizes as a plain reduction; nil when
  /// it does not (an explicit NaN rule is a compare-and-select the vectorizer leaves alone).
  public var simdOperator: String? {
    switch (combine, nanRule) {
    case (.add, .arithmetic): return "+"
    default: return nil
    }
  }

  /// C statements folding `value` (an expression of the accumulator's type) into `accumulator`.
  /// `candidate` names a local the update may declare for the value.
  public func cUpdate(accumulator: String, value: String, candidate: String, type: String)
    -> [String]
  {
    switch combine {
    case .add: return ["\(accumulator) += \(value);"]
    case .maximum:
      // NaN propagates, as in the interpreter (and numpy).
      return [
        "const \(type) \(candidate) = \(value);",
        "\(accumulator) = (\(candidate) >= \(accumulator) || \(candidate) != \(candidate)) ? \(candidate) : \(accumulator);",
      ]
    }
  }

  /// The C expression of the result from a finished accumulator over `count` elements (a C
  /// expression); `type` is the accumulator's C type.
  public func cFinalize(_ accumulator: String, count: String, type: String) -> String {
    switch finalize {
    case .none: return accumulator
    case .divideByCount:
      let isToken = count.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
      return "\(accumulator) / (\(type))\(isToken ? count : "(\(count))")"
    }
  }
}

/// A softmax-like normalization along one axis: each element from `x - max` and `Σ e^(x - max)`.
public enum Normalization: Sendable, Hashable {
  /// `e^(x - max) / Σ` (softmax).
  case exponential
  /// `(x - max) - ln Σ` (log-softmax).
  case logarithm
}

// MARK: Producers with an epilogue

/// An op whose kernel writes its result as a 2-D matrix, block by block, and can run fused
/// elementwise consumers (bias, activation, residual, a folded batch norm, an optimizer update) on
/// each finished block while it is in cache.
///
/// The fusion pass puts such an op and the elementwise ops over its result into one `epilogue`
/// group; the C backend asks the op's kernel to produce blocks and call the group's epilogue. An op
/// implements this by setting `OpDefinition.epilogue` and giving its kernel an epilogue emitter in
/// the C backend's kernel library; nothing in the fusion pass names it.
public struct EpilogueProducer: Sendable {
  /// Whether this node (with these operand and result types) runs through the blocked kernel
  /// (matmul: 2-D floating-point operands and result, not batched).
  public var accepts: @Sendable (_ operands: [TensorType], _ result: TensorType) -> Bool
  /// Whether the kernel, for a node with these operands and attributes, can also take the maximum
  /// over windows of the last two axes of its NCHW result (a max pool without padding) and write
  /// only the pooled values, running the epilogue on those (conv2d's direct kernels).
  public var poolsWindowMaximum:
    @Sendable (_ operands: [TensorType], _ attributes: [String: Attribute]) -> Bool
  /// Whether the kernel can hand its epilogue an NCHW result as planes, `[N·C, H·W]` (a block of
  /// channels × positions in one call), instead of the rows of its last axis, `[N·C·H, W]` (a
  /// block of output positions there is a call per channel and image row: conv2d's GEMM blocks of
  /// 256 positions made three calls per channel).
  public var viewsPlanes: Bool

  public init(
    poolsWindowMaximum:
      @escaping @Sendable (
        _ operands: [TensorType], _ attributes: [String: Attribute]
      ) -> Bool = { _, _ in false },
    viewsPlanes: Bool = false,
    accepts: @escaping @Sendable (_ operands: [TensorType], _ result: TensorType) -> Bool
  ) {
    self.accepts = accepts
    self.poolsWindowMaximum = poolsWindowMaximum
    self.viewsPlanes = viewsPlanes
  }
}

/// How a pooling op reduces each window of the last two axes of an NCHW tensor (its windows come
/// from its attributes through `PoolingWindows`).
public enum WindowReduction: Sendable, Hashable {
  /// The largest element of the window, NaN winning (max pooling).
  case maximum
}

// MARK: Memory effects

/// What an op does to the memory of one operand.
public enum MemoryAccess: String, Sendable, Hashable {
  /// Reads it only.
  case read
  /// Overwrites it without reading (an output passed in as an operand).
  case write
  /// Reads and updates it in place (a running statistic).
  case readWrite = "read-write"
}

/// An operand's memory effect, and whether the op's result may be computed in the operand's buffer.
public struct OperandEffect: Sendable, Hashable {
  public var access: MemoryAccess
  /// The kernel reads each element of this operand at the position it writes the result, before
  /// writing it: the result may take the operand's buffer when the operand dies here (in place).
  public var resultMayAlias: Bool

  public init(_ access: MemoryAccess = .read, resultMayAlias: Bool = false) {
    self.access = access
    self.resultMayAlias = resultMayAlias
  }

  public static let read = OperandEffect()
  /// Read at the position written, before the write.
  public static let readSamePosition = OperandEffect(.read, resultMayAlias: true)
}

// MARK: Op effects

/// What an op does besides computing its results from its operands.
public struct OpEffects: OptionSet, Sendable, Hashable {
  public let rawValue: Int
  public init(rawValue: Int) { self.rawValue = rawValue }

  /// Computes differently in a training step than at inference (dropout, batch norm): the
  /// interpreter and the C backend pass it the mode, and compiled code gets one kernel per mode.
  public static let dependsOnMode = OpEffects(rawValue: 1 << 0)
  /// Draws random numbers: two nodes with the same operands are different values.
  public static let drawsRandomNumbers = OpEffects(rawValue: 1 << 1)
  /// Writes state that outlives the call (a running mean): never removed or duplicated.
  public static let writesState = OpEffects(rawValue: 1 << 2)
  /// Draws from the model's random generator: its last two operands are the generator's state
  /// (`random.seed`, `random.step`), which the language supplies, so a call names none of them
  /// (`random_normal(shape: [batch, 8])`).
  public static let readsModelGenerator = OpEffects(rawValue: 1 << 3)

  /// Same operands, same result, nothing else touched: the op may be folded at compile time,
  /// deduplicated, simplified or removed when unused.
  public var isPure: Bool { isEmpty }
}

// MARK: Inference forms

/// What a mode-dependent op computes at inference, as something that no longer depends on the mode
/// (nor, usually, on the data): batch norm's statistics are the running ones, dropout is the
/// identity. The `mode-specialize` pass builds the inference entry points' copy of the graph from
/// it, so that fusion sees the inference computation as ordinary arithmetic.
public enum InferenceForm: Sendable, Hashable {
  /// The op's operand at this position, unchanged.
  case operand(Int)
  /// The pure op `op` applied to the operands at `operands` (positions in the original node), with
  /// those of the original node's attributes that `op` declares.
  case op(String, operands: [Int])
}

// MARK: Algebra

/// A binary op as an affine map `x ↦ s · x + t` of one operand x, the other operand c held fixed.
public enum AffineStep: Sendable, Hashable {
  /// `x + c` or `c + x`: t = c.
  case add
  /// `x - c` (s = 1, t = -c), or `c - x` (s = -1, t = c).
  case subtract
  /// `x · c` or `c · x`: s = c.
  case multiply
  /// `x / c` (s = 1 / c); `c / x` is not affine.
  case divide
}

/// Identities that simplification and constant folding use.
public struct AlgebraicProperties: Sendable, Hashable {
  /// `e ⊕ x = x` (0 for add, 1 for mul).
  public var leftIdentity: Double?
  /// `x ⊕ e = x` (0 for add and sub, 1 for mul and div).
  public var rightIdentity: Double?
  /// `f(f(x)) = x` (neg).
  public var isInvolution: Bool
  /// The op returns its operand unchanged when the result's type is the operand's (cast to the
  /// same dtype, reshape or broadcast to the same shape).
  public var isIdentityWhenTypeUnchanged: Bool
  /// `a / b`: a kernel dividing many elements by one `b` may multiply by `1 / b` instead.
  public var isDivision: Bool
  /// One arithmetic instruction per element (add, sub, mul, neg): a fused kernel computes it
  /// again where needed rather than storing and loading it.
  public var isCheapToRecompute: Bool
  /// Operand positions in which the op, on floating-point values, never decreases when the operand
  /// grows (the others held fixed) and gives NaN for a NaN there: such an op commutes with a
  /// maximum over those operands, `f(max(a, b)) = max(f(a), f(b))` exactly (relu, add, sub's left
  /// operand). A convolution fused with the max pool after it applies its epilogue to the pooled
  /// values instead of to every element (`Fusion`, `KernelSchedule.pooling`).
  public var nonDecreasingOperands: [Int]
  /// The op as an affine map of one operand when the other is fixed (`x + c`, `x - c` or `c - x`,
  /// `c · x`, `x / c`): `scale-fold` moves a chain of them with per-channel fixed operands after a
  /// convolution into its weights and bias.
  public var affine: AffineStep?
  /// `0 >= x ? 0 : x` exactly (relu: NaN stays NaN, -0 becomes 0): a GEMM whose whole epilogue is
  /// this op rectifies its results in registers as it stores them (`lamina_gemm_epilogue.relu_only`).
  public var isRectifier: Bool

  public init(
    leftIdentity: Double? = nil, rightIdentity: Double? = nil, isInvolution: Bool = false,
    isIdentityWhenTypeUnchanged: Bool = false, isDivision: Bool = false,
    isCheapToRecompute: Bool = false, nonDecreasingOperands: [Int] = [],
    affine: AffineStep? = nil, isRectifier: Bool = false
  ) {
    self.affine = affine
    self.isRectifier = isRectifier
    self.leftIdentity = leftIdentity
    self.rightIdentity = rightIdentity
    self.isInvolution = isInvolution
    self.isIdentityWhenTypeUnchanged = isIdentityWhenTypeUnchanged
    self.isDivision = isDivision
    self.isCheapToRecompute = isCheapToRecompute
    self.nonDecreasingOperands = nonDecreasingOperands
  }

  public static let none = AlgebraicProperties()
}

/// How an op moves elements without computing new values. Of a tensor holding one value
/// everywhere, each gives that value in the result's shape.
public enum Rearrangement: Sendable, Hashable {
  /// The operand itself (`stop_gradient`).
  case identity
  /// A new shape with the same row-major order (reshape, flatten, squeeze, unsqueeze); chains of
  /// them are one `reshape`.
  case rowMajorReshape
  /// An axis permutation (`OpDefinition.permutation` gives it); chains of them are one `permute`.
  case permutation
  /// Broadcasting to a larger shape; chains of them are one `broadcast_to`.
  case broadcast
  /// A part of the operand (`slice`).
  case selection
}

/// For ops whose result is their operands laid end to end along one axis (`concat`).
///
/// Where every dimension before the axis is 1 (batch 1 along channels, or any batch along axis
/// 0), each operand is one contiguous range of the result: the memory planner may then give the
/// operand's producer that range of the result's buffer to write into (`MemoryPlan.concatPlacements`),
/// and the kernel copies nothing for it.
public struct Concatenation: Sendable, Hashable {
  /// The attribute giving the axis (negative counts from the end).
  public var axisAttribute: String
  public var defaultAxis: Int

  public init(axisAttribute: String = "axis", defaultAxis: Int = 0) {
    self.axisAttribute = axisAttribute
    self.defaultAxis = defaultAxis
  }

  /// The node's axis, non-negative, for a result of `rank` axes.
  public func axis(_ attributes: [String: Attribute], rank: Int) -> Int {
    let axis = attributes[axisAttribute]?.intValue ?? defaultAxis
    return axis < 0 ? axis + rank : axis
  }

  /// Where each of the node's operands starts in its result, in bytes, when every operand is one
  /// contiguous range of it: the product of the result's dimensions before the axis is the
  /// constant 1, whatever the symbols' values. Nil otherwise (a symbolic batch before the axis:
  /// the operands' rows interleave in the result as soon as the batch is 2).
  public func operandOffsets(of node: Node, in graph: Graph) -> [SymbolicSize]? {
    guard node.results.count == 1 else { return nil }
    let result = graph.type(of: node.result)
    let axis = axis(node.attributes, rank: result.rank)
    let operands = node.operands.map { graph.type(of: $0) }
    guard axis >= 0, axis < result.rank,
      Array(result.shape[..<axis]).product.staticValue == 1,
      operands.allSatisfy({ $0.dtype == result.dtype })
    else { return nil }
    var offsets: [SymbolicSize] = []
    var offset = SymbolicSize.zero
    for operand in operands {
      offsets.append(offset)
      offset = offset + SymbolicSize(bytesOf: operand)
    }
    return offsets
  }
}

/// The axis permutation a permuting op applies, from its attributes and its operand's rank: result
/// axis d is operand axis `perm[d]`, non-negative; nil when the attributes are invalid.
public typealias PermutationRule =
  @Sendable (_ attributes: [String: Attribute], _ rank: Int) -> [Int]?

/// One axis of a strided window: result position `i` reads operand position `start + i * step`.
public struct WindowAxis: Sendable, Hashable {
  public var start: Int
  public var step: Int

  public init(start: Int, step: Int) {
    self.start = start
    self.step = step
  }
}

/// For `.selection` rearrangements that read a strided window of their operand, of the same rank:
/// result element `[i_0, …]` is operand element `[start_0 + i_0 * step_0, …]`, one `WindowAxis` per
/// axis, with positive steps, from the attributes and the operand's shape. Nil when the node selects
/// otherwise (a dropped axis, a negative step, a range on a symbolic axis, whose count is checked
/// only at run time): a consumer's kernel can then read the window in place of a copy.
public typealias WindowRule =
  @Sendable (_ attributes: [String: Attribute], _ operandShape: [Dim]) -> [WindowAxis]?

// MARK: Kernels

/// The C backend's library kernels, which `CEmission.kernel` entries name.
public enum KernelID: String, Sendable, Hashable, CaseIterable {
  case matrixProduct = "matrix-product"
  case permute
  case reduce
  case normalize
  case broadcastCopy = "broadcast-copy"
  case concatenate
  case slice = "slice-copy"
  case sliceBackward = "slice-scatter"
  case meanSquaredError = "mean-squared-error"
  case crossEntropy = "cross-entropy"
  case crossEntropyGradient = "cross-entropy-gradient"
  case binaryCrossEntropy = "binary-cross-entropy"
  case squaredNorm = "squared-norm"
  case batchNormStatistics = "batch-norm-statistics"
  case batchNormStatisticsGradient = "batch-norm-statistics-gradient"
  case batchNormRunningStatistics = "batch-norm-running-statistics"
  case dropout
  case convolution
  case convolutionTranspose = "convolution-transpose"
  case convolutionWeightGradient = "convolution-weight-gradient"
  case maxPool = "max-pool"
  case maxPoolBackward = "max-pool-backward"
  case averagePool = "average-pool"
  case averagePoolBackward = "average-pool-backward"
  case globalAveragePool = "global-average-pool"
  case randomNormal = "random-normal"
  case randomUniform = "random-uniform"
  case gatherRows = "gather-rows"
  case scatterAddRows = "scatter-add-rows"
  case sequenceMask = "sequence-mask"
  case gather
  case scatterAdd = "scatter-add"
  case pad
  case padBackward = "pad-backward"
}

// MARK: Fused groups

/// The kind of kernel a `fused` node becomes; its `kind` attribute holds the raw value.
public enum FusedKind: String, Sendable, Hashable, CaseIterable {
  /// One loop over a shared domain; broadcasting operands are read through their strides.
  case elementwise
  /// An elementwise group whose results are optimizer updates (written over parameters and state).
  case update
  /// A producer with an epilogue (a matmul) and the elementwise ops run on each of its blocks.
  case epilogue
  /// Reductions over the last axis with their producers and consumers, one row at a time.
  case reduction

  /// Whether the kernel reads every element of an operand at the position it writes its results,
  /// before writing (one pass, no re-reads): results may take operands' buffers.
  public var readsEachElementBeforeWriting: Bool {
    switch self {
    case .elementwise, .update: return true
    // A row kernel reads a row again in later loops; an epilogue's in-place rules are finer
    // (`Node.fusedEpilogueCarrier`).
    case .epilogue, .reduction: return false
    }
  }

  /// Elementwise loops, with or without updates.
  public var isElementwise: Bool { self == .elementwise || self == .update }
}

extension Node {
  /// The kind of a `fused` node; nil for other nodes.
  public var fusedKind: FusedKind? {
    guard op == Node.fusedOp, let text = attributes[Node.fusedKindAttribute]?.stringValue else {
      return nil
    }
    return FusedKind(rawValue: text)
  }

  /// The attribute of a `fused` node naming its kind.
  public static let fusedKindAttribute = "kind"

  /// The member of a fused `epilogue` node that produces the blocks (the matmul).
  public var epilogueProducer: Node? {
    guard fusedKind == .epilogue else { return nil }
    return body.first { OpRegistry.definition($0.op)?.epilogue != nil }
  }

  /// For a fused `epilogue` node: the result whose buffer the producer writes its result into
  /// before the epilogue replaces it there (the product itself when it is a result, else the first
  /// result of the product's dtype). The C backend and the memory plan's in-place rules both read it.
  public func fusedEpilogueCarrier(in graph: Graph) -> ValueID? {
    guard let product = epilogueProducer?.result else { return nil }
    if results.contains(product) { return product }
    let dtype = graph.type(of: product).dtype
    return results.first { graph.type(of: $0).dtype == dtype }
  }

  /// The op's definition; nil for `fused` nodes and unknown ops.
  public var definition: OpDefinition? { OpRegistry.definition(op) }
}

// MARK: Handles

/// A typed reference to an op of the table, for code that creates or recognizes a specific op
/// (a pass making a `constant`), so no op name is spelled outside the table.
public struct OpHandle: Sendable, Hashable, CustomStringConvertible {
  public let name: String

  init(_ name: String) {
    self.name = name
  }

  /// The op's entry in the table.
  public var definition: OpDefinition {
    guard let definition = OpRegistry.definition(name) else {
      preconditionFailure("op handle \(name) names no op of the table")
    }
    return definition
  }

  public var description: String { name }
}

extension Node {
  /// Whether the node is an instance of the op `handle` refers to.
  public func `is`(_ handle: OpHandle) -> Bool { op == handle.name }
}
