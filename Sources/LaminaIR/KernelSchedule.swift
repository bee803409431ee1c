import LaminaSupport

/// How one fused kernel runs: the decisions taken from its group before any C is written.
///
/// The C backend only turns a schedule into C; `lamina dump FILE --after fusion` prints it (as `//`
/// comments after the IR, so the dump still reads back). The decisions:
/// - the form: one loop over the domain, a loop that also sums columns, a producer's blocks with an
///   epilogue, or rows in stages;
/// - the thread split: which extent the thread pool divides, the work that sets the task count, the
///   alignment of each task's chunk, and whether each task has its own slot of partial sums;
/// - for rows: the stages (a loop over the row and the row statistics after it), the values kept
///   in scratch rows for a later stage, the values recomputed instead, the pipelining depth and the
///   scratch rows it rotates, and where the scratch lives;
/// - which loops vectorize (`omp simd`; the vector width is the C compiler's for the target).
public struct KernelSchedule: Sendable, Hashable {
  /// The shape of the kernel's loops.
  public enum Form: Sendable, Hashable {
    /// One loop over the domain. `flat`: every operand is read at the loop's own index or is a
    /// scalar, so the loop runs over the elements with one index; otherwise one loop per axis.
    case loop(flat: Bool)
    /// Rows × columns of the domain, summing some values over the rows (the gradient of a
    /// broadcast bias) into each task's partial row. `singleColumn`: the domain has one column and
    /// the sums are whole-array sums.
    case loopWithColumnSums(singleColumn: Bool)
    /// The producer writes its result block by block and runs the other members on each block.
    /// `singleColumn`: the epilogue walks one column; `fullWidth`: blocks as wide as the product
    /// (at most `staticWidthEpilogueColumns`) get a loop of that static width.
    case epilogue(singleColumn: Bool, fullWidth: Int?)
    /// Row by row (the last axis), in `stages`.
    case rows
  }

  /// How the thread pool shares the kernel.
  public enum ThreadSplit: Sendable, Hashable {
    /// Tasks take chunks of `extent` (a product of dimensions; rows, or elements when flat); the
    /// task count grows with `work` elements. Chunks are rounded up to `chunkAlignment`.
    /// `taskSlots`: each task writes its own slot of partial results, added in task order.
    case chunks(extent: [Dim], work: [Dim], chunkAlignment: Int, taskSlots: Bool)
    /// The producer's kernel splits its own work (the GEMM's blocks).
    case producer
  }

  /// One loop over a row and the row statistics computed after it.
  public struct Stage: Sendable, Hashable {
    /// Positions in the fused node's body of the members the loop computes (reductions included).
    public var members: [Int]
    /// Positions of the members computed once per row after the loop (`var + eps`, `sqrt`).
    public var rowStatistics: [Int]
    /// Whether the loop vectorizes: every reduction in it has a plain `omp simd` reduction.
    public var vectorizes: Bool
    /// Row statistics of earlier stages this loop divides by: it multiplies by one reciprocal per
    /// row instead of dividing every element (layer norm's standard deviation).
    public var reciprocals: [ValueID] = []
  }

  /// A row statistic a later stage reads while the pipeline has moved on to other rows: it waits
  /// in one slot per row in flight.
  public struct HeldStatistic: Sendable, Hashable {
    public var value: ValueID
    /// The stage that computes it.
    public var stage: Int
    /// The later stages that read it (directly or through a recomputed member).
    public var readBy: [Int]
  }

  /// Where scratch rows live.
  public enum ScratchPlacement: String, Sendable, Hashable {
    case none, stack, heap
  }

