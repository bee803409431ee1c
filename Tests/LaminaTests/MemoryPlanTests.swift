import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// The memory planner: plans checked against an independent liveness computation (no two buffers
/// live at the same time overlap, at several batch sizes and in every layout), the arena against the
/// lower bound on every example, and compiled results with the plan against results without it and
/// against the interpreter.
@Suite("Memory planning")
struct MemoryPlanTests {
  static let examples =
    RepositoryPaths.files(in: "examples", withExtension: "lam") + [
      RepositoryPaths.path("Tests/LaminaTests/Fixtures/every_op.lam"),
      concatFixture,
    ]
  /// Concats whose operands the plan computes in place (chains, operands read again, symbolic sizes).
  static let concatFixture = RepositoryPaths.path("Tests/LaminaTests/Fixtures/concat_in_place.lam")

  /// Every symbol of the graph bound to `value`.
  static func bindings(_ graph: Graph, _ value: Int) -> [String: Int] {
    var bindings: [String: Int] = [:]
    for input in graph.inputs {
      for symbol in graph.type(of: input.value).symbols { bindings[symbol] = value }
    }
    return bindings
  }

  /// Problems with the plans of every entry point of `graph` (empty when sound).
  static func problems(in graph: Graph) -> [String] {
    var problems: [String] = []
    for entry in EntryPoint.all(in: graph) {
      guard let plan = graph.memoryPlans[entry.name] else {
        problems.append("\(entry.name): no plan")
        continue
      }
      problems += Self.problems(plan, entry: entry, graph: graph).map { "\(entry.name): \($0)" }
    }
    return problems
  }

