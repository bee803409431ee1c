import LaminaIR
import LaminaSupport

/// The kernel of a `fused` node: several ops in one pass over memory.
///
/// - `elementwise` / `update`: one loop over the shared domain; each member is a C local, and only
///   the node's results are stored.
/// - `epilogue`: the producer (a matmul: the GEMM) writes its result block by block, and the
///   members run as its epilogue on each finished block while it is in cache (bias, activation,
///   residual, the optimizer update of a weight gradient). The product goes to the first result's
///   buffer and is replaced there.
/// - `reduction`: one row (the last axis) at a time: loops over the row computing members and
///   accumulating row statistics, split where a member needs a statistic of the loop before; values
///   a later loop reads again stay in a row-sized scratch buffer in L1.
///
/// Every kernel is split across the thread pool along its outermost loop when it is large.
struct FusedKernel {
  let graph: Graph
  let node: Node
  let nodeIndex: Int
  let symbolIndex: [String: Int]
  /// The producer's right operand comes packed (`PackedLoopOperand`).
  var packedRightOperand = false

  var kind: FusedKind { node.fusedKind ?? .elementwise }

  /// The kernel's label in its name and comment: the kind, or for an epilogue group its producer's
  /// op (`matmul`).
  var label: String { node.epilogueProducer?.op ?? kind.rawValue }

  /// The function name, `k12_fused_matmul`.
  var functionName: String { "k\(nodeIndex)_fused_\(CText.identifierPart(label))" }

  func cType(_ value: ValueID) -> String { CExpressionContext.cType(graph.type(of: value).dtype) }

  /// C parameters: `in0...` for the operands, `out0...` for the results.
  var operandNames: [ValueID: String] {
    var names: [ValueID: String] = [:]
    for (index, operand) in node.operands.enumerated() where names[operand] == nil {
      names[operand] = "in\(index)"
    }
    return names
  }

  /// A value's number inside this kernel: operands first, then members' results in order. Local
  /// names use it rather than graph-wide value numbers, so the kernels of repeated layers are the
  /// same text and the generator emits one function for all of them.
  func localNumber(_ value: ValueID) -> Int {
    if let position = node.operands.firstIndex(of: value) { return position }
    let results = node.body.flatMap(\.results)
    return node.operands.count + (results.firstIndex(of: value) ?? results.count)
  }

  func resultName(_ value: ValueID) -> String? {
    node.results.firstIndex(of: value).map { "out\($0)" }
  }

  func signature(named name: String) -> String {
    var parameters = ["lamina_context* ctx", "const int64_t* dims"]
    for (index, operand) in node.operands.enumerated() {
      parameters.append("const \(cType(operand))* in\(index)")
    }
    for (index, result) in node.results.enumerated() {
      parameters.append("\(cType(result))* out\(index)")
    }
    if DerivedData.keepsDerivedData(node, in: graph) {
      parameters.append("int64_t \(DerivedData.slotParameter)")
    }
    return "static LAMINA_KERNEL int \(name)(\(parameters.joined(separator: ", ")))"
  }

  /// The comment above the kernel: every member, with where the fused node came from.
  var provenance: String {
    let printer = IRPrinter()
    var text = "/* fused \(CText.comment(label)) kernel, \(node.body.count) ops in one pass:\n"
    for member in node.body {
      text += "     " + CText.comment(printer.print(member, in: graph)) + "\n"
    }
    text +=
      "   writes \(CText.comment(node.results.map { "%" + graph[$0].name }.joined(separator: ", ")))"
    if node.location.isKnown { text += "\n   from \(sourcePosition(node.location))" }
    return text + " */"
  }

  var symbols: [String] {
    var seen: [String] = []
    let values = node.operands + node.body.flatMap(\.results)
    for value in values {
      for symbol in graph.type(of: value).symbols where !seen.contains(symbol) {
        seen.append(symbol)
      }
    }
    return seen
  }

  var dimensionPrologue: [String] {
    symbols.map { "const int64_t \(cDimName($0)) = dims[\(symbolIndex[$0]!)];" }
  }

  /// The C expression of one member given its operands' C expressions.
  func expression(_ member: Node, operands: [String]) throws -> String {
    guard let definition = OpRegistry.definition(member.op),
      case .expression(let template) = definition.c
    else {
      throw Diagnostic.error(
        "the C backend cannot inline \(member.op) into a fused kernel", at: member.location)
    }
    let context = CExpressionContext(
      operands: operands, attributes: member.attributes,
      dtype: graph.type(of: member.result).dtype,
      operandDTypes: member.operands.map { graph.type(of: $0).dtype }, mode: .inference)
    return template(context)
  }

  /// `(prelude, body)`: declarations before the kernel and the kernel's statements, with `@KERNEL@`
  /// standing for the function name.
  func emit() throws -> (prelude: CWriter, body: CWriter) {
    guard let schedule = KernelSchedule(node, in: graph) else {
      throw Diagnostic.error("no kernel schedule fits this fused \(kind) node", at: node.location)
    }
    switch schedule.form {
    case .epilogue(let singleColumn, let fullWidth):
      return try emitEpilogue(
        singleColumn: singleColumn, fullWidth: fullWidth, pooling: schedule.pooling,
        planes: schedule.epiloguePlanes)
    case .rows: return try emitRows(schedule)
    case .loop(let flat): return try emitElementwise(schedule, isFlat: flat)
    case .loopWithColumnSums(let singleColumn):
      return try emitElementwiseWithColumnSums(schedule, singleColumn: singleColumn)
    }
  }

  // MARK: Shared pieces

