import LaminaIR
import LaminaSupport

/// Plans the arena of every entry point: liveness over the schedule, in-place elementwise ops,
/// updates written straight into their parameter or state, and offsets that reuse the space of
/// dead values (`MemoryPlanner`). The plans are stored on the graph for the C backend.
public struct MemoryPlanning: GraphPass {
  public static let name = "memory-plan"
  public static let summary =
    "Places every intermediate in one arena, reusing the space of dead values, for any batch size"

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    var plans: [String: MemoryPlan] = [:]
    for entry in EntryPoint.all(in: graph) {
      plans[entry.name] = MemoryPlanner.plan(entry, in: graph)
    }
    graph.memoryPlans = plans
  }
}

/// Builds the `MemoryPlan` of one entry point.
///
/// 1. Liveness: a value lives from the step that defines it to the last step that reads it or an
///    alias of it (`reshape` results share their operand's storage); values copied out after the last
///    kernel live to the end.
/// 2. Training-step updates whose producer is the last reader of the parameter or state are
///    computed straight into it (no arena space, no final copy).
/// 3. Concats in place: an operand that is one contiguous range of its concat's result is computed
///    straight into that range of the concat's buffer (its buffer is enclosed in the concat's), and
///    the concat lives as long as every operand placed in it (`placeConcatOperands`).
/// 4. In place: a result takes the buffer of an operand that dies at its node when `InPlace` allows,
///    never that of a concat operand placed in its concat (the concat still holds it).
/// 5. Placement: greedy by size over the outermost buffers. Offsets are polynomials in the symbols (sums of
///    buffer extents); a buffer may sit below or above a buffer it overlaps in time only when the
///    gap between them is provably non-negative for every symbol value the layout is valid for
///    (`minimumSymbolValue` and up). The first layout is valid for all values; further layouts,
///    tuned for larger symbol values (big batches, where activations outweigh gradients of
///    parameters and the best order of buffers differs), are kept when they save space there.
public enum MemoryPlanner {
  /// Each layout is valid when every symbol is at least its threshold, and tuned for that value.
  public static let layoutThresholds = [1, 8, 64, 512]
  /// A layout past the first is kept only if it saves at least this fraction at its threshold.
  static let minimumSaving = 0.03

