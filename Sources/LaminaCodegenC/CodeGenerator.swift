import LaminaIR
import LaminaSupport

/// The C source and header of one compiled model, and the signature the library reports.
public struct GeneratedModel: Sendable {
  /// The model's translation unit (`model.c`): data, kernels and entry points, compiled once per
  /// instruction set of the target. It includes the runtime's headers and links the runtime
  /// (`CRuntimeSources`), whose `lamina_model_setup.c` exports the C interface.
  public var source: String
  /// The C interface, for programs that use the library without Lamina.
  public var header: String
  public var signature: ModelSignature
  /// Kernel launches, copies and arena bytes of each entry point, in emission order.
  public var statistics: [EntryPointStatistics] = []
}

/// Lowers a typed graph to C.
///
/// Each node becomes one kernel function, commented with the IR node and its source location. Two
/// entry points run the kernels in graph order: `lamina_forward` (the outputs) and `lamina_evaluate`
/// (outputs and losses). Intermediates live in one arena owned by the context, sized from the
/// symbolic dimensions and grown only when a call needs more.
public enum CodeGenerator {
  /// Version of the C interface; the runtime refuses libraries of another version.
  public static let abiVersion = 3

  public static func generate(_ graph: Graph) throws -> GeneratedModel {
    var generator = Generator(graph: graph)
    return try generator.run()
  }
}

/// Where a value lives while an entry point runs.
private enum Storage: Hashable {
  case input(Int)
  case param(Int)
  case state(Int)
  case output(Int)
  case loss(Int)
  case arena(Int)  // index of the arena slot
  case kept(Int)  // byte offset in the entry point's kept buffer (values of parameters alone)
  /// Byte offset in the memory the kept block allocates for values convolutions only pack
  /// (`EntryPoint.transientValues`); NULL outside that block, where the convolutions read their
  /// packed copies.
  case transient(Int)
  case local(String)  // a loop body's argument: a byte pointer the loop sets each step
}

/// Where a loop's body kernels write the values the loop passes on, so that the loop copies
/// neither its per-step outputs nor its carried state (see `emitEntryPoint`'s region storage).
private final class LoopResultPlacement {
  /// Per-step outputs a body kernel computes: the output's position (the first, if it is yielded
  /// twice). The kernel writes them straight into the step's slot of the stacked result.
  var slotOfOutput: [ValueID: Int] = [:]
  /// Carried values a body kernel computes that are not per-step outputs: they alternate between
  /// the final result's buffer and their own, the step writing into the one it does not read.
  var alternating: Set<ValueID> = []
  /// The second buffer of each alternating value (its planned one).
  var spareBuffer: [ValueID: Storage] = [:]

  init(_ node: Node) {
    guard let layout = node.scanLayout else { return }
    let computed = Set(
      node.body.filter { member in
        if member.hasRegion { return false }
        if case .alias? = OpRegistry.definition(member.op)?.c { return false }
        return true
      }.flatMap(\.results))
    for (offset, value) in node.regionResults.dropFirst(layout.carried).enumerated()
    where computed.contains(value) && slotOfOutput[value] == nil {
      slotOfOutput[value] = offset
    }
    let carried = Array(node.regionResults[layout.carriedRange])
    for value in carried
    where computed.contains(value) && slotOfOutput[value] == nil
      && carried.filter({ $0 == value }).count == 1
    {
      alternating.insert(value)
    }
  }

  /// Whether the carried value `value` (a body result) reaches the next step without a copy:
  /// the argument pointer moves to where the step wrote it.
  func carriedWithoutCopy(_ value: ValueID, layout: ScanLayout, node: Node) -> Bool {
    guard node.regionResults[layout.carriedRange].filter({ $0 == value }).count == 1 else {
      return false
    }
    return alternating.contains(value) || slotOfOutput[value] != nil
  }
}

/// Where a loop's carried value for the next step comes from.
private enum CarriedSource: Equatable {
  case carried(Int)  // the buffer of another carried argument (the step yields that argument)
  case value(ValueID)  // a value the step computed
  case saved(Int)  // the copy of a carried buffer saved to break a cycle
}

/// One step of a loop's end-of-step carried copies.
private enum CarriedMove {
  case save(Int)  // copy the carried buffer at this position aside first
  case move(Int, CarriedSource)
}

/// A node's kernel in one mode.
private struct KernelKey: Hashable {
  var node: Int
  var mode: ExecutionMode
}

private struct Generator {
  let graph: Graph
  let symbols: [String]
  let symbolIndex: [String: Int]
  var writer = CWriter()
  /// The kernel function each node calls, per mode: nodes whose kernels would be identical share one.
  var kernelNames: [KernelKey: String] = [:]
  private var kernelsByBody: [String: String] = [:]
  var statistics: [EntryPointStatistics] = []
  /// The kernel number of each loop-body member (by its first result), after the graph's nodes.
  let memberKernelIDs: [ValueID: Int]
  /// Loop-body matrix products whose kernels read their right operand packed (by product result).
  let packedProducts: Set<ValueID>
  /// The derived-data slot of each top-level node whose kernel keeps data derived from parameters
  /// (`DerivedData`), by the node's first result.
  let derivedSlots: [ValueID: Int]
  /// The derived-data slot of each set of kept nodes (`EntryPoint.keptNodes`), numbered after the
  /// kernels' slots: `forward` and `evaluate` keep the same values in one buffer (the same
  /// layout), not two copies.
  var keptSlots: [[Int]: Int] = [:]

  init(graph: Graph) {
    self.graph = graph
    self.packedProducts = Set(
      PackedLoopOperand.products(inLoopsOf: graph.nodes, graph: graph).map(\.product.result))
    self.derivedSlots = DerivedData.slots(in: graph)
    var ids: [ValueID: Int] = [:]
    for node in graph.nodes where node.hasRegion {
      for member in EntryPoint.regionMembers(of: node) where !member.results.isEmpty {
        ids[member.results[0]] = graph.nodes.count + ids.count
      }
    }
    self.memberKernelIDs = ids
    var symbols: [String] = []
    for value in graph.inputs.map(\.value) + graph.nodes.flatMap(\.results) {
      for symbol in graph.type(of: value).symbols where !symbols.contains(symbol) {
        symbols.append(symbol)
      }
    }
    self.symbols = symbols
    var index: [String: Int] = [:]
    for (position, symbol) in symbols.enumerated() { index[symbol] = position }
    self.symbolIndex = index
  }

  var modelIdentifier: String {
    // A name that does not start with a letter (`3d`, one of symbols only) gets a prefix.
    let name = CText.identifierPart(graph.name.uppercased())
    return name.first.map { ("A"..."Z").contains($0) } == true ? name : "MODEL_" + name
  }

