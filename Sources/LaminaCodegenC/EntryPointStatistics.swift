import LaminaIR

/// What one entry point of a generated model does per call, for comparing backend pipelines
/// (fused against unfused, planned against unplanned).
public struct EntryPointStatistics: Sendable {
  /// `forward`, `evaluate`, `train_0`, …
  public var name: String
  /// Kernel calls per run of the entry point (aliases launch none).
  public var kernelLaunches: Int
  /// `memcpy`s after the last kernel (outputs not computed in place, updates not written in place).
  public var copies: Int
  /// Bytes of each intermediate that lives in the arena.
  public var intermediates: [SymbolicSize]
  /// The memory plan used, if the memory-plan pass ran.
  public var plan: MemoryPlan?

  public init(
    name: String, kernelLaunches: Int, copies: Int, intermediates: [SymbolicSize],
    plan: MemoryPlan?
  ) {
    self.name = name
    self.kernelLaunches = kernelLaunches
    self.copies = copies
    self.intermediates = intermediates
    self.plan = plan
  }

  /// Bytes of all intermediates, each in its own 64-byte aligned slot (no reuse).
  public func intermediateBytes(_ bindings: [String: Int]) -> Int {
    intermediates.reduce(0) { $0 + MemoryPlan.aligned($1.evaluate(bindings)) }
  }

  /// Bytes of the arena for these dimensions: the plan's, or one slot per intermediate.
  public func arenaBytes(_ bindings: [String: Int]) -> Int {
    plan?.arenaBytes(bindings) ?? intermediateBytes(bindings)
  }
}

/// A symbolic byte count as a C expression in 128-bit arithmetic: `(__int128)512 * dim_batch`.
func cSize(_ size: SymbolicSize) -> String {
  let terms = size.sortedTerms.map { term in
    "(__int128)\(term.coefficient)" + term.monomial.map { " * " + cDimName($0) }.joined()
  }
  return terms.isEmpty ? "0" : terms.joined(separator: " + ")
}