  static func problems(_ plan: MemoryPlan, entry: EntryPoint, graph: Graph) -> [String] {
    var problems: [String] = []
    let schedule = entry.schedule(in: graph)
    if plan.schedule != schedule { problems.append("schedule differs from the entry point's") }
    let storage = entry.storage(in: graph, schedule: schedule)
    func root(_ value: ValueID) -> ValueID {
      if case .alias(let operand)? = storage[value] { return root(operand) }
      return value
    }
    func name(_ value: ValueID) -> String { "%" + graph[value].name }
    // Liveness, computed again here: defining step and last step reading the storage.
    var defined: [ValueID: Int] = [:]
    var lastRead: [ValueID: Int] = [:]
    for (step, nodeIndex) in schedule.enumerated() {
      for result in graph.nodes[nodeIndex].results { defined[result] = step }
      for operand in graph.nodes[nodeIndex].operands {
        lastRead[root(operand)] = max(lastRead[root(operand)] ?? step, step)
      }
      // A loop's body values are written and read during the loop's step, every iteration.
      for member in EntryPoint.regionMembers(of: graph.nodes[nodeIndex]) {
        for result in member.results { defined[result] = step }
        for operand in member.operands {
          lastRead[root(operand)] = max(lastRead[root(operand)] ?? step, step)
        }
      }
    }
    let end = schedule.count
    for (index, value) in entry.outputs.enumerated() where storage[value] != .output(index) {
      lastRead[root(value)] = end
    }
    for (index, value) in entry.losses.enumerated() where storage[value] != .loss(index) {
      lastRead[root(value)] = end
    }
    for update in entry.updates where plan.directUpdates[update.value] == nil {
      lastRead[root(update.value)] = end
    }
    // Updates written straight into their target: nothing reads the old value afterwards.
    for (value, target) in plan.directUpdates {
      guard let step = defined[value] else {
        problems.append("direct update \(name(value)) is not computed by a kernel")
        continue
      }
      if let read = lastRead[target], read > step {
        problems.append("\(name(target)) is read at step \(read) after \(name(value)) overwrote it")
      }
    }
    // Every intermediate has a buffer whose lifetime covers its own.
    for (value, storageClass) in storage
    where storageClass == .arena && plan.directUpdates[value] == nil {
      guard let buffer = plan.bufferOf[value] else {
        problems.append("\(name(value)) has no buffer")
        continue
      }
      let first = defined[value]!
      let last = max(first, lastRead[value] ?? first)
      let span = plan.buffers[buffer].firstStep...plan.buffers[buffer].lastStep
      if !span.contains(first) || !span.contains(last) {
        problems.append("\(name(value)) lives \(first)-\(last), its buffer only \(span)")
      }
    }
    // Values sharing a buffer hand it over: the previous one dies where the next is defined.
    for buffer in plan.buffers {
      for (previous, next) in zip(buffer.values, buffer.values.dropFirst()) {
        let dies = max(defined[previous]!, lastRead[previous] ?? defined[previous]!)
        if dies > defined[next]! {
          problems.append("\(name(next)) overwrites \(name(previous)), still read at step \(dies)")
        }
        if graph.type(of: previous).elementCount != graph.type(of: next).elementCount
          || graph.type(of: previous).dtype.byteSize != graph.type(of: next).dtype.byteSize
        {
          problems.append("\(name(next)) does not fit the buffer of \(name(previous))")
        }
      }
    }
    // Concat operands computed in place: the buffer holding one lies in its concat's buffer at the
    // bytes of the operands before it, and nothing overwrites the range while the concat, or a
    // concat holding it, still holds the operand.
    func encloses(_ outer: Int, _ inner: Int) -> Bool {
      var current = plan.buffers[inner].enclosing?.buffer
      while let buffer = current {
        if buffer == outer { return true }
        current = plan.buffers[buffer].enclosing?.buffer
      }
      return false
    }
    func dies(_ value: ValueID) -> Int { max(defined[value]!, lastRead[value] ?? defined[value]!) }
    var placedInBuffer: [Int: [ValueID]] = [:]  // buffer → values in buffers it encloses
    for (value, placement) in plan.concatPlacements {
      guard let buffer = plan.bufferOf[value], let concatBuffer = plan.bufferOf[placement.concat],
        let node = graph.nodes.first(where: { $0.results == [placement.concat] })
      else {
        problems.append("\(name(value)) placed in \(name(placement.concat)) without buffers")
        continue
      }
      if plan.buffers[buffer].enclosing?.buffer != concatBuffer {
        problems.append(
          "the buffer of \(name(value)) is not enclosed in \(name(placement.concat))'s")
      }
      if plan.buffers[buffer].values.last != value {
        problems.append("\(name(value)) is overwritten in its buffer while placed in a concat")
      }
      if !node.operands.contains(where: { root($0) == value }) {
        problems.append("\(name(value)) is not an operand of \(name(placement.concat))")
      }
      for ancestor in plan.buffers.indices where encloses(ancestor, buffer) {
        placedInBuffer[ancestor, default: []] += plan.buffers[buffer].values
      }
      // Offsets at several symbol values: the operands before it, whole rows of the result.
      let result = graph.type(of: placement.concat)
      var axis = node.attributes["axis"]?.intValue ?? 0
      if axis < 0 { axis += result.rank }
      for symbolValue in [1, 3, 64] {
        let bindings = Self.bindings(graph, symbolValue)
        let leading = result.shape[..<axis].reduce(1) { $0 * ($1.evaluate(bindings) ?? -1) }
        if leading != 1 {
          problems.append(
            "\(name(value)) placed in \(name(placement.concat)), whose operands interleave when the symbols are \(symbolValue)"
          )
        }
        let position = node.operands.firstIndex { root($0) == value } ?? 0
        let before = node.operands[..<position].reduce(0) {
          $0 + (graph.type(of: $1).elementCount.evaluate(bindings) ?? -1) * result.dtype.byteSize
        }
        for layout in plan.layouts.indices
        where plan.layouts[layout].isValid(for: bindings) {
          let at = plan.offset(of: buffer, layout: layout, bindings)
          let concatAt = plan.offset(of: concatBuffer, layout: layout, bindings)
          if at != concatAt + before {
            problems.append(
              "layout \(layout), symbols = \(symbolValue): \(name(value)) at \(at), its range of \(name(placement.concat)) at \(concatAt + before)"
            )
          }
        }
      }
    }
    // A value computed in place in a buffer overwrites every value of the buffers it encloses: they
    // must all be dead (read at an earlier step) by then.
    for (index, buffer) in plan.buffers.enumerated() {
      for next in buffer.values.dropFirst() {
        for inside in placedInBuffer[index] ?? [] where dies(inside) >= defined[next]! {
          problems.append(
            "\(name(next)) overwrites \(name(inside)) (in place in a concat), still read at step \(dies(inside))"
          )
        }
      }
    }
    // No two buffers live at the same time overlap, in any layout, at the values it is valid for,
    // unless one encloses the other.
    for (number, layout) in plan.layouts.enumerated() {
      let threshold = layout.minimumSymbolValue
      for value in Set([1, 3, 64, threshold, threshold + 1, 3 * threshold, 1000]) {
        let bindings = bindings(graph, value)
        guard layout.isValid(for: bindings) else { continue }
        let offsets = plan.buffers.indices.map { plan.offset(of: $0, layout: number, bindings) }
        let sizes = plan.buffers.map { $0.size.evaluate(bindings) }
        // Outermost buffers start on 64 bytes; a concat operand in place starts where its range does.
        for (index, offset) in offsets.enumerated()
        where offset % 64 != 0 && plan.buffers[index].enclosing == nil {
          problems.append("layout \(number), \(value): buffer \(index) at \(offset) is not aligned")
        }
        let total = plan.arenaBytes(layout: number, bindings)
        for first in plan.buffers.indices {
          if offsets[first] + sizes[first] > total {
            problems.append("layout \(number), \(value): buffer \(first) ends past the arena")
          }
          for second in plan.buffers.indices where second > first {
            guard plan.buffers[first].overlapsInTime(plan.buffers[second]),
              sizes[first] > 0, sizes[second] > 0,
              !encloses(first, second), !encloses(second, first)
            else { continue }
            if offsets[first] < offsets[second] + sizes[second]
              && offsets[second] < offsets[first] + sizes[first]
            {
              problems.append(
                "layout \(number), symbols = \(value): buffers \(first) (\(name(plan.buffers[first].values[0]))) and \(second) (\(name(plan.buffers[second].values[0]))) overlap"
              )
            }
          }
        }
      }
    }
    return problems
  }