  mutating func run() throws -> GeneratedModel {
    let signature = makeSignature()
    writer.line(
      "/* Generated by Lamina (model \(CText.comment(graph.name))). Do not edit. */"
    )
    writer.line(
      "/* Each kernel below carries the IR node it computes and where that node came from. */")
    writer.line()
    for include in ["stdint.h", "stddef.h", "stdlib.h", "string.h", "math.h"] {
      writer.line("#include <\(include)>")
    }
    writer.line()
    writer.line(
      "/* Elements below which a loop runs on one thread (lamina_task_count in lamina_model.h). */")
    writer.line("#define LAMINA_PARALLEL_WORK \(ElementwiseKernel.parallelThreshold)")
    writer.line(
      "#include \"lamina_model.h\" /* the context, the entry-point table, the runtime: thread pool, GEMM */"
    )
    writer.line("#include \"lamina_math.h\"  /* inline exp, tanh, sigmoid, normal CDF */")
    writer.line(
      "#include \"lamina_conv.h\"  /* the convolutions: their entry points in lamina_conv.c */")
    if graph.nodes.contains(where: { node in
      (node.body.isEmpty ? [node] : node.body).contains {
        $0.definition?.effects.contains(.drawsRandomNumbers) == true
      }
    }) {
      writer.line(
        "#include \"lamina_philox.h\"  /* the Philox-4x32-10 generator dropout draws from */")
    }
    writer.line()
    emitContext()
    writer.line("/* ======== Kernels ======== */")
    writer.line()
    for (index, node) in graph.nodes.enumerated() {
      if node.hasRegion {
        // A loop has no kernel of its own: its body's kernels run in the entry point's loop.
        for member in EntryPoint.regionMembers(of: node) where !member.hasRegion {
          let id = memberKernelIDs[member.results[0]]!
          if member.op == Node.fusedOp {
            try emitFusedKernel(id, member)
            continue
          }
          let modes: [ExecutionMode] =
            OpRegistry.definition(member.op)?.dependsOnMode == true
            ? [.inference, .training] : [.inference]
          for mode in modes { try emitKernel(id, member, mode: mode) }
        }
        continue
      }
      if node.op == Node.fusedOp {
        try emitFusedKernel(index, node)
        continue
      }
      // Mode-dependent ops (dropout, batch norm) get a kernel for inference and one for training.
      let modes: [ExecutionMode] =
        OpRegistry.definition(node.op)?.dependsOnMode == true
        ? [.inference, .training] : [.inference]
      for mode in modes { try emitKernel(index, node, mode: mode) }
    }
    writer.line("/* ======== Entry points ======== */")
    writer.line()
    let outputs = graph.outputs.map(\.value)
    let losses = graph.losses.map(\.value)
    // Inference runs the inference copy of the outputs and losses, where there is one.
    let (inferenceOutputs, inferenceLosses) = (
      outputs.map(graph.inferenceValue), losses.map(graph.inferenceValue)
    )
    emitEntryPoint(name: "forward", outputs: inferenceOutputs, losses: [])
    emitEntryPoint(name: "evaluate", outputs: inferenceOutputs, losses: inferenceLosses)
    let trainingEntries = EntryPoint.hasModeDependentOps(graph)
    if trainingEntries {
      emitEntryPoint(name: "forward_training", outputs: outputs, losses: [], mode: .training)
      emitEntryPoint(name: "evaluate_training", outputs: outputs, losses: losses, mode: .training)
    }
    emitTrainSteps()
    emitModelDescription(signature, trainingEntries: trainingEntries)
    return GeneratedModel(
      source: writer.text, header: header(signature), signature: signature, statistics: statistics)
  }

  // MARK: Signature and header

  func makeSignature() -> ModelSignature {
    func entry(_ name: String, _ value: ValueID, forward: Bool? = nil) -> ModelSignature.Entry {
      let type = graph.type(of: value)
      return ModelSignature.Entry(
        name: name, dtype: type.dtype.rawValue, shape: type.shape.map(\.description),
        forward: forward)
    }
    let forwardInputs = Set(
      graph.inputsNeeded(for: graph.outputs.map { graph.inferenceValue(of: $0.value) }))
    return ModelSignature(
      abi: CodeGenerator.abiVersion, model: graph.name, symbols: symbols,
      inputs: graph.inputs.map {
        entry(graph[$0.value].name, $0.value, forward: forwardInputs.contains($0.value))
      },
      params: graph.params.map { entry(graph[$0.value].name, $0.value) },
      outputs: graph.outputs.map { entry($0.name, $0.value) },
      losses: graph.losses.map { entry($0.name, $0.value) },
      states: graph.states.map { state in
        var described = entry(graph[state.value].name, state.value)
        if state.isModelState { described.modelState = true }
        return described
      },
      steps: trainableSteps.map { step in
        let loss = graph.losses.first { $0.name == step.lossName }!.value
        let updates = graph.assignments.filter { $0.step == step.name }.map(\.value)
        return ModelSignature.Step(
          name: step.name, loss: step.lossName,
          inputs: graph.inputsNeeded(for: [loss] + updates).map { graph[$0].name })
      })
  }

  func header(_ signature: ModelSignature) -> String {
    let guardName = "LAMINA_MODEL_\(modelIdentifier)_H"
    var text =
      "/* Generated by Lamina: the C interface of model \(CText.comment(graph.name)). */\n"
    text +=
      "/* Link with the shared library Lamina compiled; it needs only libc, libm and pthreads. */\n"
    text +=
      "#ifndef \(guardName)\n#define \(guardName)\n\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
    text += "/*\n * Model \(CText.comment(graph.name))\n *\n"
    text +=
      " * symbolic dimensions (dims[] order): \(symbols.isEmpty ? "none" : symbols.enumerated().map { "\($0.offset) \(CText.comment($0.element))" }.joined(separator: ", "))\n"
    func list(
      _ title: String, _ entries: [ModelSignature.Entry],
      note: (ModelSignature.Entry) -> String = { _ in "" }
    ) {
      text += " * \(title):\n"
      if entries.isEmpty { text += " *   (none)\n" }
      for (index, entry) in entries.enumerated() {
        text +=
          " *   \(index) \(CText.comment(entry.name)) \(CText.comment(entry.typeDescription))\(note(entry))\n"
      }
    }
    list("inputs", signature.inputs) { $0.forward == true ? "" : "  (lamina_evaluate only)" }
    list("outputs", signature.outputs)
    list("losses", signature.losses)
    list("parameters", signature.params)
    list("state (lamina_state_data; model state is saved with the parameters)", signature.states) {
      $0.modelState == true ? "  (model state)" : "  (optimizer state)"
    }
    text += " */\n\n"
    // Index macros, unique even when names differ only in what a C identifier cannot hold (`a.b`,
    // `a_b`, `A-B`): the first keeps its macro, the next get `_2`, `_3`, ... in signature order.
    let prefix = modelIdentifier
    let counts = [
      ("SYMBOL_COUNT", symbols.count), ("INPUT_COUNT", signature.inputs.count),
      ("OUTPUT_COUNT", signature.outputs.count), ("LOSS_COUNT", signature.losses.count),
      ("PARAM_COUNT", signature.params.count),
    ]
    var macros = MacroNames(reserved: counts.map { "\(prefix)_\($0.0)" })
    func constants(_ kind: String, _ names: [String], note: (String) -> String) {
      for (index, name) in names.enumerated() {
        let macro = macros.claim("\(prefix)_\(kind)_" + CText.identifierPart(name.uppercased()))
        text += "#define \(macro) \(index) /* \(note(CText.comment(name))) */\n"
      }
    }
    text += "#define \(prefix)_SYMBOL_COUNT \(symbols.count)\n"
    constants("DIM", symbols) { "index of \($0) in dims[]" }
    for (name, count) in counts.dropFirst() { text += "#define \(prefix)_\(name) \(count)\n" }
    constants("INPUT", signature.inputs.map(\.name)) { $0 }
    constants("OUTPUT", signature.outputs.map(\.name)) { $0 }
    constants("LOSS", signature.losses.map(\.name)) { $0 }
    constants("PARAM", signature.params.map(\.name)) { $0 }
    constants("STATE", signature.states.map(\.name)) { "index of \($0) for lamina_state_data" }
    text += "\n" + CRuntimeSources.interface
    text += "\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n"
    return text
  }