  /// A struct of the kernel's arguments (dims, operands `in…`, results `out…`) and `extra` fields.
  func argumentStruct(
    _ prelude: inout CWriter, named name: String, comment: String, extra: [String] = []
  ) {
    prelude.line("/* \(comment) */")
    prelude.line("typedef struct {")
    prelude.line("  const int64_t* dims;")
    for (index, operand) in node.operands.enumerated() {
      prelude.line("  const \(cType(operand))* in\(index);")
    }
    for (index, result) in node.results.enumerated() {
      prelude.line("  \(cType(result))* out\(index);")
    }
    for field in extra { prelude.line("  \(field)") }
    prelude.line("} \(name);")
    prelude.line()
  }

  /// Locals for the fields of an argument struct (`job->in0`, …) and the symbols the kernel reads.
  /// Not restrict: a result may take an operand's buffer (in place, or a weight's update written
  /// over the weight in a matmul epilogue); each element is read before it is written.
  func unpackArguments(from pointer: String, into body: inout CWriter) {
    body.line("const int64_t* dims = \(pointer)->dims;")
    body.line("(void)dims;")
    for (index, operand) in node.operands.enumerated() {
      body.line("const \(cType(operand))* in\(index) = \(pointer)->in\(index);")
    }
    for (index, result) in node.results.enumerated() {
      body.line("\(cType(result))* out\(index) = \(pointer)->out\(index);")
    }
    for line in dimensionPrologue { body.line(line) }
  }

  /// The kernel's parallel loop, split as `schedule` says, over its operands and results.
  func parallelLoop(_ schedule: KernelSchedule, extraFields: [String] = []) -> ParallelLoop {
    let arguments =
      node.operands.enumerated().map { index, operand in
        ParallelLoop.Argument(elementType: cType(operand), name: "in\(index)", isWritten: false)
      }
      + node.results.enumerated().map { index, result in
        ParallelLoop.Argument(elementType: cType(result), name: "out\(index)", isWritten: true)
      }
    return ParallelLoop(
      kernel: "@KERNEL@", arguments: arguments, dimensionPrologue: dimensionPrologue,
      split: schedule.threads, extraFields: extraFields)
  }

  // MARK: Elementwise

  func emitElementwise(_ schedule: KernelSchedule, isFlat: Bool) throws -> (
    prelude: CWriter, body: CWriter
  ) {
    let domain = graph.type(of: node.body[0].result).shape
    let rank = domain.count
    let names = operandNames
    // The element of each operand at the current position.
    var operandIndex: [ValueID: String] = [:]
    let domainStrides = cStrides(domain)
    let indices = (0..<rank).map { "i\($0)" }
    // Members reading a strided window of an operand (the fusion pass pulled them in): the element
    // of the window at the current position, read straight from the operand.
    var windowReads: [ValueID: String] = [:]
    for member in node.body {
      guard let rule = member.definition?.window, member.operands.count == 1,
        let operandName = names[member.operands[0]]
      else { continue }
      let operandShape = graph.type(of: member.operands[0]).shape
      guard let axes = rule(member.attributes, operandShape), axes.count == rank else {
        throw Diagnostic.error(
          "fused \(member.op) does not read a strided window of its operand", at: member.location)
      }
      let strides = cStrides(operandShape)
      let terms = axes.enumerated().map { axis, window -> String in
        let position =
          window.step == 1 ? indices[axis] : "\(indices[axis]) * \(window.step)"
        let shifted = window.start == 0 ? position : "(\(window.start) + \(position))"
        return strides[axis] == "1" ? shifted : "\(shifted) * \(strides[axis])"
      }
      windowReads[member.result] =
        isFlat ? "\(operandName)[i]" : "\(operandName)[\(terms.joined(separator: " + "))]"
    }
    // Operands only windows read need no element of their own at the current position.
    let windowed = Set(
      node.body.filter { windowReads[$0.result] != nil }.flatMap(\.operands)
    ).subtracting(node.body.filter { windowReads[$0.result] == nil }.flatMap(\.operands))
    // With `loopAxes`, loop k runs over group k of the domain's axes as one index (i0, i1, … by
    // loop): each operand's stride for it is its stride along the group's innermost axis.
    let loops = schedule.loopAxes
    let loopIndices = loops.indices.map { "i\($0)" }
    for operand in node.operands where !windowed.contains(operand) {
      let type = graph.type(of: operand)
      if isFlat {
        operandIndex[operand] = type.shape == domain ? "i" : "0"
        continue
      }
      let own = cStrides(type.shape)
      let offset = rank - type.rank
      let strides = (0..<rank).map { axis -> String in
        let operandAxis = axis - offset
        guard operandAxis >= 0, type.shape[operandAxis] != Dim(1) || domain[axis] == Dim(1) else {
          return "0"
        }
        return own[operandAxis]
      }
      operandIndex[operand] =
        loops.isEmpty
        ? cIndex(indices, strides) : cIndex(loopIndices, loops.map { strides[$0.last!] })
    }
    let resultIndex =
      isFlat
      ? "i"
      : loops.isEmpty
        ? cIndex(indices, domainStrides)
        : cIndex(loopIndices, loops.map { domainStrides[$0.last!] })

    var element = CWriter()
    var locals: [ValueID: String] = [:]
    for operand in node.operands where locals[operand] == nil && !windowed.contains(operand) {
      let local = "a\(locals.count)"
      element.line(
        "const \(cType(operand)) \(local) = \(names[operand]!)[\(operandIndex[operand]!)];")
      locals[operand] = local
    }
    for member in node.body {
      guard let read = windowReads[member.result] else { continue }
      let local = "v\(localNumber(member.result))"
      element.line("const \(cType(member.result)) \(local) = \(read);")
      locals[member.result] = local
    }
    try emitMembers(
      node.body.filter { windowReads[$0.result] == nil }, locals: &locals, into: &element)
    for (index, result) in node.results.enumerated() {
      element.line("out\(index)[\(resultIndex)] = \(locals[result]!);")
    }

    var range = CWriter()
    if isFlat {
      // Each iteration touches only its own element of every array, in place included, so the
      // loop vectorizes without the run-time alias checks many pointers would need.
      range.line("#pragma omp simd")
      range.block("for (int64_t i = begin; i < end; i++)") { $0.nest(element) }
    } else if loops.count == 1 {
      range.line("#pragma omp simd")
      range.block("for (int64_t i0 = begin; i0 < end; i0++)") { $0.nest(element) }
    } else if !loops.isEmpty {
      // The tasks' range is over rows (all loops but the innermost, flattened); each row's
      // position in them, then the innermost loop along the row.
      let extents = loops.map { group in cProduct(group.map { domain[$0] }) }
      let last = loops.count - 1
      range.block("for (int64_t row = begin; row < end; row++)") { body in
        if last == 1 {
          body.line("const int64_t i0 = row;")
        } else {
          body.line("int64_t rest = row;")
          for loop in stride(from: last - 1, to: 0, by: -1) {
            body.line("const int64_t i\(loop) = rest % \(extents[loop]);")
            body.line("rest /= \(extents[loop]);")
          }
          body.line("const int64_t i0 = rest;")
        }
        body.line("#pragma omp simd")
        body.block("for (int64_t i\(last) = 0; i\(last) < \(extents[last]); i\(last)++)") {
          $0.nest(element)
        }
      }
    } else {
      func nest(_ axis: Int, _ writer: inout CWriter) {
        if axis == rank {
          writer.nest(element)
          return
        }
        let header =
          axis == 0
          ? "for (int64_t i0 = begin; i0 < end; i0++)"
          : "for (int64_t i\(axis) = 0; i\(axis) < \(cDim(domain[axis])); i\(axis)++)"
        if axis == rank - 1 { writer.line("#pragma omp simd") }
        writer.block(header) { nest(axis + 1, &$0) }
      }
      nest(0, &range)
    }
    let loop = parallelLoop(schedule)
    var prelude = CWriter()
    loop.declarations(rangeBody: range, into: &prelude)
    var body = CWriter()
    for line in dimensionPrologue { body.line(line) }
    loop.dispatch(into: &body)
    return (prelude, body)
  }