  public var form: Form
  public var threads: ThreadSplit
  /// Rows: the stages in order.
  public var stages: [Stage] = []
  /// Rows: full-row values a later stage reads, kept in scratch rows (results stay in their rows).
  public var scratch: [ValueID] = []
  /// Rows: values a later stage computes again (one cheap op away) instead of reading them back.
  public var recomputed: [ValueID] = []
  /// Rows: how many rows are in flight at once (1: each row runs its stages one after another).
  public var pipelineDepth = 1
  /// Rows, pipelined: the statistics held per row in flight, in member order.
  public var heldStatistics: [HeldStatistic] = []
  /// Rows: the scratch rows allocated (one per row in flight).
  public var scratchRows = 1
  public var scratchPlacement = ScratchPlacement.none
  /// Rows: the scratch rows share one element type (else they are rows of 8-byte cells).
  public var uniformScratch = true
  /// Column sums: whether the tasks' partial rows fit a buffer on the stack.
  public var partialsOnStack = false
  /// Epilogue: a max pool the producer writes (its result never stored whole), the members
  /// running on the pooled values.
  public var pooling: Pooling?
  /// Epilogue: the producer hands it its NCHW result as planes, `[N·C, H·W]`, not as rows of the
  /// last axis (`EpilogueProducer.viewsPlanes`, when every operand the members read is constant
  /// over H and W or has the result's H and W: then both views index it alike).
  public var epiloguePlanes = false
  /// Loop over the domain, not flat: the loops of the nest, outermost first, each over a group of
  /// adjacent domain axes run as one (every operand reads all of a group's axes or broadcasts over
  /// all of them, so the group is one contiguous run or one repeated value); axes of extent 1 are
  /// left out. The threads split the rows (every loop but the innermost). Empty: one loop per
  /// axis, split along the first (a kernel reading windows of an operand).
  public var loopAxes: [[Int]] = []

  /// A windowed maximum over the last two axes of an epilogue producer's NCHW result, computed by
  /// the producer's kernel before the epilogue (`EpilogueProducer.poolsWindowMaximum`).
  public struct Pooling: Sendable, Hashable {
    /// The pool's result: the fused kernel's domain.
    public var result: ValueID
    /// Window [height, width] and stride [height, width]; no padding or dilation.
    public var kernel: [Int]
    public var stride: [Int]
  }

  /// Products up to this many columns get an epilogue specialized to blocks of the full width (the
  /// GEMM hands the epilogue blocks of at most 128 columns).
  public static let staticWidthEpilogueColumns = 128

  /// The largest scratch (bytes) a fused kernel keeps on the stack rather than the heap.
  public static let stackScratchBytes = 64 * 1024

  /// Whether an epilogue group's producer hands its members planes (`epiloguePlanes`): it can
  /// (`EpilogueProducer.viewsPlanes`), its result is NCHW with rows longer than one element, and
  /// every operand the members read from outside the group is constant over H and W or has the
  /// result's H and W, so that `[N·C, H·W]` and `[N·C·H, W]` read it alike.
  static func epilogueViewsPlanes(
    _ node: Node, producer: Node, pooled: ValueID?, in graph: Graph
  ) -> Bool {
    guard producer.definition?.epilogue?.viewsPlanes == true else { return false }
    let domain = graph.type(of: pooled ?? producer.result).shape
    guard domain.count == 4, domain[3] != Dim(1) else { return false }
    let inside = Set(node.body.map(\.result))
    let read = node.body.filter { $0.result != producer.result && $0.result != pooled }
      .flatMap(\.operands).filter { !inside.contains($0) }
    return read.allSatisfy { operand in
      let shape = graph.type(of: operand).shape
      guard shape.count <= 4 else { return false }
      let padded = Array(repeating: Dim(1), count: 4 - shape.count) + shape
      let spatial = Array(padded.suffix(2))
      return spatial == [Dim(1), Dim(1)] || spatial == Array(domain.suffix(2))
    }
  }

  public init(form: Form, threads: ThreadSplit) {
    self.form = form
    self.threads = threads
  }
}