  // MARK: Random graphs

  /// A random model: chains and DAGs of elementwise, broadcasting, matmul, reduction, softmax and
  /// reshape ops over `[batch, width]` values, with an output, a loss and a training step.
  static func randomModel(seed: UInt64) -> String {
    var generator = SeededGenerator(seed: seed)
    func pick<T>(_ choices: [T]) -> T { choices[Int(generator.next() % UInt64(choices.count))] }
    var lines: [String] = []
    var params: [String] = []
    var values: [(name: String, width: Int)] = [("x", 8)]
    let count = 6 + Int(generator.next() % 14)
    for index in 0..<count {
      let name = "v\(index)"
      // Mostly the latest value (chains), sometimes an older one (DAGs, long lifetimes).
      let a = generator.next() % 3 == 0 ? pick(values) : values.last!
      let same = values.filter { $0.width == a.width }
      var width = a.width
      let expression: String
      switch generator.next() % 9 {
      case 0, 1:
        expression = "\(pick(["relu", "tanh", "sigmoid"]))(\(a.name))"
      case 2:
        let b = pick(same)
        expression = "\(a.name) \(pick(["+", "*", "-"])) \(b.name)"
      case 3:
        width = pick([4, 8, 16])
        let weight = "w\(params.count)"
        params.append("param \(weight): f32[\(a.width), \(width)] = glorot_uniform()")
        expression = "\(a.name) @ \(weight)"
      case 4:
        let bias = "b\(params.count)"
        params.append("param \(bias): f32[\(a.width)] = normal(0, 1)")
        expression = "\(a.name) + \(bias)"
      case 5:
        expression = "\(a.name) * sum(\(a.name), axes: [1], keepdims: true)"
      case 6:
        expression = "softmax(\(a.name))"
      case 7:
        lines.append("  let \(name)_rows = reshape(\(a.name), shape: [-1, 4])")
        expression = "reshape(relu(\(name)_rows), shape: [batch, \(a.width)])"
      default:
        expression = "\(a.name) - mean(\(a.name), axes: [-1], keepdims: true)"
      }
      lines.append("  let \(name) = \(expression)")
      values.append((name, width))
    }
    let last = values.last!.name
    let other = values[values.count / 2].name
    if params.isEmpty {
      params.append("param w: f32[8, 8] = glorot_uniform()")
      lines.append("  let extra = x @ w")
      lines.append("  output extra")
    }
    let optimizer = pick(["sgd(lr: 0.01)", "sgd(lr: 0.01, momentum: 0.9)", "adam(lr: 0.001)"])
    return """
      model Random\(seed) {
        input x: f32[batch, 8]
      \(params.map { "  " + $0 }.joined(separator: "\n"))
      \(lines.joined(separator: "\n"))
        output last = \(last)
        output middle = \(other)
        loss = mean(\(last) * \(last))
        train with \(optimizer)
      }
      """
  }