  public static func plan(_ entry: EntryPoint, in graph: Graph) -> MemoryPlan {
    let schedule = entry.schedule(in: graph)
    let storage = entry.storage(in: graph, schedule: schedule)
    let end = schedule.count
    func root(_ value: ValueID) -> ValueID {
      var value = value
      while case .alias(let operand)? = storage[value] { value = operand }
      return value
    }

    // 1. Liveness, by storage root.
    var defined: [ValueID: Int] = [:]
    var lastRead: [ValueID: Int] = [:]
    for (step, nodeIndex) in schedule.enumerated() {
      let node = graph.nodes[nodeIndex]
      for result in node.results { defined[result] = step }
      for operand in node.operands {
        lastRead[root(operand), default: -1] = max(lastRead[root(operand), default: -1], step)
      }
      // A loop's body values live for its whole step: once, reused by every iteration.
      for member in node.hasRegion ? EntryPoint.regionMembers(of: node) : [] {
        for result in member.results { defined[result] = step }
      }
    }
    // Exposed values not computed in the caller's buffer are copied there after the last kernel.
    var readAtEnd = Set<ValueID>()
    for (index, value) in entry.outputs.enumerated() where storage[value] != .output(index) {
      readAtEnd.insert(root(value))
    }
    for (index, value) in entry.losses.enumerated() where storage[value] != .loss(index) {
      readAtEnd.insert(root(value))
    }

    // 2. Updates computed straight into their target.
    var directUpdates: [ValueID: ValueID] = [:]
    let updateValues = entry.updates.map(\.value)
    for update in entry.updates {
      let value = update.value
      let target = update.target
      guard storage[value] == .arena, updateValues.filter({ $0 == value }).count == 1,
        let step = defined[value], !readAtEnd.contains(target), !updateValues.contains(target)
      else { continue }
      switch storage[target] {
      case .param?, .state?: break
      default: continue
      }
      let targetRead = lastRead[target] ?? -1
      if targetRead > step { continue }
      if targetRead == step {
        // The producer reads the old value: legal only element by element, in place.
        let node = graph.nodes[schedule[step]]
        guard let resultPosition = node.results.firstIndex(of: value) else { continue }
        let readers = node.operands.filter { root($0) == target }
        guard Set(readers).count == 1,
          InPlace.candidates(node, in: graph).contains(where: {
            $0.result == resultPosition && node.operands[$0.operand] == readers[0]
          })
        else { continue }
      }
      directUpdates[value] = target
    }
    for value in updateValues where directUpdates[value] == nil { readAtEnd.insert(root(value)) }
    for value in readAtEnd { lastRead[value] = end }

    // 3. Concat operands computed in place in the concat's buffer; the concat then lives as long
    //    as every operand placed in it (an operand read later is still there).
    let concatPlacements = placeConcatOperands(
      schedule: schedule, storage: storage, directUpdates: directUpdates, in: graph, root: root)
    for value in concatPlacements.keys {
      let last = lastRead[value] ?? defined[value]!
      var current = value
      while let placement = concatPlacements[current] {
        lastRead[placement.concat] = max(lastRead[placement.concat] ?? -1, last)
        current = placement.concat
      }
    }
    // Whether `value` is `container` or lies inside it, through placements.
    func isInside(_ value: ValueID, _ container: ValueID) -> Bool {
      var current = value
      while current != container {
        guard let placement = concatPlacements[current] else { return false }
        current = placement.concat
      }
      return true
    }

    func lifetime(_ value: ValueID) -> ClosedRange<Int> {
      let first = defined[value]!
      return first...max(first, lastRead[value] ?? first)
    }

    // 4. Buffers, with results in place of dying operands.
    var buffers: [MemoryPlan.Buffer] = []
    var bufferOf: [ValueID: Int] = [:]
    var lifetimes: [ValueID: ClosedRange<Int>] = [:]
    var inPlace: [ValueID: ValueID] = [:]
    for (step, nodeIndex) in schedule.enumerated() {
      let node = graph.nodes[nodeIndex]
      // Body values of a loop: a buffer each, never in place (they all live for the loop's step).
      for member in node.hasRegion ? EntryPoint.regionMembers(of: node) : [] {
        for result in member.results where storage[result] == .arena {
          lifetimes[result] = step...step
          bufferOf[result] = buffers.count
          buffers.append(
            MemoryPlan.Buffer(
              values: [result], size: SymbolicSize(bytesOf: graph.type(of: result)),
              firstStep: step, lastStep: step))
        }
      }
      let candidates = InPlace.candidates(node, in: graph)
      var taken = Set<Int>()
      for (position, result) in node.results.enumerated()
      where storage[result] == .arena && directUpdates[result] == nil {
        let life = lifetime(result)
        lifetimes[result] = life
        var chosen: (buffer: Int, operand: ValueID)?
        for candidate in candidates where candidate.result == position {
          let operand = node.operands[candidate.operand]
          let operandRoot = root(operand)
          // Never over a concat operand placed in its concat's buffer (the concat still holds
          // it), nor over a concat holding operands while the node reads one of them.
          guard let buffer = bufferOf[operandRoot], !taken.contains(buffer),
            buffers[buffer].lastStep == step,
            node.operands.allSatisfy({ root($0) != operandRoot || $0 == operand }),
            concatPlacements[operandRoot] == nil,
            node.operands.allSatisfy({
              root($0) == operandRoot || !isInside(root($0), operandRoot)
            })
          else { continue }
          chosen = (buffer, operand)
          break
        }
        if let chosen {
          buffers[chosen.buffer].values.append(result)
          buffers[chosen.buffer].lastStep = life.upperBound
          bufferOf[result] = chosen.buffer
          inPlace[result] = chosen.operand
          taken.insert(chosen.buffer)
        } else {
          let size = SymbolicSize(bytesOf: graph.type(of: result))
          bufferOf[result] = buffers.count
          taken.insert(buffers.count)
          buffers.append(
            MemoryPlan.Buffer(
              values: [result], size: size,
              firstStep: life.lowerBound, lastStep: life.upperBound))
        }
      }
    }

    // The buffer of each placed operand lies in its concat's; every enclosing buffer's span
    // covers the spans inside it.
    for (value, placement) in concatPlacements {
      buffers[bufferOf[value]!].enclosing = MemoryPlan.Enclosure(
        buffer: bufferOf[placement.concat]!, offset: placement.offset)
    }
    for index in buffers.indices {
      var outer = buffers[index].enclosing?.buffer
      while let enclosing = outer {
        buffers[enclosing].firstStep = min(buffers[enclosing].firstStep, buffers[index].firstStep)
        buffers[enclosing].lastStep = max(buffers[enclosing].lastStep, buffers[index].lastStep)
        outer = buffers[enclosing].enclosing?.buffer
      }
    }

    // 5. Layouts: for each threshold, several greedy orders, keeping the smallest at the threshold.
    //    Only outermost buffers are placed; an enclosed buffer's offset entry is its outermost's.
    var plan = MemoryPlan(
      entryPoint: entry.name, schedule: schedule, buffers: buffers, layouts: [],
      bufferOf: bufferOf, lifetimes: lifetimes, inPlace: inPlace, directUpdates: directUpdates,
      concatPlacements: concatPlacements)
    let outermost = buffers.indices.filter { buffers[$0].enclosing == nil }
    let outermostBuffers = outermost.map { buffers[$0] }
    let outermostOf = buffers.indices.map { plan.outermost($0).buffer }
    func offsetsOfEveryBuffer(_ placed: [SymbolicSize]) -> [SymbolicSize] {
      var offsets = [SymbolicSize](repeating: .zero, count: buffers.count)
      for (position, index) in outermost.enumerated() { offsets[index] = placed[position] }
      for index in buffers.indices where buffers[index].enclosing != nil {
        offsets[index] = offsets[outermostOf[index]]
      }
      return offsets
    }
    let symbolic = buffers.contains { $0.size.terms.keys.contains { !$0.isEmpty } }
    for threshold in symbolic ? layoutThresholds : [1] {
      let bindings = bindingsAll(plan, threshold)
      var best: (layout: MemoryPlan.Layout, bytes: Int)?
      for strategy in Strategy.all(for: threshold) {
        plan.layouts.append(
          MemoryPlan.Layout(
            minimumSymbolValue: threshold,
            offsets: offsetsOfEveryBuffer(
              place(outermostBuffers, strategy: strategy, threshold: threshold))))
        let bytes = plan.arenaBytes(layout: plan.layouts.count - 1, bindings)
        let layout = plan.layouts.removeLast()
        if best == nil || bytes < best!.bytes { best = (layout, bytes) }
      }
      if plan.layouts.isEmpty
        || Double(best!.bytes) < (1 - minimumSaving) * Double(plan.arenaBytes(bindings))
      {
        plan.layouts.append(best!.layout)
      }
    }
    return plan
  }