extension KernelSchedule {
  /// The schedule of a `fused` node; nil for other nodes or a group no kernel form fits.
  public init?(_ node: Node, in graph: Graph) {
    guard let kind = node.fusedKind, !node.body.isEmpty else { return nil }
    switch kind {
    case .elementwise, .update:
      if let schedule = Self.columnSums(node, in: graph) {
        self = schedule
        return
      }
      let domain = graph.type(of: node.body[0].result).shape
      let isFlat = node.operands.allSatisfy { operand in
        let shape = graph.type(of: operand).shape
        return shape == domain || shape.product == Dim(1)
      }
      let readsWindows = node.body.contains { $0.definition?.window != nil }
      let loops =
        isFlat || readsWindows
        ? []
        : Self.loopAxes(domain: domain, operands: node.operands.map { graph.type(of: $0).shape })
      if loops.isEmpty {
        self.init(
          form: .loop(flat: isFlat),
          threads: .chunks(
            extent: isFlat ? domain : [domain.first ?? Dim(1)], work: domain,
            chunkAlignment: isFlat ? 16 : 1, taskSlots: false))
      } else {
        // The threads split the rows (every loop but the innermost), or the one loop's elements.
        let rows = loops.count == 1 ? loops[0] : Array(loops.dropLast().joined())
        self.init(
          form: .loop(flat: false),
          threads: .chunks(
            extent: rows.map { domain[$0] }, work: domain,
            chunkAlignment: loops.count == 1 ? 16 : 1, taskSlots: false))
        self.loopAxes = loops
      }
    case .epilogue:
      guard let producer = node.epilogueProducer else { return nil }
      var pooling: Pooling?
      if let pool = node.body.first(where: { $0.definition?.windowReduction == .maximum }) {
        let input = graph.type(of: pool.operands[0]).shape
        guard input.count == 4, let height = input[2].staticValue,
          let width = input[3].staticValue,
          let windows = try? PoolingWindows(
            op: pool.op, attributes: pool.attributes, inputHeight: height, inputWidth: width)
        else { return nil }
        pooling = Pooling(
          result: pool.result, kernel: [windows.height.kernel, windows.width.kernel],
          stride: [windows.height.stride, windows.width.stride])
      }
      // The result the epilogue sees (the producer's, or the pool's) as a matrix: the last axis is
      // the columns, the others the rows; or, viewed as planes, the last two axes are the columns.
      let domain = graph.type(of: pooling?.result ?? producer.result).shape
      guard var columns = domain.last else { return nil }
      let planes = Self.epilogueViewsPlanes(
        node, producer: producer, pooled: pooling?.result, in: graph)
      if planes { columns = Array(domain.suffix(2)).product }
      let fullWidth = columns.staticValue.flatMap {
        $0 <= Self.staticWidthEpilogueColumns ? $0 : nil
      }
      self.init(
        form: .epilogue(singleColumn: columns.staticValue == 1, fullWidth: fullWidth),
        threads: .producer)
      self.pooling = pooling
      self.epiloguePlanes = planes
    case .reduction:
      guard let schedule = Self.rows(node, in: graph) else { return nil }
      self = schedule
    }
  }

  /// The loop nest of a broadcasting loop (`loopAxes`): the domain's axes without those of static
  /// extent 1, adjacent ones grouped while every operand treats them alike (present with the
  /// domain's extent, or broadcast). A batch-1 NCHW batch norm over [1, C, H, W] with [C, 1, 1]
  /// statistics runs C rows of H·W contiguous elements, split over the threads by rows, instead of
  /// one loop over the single image (one thread) with rows of W.
  public static func loopAxes(domain: [Dim], operands: [[Dim]]) -> [[Int]] {
    let rank = domain.count
    // Whether operand `shape` reads axis `axis` of the domain (not broadcast over it).
    func reads(_ shape: [Dim], _ axis: Int) -> Bool {
      let operandAxis = axis - (rank - shape.count)
      return operandAxis >= 0 && shape[operandAxis] != Dim(1)
    }
    var groups: [[Int]] = []
    for axis in 0..<rank where domain[axis] != Dim(1) {
      if let last = groups.last?.last, last == axis - 1,
        operands.allSatisfy({ reads($0, last) == reads($0, axis) })
      {
        groups[groups.count - 1].append(axis)
      } else {
        groups.append([axis])
      }
    }
    return groups
  }

  /// An elementwise loop that also sums values over the leading axes.
  static func columnSums(_ node: Node, in graph: Graph) -> KernelSchedule? {
    let sums = node.body.filter { $0.definition?.reduction != nil }
    guard let domainValue = sums.first?.operands.first else { return nil }
    let domain = graph.type(of: domainValue).shape
    guard let columns = domain.last else { return nil }
    var schedule = KernelSchedule(
      form: .loopWithColumnSums(singleColumn: columns.staticValue == 1),
      threads: .chunks(
        extent: Array(domain.dropLast()), work: domain, chunkAlignment: 1, taskSlots: true))
    // Partial sums of a few tasks over a short row fit on the stack; others are allocated.
    schedule.partialsOnStack =
      columns.staticValue.map { $0 * sums.count <= stackScratchBytes / 8 } ?? false
    return schedule
  }

