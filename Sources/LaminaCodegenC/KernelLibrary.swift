import LaminaIR

/// The kernels behind `CEmission.kernel(name)` entries of the op table, by name.
///
/// Adding a kernel op is one op-table entry plus one emitter here.
enum KernelLibrary {
  typealias Emitter = @Sendable (KernelContext, inout CWriter) -> Void

  static let emitters: [String: Emitter] = [
    "matmul": { MatmulKernel.emit($0, into: &$1) },
    "transpose": { ShapeKernels.emitPermute($0, into: &$1) },
    "permute": { ShapeKernels.emitPermute($0, into: &$1) },
    "sum": { ReductionKernels.emitReduce($0, into: &$1) },
    "mean": { ReductionKernels.emitReduce($0, into: &$1) },
    "max": { ReductionKernels.emitReduce($0, into: &$1) },
    "softmax": { ReductionKernels.emitSoftmax($0, into: &$1) },
    "log_softmax": { ReductionKernels.emitSoftmax($0, into: &$1) },
    // A broadcasting copy is the identity expression over broadcast operands.
    "broadcast_to": { ElementwiseKernel.emitSerial($0, expression: { $0.operands[0] }, into: &$1) },
    "concat": { ShapeKernels.emitConcat($0, into: &$1) },
    "slice": { ShapeKernels.emitSlice($0, into: &$1) },
    "slice_backward": { ShapeKernels.emitSlice($0, backward: true, into: &$1) },
    "mse": { LossKernels.emitMSE($0, into: &$1) },
    "cross_entropy": { LossKernels.emitCrossEntropy($0, into: &$1) },
    "cross_entropy_grad": { LossKernels.emitCrossEntropyGradient($0, into: &$1) },
    "binary_cross_entropy_with_logits": { LossKernels.emitBinaryCrossEntropy($0, into: &$1) },
    "l2": { LossKernels.emitL2($0, into: &$1) },
  ]
}
