/// A byte count that depends on symbolic dimensions: a sum of coefficients times monomials
/// (`2048 + 512*batch`). Sizes of tensors are one term; offsets in a memory plan are sums.
public struct SymbolicSize: Hashable, Sendable, CustomStringConvertible {
  /// Coefficient of each monomial; a monomial is a sorted list of symbols (`[]` is the constant).
  public private(set) var terms: [[String]: Int]

  public init(terms: [[String]: Int] = [:]) {
    self.terms = terms.filter { $0.value != 0 }
  }

  public init(_ constant: Int) { self.init(terms: [[]: constant]) }

  /// The bytes of a tensor of `type`.
  public init(bytesOf type: TensorType) {
    let count = type.elementCount
    self.init(terms: [count.symbols: count.factor * type.dtype.byteSize])
  }

  public static let zero = SymbolicSize()

  public static func + (lhs: SymbolicSize, rhs: SymbolicSize) -> SymbolicSize {
    SymbolicSize(terms: lhs.terms.merging(rhs.terms, uniquingKeysWith: +))
  }

  /// The value once every symbol is bound (unbound symbols count as 1).
  public func evaluate(_ bindings: [String: Int]) -> Int {
    terms.reduce(0) { sum, term in
      sum + term.key.reduce(term.value) { $0 * (bindings[$1] ?? 1) }
    }
  }

  /// Terms by degree, then by symbol names: the constant first.
  public var sortedTerms: [(monomial: [String], coefficient: Int)] {
    terms.map { ($0.key, $0.value) }.sorted {
      ($0.0.count, $0.0.joined(separator: "*")) < ($1.0.count, $1.0.joined(separator: "*"))
    }
  }

  /// `0`, `2048`, `512*batch`, `2048 + 512*batch`.
  public var description: String {
    let parts = sortedTerms.map { term in
      term.monomial.isEmpty
        ? String(term.coefficient) : "\(term.coefficient)*" + term.monomial.joined(separator: "*")
    }
    return parts.isEmpty ? "0" : parts.joined(separator: " + ")
  }
}

/// Where the intermediates of one entry point live in the arena, and for how long.
///
/// Built by the `memory-plan` pass, read by the C backend. Step `i` is the `i`-th node of the
/// entry point's schedule; step `schedule.count` stands for the copies after the last kernel.
///
/// A plan has one or more layouts: offsets of every buffer as polynomials in the symbols, each
/// valid when every symbol is at least its `minimumSymbolValue` (the first layout: always). Each
/// buffer starts at its offset rounded up to 64 bytes at run time; the planner keeps buffers whose
/// lifetimes overlap apart by their size plus room for that rounding, for every valid value of the
/// symbols. A call uses the valid layout needing the fewest bytes for its dimensions.
public struct MemoryPlan: Hashable, Sendable {
  /// One region of the arena, shared by values that run in place of each other.
  public struct Buffer: Hashable, Sendable {
    /// The value that defines the buffer, then each value computed in place of the previous one.
    public var values: [ValueID]
    /// Bytes of the values (all the same size).
    public var size: SymbolicSize
    /// First and last step (inclusive) at which the buffer holds a live value. For a buffer that
    /// encloses others, the span covers theirs.
    public var firstStep: Int
    public var lastStep: Int
    /// For a buffer inside another (a concat operand written straight into its range of the
    /// concat's buffer): that buffer and the bytes from its start. Only outermost buffers are
    /// placed; an enclosed one starts at its outermost buffer's rounded offset plus these bytes.
    public var enclosing: Enclosure?

    public init(
      values: [ValueID], size: SymbolicSize, firstStep: Int, lastStep: Int,
      enclosing: Enclosure? = nil
    ) {
      self.values = values
      self.size = size
      self.firstStep = firstStep
      self.lastStep = lastStep
      self.enclosing = enclosing
    }

    /// Whether the two buffers hold live values at a common step.
    public func overlapsInTime(_ other: Buffer) -> Bool {
      firstStep <= other.lastStep && other.firstStep <= lastStep
    }
  }

  /// Where an enclosed buffer sits: `offset` bytes from the start of buffer `buffer`.
  public struct Enclosure: Hashable, Sendable {
    public var buffer: Int
    public var offset: SymbolicSize

    public init(buffer: Int, offset: SymbolicSize) {
      self.buffer = buffer
      self.offset = offset
    }
  }

  /// A concat operand computed in place in the concat's result: `offset` bytes into `concat`.
  public struct ConcatPlacement: Hashable, Sendable {
    public var concat: ValueID
    public var offset: SymbolicSize

    public init(concat: ValueID, offset: SymbolicSize) {
      self.concat = concat
      self.offset = offset
    }
  }

  /// Offsets of every buffer (before rounding up to 64), valid when every symbol is at least
  /// `minimumSymbolValue`.
  public struct Layout: Hashable, Sendable {
    public var minimumSymbolValue: Int
    /// One per buffer; an enclosed buffer's entry is its outermost buffer's.
    public var offsets: [SymbolicSize]

    public init(minimumSymbolValue: Int, offsets: [SymbolicSize]) {
      self.minimumSymbolValue = minimumSymbolValue
      self.offsets = offsets
    }