  // MARK: Context

  /// Offsets and sizes of parameters, then optimizer state, in the context's one storage block.
  var storageLayout:
    (params: [(offset: Int, bytes: Int)], states: [(offset: Int, bytes: Int)], total: Int)
  {
    var offset = 0
    func place(_ value: ValueID) -> (Int, Int) {
      let type = graph.type(of: value)
      let bytes = (type.concreteShape([:])?.reduce(1, *) ?? 0) * type.dtype.byteSize
      defer { offset += (bytes + 63) / 64 * 64 }
      return (offset, bytes)
    }
    let params = graph.params.map { place($0.value) }
    let states = graph.states.map { place($0.value) }
    return (params, states, max(64, offset))
  }

  mutating func emitContext() {
    let layout = storageLayout
    writer.line("/* ======== Parameters and optimizer state ======== */")
    writer.line()
    writer.line(
      "/* Offsets and sizes in ctx->params: parameters then optimizer state, 64-byte aligned, \(layout.total) bytes. */"
    )
    writer.line("#define LAMINA_PARAM_COUNT \(layout.params.count)")
    writer.line("#define LAMINA_STATE_COUNT \(layout.states.count)")
    writer.line("#define LAMINA_PARAMS_BYTES \(layout.total)")
    for (kind, entries) in [("param", layout.params), ("state", layout.states)] {
      let offsets =
        entries.isEmpty ? "0" : entries.map { String($0.offset) }.joined(separator: ", ")
      let sizes = entries.isEmpty ? "0" : entries.map { String($0.bytes) }.joined(separator: ", ")
      writer.line(
        "static const int64_t lamina_\(kind)_offsets[\(max(1, entries.count))] = {\(offsets)};")
      writer.line(
        "static const int64_t lamina_\(kind)_sizes[\(max(1, entries.count))] = {\(sizes)};")
    }
    writer.line()
  }

  // MARK: Kernels

  mutating func emitKernel(_ index: Int, _ node: Node, mode: ExecutionMode) throws {
    guard let definition = OpRegistry.definition(node.op) else {
      throw Diagnostic.error("the C backend does not know op '\(node.op)'", at: node.location)
    }
    var context = KernelContext(graph: graph, node: node, nodeIndex: index, mode: mode)
    context.packedRightOperand = node.results.first.map(packedProducts.contains) ?? false
    var body = CWriter()
    // Helper functions a kernel needs (a thread task), written before it; `@KERNEL@` stands for the
    // kernel's name until it is known, so identical kernels still share one function.
    var prelude = CWriter()
    for line in context.dimensionPrologue(symbolIndex: symbolIndex) { body.line(line) }
    switch definition.c {
    case .alias:
      writer.line(
        "/* \(CText.comment(IRPrinter().print(node, in: graph))): no kernel, the result shares its operand's buffer */"
      )
      writer.line()
      return
    case .expression(let template):
      ElementwiseKernel.emit(
        context, expression: template, into: &body, prelude: &prelude, kernelName: "@KERNEL@",
        symbolIndex: symbolIndex)
    case .kernel(let id):
      if let emit = KernelLibrary.parallelEmitter(id) {
        emit(context, &body, &prelude, symbolIndex)
      } else {
        KernelLibrary.emitter(id)(context, &body)
      }
    case .region:
      throw Diagnostic.error(
        "\(node.op) runs a region: the entry point emits it as a loop", at: node.location)
    case .decomposed:
      throw Diagnostic.error(
        "\(node.op) has no kernel: the decompose pass replaces it before code generation",
        at: node.location)
    }
    body.line("return LAMINA_OK;")
    // Layers repeat: one function serves every node whose kernel would be the same.
    let key = context.signature(named: "kernel") + prelude.text + body.text
    if let existing = kernelsByBody[key] {
      kernelNames[KernelKey(node: index, mode: mode)] = existing
      writer.line(
        "/* \(CText.comment(IRPrinter().print(node, in: graph))): computed by \(existing) */")
      writer.line()
      return
    }
    kernelsByBody[key] = context.functionName
    kernelNames[KernelKey(node: index, mode: mode)] = context.functionName
    writer.append(prelude.text.replacingOccurrences(of: "@KERNEL@", with: context.functionName))
    writer.line(context.provenance)
    writer.line(context.signature() + " {")
    writer.append(
      body.text.replacingOccurrences(of: "@KERNEL@", with: context.functionName)
        .split(separator: "\n", omittingEmptySubsequences: false).map {
          $0.isEmpty ? "" : "  " + $0
        }.joined(separator: "\n"))
    writer.line("}")
    writer.line()
  }

  /// A fused node's kernel (members never depend on the mode: the fusion pass leaves those out).
  mutating func emitFusedKernel(_ index: Int, _ node: Node) throws {
    var kernel = FusedKernel(graph: graph, node: node, nodeIndex: index, symbolIndex: symbolIndex)
    kernel.packedRightOperand =
      node.epilogueProducer.map { packedProducts.contains($0.result) } ?? false
    let (prelude, body) = try kernel.emit()
    var fullBody = body
    fullBody.line("return LAMINA_OK;")
    let key = kernel.signature(named: "kernel") + prelude.text + fullBody.text
    if let existing = kernelsByBody[key] {
      kernelNames[KernelKey(node: index, mode: .inference)] = existing
      writer.line(
        "/* fused node writing \(CText.comment(node.results.map { "%" + graph[$0].name }.joined(separator: ", "))): computed by \(existing) */"
      )
      writer.line()
      return
    }
    let name = kernel.functionName
    kernelsByBody[key] = name
    kernelNames[KernelKey(node: index, mode: .inference)] = name
    writer.append(prelude.text.replacingOccurrences(of: "@KERNEL@", with: name))
    writer.line(kernel.provenance)
    writer.line(kernel.signature(named: name) + " {")
    writer.append(
      fullBody.text.replacingOccurrences(of: "@KERNEL@", with: name)
        .split(separator: "\n", omittingEmptySubsequences: false).map {
          $0.isEmpty ? "" : "  " + $0
        }.joined(separator: "\n"))
    writer.line("}")
    writer.line()
  }

  // MARK: Entry points