  /// An elementwise loop that also sums some of its values over the leading axes (a broadcast
  /// bias's or scale's gradient): rows × last axis, each task adding into its own row of partial
  /// sums, which the calling thread adds up in task order (deterministic) at the end.
  func emitElementwiseWithColumnSums(_ schedule: KernelSchedule, singleColumn: Bool) throws -> (
    prelude: CWriter, body: CWriter
  ) {
    // The fusion pass admits only additive reductions here (`sum`, `mean`): task shares add up.
    let sums = node.body.filter { $0.definition?.reduction != nil }
    guard let domainValue = sums.first?.operands.first else {
      throw Diagnostic.error("fused column sum without an operand", at: node.location)
    }
    let domain = graph.type(of: domainValue).shape
    let columns = cDim(domain.last!)
    let rows = cProduct(Array(domain.dropLast()))
    let names = operandNames
    let full = "r * \(columns) + c"

    var element = CWriter()
    var locals: [ValueID: String] = [:]
    for operand in node.operands where locals[operand] == nil {
      guard let access = RowAccess(graph.type(of: operand).shape, in: domain) else {
        throw Diagnostic.error(
          "operand %\(graph[operand].name) of a fused kernel does not broadcast over rows",
          at: node.location)
      }
      let index: String
      switch access {
      case .full: index = full
      case .column: index = "c"
      case .row: index = "r"
      case .scalar: index = "0"
      case .axis(let count, let inner): index = rowAxisIndex("r", count: count, inner: inner)
      }
      let local = "a\(locals.count)"
      element.line("const \(cType(operand)) \(local) = \(names[operand]!)[\(index)];")
      locals[operand] = local
    }
    // Sums over a single column are whole-array sums: one loop down the rows, with `omp simd`
    // reductions, instead of rows of one element.
    for member in node.body {
      if let position = sums.firstIndex(of: member) {
        let target = singleColumn ? "sum\(position)" : "partial[\(position) * \(columns) + c]"
        for line in member.definition!.reduction!.cUpdate(
          accumulator: target, value: "(double)\(locals[member.operands[0]]!)",
          candidate: "m\(localNumber(member.result))", type: "double")
        {
          element.line(line)
        }
        continue
      }
      let text = try expression(member, operands: member.operands.map { locals[$0]! })
      let local = "v\(localNumber(member.result))"
      element.line("const \(cType(member.result)) \(local) = (\(cType(member.result)))(\(text));")
      locals[member.result] = local
    }
    for (index, result) in node.results.enumerated()
    where !sums.contains(where: { $0.result == result }) {
      element.line("out\(index)[\(full)] = \(locals[result]!);")
    }

    var range = CWriter()
    range.line("double* partial = job->partials + slot * \(sums.count) * \(columns);")
    if singleColumn {
      let accumulators = sums.indices.map { "sum\($0)" }
      range.line("double \(accumulators.map { "\($0) = 0" }.joined(separator: ", "));")
      range.line("#pragma omp simd reduction(+:\(accumulators.joined(separator: ", ")))")
      range.block("for (int64_t r = begin; r < end; r++)") { row in
        row.line("const int64_t c = 0;")
        row.nest(element)
      }
      for (position, accumulator) in accumulators.enumerated() {
        range.line("partial[\(position)] = \(accumulator);")
      }
    } else {
      range.line("for (int64_t c = 0; c < \(sums.count) * \(columns); c++) partial[c] = 0;")
      range.block("for (int64_t r = begin; r < end; r++)") { row in
        row.line("#pragma omp simd")
        row.block("for (int64_t c = 0; c < \(columns); c++)") { $0.nest(element) }
      }
    }
    let loop = parallelLoop(schedule, extraFields: ["double* partials;"])
    var prelude = CWriter()
    loop.declarations(rangeBody: range, into: &prelude)
    var body = CWriter()
    // Partial sums of a few tasks over a short row fit on the stack; others are allocated.
    let stackPartials = schedule.partialsOnStack
    for line in dimensionPrologue { body.line(line) }
    loop.dispatch(into: &body) { run in
      let heapPartials =
        "(double*)malloc((size_t)job.tasks * \(sums.count) * (size_t)\(columns) * sizeof(double))"
      if stackPartials {
        run.line("double partials_on_stack[\(KernelSchedule.stackScratchBytes / 8)];")
        run.line(
          "const int on_stack = job.tasks * \(sums.count) * \(columns) <= \(KernelSchedule.stackScratchBytes / 8);"
        )
        run.line("job.partials = on_stack ? partials_on_stack : \(heapPartials);")
      } else {
        run.line("job.partials = \(heapPartials);")
      }
      run.line(
        "if (!job.partials) return lamina_fail(ctx, LAMINA_ERROR_MEMORY, \"cannot allocate partial sums\");"
      )
    }
    for (position, sum) in sums.enumerated() {
      // A sum nothing reads (left when dead-code elimination is disabled) has no buffer to fill.
      guard let result = resultName(sum.result) else { continue }
      let reduction = sum.definition!.reduction!
      body.block("for (int64_t c = 0; c < \(columns); c++)") { column in
        column.line("double total = 0;")
        column.line(
          "for (int64_t t = 0; t < job.tasks; t++) total += job.partials[(t * \(sums.count) + \(position)) * \(columns) + c];"
        )
        let value = reduction.cFinalize("total", count: rows, type: "double")
        column.line("\(result)[c] = (\(cType(sum.result)))(\(value));")
      }
    }
    body.line(stackPartials ? "if (!on_stack) free(job.partials);" : "free(job.partials);")
    return (prelude, body)
  }