    /// Whether the layout holds for these dimensions.
    public func isValid(for bindings: [String: Int]) -> Bool {
      bindings.values.allSatisfy { $0 >= minimumSymbolValue }
    }
  }

  /// The entry point planned (`forward`, `evaluate`, `train_0`).
  public var entryPoint: String
  /// The nodes run, in order.
  public var schedule: [Int]
  public var buffers: [Buffer]
  /// At least one; the first is valid for all dimensions.
  public var layouts: [Layout]
  /// The buffer of every value that lives in the arena.
  public var bufferOf: [ValueID: Int]
  /// Step at which each arena value is defined and last read, for the dump.
  public var lifetimes: [ValueID: ClosedRange<Int>]
  /// Results computed in the buffer of an operand that dies at that node: result → operand.
  public var inPlace: [ValueID: ValueID]
  /// Training-step updates computed straight into their parameter or state (value → target): no
  /// copy after the last kernel.
  public var directUpdates: [ValueID: ValueID]
  /// Concat operands (storage roots) their producers write straight into the concat's buffer:
  /// the concat kernel copies nothing for them.
  public var concatPlacements: [ValueID: ConcatPlacement]

  public init(
    entryPoint: String, schedule: [Int], buffers: [Buffer], layouts: [Layout],
    bufferOf: [ValueID: Int],
    lifetimes: [ValueID: ClosedRange<Int>], inPlace: [ValueID: ValueID],
    directUpdates: [ValueID: ValueID], concatPlacements: [ValueID: ConcatPlacement] = [:]
  ) {
    self.entryPoint = entryPoint
    self.schedule = schedule
    self.buffers = buffers
    self.layouts = layouts
    self.bufferOf = bufferOf
    self.lifetimes = lifetimes
    self.inPlace = inPlace
    self.directUpdates = directUpdates
    self.concatPlacements = concatPlacements
  }

  /// `bytes` rounded up to a multiple of 64.
  public static func aligned(_ bytes: Int) -> Int { (bytes + 63) / 64 * 64 }

  /// The outermost buffer around buffer `index` (itself when it is not enclosed), and the bytes
  /// from that buffer's start to this one's.
  public func outermost(_ index: Int) -> (buffer: Int, offset: SymbolicSize) {
    var buffer = index
    var offset = SymbolicSize.zero
    while let enclosure = buffers[buffer].enclosing {
      offset = offset + enclosure.offset
      buffer = enclosure.buffer
    }
    return (buffer, offset)
  }

  /// Where buffer `index` starts in `layout` for these dimensions (as the generated C computes it):
  /// an outermost buffer at its offset rounded up to 64, an enclosed one inside its outermost.
  public func offset(of index: Int, layout: Int, _ bindings: [String: Int]) -> Int {
    let (outer, inside) = outermost(index)
    return MemoryPlan.aligned(layouts[layout].offsets[outer].evaluate(bindings))
      + inside.evaluate(bindings)
  }

  /// Arena bytes `layout` needs for these dimensions (its end rounded up to 64, as the no-reuse
  /// layout and the lower bound count).
  public func arenaBytes(layout: Int, _ bindings: [String: Int]) -> Int {
    buffers.indices.filter { buffers[$0].enclosing == nil }.map {
      MemoryPlan.aligned(
        offset(of: $0, layout: layout, bindings) + buffers[$0].size.evaluate(bindings))
    }.max() ?? 0
  }

  /// The layout a call with these dimensions uses: the valid one needing the fewest bytes (the
  /// first on ties).
  public func layoutIndex(for bindings: [String: Int]) -> Int {
    var best = 0
    var bestBytes = arenaBytes(layout: 0, bindings)
    for index in layouts.indices.dropFirst() where layouts[index].isValid(for: bindings) {
      let bytes = arenaBytes(layout: index, bindings)
      if bytes < bestBytes { (best, bestBytes) = (index, bytes) }
    }
    return best
  }

  /// Where buffer `index` starts for these dimensions, in the layout the call uses.
  public func offset(of index: Int, _ bindings: [String: Int]) -> Int {
    offset(of: index, layout: layoutIndex(for: bindings), bindings)
  }

  /// Arena bytes the plan needs for these dimensions.
  public func arenaBytes(_ bindings: [String: Int]) -> Int {
    arenaBytes(layout: layoutIndex(for: bindings), bindings)
  }

  /// Arena bytes without reuse: every arena value in its own 64-byte aligned slot.
  public func noReuseBytes(_ bindings: [String: Int]) -> Int {
    buffers.reduce(0) {
      $0 + $1.values.count * MemoryPlan.aligned($1.size.evaluate(bindings))
    }
  }

  /// The most bytes live at one step (each outermost buffer 64-byte aligned): no plan that keeps
  /// these buffers apart can use less.
  public func lowerBound(_ bindings: [String: Int]) -> Int {
    let steps = (buffers.map(\.lastStep).max() ?? -1) + 1
    var live = [Int](repeating: 0, count: max(steps, 0))
    for buffer in buffers where buffer.enclosing == nil {
      let bytes = MemoryPlan.aligned(buffer.size.evaluate(bindings))
      for step in buffer.firstStep...buffer.lastStep { live[step] += bytes }
    }
    return live.max() ?? 0
  }
}