  /// Emits `lamina_NAME`: checks its arguments, lays out the arena, runs the needed kernels in order.
  ///
  /// A training step (`updates` not empty) also computes each update's new value and, after every
  /// kernel has run, copies it over the parameter or state it replaces.
  mutating func emitEntryPoint(
    name: String, outputs: [ValueID], losses: [ValueID], updates: [Assignment] = [],
    mode: ExecutionMode? = nil
  ) {
    let mode: ExecutionMode = mode ?? (updates.isEmpty ? .inference : .training)
    let entry = EntryPoint(
      name: name, mode: mode, outputs: outputs, losses: losses, updates: updates)
    let targets = entry.targets
    let needed = entry.schedule(in: graph)
    let neededInputs = Set(graph.inputsNeeded(for: targets))
    // The memory plan when the memory-plan pass ran; without it every intermediate gets its own slot.
    let plan = graph.memoryPlans[name]

    // Assign storage (see `EntryPoint.storage`): aliases share their operand's, an exposed value is
    // computed straight into the caller's buffer, everything else lives in the arena — at its
    // planned buffer, or straight in its parameter or state for updates the plan allows.
    let classes = entry.storage(in: graph, schedule: needed)
    // The value whose storage a value shares (itself unless it is an alias such as a reshape).
    func rootValue(_ value: ValueID) -> ValueID {
      var value = value
      while case .alias(let operand)? = classes[value] { value = operand }
      return value
    }
    var storage: [ValueID: Storage] = [:]
    for (index, input) in graph.inputs.enumerated() { storage[input.value] = .input(index) }
    for (index, param) in graph.params.enumerated() { storage[param.value] = .param(index) }
    for (index, state) in graph.states.enumerated() { storage[state.value] = .state(index) }
    // Values of parameters, state and constants alone, computed when the parameters changed and
    // kept between calls, each at its own offset of one buffer the context keeps (a derived slot).
    let keptNodes = entry.keptNodes(in: graph, schedule: needed)
    let keptKey = keptNodes.sorted()
    let keptSlot = keptSlots[keptKey] ?? derivedSlots.count + keptSlots.count
    if !keptNodes.isEmpty { keptSlots[keptKey] = keptSlot }
    // Offsets in node order, so that every entry point keeping the same nodes lays them out alike.
    // Values only convolutions read, and only to pack them, live in memory of their own while the
    // kept block runs: one value at a time, packed right after it is computed, so the memory is
    // that of the largest (ResNet-50: 9.4 MB, not 94 MB).
    let transientPackers = entry.transientValues(in: graph, schedule: needed)
    var keptOffsets: [ValueID: Int] = [:]
    var keptBytes = 0
    var transientOffsets: [ValueID: Int] = [:]
    var transientBytes = 0
    for nodeIndex in keptKey {
      var nodeTransientBytes = 0  // a node's transient results side by side, from offset 0
      for value in self.graph.nodes[nodeIndex].results {
        let type = self.graph.type(of: value)
        let size = (type.boundedStaticElementCount! * type.dtype.byteSize + 63) / 64 * 64
        if transientPackers[value] != nil {
          transientOffsets[value] = nodeTransientBytes
          nodeTransientBytes += size
          transientBytes = max(transientBytes, nodeTransientBytes)
        } else {
          keptOffsets[value] = keptBytes
          keptBytes += size
        }
      }
    }
    var arenaValues: [ValueID] = []
    func arenaStorage(_ value: ValueID) -> Storage {
      if let plan {
        return plan.directUpdates[value].map { storage[$0]! } ?? .arena(plan.bufferOf[value]!)
      }
      arenaValues.append(value)
      return .arena(arenaValues.count - 1)
    }
    // A loop's body: carried and sequence arguments are pointers the loop sets, invariants are
    // their operands; members live in the arena (aliases share their operand's storage), except
    // values a body kernel computes straight where the loop wants them (`LoopResultPlacement`):
    // a per-step output into its step's slot of the stacked result, a carried value into the
    // buffer the next step reads (its output slot, or the one of two buffers the step does not
    // read), so the loop copies neither.
    var loopPlacements: [ValueID: LoopResultPlacement] = [:]
    func assignRegionStorage(_ node: Node) {
      guard let layout = node.scanLayout else { return }
      for (position, argument) in node.regionArguments.enumerated() {
        storage[argument] =
          layout.invariantRange.contains(position)
          ? storage[node.operands[position]]! : .local("arg_\(argument.index)")
      }
      let placement = LoopResultPlacement(node)
      loopPlacements[node.results[0]] = placement
      for member in node.body {
        if case .alias? = OpRegistry.definition(member.op)?.c {
          storage[member.result] = storage[member.operands[0]]
          continue
        }
        for value in member.results {
          storage[value] = arenaStorage(value)
          if let slot = placement.slotOfOutput[value] {
            storage[value] = .local("slot_\(node.results[layout.carried + slot].index)")
          } else if placement.alternating.contains(value) {
            // The planned buffer is the second of the two the carried value alternates between.
            placement.spareBuffer[value] = storage[value]
            storage[value] = .local("next_\(value.index)")
          }
        }
        if member.hasRegion { assignRegionStorage(member) }
      }
      loopPlacements[node.results[0]] = placement
    }
    for nodeIndex in needed {
      for value in graph.nodes[nodeIndex].results {
        switch classes[value]! {
        case .regionArgument: break
        case .alias(let operand): storage[value] = storage[operand]
        case .output(let index): storage[value] = .output(index)
        case .loss(let index): storage[value] = .loss(index)
        case .input(let index): storage[value] = .input(index)
        case .param(let index): storage[value] = .param(index)
        case .state(let index): storage[value] = .state(index)
        case .arena: storage[value] = arenaStorage(value)
        case .kept:
          storage[value] =
            transientOffsets[value].map { .transient($0) } ?? .kept(keptOffsets[value]!)
        }
      }
      // After the results: the carried arguments point at the final carried values' storage.
      if graph.nodes[nodeIndex].hasRegion { assignRegionStorage(graph.nodes[nodeIndex]) }
    }
    var launches = 0
    var copies = 0

    // The carried values a step computes in a buffer of its own: the argument pointer moves to
    // that buffer after the step instead of a copy back.
    func movingPositions(_ node: Node, layout: ScanLayout) -> [Int] {
      guard let placement = loopPlacements[node.results[0]] else { return [] }
      return layout.carriedRange.filter { position in
        placement.carriedWithoutCopy(node.regionResults[position], layout: layout, node: node)
      }
    }
    // The other carried values are copied back as one parallel assignment: a step may yield one
    // carried argument as another's next value (a swap), so the copies run in an order where none
    // overwrites a buffer a later one still reads, and a cycle saves one buffer first.
    func carriedMoves(_ node: Node, layout: ScanLayout) -> [CarriedMove] {
      let moving = Set(movingPositions(node, layout: layout))
      var pending: [(destination: Int, source: CarriedSource)] = []
      for position in layout.carriedRange where !moving.contains(position) {
        let result = storage[node.regionResults[position]]
        if result == storage[node.regionArguments[position]] { continue }
        if let other = layout.carriedRange.first(where: {
          result == storage[node.regionArguments[$0]]
        }) {
          pending.append((position, .carried(other)))
        } else {
          pending.append((position, .value(node.regionResults[position])))
        }
      }
      var moves: [CarriedMove] = []
      while !pending.isEmpty {
        if let ready = pending.firstIndex(where: { move in
          !pending.contains { $0.source == .carried(move.destination) }
        }) {
          moves.append(.move(pending[ready].destination, pending[ready].source))
          pending.remove(at: ready)
          continue
        }
        let saved = pending[0].destination
        moves.append(.save(saved))
        for index in pending.indices where pending[index].source == .carried(saved) {
          pending[index].source = .saved(saved)
        }
      }
      return moves
    }
    // Arena space for the buffers saved to break cycles, by the carried region argument.
    var carriedSaveSlots: [ValueID: Int] = [:]
    var carriedSaveValues: [ValueID] = []
    func reserveCarriedSaves(_ node: Node) {
      guard let layout = node.scanLayout else { return }
      for case .save(let position) in carriedMoves(node, layout: layout) {
        carriedSaveSlots[node.regionArguments[position]] = carriedSaveValues.count
        carriedSaveValues.append(node.regionArguments[position])
      }
      for member in node.body where member.hasRegion { reserveCarriedSaves(member) }
    }
    for nodeIndex in needed where graph.nodes[nodeIndex].hasRegion {
      reserveCarriedSaves(graph.nodes[nodeIndex])
    }
    let packings = PackedLoopOperand.products(
      inLoopsOf: needed.map { self.graph.nodes[$0] }, graph: self.graph)
    var packedSlot: [ValueID: Int] = [:]  // by the member's first result
    for (slot, packing) in packings.enumerated() { packedSlot[packing.member.results[0]] = slot }

    let signatureText: String
    switch name {
    case "forward", "forward_training":
      signatureText =
        "static LAMINA_ENTRY_POINT int lamina_run_\(name)(lamina_context* ctx, const int64_t* dims, const void* const* inputs, void* const* outputs)"
    case "evaluate", "evaluate_training":
      signatureText =
        "static LAMINA_ENTRY_POINT int lamina_run_\(name)(lamina_context* ctx, const int64_t* dims, const void* const* inputs, void* const* outputs, void* const* losses)"
    default:
      signatureText =
        "static LAMINA_ENTRY_POINT int lamina_\(name)(lamina_context* ctx, const int64_t* dims, const void* const* inputs, void* const* losses)"
    }
    let symbols = self.symbols
    let graph = self.graph
    let kernelNames = self.kernelNames
    writer.block(signatureText) { body in
      body.line("if (!ctx) return LAMINA_ERROR_ARGUMENT;")
      body.line("ctx->error[0] = 0;")
      if !symbols.isEmpty {
        body.line(
          "if (!dims) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"dims is NULL but the model has \(symbols.count) symbolic dimension(s)\");"
        )
      }
      for (index, symbol) in symbols.enumerated() {
        body.line(
          "if (dims[\(index)] < 1 || dims[\(index)] > LAMINA_MAX_DIM) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"dimension %s is %lld; it must be between 1 and %lld\", \(CText.stringLiteral(symbol)), (long long)dims[\(index)], (long long)LAMINA_MAX_DIM);"
        )
        body.line("const int64_t \(cDimName(symbol)) = dims[\(index)];")
        body.line("(void)\(cDimName(symbol));")
      }
      if !neededInputs.isEmpty {
        body.line(
          "if (!inputs) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"inputs is NULL\");")
      }
      for (index, input) in graph.inputs.enumerated() where neededInputs.contains(input.value) {
        body.line(
          "if (!inputs[\(index)]) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"input %s is NULL\", \(CText.stringLiteral(graph[input.value].name)));"
        )
      }
      if !outputs.isEmpty {
        body.line(
          "if (!outputs) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"outputs is NULL\");")
        for (index, named) in graph.outputs.enumerated() {
          body.line(
            "if (!outputs[\(index)]) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"output %s is NULL\", \(CText.stringLiteral(named.name)));"
          )
        }
      }
      if !losses.isEmpty {
        body.line(
          "if (!losses) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"losses is NULL\");")
        for (index, value) in losses.enumerated() {
          let lossName =
            graph.losses.first { $0.value == value || graph.inferenceValue(of: $0.value) == value }?
            .name ?? graph[value].name
          body.line(
            "if (!losses[\(index)]) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"loss %s is NULL\", \(CText.stringLiteral(lossName)));"
          )
        }
      }
      // Arena layout for these dimensions.
      body.line("int64_t arena_total = 0;")
      if let plan, !plan.buffers.isEmpty {
        body.line("int64_t offsets[\(plan.buffers.count)];")
        body.line(
          "/* Memory plan: buffers whose lifetimes (in kernel steps) overlap never overlap in memory. */"
        )
        for (number, layout) in plan.layouts.enumerated() {
          // The first layout holds for every dimension; the others for large ones, when smaller.
          let condition = symbols.map { "\(cDimName($0)) >= \(layout.minimumSymbolValue)" }
          let header =
            number == 0
            ? "{  /* layout for any dimensions */"
            : "if (\(condition.joined(separator: " && "))) {  /* layout for dimensions >= \(layout.minimumSymbolValue), if smaller */"
          body.line(header)
          body.line("  int64_t layout_total = 0;")
          body.line("  int64_t layout_offsets[\(plan.buffers.count)];")
          body.line("  int fits = 1;")
          for (slot, buffer) in plan.buffers.enumerated() where buffer.enclosing == nil {
            let type = graph.type(of: buffer.values[0])
            let count = "(__int128)1" + type.shape.map { " * \(cDim($0))" }.joined()
            let names = CText.comment(
              buffer.values.map { "%" + graph[$0].name }.joined(separator: ", ") + " : \(type)")
            body.line(
              "  fits = fits && lamina_place(&layout_total, &layout_offsets[\(slot)], \(cSize(layout.offsets[slot])), \(count) * \(type.dtype.byteSize));  /* \(names), steps \(buffer.firstStep)-\(buffer.lastStep) */"
            )
          }
          // Concat operands written in place: their range of the concat's buffer.
          for (slot, buffer) in plan.buffers.enumerated() where buffer.enclosing != nil {
            let (outer, inside) = plan.outermost(slot)
            let names = CText.comment(
              buffer.values.map { "%" + graph[$0].name }.joined(separator: ", ")
                + " : \(graph.type(of: buffer.values[0]))")
            body.line(
              "  layout_offsets[\(slot)] = layout_offsets[\(outer)] + (int64_t)(\(cSize(inside)));  /* \(names), steps \(buffer.firstStep)-\(buffer.lastStep): in place in its concat's buffer */"
            )
          }
          if number == 0 {
            body.line(
              "  if (!fits) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"the intermediates for these dimensions are too large\");"
            )
            body.line("  arena_total = layout_total;")
            body.line("  memcpy(offsets, layout_offsets, sizeof offsets);")
          } else {
            body.line("  if (fits && layout_total < arena_total) {")
            body.line("    arena_total = layout_total;")
            body.line("    memcpy(offsets, layout_offsets, sizeof offsets);")
            body.line("  }")
          }
          body.line("}")
        }
      }
      if !arenaValues.isEmpty {
        body.line("int64_t offsets[\(arenaValues.count)];")
      }
      for (slot, value) in arenaValues.enumerated() {
        let type = graph.type(of: value)
        let count = "(__int128)1" + type.shape.map { " * \(cDim($0))" }.joined()
        body.line(
          "if (!lamina_reserve(&arena_total, &offsets[\(slot)], \(count), \(type.dtype.byteSize))) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"the intermediates for these dimensions are too large\");  /* \(CText.comment("%\(graph[value].name) : \(type)")) */"
        )
      }
      // Loop-invariant right operands of the loops' GEMMs, packed once per loop, after the plan.
      if !packings.isEmpty {
        body.line("int64_t packed_offsets[\(packings.count)];")
      }
      for (slot, packing) in packings.enumerated() {
        body.line(
          "if (!lamina_reserve(&arena_total, &packed_offsets[\(slot)], \(packing.packedElements), \(packing.dtype.byteSize))) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"the intermediates for these dimensions are too large\");  /* \(CText.comment("%" + graph[packing.right].name)) packed */"
        )
      }
      if !carriedSaveValues.isEmpty {
        body.line("int64_t carried_save_offsets[\(carriedSaveValues.count)];")
      }
      for (slot, value) in carriedSaveValues.enumerated() {
        let type = graph.type(of: value)
        let count = "(__int128)1" + type.shape.map { " * \(cDim($0))" }.joined()
        body.line(
          "if (!lamina_reserve(&arena_total, &carried_save_offsets[\(slot)], \(count), \(type.dtype.byteSize))) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"the intermediates for these dimensions are too large\");  /* \(CText.comment("a copy of the carried %\(graph[value].name) : \(type)")) */"
        )
      }
      body.line("int status = lamina_ensure_arena(ctx, arena_total);")
      body.line("if (status != LAMINA_OK) return status;")
      body.line("unsigned char* const arena = ctx->arena;")
      body.line("(void)arena;")

      // While the kept block is written, transient values are addresses in its memory.
      var emittingKeptBlock = false
      func pointer(_ value: ValueID, writable: Bool = false) -> String {
        address(of: value, in: storage[value]!, writable: writable)
      }
      func address(of value: ValueID, in place: Storage, writable: Bool) -> String {
        let type = CExpressionContext.cType(graph.type(of: value).dtype)
        let qualifier = writable ? "" : "const "
        switch place {
        case .input(let index): return "(const \(type)*)inputs[\(index)]"
        case .param(let index):
          return "(\(qualifier)\(type)*)(ctx->params + lamina_param_offsets[\(index)])"
        case .state(let index):
          return "(\(qualifier)\(type)*)(ctx->params + lamina_state_offsets[\(index)])"
        case .output(let index): return "(\(type)*)outputs[\(index)]"
        case .loss(let index): return "(\(type)*)losses[\(index)]"
        case .arena(let slot): return "(\(type)*)(arena + offsets[\(slot)])"
        case .kept(let offset): return "(\(qualifier)\(type)*)(kept + \(offset))"
        case .transient(let offset):
          return emittingKeptBlock
            ? "(\(qualifier)\(type)*)(transient + \(offset))" : "(\(qualifier)\(type)*)NULL"
        case .local(let name): return "(\(qualifier)\(type)*)\(name)"
        }
      }
      func bytes(_ value: ValueID) -> String {
        let type = graph.type(of: value)
        return "(size_t)(\(cProduct(type.shape))) * \(type.dtype.byteSize)"
      }
      func packedPointer(_ slot: Int) -> String {
        let type = CExpressionContext.cType(packings[slot].dtype)
        return "(\(type)*)(arena + packed_offsets[\(slot)])"
      }
      func call(
        _ node: Node, kernel: String, into body: inout CWriter,
        onFailure: String = "return status;", perCall: Bool = true
      ) {
        var operands = node.operands.map { pointer($0) }
        if let slot = node.results.first.flatMap({ packedSlot[$0] }) {
          operands[packings[slot].operandPosition] = "(const " + packedPointer(slot).dropFirst()
        }
        var arguments =
          ["ctx", "dims"] + operands + node.results.map { pointer($0, writable: true) }
        if DerivedData.keepsDerivedData(node, in: graph) {
          // A training step changes the weights every step: it derives per call (slot -1).
          let slot = updates.isEmpty ? node.results.first.flatMap { derivedSlots[$0] } : nil
          arguments.append(slot.map(String.init) ?? "-1")
        }
        let notes = node.results.map { result -> String in
          var note = "%" + graph[result].name
          if let operand = plan?.inPlace[result] { note += " in place of %" + graph[operand].name }
          if let target = plan?.directUpdates[result] {
            note += " straight into %" + graph[target].name
          }
          return note
        }
        body.line(
          "status = \(kernel)(\(arguments.joined(separator: ", ")));  /* \(CText.comment(notes.joined(separator: ", "))) */"
        )
        if perCall { launches += 1 }
        body.line("if (status != LAMINA_OK) \(onFailure)")
      }
      // The entry point's mode's kernel, or the one both modes share.
      func kernelName(_ id: Int) -> String {
        kernelNames[KernelKey(node: id, mode: mode)]
          ?? kernelNames[KernelKey(node: id, mode: .inference)]!
      }
      // A scan: a C loop over the steps, running the body's kernels on views of the step.
      func emitLoop(_ node: Node, into body: inout CWriter) {
        guard let layout = node.scanLayout, let placement = loopPlacements[node.results[0]] else {
          return
        }
        let sequence = graph.type(of: node.operands[layout.sequenceRange.lowerBound])
        let steps = cDim(sequence.shape[0])
        let names = node.results.map { "%" + graph[$0].name }.joined(separator: ", ")
        body.line(
          "/* \(CText.comment("\(names) = scan"))\(layout.reverse ? " (reverse)" : ""): \(layout.carried) carried, \(layout.sequences) sequence(s), \(layout.invariants) invariant(s); its body runs once per step */"
        )
        func local(_ value: ValueID) -> String? {
          if case .local(let name)? = storage[value] { return name }
          return nil
        }
        // The carried values the step computes in a buffer of their own: the argument is a pointer
        // that moves to that buffer after each step instead of a copy back.
        let moving = movingPositions(node, layout: layout)
        body.block("") { loop in
          for (slot, packing) in packings.enumerated()
          where node.body.contains(where: { $0.results.first == packing.member.results.first }) {
            loop.line(
              "\(packing.packStatement(source: pointer(packing.right), destination: packedPointer(slot)))  /* \(CText.comment("%" + graph[packing.right].name)) packed once for every step */"
            )
          }
          for position in layout.carriedRange {
            let argument = node.regionArguments[position]
            let note = CText.comment("%" + graph[argument].name)
            if moving.contains(position), let name = local(argument) {
              loop.line(
                "unsigned char* \(name) = (unsigned char*)\(pointer(node.operands[position]));  /* \(note) starts as \(CText.comment("%" + graph[node.operands[position]].name)) */"
              )
              let next = node.regionResults[position]
              if placement.alternating.contains(next), let nextName = local(next),
                let spare = placement.spareBuffer[next]
              {
                let final = pointer(node.results[position], writable: true)
                loop.line(
                  "unsigned char* \(nextName) = \(name) == (unsigned char*)\(final) ? (unsigned char*)\(address(of: next, in: spare, writable: true)) : (unsigned char*)\(final);  /* the step writes \(CText.comment("%" + graph[next].name)) into whichever of two buffers it does not read */"
                )
              }
              continue
            }
            guard storage[node.results[position]] != storage[node.operands[position]] else {
              continue
            }
            loop.line(
              "memcpy(\(pointer(node.results[position], writable: true)), \(pointer(node.operands[position])), \(bytes(node.operands[position])));  /* \(CText.comment("%" + graph[node.results[position]].name)) starts as \(CText.comment("%" + graph[node.operands[position]].name)) */"
            )
            copies += 1
          }
          loop.block("for (int64_t step = 0; step < \(steps); step++)") { iteration in
            iteration.line(
              "const int64_t t = \(layout.reverse ? "\(steps) - 1 - step" : "step");")
            iteration.line("(void)t;")
            for (position, argument) in node.regionArguments.enumerated() {
              guard let name = local(argument) else { continue }
              if layout.carriedRange.contains(position) {
                if moving.contains(position) { continue }
                iteration.line(
                  "unsigned char* const \(name) = (unsigned char*)\(pointer(node.results[position], writable: true));  /* \(CText.comment("%" + graph[argument].name)) */"
                )
              } else {
                iteration.line(
                  "unsigned char* const \(name) = (unsigned char*)\(pointer(node.operands[position])) + t * \(bytes(argument));  /* \(CText.comment("%" + graph[argument].name)): step t */"
                )
              }
              iteration.line("(void)\(name);")
            }
            // Outputs a body kernel writes straight into their step's slot.
            for (offset, result) in node.regionResults.enumerated().dropFirst(layout.carried)
            where placement.slotOfOutput[result] == offset - layout.carried {
              let name = local(result)!
              iteration.line(
                "unsigned char* const \(name) = (unsigned char*)\(pointer(node.results[offset], writable: true)) + t * \(bytes(result));  /* step t of \(CText.comment("%" + graph[node.results[offset]].name)), written by the body */"
              )
            }
            for member in node.body {
              if member.hasRegion {
                emitLoop(member, into: &iteration)
                continue
              }
              if case .alias? = OpRegistry.definition(member.op)?.c { continue }
              call(
                member, kernel: kernelName(memberKernelIDs[member.results[0]]!), into: &iteration)
            }
            // Outputs first: they may read a carried argument's value at the step's start.
            for (offset, result) in node.regionResults.enumerated().dropFirst(layout.carried)
            where placement.slotOfOutput[result] != offset - layout.carried {
              iteration.line(
                "memcpy((unsigned char*)\(pointer(node.results[offset], writable: true)) + t * \(bytes(result)), \(pointer(result)), \(bytes(result)));  /* step t of \(CText.comment("%" + graph[node.results[offset]].name)) */"
              )
            }
            // The copies first: they may read an argument whose pointer then moves.
            func saved(_ position: Int) -> String {
              "(arena + carried_save_offsets[\(carriedSaveSlots[node.regionArguments[position]]!)])"
            }
            for move in carriedMoves(node, layout: layout) {
              switch move {
              case .save(let position):
                iteration.line(
                  "memcpy(\(saved(position)), \(pointer(node.regionArguments[position])), \(bytes(node.regionArguments[position])));  /* \(CText.comment("%" + graph[node.regionArguments[position]].name)) saved: the next step's carried values read it after it is overwritten */"
                )
              case .move(let position, let source):
                let from: String
                switch source {
                case .carried(let other): from = pointer(node.regionArguments[other])
                case .value(let value): from = pointer(value)
                case .saved(let other): from = saved(other)
                }
                iteration.line(
                  "memmove(\(pointer(node.results[position], writable: true)), \(from), \(bytes(node.regionResults[position])));  /* the carried \(CText.comment("%" + graph[node.regionArguments[position]].name)) for the next step */"
                )
              }
            }
            for position in moving {
              let argument = node.regionArguments[position]
              let next = node.regionResults[position]
              if let name = local(argument), let nextName = local(next) {
                if placement.alternating.contains(next), let spare = placement.spareBuffer[next] {
                  // The buffer just written becomes the argument; the next step writes the other.
                  let final = pointer(node.results[position], writable: true)
                  iteration.line(
                    "\(name) = \(nextName);  /* the carried \(CText.comment("%" + graph[argument].name)) for the next step */"
                  )
                  iteration.line(
                    "\(nextName) = \(name) == (unsigned char*)\(final) ? (unsigned char*)\(address(of: next, in: spare, writable: true)) : (unsigned char*)\(final);"
                  )
                } else {
                  iteration.line(
                    "\(name) = \(nextName);  /* the carried \(CText.comment("%" + graph[argument].name)) for the next step: its output slot */"
                  )
                }
              }
            }
          }
          // A moving carried value ends in the final result's buffer, or is copied there once.
          for position in moving {
            guard let name = local(node.regionArguments[position]) else { continue }
            let final = pointer(node.results[position], writable: true)
            loop.line(
              "if (\(name) != (unsigned char*)\(final)) memcpy(\(final), \(name), \(bytes(node.results[position])));  /* \(CText.comment("%" + graph[node.results[position]].name)) */"
            )
            copies += 1
          }
        }
      }
      if !keptNodes.isEmpty {
        let slot = keptSlot
        body.line(
          "/* Values of parameters, state and constants alone (\(keptBytes) bytes): computed again only when they may have changed since the last call. */"
        )
        body.line("int kept_stale;")
        body.line(
          "unsigned char* const kept = (unsigned char*)lamina_derived(ctx, \(slot), \(keptBytes), &kept_stale);"
        )
        body.line(
          "if (!kept) return lamina_fail(ctx, LAMINA_ERROR_MEMORY, \"out of memory for the values kept between calls\");"
        )
        body.block("if (kept_stale)") { block in
          emittingKeptBlock = true
          defer { emittingKeptBlock = false }
          // A failure leaves the buffer part-filled: the next call computes it again.
          var onFailure = "{ lamina_derived_forget(ctx, \(slot)); return status; }"
          if transientBytes > 0 {
            block.line(
              "/* Convolution weights of parameters alone, one at a time (\(transientBytes) bytes): here only until the convolutions have packed them. */"
            )
            block.line(
              "unsigned char* const transient = (unsigned char*)aligned_alloc(64, \(transientBytes));"
            )
            block.line(
              "if (!transient) { lamina_derived_forget(ctx, \(slot)); return lamina_fail(ctx, LAMINA_ERROR_MEMORY, \"out of memory for convolution weights before they are packed\"); }"
            )
            onFailure = "{ free(transient); lamina_derived_forget(ctx, \(slot)); return status; }"
          }
          for nodeIndex in needed where keptNodes.contains(nodeIndex) {
            let node = graph.nodes[nodeIndex]
            call(
              node, kernel: kernelName(nodeIndex), into: &block, onFailure: onFailure,
              perCall: false)
            // Each convolution packs a transient value into its own slot before the next one
            // overwrites it; at its call the convolution finds its copy current (and gets NULL).
            for value in node.results {
              for packer in transientPackers[value] ?? [] {
                let convolution = graph.nodes[packer]
                block.line(
                  "/* \(CText.comment("%" + graph[value].name)) packed for \(CText.comment("%" + graph[convolution.result].name)) */"
                )
                // Without a slot or geometry (never for a node transientValues chose), an error.
                block.line(
                  derivedSlots[convolution.results[0]].flatMap { derivedSlot in
                    ConvolutionKernels.deriveCall(
                      of: convolution, in: graph, slot: derivedSlot, weights: pointer(value))
                  } ?? "status = LAMINA_ERROR_ARGUMENT;")
                block.line(
                  "if (status != LAMINA_OK) { free(transient); lamina_derived_forget(ctx, \(slot)); return lamina_fail(ctx, status, \"%s\", status == LAMINA_ERROR_MEMORY ? \"out of memory for a convolution's packed weights\" : \"a convolution's weights could not be packed\"); }"
                )
              }
            }
          }
          if transientBytes > 0 { block.line("free(transient);") }
        }
      }
      for nodeIndex in needed {
        let node = graph.nodes[nodeIndex]
        if node.hasRegion {
          emitLoop(node, into: &body)
          continue
        }
        if keptNodes.contains(nodeIndex) { continue }
        // Fused nodes are not in the op table; they always run their kernel.
        if case .alias? = OpRegistry.definition(node.op)?.c { continue }
        if let plan, node.definition?.concatenation != nil,
          node.operands.allSatisfy({ plan.concatPlacements[rootValue($0)]?.concat == node.result }),
          Set(node.operands.map(rootValue)).count == node.operands.count
        {
          body.line(
            "/* \(CText.comment("%" + graph[node.result].name)) = concat: no kernel call, every operand was computed in place in its buffer */"
          )
          continue
        }
        call(node, kernel: kernelName(nodeIndex), into: &body)
      }
      // Exposed values not computed in place (inputs, parameters, aliases, values exposed twice).
      for (kind, values, array) in [("output", outputs, "outputs"), ("loss", losses, "losses")] {
        for (index, value) in values.enumerated() {
          let expected: Storage = kind == "output" ? .output(index) : .loss(index)
          if storage[value] == expected { continue }
          let type = graph.type(of: value)
          body.line(
            "memcpy(\(array)[\(index)], \(pointer(value)), (size_t)(\(cProduct(type.shape))) * \(type.dtype.byteSize));"
          )
          copies += 1
        }
      }
      // The step's updates land only now: every kernel above read the old values.
      for update in updates {
        guard let target = storage[update.target], storage[update.value] != target else { continue }
        let type = graph.type(of: update.target)
        let destination: String
        switch target {
        case .param(let index): destination = "ctx->params + lamina_param_offsets[\(index)]"
        case .state(let index): destination = "ctx->params + lamina_state_offsets[\(index)]"
        default: continue
        }
        body.line(
          "memcpy(\(destination), \(pointer(update.value)), (size_t)(\(cProduct(type.shape))) * \(type.dtype.byteSize));  /* \(CText.comment("%" + graph[update.target].name)) */"
        )
        copies += 1
      }
      body.line("return LAMINA_OK;")
    }
    writer.line()
    // Every value of the arena class, planned or not (updates the plan writes in place included).
    let arenaSizes = needed.flatMap { graph.nodes[$0].results }.filter { classes[$0] == .arena }
      .map { SymbolicSize(bytesOf: graph.type(of: $0)) }
    statistics.append(
      EntryPointStatistics(
        name: name, kernelLaunches: launches, copies: copies, intermediates: arenaSizes, plan: plan)
    )
  }