  /// Concat operands whose producers can write them straight into their range of the concat's
  /// buffer (by storage root), so that the concat copies nothing for them.
  ///
  /// A concat qualifies when its result lives in the arena and each operand is one contiguous range
  /// of it (`Concatenation.operandOffsets`: every dimension before the axis is the constant 1; a
  /// symbolic batch before the axis interleaves the operands' rows). An operand qualifies when its
  /// storage is the arena, a kernel of the entry point's own schedule computes it (not a loop, an
  /// input, a parameter, state, a caller's buffer or an update written straight into its
  /// parameter), and it is not placed already: in an earlier concat, or earlier in this one (the
  /// same value twice is copied the second time). A concat placed in a later concat carries its
  /// operands along: their offsets chain (DenseNet's cumulative concats).
  static func placeConcatOperands(
    schedule: [Int], storage: [ValueID: StorageClass], directUpdates: [ValueID: ValueID],
    in graph: Graph, root: (ValueID) -> ValueID
  ) -> [ValueID: MemoryPlan.ConcatPlacement] {
    var computed = Set<ValueID>()
    for nodeIndex in schedule where !graph.nodes[nodeIndex].hasRegion {
      computed.formUnion(graph.nodes[nodeIndex].results)
    }
    var placements: [ValueID: MemoryPlan.ConcatPlacement] = [:]
    for nodeIndex in schedule {
      let node = graph.nodes[nodeIndex]
      guard let concatenation = node.definition?.concatenation, !node.hasRegion,
        node.results.count == 1, storage[node.result] == .arena,
        directUpdates[node.result] == nil,
        let offsets = concatenation.operandOffsets(of: node, in: graph)
      else { continue }
      for (operand, offset) in zip(node.operands, offsets) {
        let operandRoot = root(operand)
        guard operandRoot != node.result, storage[operandRoot] == .arena,
          computed.contains(operandRoot), directUpdates[operandRoot] == nil,
          placements[operandRoot] == nil,
          SymbolicSize(bytesOf: graph.type(of: operandRoot))
            == SymbolicSize(bytesOf: graph.type(of: operand))
        else { continue }
        placements[operandRoot] = MemoryPlan.ConcatPlacement(concat: node.result, offset: offset)
      }
    }
    return placements
  }

