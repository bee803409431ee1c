import LaminaIR

/// The kernels behind `CEmission.kernel(id)` entries of the op table.
///
/// Adding a kernel op is one op-table entry plus one emitter here; an op that produces blocks for
/// an epilogue (`OpDefinition.epilogue`) also gives an `EpilogueProducerEmitter`.
enum KernelLibrary {
  typealias Emitter = (KernelContext, inout CWriter) -> Void

  static func emitter(_ id: KernelID) -> Emitter {
    switch id {
    case .matrixProduct: return { MatmulKernel.emit($0, into: &$1) }
    case .reduce: return { ReductionKernels.emitReduce($0, into: &$1) }
    case .normalize: return { ReductionKernels.emitSoftmax($0, into: &$1) }
    // A broadcasting copy is the identity expression over broadcast operands.
    case .broadcastCopy:
      return { ElementwiseKernel.emitSerial($0, expression: { $0.operands[0] }, into: &$1) }
    case .concatenate: return { ShapeKernels.emitConcat($0, into: &$1) }
    case .slice: return { ShapeKernels.emitSlice($0, into: &$1) }
    case .sliceBackward: return { ShapeKernels.emitSlice($0, backward: true, into: &$1) }
    case .meanSquaredError: return { LossKernels.emitMSE($0, into: &$1) }
    case .crossEntropy: return { LossKernels.emitCrossEntropy($0, into: &$1) }
    case .crossEntropyGradient: return { LossKernels.emitCrossEntropyGradient($0, into: &$1) }
    case .binaryCrossEntropy: return { LossKernels.emitBinaryCrossEntropy($0, into: &$1) }
    case .squaredNorm: return { LossKernels.emitL2($0, into: &$1) }
    case .sequenceMask: return { SequenceKernels.emitMask($0, into: &$1) }
    case .convolution: return { ConvolutionKernels.emit($0, into: &$1) }
    case .convolutionTranspose: return { ConvolutionKernels.emit($0, into: &$1) }
    case .convolutionWeightGradient: return { ConvolutionKernels.emit($0, into: &$1) }
    case .batchNormRunningStatistics:
      return { NormalizationKernels.emitRunningStatistics($0, into: &$1) }
    case .batchNormStatistics, .batchNormStatisticsGradient, .dropout, .maxPool, .maxPoolBackward,
      .averagePool, .averagePoolBackward, .globalAveragePool, .randomNormal, .randomUniform:
      return { context, _ in preconditionFailure("\(context.node.op) has a parallel emitter") }
    case .gatherRows, .scatterAddRows:
      return { context, _ in preconditionFailure("\(context.node.op) has a parallel emitter") }
    case .gather, .scatterAdd, .pad, .permute:
      return { context, _ in preconditionFailure("\(context.node.op) has a parallel emitter") }
    case .padBackward: return { IndexingKernels.emitPadBackward($0, into: &$1) }
    }
  }

  /// A kernel that shares its loop with the thread pool: besides its body it writes the job struct
  /// and task functions of a `ParallelLoop` (the prelude) before the kernel. The last argument maps
  /// symbols to their position in `dims`, for task functions that read a symbolic size.
  typealias ParallelEmitter = (KernelContext, inout CWriter, inout CWriter, [String: Int]) -> Void