  /// Row by row: stages, scratch rows, recomputation and pipelining.
  static func rows(_ node: Node, in graph: Graph) -> KernelSchedule? {
    let body = node.body
    func reduction(_ position: Int) -> ReductionDescription? {
      body[position].definition?.reduction
    }
    guard let first = body.indices.first(where: { reduction($0) != nil }) else { return nil }
    let domain = graph.type(of: body[first].operands[0]).shape
    guard let columns = domain.last else { return nil }
    func isFull(_ value: ValueID) -> Bool { graph.type(of: value).shape == domain }
    let operands = Set(node.operands)
    let results = Set(node.results)

    // Which loop (segment) computes each full member; reductions finish at the end of theirs.
    enum Step {
      case loop([Int])
      case rowStatistic(Int)
    }
    var steps: [Step] = []
    var open: [Int] = []
    var producedInOpenLoop = Set<ValueID>()
    func closeLoop() {
      if !open.isEmpty { steps.append(.loop(open)) }
      open = []
      producedInOpenLoop = []
    }
    for (position, member) in body.enumerated() {
      // A member reading a statistic the open loop is still accumulating waits for the next loop.
      let needsClosedLoop = member.operands.contains { operand in
        producedInOpenLoop.contains(operand) && !isFull(operand)
      }
      if needsClosedLoop { closeLoop() }
      if isFull(member.result) || reduction(position) != nil {
        open.append(position)
        producedInOpenLoop.insert(member.result)
      } else {
        // A row statistic from statistics (`var + eps`, `sqrt`): once per row, between loops.
        if member.operands.contains(where: producedInOpenLoop.contains) { closeLoop() }
        steps.append(.rowStatistic(position))
      }
    }
    closeLoop()

    // Full values a later loop reads again: kept in the output row when they are results, else in
    // a scratch row.
    var loopOf: [ValueID: Int] = [:]
    for (index, step) in steps.enumerated() {
      if case .loop(let members) = step {
        for position in members where isFull(body[position].result) {
          loopOf[body[position].result] = index
        }
      }
    }
    var scratch: [ValueID] = []
    for (index, step) in steps.enumerated() {
      guard case .loop(let members) = step else { continue }
      for position in members {
        for operand in body[position].operands where isFull(operand) {
          if let defined = loopOf[operand], defined < index, !results.contains(operand),
            !scratch.contains(operand)
          {
            scratch.append(operand)
          }
        }
      }
    }
    // A value that is one cheap op away from values the later loop has anyway (layer norm's
    // `centered = h - mean` when `h` is kept) is computed again there rather than stored and
    // loaded: a store and a scratch row saved for one add.
    let definitions = Dictionary(
      body.map { ($0.result, $0) }, uniquingKeysWith: { first, _ in first })
    var recomputed: [ValueID] = []
    var neededByRecomputed = Set<ValueID>()
    for value in scratch {
      guard let definition = definitions[value],
        definition.definition?.algebra.isCheapToRecompute == true,
        !neededByRecomputed.contains(value)
      else { continue }
      let fullMemberOperands = definition.operands.filter {
        isFull($0) && !operands.contains($0)
      }
      let available = fullMemberOperands.allSatisfy { operand in
        results.contains(operand) || (scratch.contains(operand) && !recomputed.contains(operand))
      }
      guard available else { continue }
      recomputed.append(value)
      neededByRecomputed.formUnion(fullMemberOperands)
    }
    scratch.removeAll { recomputed.contains($0) }

    // The loops with the row statistics computed after each: stages.
    var stages: [Stage] = []
    func vectorizes(_ members: [Int]) -> Bool {
      members.allSatisfy { position in reduction(position).map { $0.simdOperator != nil } ?? true }
    }
    for step in steps {
      switch step {
      case .loop(let members):
        stages.append(Stage(members: members, rowStatistics: [], vectorizes: vectorizes(members)))
      case .rowStatistic(let position):
        if stages.isEmpty {
          stages.append(Stage(members: [], rowStatistics: [position], vectorizes: true))
        } else {
          stages[stages.count - 1].rowStatistics.append(position)
        }
      }
    }
    // Software pipelining: with n loops over a row, each pass of the row loop runs loop k for row
    // r - k, all in one loop over the columns (layer norm: row r's gelu and sum, row r-1's
    // variance, row r-2's normalized output). The arithmetic of one row overlaps the other rows'
    // stores and short dependency chains (a sum's adds) instead of waiting for them, and n scratch
    // rows rotate. Only when every loop vectorizes (max's NaN-propagating compare does not) and
    // the rows fit the stack.
    let depth = stages.count
    let pipelined =
      depth >= 2 && !stages[0].members.isEmpty && stages.allSatisfy(\.vectorizes)
      && (columns.staticValue.map { depth * scratch.count * $0 * 8 <= stackScratchBytes } ?? false)

    // Which stage computes each row statistic, and which statistics each stage reads (including
    // through members it computes again).
    var producedBy: [ValueID: Int] = [:]
    for (index, stage) in stages.enumerated() {
      for position in stage.members where reduction(position) != nil {
        producedBy[body[position].result] = index
      }
      for position in stage.rowStatistics { producedBy[body[position].result] = index }
    }
    let recomputedSet = Set(recomputed)
    func statisticsRead(by stage: Int) -> Set<ValueID> {
      var read = Set<ValueID>()
      var pending = (stages[stage].members + stages[stage].rowStatistics).flatMap {
        body[$0].operands
      }
      while let value = pending.popLast() {
        if producedBy[value] != nil { read.insert(value) }
        if recomputedSet.contains(value), let definition = definitions[value] {
          pending += definition.operands
        }
      }
      return read
    }
    // Division by a statistic of an earlier stage: a reciprocal per row, a multiply per element.
    for index in stages.indices {
      for position in stages[index].members {
        let member = body[position]
        guard member.definition?.algebra.isDivision == true, member.operands.count == 2 else {
          continue
        }
        let divisor = member.operands[1]
        guard let source = producedBy[divisor], source < index,
          !stages[index].reciprocals.contains(divisor),
          graph.type(of: divisor).dtype.isFloatingPoint,
          graph.type(of: member.result).dtype == graph.type(of: divisor).dtype
        else { continue }
        stages[index].reciprocals.append(divisor)
      }
    }

    var schedule = KernelSchedule(
      form: .rows,
      threads: .chunks(
        extent: Array(domain.dropLast()), work: domain, chunkAlignment: 1, taskSlots: false))
    schedule.stages = stages
    schedule.scratch = scratch
    schedule.recomputed = recomputed
    schedule.pipelineDepth = pipelined ? depth : 1
    if pipelined {
      let readLater = (1..<depth).map { statisticsRead(by: $0) }
      for member in body {
        guard let stage = producedBy[member.result] else { continue }
        let readBy = (stage + 1..<depth).filter { readLater[$0 - 1].contains(member.result) }
        if !readBy.isEmpty {
          schedule.heldStatistics.append(
            HeldStatistic(value: member.result, stage: stage, readBy: readBy))
        }
      }
    }
    schedule.scratchRows = pipelined ? depth : 1
    // Rows of one dtype share a typed buffer; mixed dtypes (a `cast` in the group) get byte rows.
    let scratchDTypes = Set(scratch.map { graph.type(of: $0).dtype })
    schedule.uniformScratch = scratchDTypes.count <= 1
    // Rows of a known, modest length live on the stack: no allocation per call.
    let onStack =
      columns.staticValue.map {
        schedule.scratchRows * scratch.count * $0 * 8 <= stackScratchBytes
      } ?? false
    schedule.scratchPlacement = scratch.isEmpty ? .none : onStack ? .stack : .heap
    return schedule
  }
}