  /// One static function per training step, and `lamina_train_step` choosing among them.
  mutating func emitTrainSteps() {
    let steps = trainableSteps
    for (index, step) in steps.enumerated() {
      let loss = graph.losses.first { $0.name == step.lossName }!.value
      emitEntryPoint(
        name: "train_\(index)", outputs: [], losses: [loss],
        updates: graph.assignments.filter { $0.step == step.name })
    }
    writer.block(
      "static LAMINA_ENTRY_POINT int lamina_run_train_step(lamina_context* ctx, int64_t step, const int64_t* dims, const void* const* inputs, void* loss)"
    ) { body in
      body.line("if (!ctx) return LAMINA_ERROR_ARGUMENT;")
      body.line("if (!loss) return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"loss is NULL\");")
      body.line("void* const losses[1] = {loss};")
      body.block("switch (step)") { cases in
        for (index, step) in steps.enumerated() {
          cases.line(
            "case \(index): return lamina_train_\(index)(ctx, dims, inputs, losses);  /* \(CText.comment(step.name)) */"
          )
        }
        cases.line(
          "default: return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, \"no training step %lld (the model has \(steps.count))\", (long long)step);"
        )
      }
    }
    writer.line()
  }

  /// Training steps whose updates the optimizer pass built.
  var trainableSteps: [TrainStep] {
    graph.trainSteps.filter { step in graph.assignments.contains { $0.step == step.name } }
  }