  @Test("plans of random graphs keep live buffers apart", arguments: 0..<40)
  func randomGraphs(seed: Int) throws {
    let source = Self.randomModel(seed: UInt64(seed))
    for pipeline in [Pipeline.inference, Pipeline.training] {
      let model = try Model(source: source, pipeline: pipeline)
      let lowered = try Model.lower(model.graph, passes: Pipeline.codegen)
      let problems = Self.problems(in: lowered)
      #expect(problems.isEmpty, "seed \(seed):\n\(source)\n\(problems.joined(separator: "\n"))")
    }
  }

  // MARK: Examples

  @Test("plans of every example are sound and within 1.25x of the lower bound", arguments: examples)
  func example(path: String) throws {
    let name = URL(fileURLWithPath: path).lastPathComponent
    for pipeline in [Pipeline.inference, Pipeline.training] {
      let model = try Model(contentsOf: path, pipeline: pipeline)
      let lowered = try Model.lower(model.graph, passes: Pipeline.codegen)
      let problems = Self.problems(in: lowered)
      #expect(problems.isEmpty, "\(name): \(problems.joined(separator: "\n"))")
      for (entry, plan) in lowered.memoryPlans.sorted(by: { $0.key < $1.key }) {
        for batch in [1, 64] {
          let bindings = Self.bindings(lowered, batch)
          let arena = plan.arenaBytes(bindings)
          let bound = plan.lowerBound(bindings)
          let ratio = bound == 0 ? 1 : Double(arena) / Double(bound)
          print(
            "memory plan \(name) \(entry) batch \(batch): arena \(arena), no reuse \(plan.noReuseBytes(bindings)), lower bound \(bound), ratio \(ratio)"
          )
          #expect(ratio <= 1.25, "\(name) \(entry) batch \(batch): arena/lower bound \(ratio)")
          #expect(arena <= max(plan.noReuseBytes(bindings), 64), "\(name) \(entry)")
        }
      }
    }
  }

  // MARK: Compiled

  func compile(_ model: Model, planned: Bool, parameters: [String: Tensor]) throws
    -> (CompiledModel, GeneratedModel)
  {
    var options = TestCache.options()
    options.codegenPasses =
      planned ? Pipeline.codegen : Pipeline.codegen.filter { $0.name != MemoryPlanning.name }
    let compilation = try model.buildLibrary(options: options)
    let compiled = try CompiledModel(libraryPath: compilation.libraryPath)
    try compiled.setParameters(parameters)
    return (compiled, compilation.generated)
  }