  /// Every symbol of the plan's sizes bound to `value`.
  static func bindingsAll(_ plan: MemoryPlan, _ value: Int) -> [String: Int] {
    var bindings: [String: Int] = [:]
    for buffer in plan.buffers {
      for symbol in buffer.size.terms.keys.joined() { bindings[symbol] = value }
    }
    return bindings
  }

  /// Bytes to reserve for a buffer of `size` so that rounding its start up to 64 at run time never
  /// reaches the next buffer. Sound choices: a size that is always a multiple of 64 (a constant or
  /// a coefficient rounded up to 64: every offset stays a multiple of 64), or the size plus 64 bytes
  /// of slack; the smaller at the layout's threshold.
  static func extent(of size: SymbolicSize, threshold: Int) -> SymbolicSize {
    guard let (monomial, coefficient) = size.terms.first.map({ ($0.key, $0.value) }) else {
      return .zero
    }
    let rounded = SymbolicSize(terms: [monomial: MemoryPlan.aligned(coefficient)])
    if monomial.isEmpty || coefficient % 64 == 0 { return rounded }
    let slack = size + SymbolicSize(64)
    let bindings = Dictionary(monomial.map { ($0, threshold) }, uniquingKeysWith: { a, _ in a })
    return rounded.evaluate(bindings) <= slack.evaluate(bindings) ? rounded : slack
  }

  /// An order to place buffers in (by size at a symbol value, longest-lived first or not) and the
  /// symbol values whose sizes decide between candidate offsets.
  struct Strategy {
    var orderPoint: Int
    var objectivePoints: [Int]
    var byLifetime: Bool

    static func all(for threshold: Int) -> [Strategy] {
      [false, true].flatMap { byLifetime in
        [threshold].map { point in
          Strategy(
            orderPoint: point, objectivePoints: [threshold, threshold * 8], byLifetime: byLifetime)
        }
      }
    }
  }