  /// `lamina_initialize_state`: state whose initializer is not all zeros (batch norm's running
  /// variance starts at one) gets its first value; lamina_create has zeroed the rest.
  mutating func emitStateInitialization() {
    writer.line("/* State's first values (lamina_create zeroes the storage first). */")
    writer.line("static void lamina_initialize_state(unsigned char* params) {")
    var any = false
    for (index, state) in graph.states.enumerated() {
      // State initializers need no randomness (zeros, ones, a constant): the first value stands
      // for every element. One that is not uniform is set by the runtime from `initialState`.
      guard let definition = InitializerRegistry.definition(state.initializer.name),
        let shape = graph.type(of: state.value).concreteShape([:])
      else { continue }
      var generator = SeededGenerator(seed: 0, stream: graph[state.value].name)
      let values = definition.generate(shape, state.initializer.arguments, &generator)
      guard let value = values.first, values.allSatisfy({ $0 == value }) else { continue }
      // A non-finite constant cannot be a C literal; the runtime sets such state from Swift.
      guard value != 0, value.isFinite else { continue }
      any = true
      let type = CExpressionContext.cType(graph.type(of: state.value).dtype)
      writer.line(
        "  { /* \(CText.comment(graph[state.value].name)) = \(CText.comment(state.initializer.description)) */"
      )
      writer.line("    \(type)* data = (\(type)*)(params + lamina_state_offsets[\(index)]);")
      writer.line(
        "    for (int64_t i = 0; i < lamina_state_sizes[\(index)] / (int64_t)sizeof(\(type)); i++) data[i] = (\(type))\(value);"
      )
      writer.line("  }")
    }
    if !any { writer.line("  (void)params;") }
    writer.line("}")
    writer.line()
  }