/// Prints the schedule of every fused kernel as `//` comments (after the IR in `lamina dump`).
public struct KernelSchedulePrinter {
  public init() {}

  public func print(_ graph: Graph) -> String {
    var text = ""
    for node in graph.nodes {
      if node.fusedKind != nil {
        guard let schedule = KernelSchedule(node, in: graph) else { continue }
        text += describe(schedule, of: node, in: graph)
      } else if let convolution = ConvolutionSchedule(node, in: graph) {
        // A convolution outside a fused group still has its kernel chosen.
        text += "// schedule %\(graph[node.result].name) (\(node.op)):\n"
        for line in convolution.summary { text += "//   \(line)\n" }
      }
    }
    return text
  }

  /// `// schedule %h: ...` and one line per decision.
  public func describe(_ schedule: KernelSchedule, of node: Node, in graph: Graph) -> String {
    func name(_ value: ValueID) -> String { "%" + graph[value].name }
    func names(_ values: [ValueID]) -> String {
      values.isEmpty ? "none" : values.map(name).joined(separator: ", ")
    }
    func dims(_ dims: [Dim]) -> String {
      dims.isEmpty ? "1" : dims.map(\.description).joined(separator: " * ")
    }
    let kind = node.fusedKind.map(\.rawValue) ?? "?"
    var lines: [String] = []
    switch schedule.form {
    case .loop(let flat):
      lines.append(
        flat
          ? "one flat loop over the elements (operands at the loop index or scalars), vectorized"
          : "one loop nest over the domain, operands through their strides, innermost loop vectorized"
      )
      if !schedule.loopAxes.isEmpty {
        let loops = schedule.loopAxes.map { group in
          group.count == 1 ? "axis \(group[0])" : "axes \(group.first!)-\(group.last!)"
        }
        lines.append(
          "loops: \(loops.joined(separator: " × ")) (axes of extent 1 left out), the threads splitting "
            + (loops.count == 1 ? "the elements" : "the rows of all but the last"))
      }
    case .loopWithColumnSums(let singleColumn):
      lines.append(
        singleColumn
          ? "one loop down the rows, sums as vectorized whole-array reductions"
          : "rows × columns, columns vectorized, column sums into each task's partial row")
      lines.append(
        "partial sums: \(schedule.partialsOnStack ? "on the stack when the tasks' rows fit" : "heap")"
      )
    case .epilogue(let singleColumn, let fullWidth):
      let producer = node.epilogueProducer.map { "\($0.op) \(name($0.result))" } ?? "?"
      lines.append("producer \(producer) writes blocks; the other members run on each block")
      if let convolution = node.epilogueProducer.flatMap({ ConvolutionSchedule($0, in: graph) }) {
        lines += convolution.summary
      }
      if let pooling = schedule.pooling {
        lines.append(
          "epilogue: max pool \(pooling.kernel[0])x\(pooling.kernel[1]) stride \(pooling.stride[0])x\(pooling.stride[1]) written by the producer, \(name(pooling.result)); the other members run on the pooled values"
        )
      }
      if schedule.epiloguePlanes {
        lines.append(
          "epilogue sees the result as planes [N·C, H·W]: a block of channels is one call")
      }
      if singleColumn {
        lines.append("epilogue walks the single column, vectorized")
      } else if let fullWidth {
        lines.append(
          "epilogue rows vectorized; full-width blocks (\(fullWidth) columns) get a static-width loop"
        )
      } else {
        lines.append("epilogue rows vectorized, block width known at run time")
      }
    case .rows:
      lines.append(
        "row kernel: \(schedule.stages.count) stage\(schedule.stages.count == 1 ? "" : "s") per row"
      )
      for (index, stage) in schedule.stages.enumerated() {
        var line = "stage \(index):"
        if !stage.members.isEmpty {
          line +=
            " loop over the row computing \(names(stage.members.map { node.body[$0].result }))"
          if !stage.reciprocals.isEmpty {
            line += ", multiplying by 1/\(stage.reciprocals.map(name).joined(separator: ", 1/"))"
          }
          line += stage.vectorizes ? " (vectorized)" : " (scalar: a reduction's NaN rule)"
        }
        if !stage.rowStatistics.isEmpty {
          line +=
            "\(stage.members.isEmpty ? "" : ";") then per row \(names(stage.rowStatistics.map { node.body[$0].result }))"
        }
        lines.append(line)
      }
      lines.append("scratch rows: \(names(schedule.scratch))")
      lines.append("recomputed: \(names(schedule.recomputed))")
      lines.append(
        schedule.pipelineDepth > 1
          ? "pipelined: depth \(schedule.pipelineDepth) (pass r runs stage k on row r - k), \(schedule.scratchRows) scratch rows in rotation"
          : "pipelined: no")
      if !schedule.heldStatistics.isEmpty {
        let held = schedule.heldStatistics.map { statistic in
          "\(name(statistic.value)) (stage \(statistic.stage) → \(statistic.readBy.map(String.init).joined(separator: ", ")))"
        }
        lines.append("held per row in flight: \(held.joined(separator: ", "))")
      }
      if schedule.scratchPlacement != .none {
        lines.append(
          "scratch: \(schedule.scratchPlacement.rawValue), \(schedule.uniformScratch ? "typed rows" : "rows of 8-byte cells")"
        )
      }
    }
    switch schedule.threads {
    case .chunks(let extent, let work, let alignment, let slots):
      var line = "threads: chunks of \(dims(extent))"
      if alignment > 1 { line += " aligned to \(alignment)" }
      line += ", task count from \(dims(work)) elements"
      if slots { line += ", a partial-sum slot per task" }
      lines.append(line)
    case .producer:
      lines.append("threads: the producer's own split")
    }
    // Vectorized loops carry `omp simd`; the C compiler picks the width for the target.
    lines.append("vector width: the target's (omp simd)")
    var text = "// schedule \(names(node.results)) (fused \(kind)):\n"
    for line in lines { text += "//   \(line)\n" }
    return text
  }
}