  /// Greedy placement: each buffer, largest first, at the candidate offset (zero, or the end of a
  /// buffer it overlaps in time) that keeps clear of every placed buffer it overlaps in time and
  /// ends lowest.
  static func place(_ buffers: [MemoryPlan.Buffer], strategy: Strategy, threshold: Int)
    -> [SymbolicSize]
  {
    // Polynomials as coefficient vectors over the monomials in use.
    let extentSizes = buffers.map { extent(of: $0.size, threshold: threshold) }
    var monomials: [[String]] = [[]]
    for extent in extentSizes {
      for monomial in extent.terms.keys where !monomials.contains(monomial) {
        monomials.append(monomial)
      }
    }
    func vector(_ size: SymbolicSize) -> [Int] { monomials.map { size.terms[$0] ?? 0 } }
    func evaluate(_ vector: [Int], _ point: Int) -> Int {
      zip(vector, monomials).reduce(0) { sum, term in
        var value = term.0
        for _ in term.1 { value *= point }
        return sum + value
      }
    }
    // a ≥ b for every symbol value ≥ threshold when the difference has no negative coefficient
    // but the constant's (it then grows with every symbol) and is non-negative at the threshold.
    func add(_ a: [Int], _ b: [Int]) -> [Int] { zip(a, b).map(+) }

    let extents = extentSizes.map(vector)
    let orderKeys = buffers.indices.map { index in
      (
        strategy.byLifetime ? buffers[index].lastStep - buffers[index].firstStep : 0,
        evaluate(extents[index], strategy.orderPoint)
      )
    }
    let order = buffers.indices.sorted { a, b in
      orderKeys[a] != orderKeys[b] ? orderKeys[a] > orderKeys[b] : a < b
    }
    // Coefficient vectors stored flat (`width` monomials per buffer) so that the inner loops
    // allocate little; values at the threshold and at the objective points are cached (evaluation
    // is linear, so an end's value is the offset's plus the extent's).
    let width = monomials.count
    let extentsAtThreshold = extents.map { evaluate($0, threshold) }
    let extentsAtObjective = extents.map { extent in
      (evaluate(extent, strategy.objectivePoints[0]), evaluate(extent, strategy.objectivePoints[1]))
    }
    var offsetCoefficients = [Int](repeating: 0, count: buffers.count * width)
    var offsetsAtThreshold = [Int](repeating: 0, count: buffers.count)
    var offsetsAtObjective = [(Int, Int)](repeating: (0, 0), count: buffers.count)
    var offsets = [[Int]?](repeating: nil, count: buffers.count)
    // Whether a + aExtra ≥ b + bExtra + bMore for every symbol value ≥ threshold.
    func atLeast(
      _ a: [Int], _ aExtra: [Int], _ aAtThreshold: Int, _ b: [Int], _ bExtra: [Int],
      _ bMore: [Int], _ bAtThreshold: Int
    ) -> Bool {
      guard aAtThreshold >= bAtThreshold else { return false }
      var k = 1
      while k < width {
        if a[k] + aExtra[k] < b[k] + bExtra[k] + bMore[k] { return false }
        k += 1
      }
      return true
    }
    let zero = [Int](repeating: 0, count: width)
    let firstSteps = buffers.map(\.firstStep)
    let lastSteps = buffers.map(\.lastStep)
    var placedIndices: [Int] = []
    for index in order {
      // Buffers it overlaps in time, lowest first: low candidates then fail fast.
      var conflicts: [Int] = []
      for other in placedIndices
      where firstSteps[other] <= lastSteps[index] && firstSteps[index] <= lastSteps[other] {
        conflicts.append(other)
      }
      conflicts.sort { offsetsAtThreshold[$0] < offsetsAtThreshold[$1] }
      let otherOffsets = conflicts.map {
        Array(offsetCoefficients[($0 * width)..<($0 * width + width)])
      }
      // Candidates: zero (-1), the end of each buffer it overlaps (its position in `conflicts`),
      // and above all of them (always valid), tried from the lowest end until one fits.
      var top = zero
      for (position, other) in conflicts.enumerated() {
        for k in 0..<width { top[k] = max(top[k], otherOffsets[position][k] + extents[other][k]) }
      }
      let topAtObjective = (
        evaluate(top, strategy.objectivePoints[0]), evaluate(top, strategy.objectivePoints[1])
      )
      var scored: [(Int, Int, Int)] = [(0, 0, -1)]
      for (position, other) in conflicts.enumerated() {
        scored.append(
          (
            offsetsAtObjective[other].0 + extentsAtObjective[other].0,
            offsetsAtObjective[other].1 + extentsAtObjective[other].1, position
          ))
      }
      scored.sort { ($0.0, $0.1, $0.2) < ($1.0, $1.1, $1.2) }
      var chosen = top
      var chosenAtObjective = topAtObjective
      for (atFirst, atSecond, source) in scored {
        if (atFirst, atSecond) > topAtObjective { break }
        // The candidate as base + extra, so that trying it allocates nothing.
        let base = source < 0 ? zero : otherOffsets[source]
        let extra = source < 0 ? zero : extents[conflicts[source]]
        let candidateAtThreshold =
          source < 0
          ? 0
          : offsetsAtThreshold[conflicts[source]] + extentsAtThreshold[conflicts[source]]
        let candidateEndAtThreshold = candidateAtThreshold + extentsAtThreshold[index]
        var fits = true
        var position = 0
        while position < conflicts.count {
          let other = conflicts[position]
          // Above the other buffer, or below it.
          if !atLeast(
            base, extra, candidateAtThreshold, otherOffsets[position], extents[other], zero,
            offsetsAtThreshold[other] + extentsAtThreshold[other])
            && !atLeast(
              otherOffsets[position], zero, offsetsAtThreshold[other], base, extra,
              extents[index], candidateEndAtThreshold)
          {
            fits = false
            break
          }
          position += 1
        }
        if fits {
          chosen = add(base, extra)
          chosenAtObjective = (atFirst, atSecond)
          break
        }
      }
      offsets[index] = chosen
      placedIndices.append(index)
      offsetsAtThreshold[index] = evaluate(chosen, threshold)
      offsetsAtObjective[index] = chosenAtObjective
      for k in 0..<width { offsetCoefficients[index * width + k] = chosen[k] }
    }
    return offsets.map { offset in
      SymbolicSize(terms: Dictionary(uniqueKeysWithValues: zip(monomials, offset!)))
    }
  }
}