  /// Declares a local per member, in order, from the locals already known.
  func emitMembers(
    _ members: [Node], locals: inout [ValueID: String], into writer: inout CWriter
  ) throws {
    for member in members {
      let text = try expression(member, operands: member.operands.map { locals[$0]! })
      let local = "v\(localNumber(member.result))"
      writer.line("const \(cType(member.result)) \(local) = (\(cType(member.result)))(\(text));")
      locals[member.result] = local
    }
  }

  // MARK: Producer with epilogue

  func emitEpilogue(
    singleColumn: Bool, fullWidth: Int?, pooling: KernelSchedule.Pooling?, planes: Bool
  ) throws
    -> (
      prelude: CWriter, body: CWriter
    )
  {
    guard let producer = node.epilogueProducer,
      case .kernel(let kernel)? = producer.definition?.c,
      let producerKernel = KernelLibrary.epilogueProducer(kernel)
    else {
      throw Diagnostic.error(
        "fused epilogue node without a member whose kernel runs an epilogue", at: node.location)
    }
    let names = operandNames
    let product = producer.result
    // With a pool the producer writes, the epilogue sees the pooled result: `p` is a window's
    // maximum, and the members (non-decreasing, so they commute with it) run on that.
    let pool = pooling.flatMap { pooling in node.body.first { $0.result == pooling.result } }
    // Viewed as planes (`KernelSchedule.epiloguePlanes`), the domain is [N, C, H·W] and so is each
    // operand, whose H and W are the domain's or 1.
    let resultShape = graph.type(of: pooling?.result ?? product).shape
    func viewed(_ shape: [Dim]) -> [Dim] {
      guard planes else { return shape }
      let padded = Array(repeating: Dim(1), count: 4 - shape.count) + shape
      return Array(padded.prefix(2)) + [Array(padded.suffix(2)).product]
    }
    let domain = viewed(resultShape)
    let n =
      pooling != nil || planes
      ? domain.last ?? Dim(1) : producerKernel.matrixShape(of: producer, in: graph).columns
    let productType = cType(product)
    // The producer writes its result into the first result of its dtype; the epilogue replaces it
    // there.
    guard let carrier = node.fusedEpilogueCarrier(in: graph) else {
      throw Diagnostic.error(
        "fused matmul node has no result to hold the product", at: node.location)
    }
    let carrierName = resultName(carrier)!

    // A single-column product is walked down its column (see the epilogue below).
    let productElement = singleColumn ? "crow[i]" : "crow[j]"
    let epilogueMembers = node.body.filter { $0.result != product && $0.result != pool?.result }
    let external = epilogueMembers.flatMap(\.operands).filter { names[$0] != nil && $0 != product }
    var accesses: [ValueID: RowAccess] = [:]
    for operand in external where accesses[operand] == nil {
      guard let access = RowAccess(viewed(graph.type(of: operand).shape), in: domain) else {
        throw Diagnostic.error(
          "operand %\(graph[operand].name) of a fused matmul does not broadcast over rows and columns",
          at: node.location)
      }
      accesses[operand] = access
    }
    /// One element's statements: the product at `productElement`, full operands and results at
    /// `full`, per-row operands at row `row`.
    func elementCode(productElement: String, full: String, row: String) throws -> CWriter {
      var element = CWriter()
      var locals: [ValueID: String] = [product: "p"]
      element.line("const \(productType) p = \(productElement);")
      for operand in external where locals[operand] == nil {
        let index: String
        switch accesses[operand]! {
        case .full: index = full
        case .column: index = "j"
        case .row: index = row
        case .scalar: index = "0"
        case .axis(let count, let inner): index = rowAxisIndex(row, count: count, inner: inner)
        }
        let local = "a\(localNumber(operand))"
        element.line("const \(cType(operand)) \(local) = \(names[operand]!)[\(index)];")
        locals[operand] = local
      }
      try emitMembers(epilogueMembers, locals: &locals, into: &element)
      if let pool { locals[pool.result] = locals[pool.operands[0]] }
      for (index, result) in node.results.enumerated() where result != carrier {
        element.line("out\(index)[\(full)] = \(locals[result]!);")
      }
      if carrier != product { element.line("\(productElement) = \(locals[carrier]!);") }
      return element
    }
    let element = try elementCode(
      productElement: productElement, full: "i * \(cDim(n)) + j", row: "i")
    // A convolution's per-channel operands (`RowAccess.axis`) are constant over runs of `inner`
    // rows (one channel's plane): when every operand is, and the block's rows are contiguous, the
    // epilogue runs one flat loop per run instead of short loops over rows of the last axis.
    // With no per-row or per-column operand at all (`relu(conv2d(...))`), a contiguous block is one
    // run: a flat loop over all its elements, not a short loop per row of 28 or 10.
    let runLength: Dim? = {
      var inner: Dim?
      for access in accesses.values {
        switch access {
        case .full, .scalar: continue
        case .axis(_, let length) where inner == nil || inner == length: inner = length
        default: return nil
        }
      }
      guard let inner else { return singleColumn ? nil : Array(domain.dropLast()).product }
      return inner == Dim(1) ? nil : inner
    }()
    let runElement = try runLength.map { _ in
      try elementCode(productElement: "crun[k]", full: "base + k", row: "r0")
    }

    var prelude = CWriter()
    argumentStruct(
      &prelude, named: "@KERNEL@_epilogue_args", comment: "The arguments of @KERNEL@'s epilogue.")
    prelude.line("/* The members after the matmul, on one finished block of the product. */")
    prelude.block(
      "static void @KERNEL@_epilogue(void* argument, void* c, int64_t ldc, int64_t row0, int64_t col0, int64_t rows, int64_t cols)"
    ) { body in
      body.line("const @KERNEL@_epilogue_args* e = (const @KERNEL@_epilogue_args*)argument;")
      unpackArguments(from: "e", into: &body)
      if singleColumn {
        // One column (a regression or logistic head, its weight gradient): the loop runs down
        // the column, which is contiguous, instead of over rows of one element.
        body.line("(void)ldc;")
        body.line("(void)cols;")
        body.line("const int64_t j = col0;")
        body.line("\(productType)* restrict crow = (\(productType)*)c;")
        body.line("#pragma omp simd")
        body.block("for (int64_t i = row0; i < row0 + rows; i++)") { column in
          column.nest(element)
        }
      } else {
        func rowLoop(columns: String, _ writer: inout CWriter) {
          writer.block("for (int64_t i = row0; i < row0 + rows; i++)") { rows in
            rows.line("\(productType)* restrict crow = (\(productType)*)c + i * ldc;")
            // One element per iteration (a weight's update may overwrite the weight at the same
            // position): independent iterations, vectorized without alias checks.
            rows.line("#pragma omp simd")
            rows.block("for (int64_t j = \(columns); j++)") { $0.nest(element) }
          }
        }
        if let runLength, let runElement {
          body.block("if (col0 == 0 && cols == ldc && cols == \(cDim(n)))") { runs in
            runs.block("for (int64_t r0 = row0; r0 < row0 + rows;)") { run in
              run.line(
                "const int64_t run_end = (r0 / \(cDim(runLength)) + 1) * \(cDim(runLength));")
              run.line("const int64_t r1 = run_end < row0 + rows ? run_end : row0 + rows;")
              run.line("const int64_t base = r0 * \(cDim(n));")
              run.line("\(productType)* restrict crun = (\(productType)*)c + base;")
              run.line("#pragma omp simd")
              run.block("for (int64_t k = 0; k < (r1 - r0) * \(cDim(n)); k++)") {
                $0.nest(runElement)
              }
              run.line("r0 = r1;")
            }
            runs.line("return;")
          }
        }
        if let width = fullWidth {
          // A block as wide as the product (a narrow layer: the usual case) runs rows of a width
          // the compiler knows, without the remainder handling of a loop of unknown length on
          // every row: the difference between a fused activation being slower or faster than
          // a separate flat pass.
          body.block("if (col0 == 0 && cols == \(width))") {
            rowLoop(columns: "0; j < \(width)", &$0)
          }
          body.block("else") { rowLoop(columns: "col0; j < col0 + cols", &$0) }
        } else {
          rowLoop(columns: "col0; j < col0 + cols", &body)
        }
      }
    }
    prelude.line()

    var body = CWriter()
    for line in dimensionPrologue { body.line(line) }
    let pointers =
      node.operands.indices.map { "in\($0)" } + node.results.indices.map { "out\($0)" }
    body.line("@KERNEL@_epilogue_args arguments = {dims, \(pointers.joined(separator: ", "))};")
    // An epilogue that is only a rectifier of the product, written back in its place, is applied by
    // the GEMM in its registers as it stores (`relu_only`); `apply` stays for the producers that
    // call it (a convolution's direct kernels).
    let rectifierOnly =
      pool == nil && external.isEmpty && epilogueMembers.count == 1
      && epilogueMembers[0].operands == [product]
      && epilogueMembers[0].definition?.algebra.isRectifier == true
      && node.results == [carrier] && epilogueMembers[0].result == carrier
    // The third field asks a convolution for the plane view; the fourth (a row bias the GEMM adds in its
    // registers) is the convolution runtime's; the fifth says the epilogue is only a relu.
    body.line(
      "const lamina_gemm_epilogue epilogue = {@KERNEL@_epilogue, &arguments, \(planes ? 1 : 0), NULL, \(rectifierOnly ? 1 : 0)};"
    )
    if let pooling {
      guard let pooled = producerKernel as? PooledEpilogueProducer.Type else {
        throw Diagnostic.error(
          "fused \(producer.op) node with a pool its kernel cannot write", at: node.location)
      }
      pooled.emitProducePooled(
        producer, in: graph, pooling: pooling, operand: { names[$0]! },
        destination: carrierName, epilogue: "&epilogue", into: &body)
    } else if packedRightOperand,
      let packed = producerKernel as? PackedRightOperandProducer.Type
    {
      packed.emitProducePacked(
        producer, in: graph, operand: { names[$0]! }, destination: carrierName,
        epilogue: "&epilogue", into: &body)
    } else {
      producerKernel.emitProduce(
        producer, in: graph, operand: { names[$0]! }, destination: carrierName,
        epilogue: "&epilogue", into: &body)
    }
    return (prelude, body)
  }