  /// The parallel emitter of a kernel, or nil for kernels that only have a plain one (`emitter`).
  static func parallelEmitter(_ id: KernelID) -> ParallelEmitter? {
    switch id {
    case .reduce:
      return { context, body, prelude, symbolIndex in
        ReductionKernels.emitReduce(
          context, into: &body, prelude: &prelude, symbolIndex: symbolIndex)
      }
    case .dropout:
      return { context, body, prelude, _ in
        RandomKernels.emitDropout(context, into: &body, prelude: &prelude)
      }
    case .randomNormal, .randomUniform:
      return { context, body, prelude, _ in
        RandomKernels.emitSamples(context, into: &body, prelude: &prelude)
      }
    case .batchNormStatistics:
      return { context, body, prelude, _ in
        NormalizationKernels.emitStatistics(context, into: &body, prelude: &prelude)
      }
    case .batchNormStatisticsGradient:
      return { context, body, prelude, _ in
        NormalizationKernels.emitStatisticsGradient(context, into: &body, prelude: &prelude)
      }
    case .maxPool:
      return { context, body, prelude, _ in
        PoolingKernels.emitForward(context, maximum: true, into: &body, prelude: &prelude)
      }
    case .averagePool:
      return { context, body, prelude, _ in
        PoolingKernels.emitForward(context, maximum: false, into: &body, prelude: &prelude)
      }
    case .maxPoolBackward:
      return { context, body, prelude, _ in
        PoolingKernels.emitMaximumBackward(context, into: &body, prelude: &prelude)
      }
    case .averagePoolBackward:
      return { context, body, prelude, _ in
        PoolingKernels.emitAverageBackward(context, into: &body, prelude: &prelude)
      }
    case .globalAveragePool:
      return { context, body, prelude, symbols in
        PoolingKernels.emitGlobalAverage(
          context, into: &body, prelude: &prelude, symbolIndex: symbols)
      }
    case .gatherRows:
      return { context, body, prelude, symbols in
        GatherKernels.emitGather(context, into: &body, prelude: &prelude, symbolIndex: symbols)
      }
    case .scatterAddRows:
      return { context, body, prelude, symbols in
        GatherKernels.emitScatterAdd(context, into: &body, prelude: &prelude, symbolIndex: symbols)
      }
    case .gather:
      return { context, body, prelude, symbols in
        IndexingKernels.emitGather(context, into: &body, prelude: &prelude, symbolIndex: symbols)
      }
    case .permute:
      return { context, body, prelude, symbols in
        ShapeKernels.emitPermute(context, into: &body, prelude: &prelude, symbolIndex: symbols)
      }
    case .pad:
      return { context, body, prelude, symbols in
        IndexingKernels.emitPad(context, into: &body, prelude: &prelude, symbolIndex: symbols)
      }
    case .scatterAdd:
      return { context, body, prelude, symbols in
        IndexingKernels.emitScatterAdd(
          context, into: &body, prelude: &prelude, symbolIndex: symbols)
      }
    default: return nil
    }
  }

  /// The kernels that produce their result block by block and call an epilogue on each block;
  /// nil for a kernel that cannot.
  static func epilogueProducer(_ id: KernelID) -> EpilogueProducerEmitter.Type? {
    switch id {
    case .matrixProduct: return MatmulKernel.self
    case .convolution, .convolutionTranspose: return ConvolutionKernels.self
    default: return nil
    }
  }
}

/// The C side of `EpilogueProducer`: a kernel that writes its result as a matrix, block by block,
/// and calls `epilogue` (a `lamina_gemm_epilogue*`, or `NULL`) on each finished block.
protocol EpilogueProducerEmitter {
  /// The result viewed as a matrix: rows and columns (C expressions' dimensions).
  static func matrixShape(of producer: Node, in graph: Graph) -> (rows: Dim, columns: Dim)

  /// The statements that compute `producer` into `destination` (a C pointer), calling `epilogue`
  /// on each finished block. `operand(value)` is the C name of an operand.
  static func emitProduce(
    _ producer: Node, in graph: Graph, operand: (ValueID) -> String, destination: String,
    epilogue: String, into body: inout CWriter)
}

/// An epilogue producer that can read its right operand packed beforehand by the runtime
/// (`lamina_sgemm_pack_b`): a loop packs an invariant weight once for all its steps.
protocol PackedRightOperandProducer: EpilogueProducerEmitter {
  /// `emitProduce`, with `operand(producer.operands[1])` naming the packed buffer.
  static func emitProducePacked(
    _ producer: Node, in graph: Graph, operand: (ValueID) -> String, destination: String,
    epilogue: String, into body: inout CWriter)
}

/// An epilogue producer whose kernel can write a max pool of its NCHW result instead of the result
/// (`EpilogueProducer.poolsWindowMaximum`), calling the epilogue on blocks of the pooled result.
protocol PooledEpilogueProducer: EpilogueProducerEmitter {
  /// `emitProduce`, with `destination` the pooled result's buffer.
  static func emitProducePooled(
    _ producer: Node, in graph: Graph, pooling: KernelSchedule.Pooling,
    operand: (ValueID) -> String, destination: String, epilogue: String,
    into body: inout CWriter)
}