  @Test(
    "compiled results with the plan equal those without it and the interpreter's",
    arguments: examples)
  func compiledWithPlan(path: String) throws {
    let name = URL(fileURLWithPath: path).lastPathComponent
    let model = try Model(contentsOf: path, pipeline: Pipeline.training)
    // The seed CompiledModelTests uses: deep_mlp's f32 error against the f64 interpreter is
    // within its tolerance there.
    let parameters = try model.initialParameters(seed: 11)
    let (planned, plannedC) = try compile(model, planned: true, parameters: parameters)
    let (unplanned, unplannedC) = try compile(model, planned: false, parameters: parameters)
    #expect(plannedC.source.contains("lamina_place("))
    #expect(!unplannedC.source.contains("lamina_place(&"))
    let names = model.graph.outputs.map(\.name) + model.graph.losses.map(\.name)
    // Batch 64 runs the layouts for large batches.
    for batch in [1, 7, 64] {
      let symbols = Dictionary(uniqueKeysWithValues: planned.signature.symbols.map { ($0, batch) })
      let inputs = TestData.inputs(for: model.graph, symbols: symbols, seed: UInt64(batch))
      let (outputs, losses) = try planned.evaluate(inputs)
      let (outputsWithout, lossesWithout) = try unplanned.evaluate(inputs)
      // The interpreter (slow in debug builds) only at small batches, as CompiledModelTests does.
      let expected =
        batch > 8
        ? [:] : try model.interpret(inputs: inputs, parameters: parameters, outputs: names)
      for (key, tensor) in outputs.merging(losses, uniquingKeysWith: { a, _ in a }) {
        let without = outputsWithout[key] ?? lossesWithout[key]!
        #expect(tensor == without, "\(name) batch \(batch): \(key) differs without the plan")
        guard let reference = expected[key] else { continue }
        let scale = TestData.largestFiniteMagnitude(reference) ?? 1
        let tolerance: (Double, Double) =
          switch reference.dtype {
          case .f32: (1e-5, 1e-6 * max(scale, 1))
          case .f64: (1e-12, 1e-14 * max(scale, 1))
          case .i32, .i64: (0, 0)
          }
        let problem = TestData.mismatch(tensor, reference, rtol: tolerance.0, atol: tolerance.1)
        #expect(problem == nil, "\(name) batch \(batch), \(key): \(problem ?? "")")
      }
      let forwardInputs = inputs.filter { input, _ in
        planned.signature.inputs.first { $0.name == input }?.forward == true
      }
      let free = TestData.freeDimensions(
        symbols, given: forwardInputs, signature: planned.signature)
      #expect(
        try planned.forward(forwardInputs, dims: free) == outputsWithout, "\(name) forward")
    }
    // Training steps: the same losses, parameters and state, step after step; the first step
    // against the interpreter too.
    guard !planned.signature.steps.isEmpty else { return }
    let values = parameters.merging(try model.graph.initialState()) { a, _ in a }
    for (step, batch) in [(0, 5), (1, 64), (2, 3)] {
      let symbols = Dictionary(uniqueKeysWithValues: planned.signature.symbols.map { ($0, batch) })
      let inputs = TestData.inputs(for: model.graph, symbols: symbols, seed: UInt64(10 + step))
      let loss = try planned.trainStep(inputs)
      let lossWithout = try unplanned.trainStep(inputs)
      #expect(loss == lossWithout, "\(name) step \(step): loss \(loss) vs \(lossWithout)")
      let after = try planned.parameters().merging(try planned.state()) { a, _ in a }
      let afterWithout = try unplanned.parameters().merging(try unplanned.state()) { a, _ in a }
      for (key, tensor) in after {
        #expect(
          tensor == afterWithout[key], "\(name) step \(step): \(key) differs without the plan")
      }
      guard step == 0 else { continue }
      let reference = try model.interpretTrainStep(inputs, values: values)
      // Parameters after the step are compared bit for bit with the unplanned library above; against
      // the interpreter only the loss (Adam's normalized steps amplify f32 rounding of tiny
      // gradients; TrainStepTests covers the update rules).
      #expect(
        abs(loss - reference.loss) <= 1e-4 * max(1, abs(reference.loss)),
        "\(name): loss \(loss), interpreter \(reference.loss)")
    }
  }

  @Test(
    "concat operands are computed in place: chains, late readers, the same value twice, symbolic sizes"
  )
  func concatInPlace() throws {
    let model = try Model(contentsOf: Self.concatFixture, pipeline: Pipeline.training)
    let lowered = try Model.lower(model.graph, passes: Pipeline.codegen)
    let plan = try #require(lowered.memoryPlans["forward"])
    func value(_ name: String) throws -> ValueID {
      try #require(lowered.nodes.flatMap(\.results).first { lowered[$0].name == name })
    }
    func placed(_ name: String) throws -> String? {
      try plan.concatPlacements[value(name)].map { lowered[$0.concat].name }
    }
    // The chain s1 → c1 → c2 → c3 and the operands read again later (t1) are in place; the input s
    // and the second `a` are copied; the concat along a later axis of a symbolic batch copies.
    #expect(try placed("s1") == "c1")
    #expect(try placed("c1") == "c2")
    #expect(try placed("c2") == "c3")
    #expect(try placed("t1") == "c2")
    #expect(try placed("t2") == "c3")
    #expect(try placed("a") == "rows")
    #expect(try placed("b") == "rows")
    #expect(!plan.concatPlacements.values.contains { lowered[$0.concat].name == "wide" })
    // Everything in one buffer: c3's, enclosing c2's, enclosing c1's.
    let c3 = try #require(plan.bufferOf[try value("c3")])
    for name in ["s1", "c1", "c2", "t1", "t2"] {
      #expect(plan.outermost(try #require(plan.bufferOf[try value(name)])).buffer == c3, "\(name)")
    }
    // c2 needs no kernel call; c1 copies the input s, c3 copies t1 (placed in c2 already), rows
    // the second a, wide both.
    let generated = try model.generateC(passes: Pipeline.codegen)
    #expect(generated.source.contains("/* %c2 = concat: no kernel call"))
    #expect(!generated.source.contains("/* %c3 = concat: no kernel call"))
    #expect(!generated.source.contains("/* %c1 = concat: no kernel call"))
    #expect(!generated.source.contains("/* %rows = concat: no kernel call"))
    // Against the interpreter at batch 1 and 3 (MemoryPlanTests.compiledWithPlan also compares
    // with the library compiled without a plan, and runs training steps).
    let parameters = try model.initialParameters(seed: 5)
    let (compiled, _) = try compile(model, planned: true, parameters: parameters)
    let names = model.graph.outputs.map(\.name) + model.graph.losses.map(\.name)
    for batch in [1, 3] {
      let symbols = ["batch": batch, "length": batch + 1]
      let inputs = TestData.inputs(for: model.graph, symbols: symbols, seed: UInt64(batch))
      let (outputs, losses) = try compiled.evaluate(inputs)
      let expected = try model.interpret(inputs: inputs, parameters: parameters, outputs: names)
      for (key, tensor) in outputs.merging(losses, uniquingKeysWith: { a, _ in a }) {
        let reference = try #require(expected[key])
        let scale = TestData.largestFiniteMagnitude(reference) ?? 1
        let problem = TestData.mismatch(tensor, reference, rtol: 1e-5, atol: 1e-6 * max(scale, 1))
        #expect(problem == nil, "batch \(batch), \(key): \(problem ?? "")")
      }
    }
  }

  @Test("statistics count kernels and copies; the plan drops the copies of updates")
  func statistics() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("examples/digits_mlp.lam"), pipeline: Pipeline.training)
    let planned = try model.generateC(passes: Pipeline.codegen)
    let unplanned = try model.generateC(passes: [Fusion()])
    #expect(planned.statistics.map(\.name) == ["forward", "evaluate", "train_0"])
    for (with, without) in zip(planned.statistics, unplanned.statistics) {
      #expect(with.kernelLaunches == without.kernelLaunches)
      #expect(with.kernelLaunches > 0)
      for batch in [1, 64] {
        let dims = ["batch": batch]
        #expect(with.arenaBytes(dims) <= without.arenaBytes(dims), "\(with.name)")
        if with.name == "train_0" {
          #expect(with.arenaBytes(dims) < without.arenaBytes(dims), "\(with.name)")
        }
        #expect(with.intermediateBytes(dims) == without.intermediateBytes(dims), "\(with.name)")
      }
    }
    // sgd with momentum: every update (4 parameters, 4 velocities, the step counter) is copied
    // without the plan, none with it. A weight's update computed in its gradient's GEMM epilogue
    // lands in place too: the GEMM writes the product into a buffer of its own (the carrier), not
    // into one of the updates.
    #expect(unplanned.statistics[2].copies == model.graph.assignments.count)
    #expect(model.graph.assignments.count == 9)
    #expect(planned.statistics[2].copies == 0)
    let lowered = try Model.lower(model.graph, passes: Pipeline.codegen)
    let updateValues = Set(lowered.assignments.map(\.value))
    let carriers = lowered.nodes.compactMap { $0.fusedEpilogueCarrier(in: lowered) }
    #expect(carriers.count >= 2)
    #expect(!carriers.contains(where: updateValues.contains))
  }
}
