import LaminaIR
import LaminaSupport

/// Data a kernel derives from parameters and keeps between calls, in a buffer of the context's
/// (`lamina_derived` in `lamina_model.h`): a convolution's weights packed for the GEMM, or their
/// Winograd transform packed for its products (`ConvolutionSchedule.packsWeightsOnce`; the runtime
/// sizes the slot from the geometry and the tile, `lamina_winograd_packed_size_*`). The context counts parameter versions (every
/// `lamina_set_param`, `lamina_param_data`, training step and `lamina_params_changed` moves it on),
/// and the kernel derives its buffer again only when the version moved since its last call.
///
/// A kernel that keeps derived data takes one more C parameter, `int64_t derived_slot`: its slot, a
/// number per top-level node that the code generator hands out, passed by the entry points. A
/// training step passes -1 (its weights change every step: it derives per call, as does a loop's
/// body), so the same kernel function serves every entry point and the repeated layers of a model.
enum DerivedData {
  /// The kernel's C parameter holding its slot.
  static let slotParameter = "derived_slot"

  /// Whether `node`'s kernel (a convolution, or the fused group a convolution produces for) keeps
  /// derived data, and so takes `derived_slot`.
  static func keepsDerivedData(_ node: Node, in graph: Graph) -> Bool {
    let producer = node.op == Node.fusedOp ? node.epilogueProducer : node
    guard let producer, let schedule = ConvolutionSchedule(producer, in: graph) else {
      return false
    }
    return schedule.packsWeightsOnce
  }

  /// The slot of each top-level node whose kernel keeps derived data, by the node's first result.
  static func slots(in graph: Graph) -> [ValueID: Int] {
    var slots: [ValueID: Int] = [:]
    for node in graph.nodes where !node.hasRegion && !node.results.isEmpty {
      if keepsDerivedData(node, in: graph) { slots[node.results[0]] = slots.count }
    }
    return slots
  }
}