  /// The model's description and the table of its entry points, which `lamina_model_setup.c`
  /// (the exported C interface) reads.
  mutating func emitModelDescription(_ signature: ModelSignature, trainingEntries: Bool) {
    let json = signature.json()
    let literal = CText.stringLiteral(json)
    emitStateInitialization()
    writer.line("/* ======== The model, for the C interface (lamina_model_setup.c) ======== */")
    writer.line()
    writer.line(
      """
      static const lamina_model_description lamina_model = {
        .signature = \(literal),
        .param_count = LAMINA_PARAM_COUNT,
        .state_count = LAMINA_STATE_COUNT,
        .params_bytes = LAMINA_PARAMS_BYTES,
        .param_offsets = lamina_param_offsets,
        .param_sizes = lamina_param_sizes,
        .state_offsets = lamina_state_offsets,
        .state_sizes = lamina_state_sizes,
        .initialize_state = lamina_initialize_state,
      };

      /* This file is compiled once per instruction set (-DLAMINA_ISA=avx512 -DLAMINA_ISA_NAME=...);
         lamina_create picks the widest table the CPU runs. */
      LAMINA_HIDDEN const lamina_entry_points LAMINA_ENTRY_POINTS = {
        .instruction_set = LAMINA_ISA_NAME,
        .model = &lamina_model,
        .forward = lamina_run_forward,
        .evaluate = lamina_run_evaluate,
        .train_step = lamina_run_train_step,
        .forward_training = \(trainingEntries ? "lamina_run_forward_training" : "NULL"),
        .evaluate_training = \(trainingEntries ? "lamina_run_evaluate_training" : "NULL"),
      };
      """)
  }
}