  // MARK: Row reductions

  func emitRows(_ schedule: KernelSchedule) throws -> (prelude: CWriter, body: CWriter) {
    func reduction(of member: Node) -> ReductionDescription? { member.definition?.reduction }
    let isReduction = { (member: Node) in reduction(of: member) != nil }
    guard let firstReduction = node.body.first(where: isReduction) else {
      throw Diagnostic.error("fused reduction node without a reduction", at: node.location)
    }
    let domain = graph.type(of: firstReduction.operands[0]).shape
    let columns = cDim(domain.last!)
    let names = operandNames

    // The schedule decided the stages, the scratch rows, what is recomputed and the pipelining;
    // what follows writes them as C.
    let stages = schedule.stages.map { stage in
      (
        members: stage.members.map { node.body[$0] },
        scalars: stage.rowStatistics.map { node.body[$0] }
      )
    }
    let scratch = schedule.scratch
    let recomputed = Set(schedule.recomputed)
    let definitions = Dictionary(
      node.body.map { ($0.result, $0) }, uniquingKeysWith: { first, _ in first })
    let depth = stages.count
    let pipelined = schedule.pipelineDepth > 1
    let scratchRows = schedule.scratchRows

    var range = CWriter()
    // Rows of one dtype share a typed buffer; mixed dtypes (a `cast` in the group) get byte rows
    // of 8 bytes per column, aligned for any element type.
    let scratchType = scratch.first.map(cType)
    let uniformScratch = schedule.uniformScratch
    let stackScratch = schedule.scratchPlacement == .stack
    let (scratchElementType, rowScratchElements) =
      uniformScratch
      ? (scratchType ?? "float", "\(scratch.count) * \(columns)")
      : ("unsigned char", "\(scratch.count) * \(columns) * 8")
    if !scratch.isEmpty {
      range.line("/* Row values read by a later loop over the row; they stay in L1. */")
      let elements = scratchRows > 1 ? "\(scratchRows) * \(rowScratchElements)" : rowScratchElements
      if stackScratch {
        range.line("_Alignas(64) \(scratchElementType) scratch[\(elements)];")
      } else {
        range.line(
          "\(scratchElementType)* scratch = (\(scratchElementType)*)malloc((size_t)\(elements) * sizeof(\(scratchElementType)));"
        )
        range.line(
          "if (!scratch) { __atomic_store_n(&((@KERNEL@_job*)job)->failed, 1, __ATOMIC_RELAXED); return; }"
        )
      }
    }

    /// One loop body's row: its index expression, its scratch rows, and a prefix that keeps its
    /// locals apart from another row's in the same loop.
    struct RowView {
      var row: String
      var scratch: String
      var prefix: String
    }
    /// One loop's members over one row, with the row statistics and reciprocals they read.
    struct LoopPart {
      var members: [Node]
      var view: RowView
      var locals: [ValueID: String]
      var reciprocals: [ValueID: String]
    }
    func rowPointer(_ value: ValueID, _ view: RowView) -> String {
      if let result = resultName(value) { return "\(result) + \(view.row) * \(columns)" }
      if let index = scratch.firstIndex(of: value) {
        return uniformScratch
          ? "\(view.scratch) + \(index) * \(columns)"
          : "(\(cType(value))*)(\(view.scratch) + (size_t)\(index) * (size_t)\(columns) * 8)"
      }
      return ""
    }
    // Row sums accumulate in the row's dtype: the `omp simd` reduction keeps one partial sum per
    // vector lane, which keeps f32 rounding error far below the tolerance and runs at full width.
    let reductionCType = { (member: Node) in self.cType(member.result) }
    let heapScratch = !scratch.isEmpty && !stackScratch

    /// The reciprocals of the row statistics stage `stage` divides by (one per row, then a multiply
    /// per element). Declares them; returns their names.
    func emitReciprocals(
      _ stage: Int, rowLocals: [ValueID: String], prefix: String = "", into row: inout CWriter
    ) -> [ValueID: String] {
      var reciprocals: [ValueID: String] = [:]
      for divisor in schedule.stages[stage].reciprocals {
        let name = "\(prefix)inverse\(localNumber(divisor))"
        reciprocals[divisor] = name
        row.line("const \(cType(divisor)) \(name) = (\(cType(divisor)))1 / \(rowLocals[divisor]!);")
      }
      return reciprocals
    }

    /// The `#pragma` in front of a loop over a row, if it vectorizes.
    func loopPragma(_ members: [Node]) -> String? {
      var clauses: [(symbol: String, accumulators: [String])] = []
      for member in members {
        guard let description = reduction(of: member) else { continue }
        guard let symbol = description.simdOperator else { return nil }
        let accumulator = "acc\(localNumber(member.result))"
        if let index = clauses.firstIndex(where: { $0.symbol == symbol }) {
          clauses[index].accumulators.append(accumulator)
        } else {
          clauses.append((symbol, [accumulator]))
        }
      }
      let reductionClauses = clauses.map {
        " reduction(\($0.symbol):\($0.accumulators.joined(separator: ", ")))"
      }
      return "#pragma omp simd" + reductionClauses.joined()
    }

    /// One column's statements of a loop over the row `view`.
    func emitColumn(
      _ members: [Node], view: RowView, rowLocals: [ValueID: String],
      reciprocals: [ValueID: String], into column: inout CWriter
    ) throws {
      var locals = rowLocals
      func load(_ operand: ValueID) throws -> String {
        if let local = locals[operand] { return local }
        let local = "\(view.prefix)a\(localNumber(operand))"
        if let external = names[operand] {
          let access = RowAccess(graph.type(of: operand).shape, in: domain)
          let index: String
          switch access {
          case .full?: index = "\(view.row) * \(columns) + c"
          case .column?: index = "c"
          case .row?: index = view.row
          case .scalar?: index = "0"
          case .axis(let count, let inner)?:
            index = rowAxisIndex(view.row, count: count, inner: inner)
          case nil:
            throw Diagnostic.error(
              "operand %\(graph[operand].name) of a fused reduction does not broadcast over rows",
              at: node.location)
          }
          column.line("const \(cType(operand)) \(local) = \(external)[\(index)];")
        } else if recomputed.contains(operand), let definition = definitions[operand] {
          let text = try expression(definition, operands: definition.operands.map(load))
          let local = "\(view.prefix)v\(localNumber(operand))"
          column.line("const \(cType(operand)) \(local) = (\(cType(operand)))(\(text));")
          locals[operand] = local
          return local
        } else {
          // Computed by an earlier loop over this row.
          column.line("const \(cType(operand)) \(local) = (\(rowPointer(operand, view)))[c];")
        }
        locals[operand] = local
        return local
      }
      for member in members {
        let operands = try member.operands.map(load)
        if let description = reduction(of: member) {
          for line in description.cUpdate(
            accumulator: "acc\(localNumber(member.result))",
            value: "(\(reductionCType(member)))\(operands[0])",
            candidate: "m\(localNumber(member.result))", type: reductionCType(member))
          {
            column.line(line)
          }
          continue
        }
        let inverse =
          member.definition?.algebra.isDivision == true ? reciprocals[member.operands[1]] : nil
        let text =
          try inverse.map { "\(operands[0]) * \($0)" }
          ?? expression(member, operands: operands)
        let local = "\(view.prefix)v\(localNumber(member.result))"
        column.line(
          "const \(cType(member.result)) \(local) = (\(cType(member.result)))(\(text));")
        locals[member.result] = local
        if resultName(member.result) != nil || scratch.contains(member.result) {
          column.line("(\(rowPointer(member.result, view)))[c] = \(local);")
        }
      }
    }

    /// A row statistic computed once per row: `local = expression` from the row's other statistics
    /// (`locals`) or from operands with one value per row, stored to its result if it has one.
    func emitScalar(
      _ member: Node, row: String, prefix: String, locals: inout [ValueID: String],
      into writer: inout CWriter
    ) throws {
      let operands = member.operands.map { operand in
        locals[operand]
          ?? "\(names[operand]!)[\(graph.type(of: operand).shape.product == Dim(1) ? "0" : row)]"
      }
      let text = try expression(member, operands: operands)
      let local = "\(prefix)s\(localNumber(member.result))"
      writer.line("const \(cType(member.result)) \(local) = (\(cType(member.result)))(\(text));")
      locals[member.result] = local
      if let result = resultName(member.result) { writer.line("\(result)[\(row)] = \(local);") }
    }
    func declareAccumulators(_ members: [Node], into writer: inout CWriter) {
      for member in members {
        guard let description = reduction(of: member) else { continue }
        writer.line(
          "\(reductionCType(member)) acc\(localNumber(member.result)) = \(description.cIdentity);")
      }
    }
    /// A loop's sums become the row's statistics (a mean divides by the row length).
    func finishReductions(
      _ members: [Node], row: String, prefix: String, locals: inout [ValueID: String],
      into writer: inout CWriter
    ) {
      for reduction in members where isReduction(reduction) {
        let local = "\(prefix)s\(localNumber(reduction.result))"
        let accumulator = "acc\(localNumber(reduction.result))"
        let value = reduction.definition!.reduction!.cFinalize(
          accumulator, count: columns, type: reductionCType(reduction))
        writer.line(
          "const \(cType(reduction.result)) \(local) = (\(cType(reduction.result)))(\(value));")
        locals[reduction.result] = local
        if let result = resultName(reduction.result) {
          writer.line("\(result)[\(row)] = \(local);")
        }
      }
    }
    func emitLoop(_ parts: [LoopPart], into writer: inout CWriter) throws {
      let members = parts.flatMap(\.members)
      if let pragma = loopPragma(members) { writer.line(pragma) }
      try writer.block("for (int64_t c = 0; c < \(columns); c++)") { column in
        for part in parts {
          try emitColumn(
            part.members, view: part.view, rowLocals: part.locals, reciprocals: part.reciprocals,
            into: &column)
        }
      }
    }

    if pipelined {
      // Statistics a later loop reads wait in one slot per row in flight.
      let held = schedule.heldStatistics
      let slotted = held.map(\.value)
      let producedBy = Dictionary(uniqueKeysWithValues: held.map { ($0.value, $0.stage) })
      let readBy = Dictionary(uniqueKeysWithValues: held.map { ($0.value, Set($0.readBy)) })
      if !slotted.isEmpty {
        range.line("/* Row statistics a later loop reads, a slot per row in flight. */")
      }
      for value in slotted {
        range.line("\(cType(value)) s\(localNumber(value))_rows[\(depth)];")
      }
      func rowOf(_ stage: Int) -> String { stage == 0 ? "r" : "(r - \(stage))" }
      func prefixOf(_ stage: Int) -> String { stage == 0 ? "" : "stage\(stage)_" }
      func slotOf(_ stage: Int) -> String { "(\(rowOf(stage)) - begin) % \(depth)" }
      /// Before a stage's loop: its scratch rows, the statistics earlier stages left for its row,
      /// the reciprocals it multiplies by, its accumulators.
      func openStage(_ stage: Int, into writer: inout CWriter) -> LoopPart {
        let prefix = prefixOf(stage)
        let scratchName = stage == 0 ? "rowScratch" : "\(prefix)scratch"
        if !scratch.isEmpty {
          writer.line(
            "\(scratchElementType)* const \(scratchName) = scratch + (\(slotOf(stage))) * (\(rowScratchElements));"
          )
        }
        var locals: [ValueID: String] = [:]
        for value in slotted where producedBy[value]! < stage && readBy[value]!.contains(stage) {
          let local = "\(prefix)s\(localNumber(value))"
          writer.line(
            "const \(cType(value)) \(local) = s\(localNumber(value))_rows[\(slotOf(stage))];")
          locals[value] = local
        }
        let members = stages[stage].members
        let reciprocals = emitReciprocals(stage, rowLocals: locals, prefix: prefix, into: &writer)
        declareAccumulators(members, into: &writer)
        return LoopPart(
          members: members, view: RowView(row: rowOf(stage), scratch: scratchName, prefix: prefix),
          locals: locals, reciprocals: reciprocals)
      }
      /// After a stage's loop: its statistics and the scalars after it, kept for later stages.
      func closeStage(
        _ stage: Int, locals: [ValueID: String], into writer: inout CWriter
      ) throws {
        var locals = locals
        let prefix = prefixOf(stage)
        finishReductions(
          stages[stage].members, row: rowOf(stage), prefix: prefix, locals: &locals, into: &writer)
        for member in stages[stage].scalars {
          try emitScalar(member, row: rowOf(stage), prefix: prefix, locals: &locals, into: &writer)
        }
        for value in slotted where producedBy[value] == stage {
          writer.line("s\(localNumber(value))_rows[\(slotOf(stage))] = \(locals[value]!);")
        }
      }
      range.line(
        "/* Software-pipelined: pass r runs loop k on row r - k (k = 0..\(depth - 1)) in one loop over the columns,"
      )
      range.line(
        "   so one row's arithmetic overlaps the others' stores and sums. The first and last rows of the range"
      )
      range.line("   run the loops they have one after another. */")
      try range.block("for (int64_t r = begin; r < end + \(depth - 1); r++)") { row in
        // Every stage has a row: one loop for all of them.
        try row.block("if (r >= begin + \(depth - 1) && r < end)") { full in
          let parts = (0..<depth).map { openStage($0, into: &full) }
          try emitLoop(parts, into: &full)
          for (stage, part) in parts.enumerated() {
            try closeStage(stage, locals: part.locals, into: &full)
          }
        }
        // The first and last rows of the range: the stages that have a row, one after another.
        try row.block("else") { partial in
          for stage in 0..<depth {
            try partial.block("if (\(rowOf(stage)) >= begin && \(rowOf(stage)) < end)") { writer in
              let part = openStage(stage, into: &writer)
              try emitLoop([part], into: &writer)
              try closeStage(stage, locals: part.locals, into: &writer)
            }
          }
        }
      }
    } else {
      try range.block("for (int64_t r = begin; r < end; r++)") { row in
        var locals: [ValueID: String] = [:]
        let view = RowView(row: "r", scratch: "scratch", prefix: "")
        for (index, stage) in stages.enumerated() {
          let reciprocals = emitReciprocals(index, rowLocals: locals, into: &row)
          declareAccumulators(stage.members, into: &row)
          if !stage.members.isEmpty {
            try emitLoop(
              [
                LoopPart(
                  members: stage.members, view: view, locals: locals, reciprocals: reciprocals)
              ],
              into: &row)
          }
          finishReductions(stage.members, row: "r", prefix: "", locals: &locals, into: &row)
          for member in stage.scalars {
            try emitScalar(member, row: "r", prefix: "", locals: &locals, into: &row)
          }
        }
      }
    }
    if heapScratch { range.line("free(scratch);") }

    let loop = parallelLoop(schedule, extraFields: ["int failed;"])
    var prelude = CWriter()
    loop.declarations(rangeBody: range, into: &prelude)
    var body = CWriter()
    for line in dimensionPrologue { body.line(line) }
    loop.dispatch(into: &body)
    if heapScratch {
      body.line(
        "if (job.failed) return lamina_fail(ctx, LAMINA_ERROR_MEMORY, \"cannot allocate a row of scratch memory\");"
      )
    }
    return (prelude, body)
  }
}

/// The index of row `row`'s value in an operand with one value per position along an axis before
/// the last (`RowAccess.axis`): a per-channel scale over a convolution's rows.
private func rowAxisIndex(_ row: String, count: Dim, inner: Dim) -> String {
  let row = row.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } ? row : "(\(row))"
  let quotient = inner == Dim(1) ? row : "\(row) / \(cDim(inner))"
  return "(\(quotient)) % \(cDim(count))"
}
