import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// Inference-mode batch norm folded into the convolution or matmul before it: the inference entry
/// points run the `mode-specialize` pass's copy of the forward graph, where the statistics come from
/// the running state alone, so fusion puts the normalize (and what follows it) into the producer's
/// epilogue. Checked on the fused IR (kernel counts), against the interpreter in both modes, and
/// after every way the weights and running statistics change between calls.
@Suite("Batch norm folding", .serialized)
struct BatchNormFoldingTests {
  static let convolution = """
    model ConvNorm {
      input x: f32[batch, 2, 7, 9]
      input t: f32[batch, 4, 7, 9]
      let y = x |> conv2d(filters: 4, kernel: 3, padding: 1) |> batch_norm |> relu
      output y
      loss = mse(y, t)
      train with sgd(lr: 0.1)
    }
    """

  static let dense = """
    model DenseNorm {
      input x: f32[batch, 6]
      input t: f32[batch, 5]
      let y = x |> dense(units: 5) |> batch_norm |> relu
      output y
      loss = mse(y, t)
      train with sgd(lr: 0.1)
    }
    """

  /// LeNet-5 (examples/bench/lenet5.lam) with a batch norm after each convolution and hidden dense.
  static let lenet5 = """
    model LeNet5Norm {
      input x: f32[batch, 1, 28, 28]
      input label: i32[batch]
      let h = x
        |> conv2d(filters: 6, kernel: 5, padding: 2) |> batch_norm |> relu |> max_pool2d(kernel: 2)
        |> conv2d(filters: 16, kernel: 5) |> batch_norm |> relu |> max_pool2d(kernel: 2)
      let logits = h |> flatten
        |> dense(units: 120) |> batch_norm |> relu |> dense(units: 84, activation: "relu")
        |> dense(units: 10)
      output logits
      loss = cross_entropy(logits, label)
      train with sgd(lr: 0.01, momentum: 0.9)
    }
    """

  /// The backend's graph: the training pipeline's result after the codegen passes.
  func lowered(_ source: String, disabling disabled: [String] = []) throws -> Graph {
    try lowered(Model(source: source, pipeline: Pipeline.training).graph, disabling: disabled)
  }

  func lowered(_ graph: Graph, disabling disabled: [String] = []) throws -> Graph {
    var graph = graph
    let passes = Pipeline.codegen.filter { !disabled.contains($0.name) }
    _ = try PassRunner(passes: passes).run(&graph)
    return graph
  }

  /// The nodes `forward` runs in every call that are kernels (aliases such as reshape cost
  /// nothing; values of parameters alone are computed once and kept, `EntryPoint.keptNodes`).
  func forwardKernels(_ graph: Graph) throws -> [Node] {
    let entry = try #require(EntryPoint.all(in: graph).first { $0.name == "forward" })
    let schedule = entry.schedule(in: graph)
    let kept = entry.keptNodes(in: graph, schedule: schedule)
    return schedule.filter { !kept.contains($0) }.map { graph.nodes[$0] }.filter { node in
      if case .alias? = OpRegistry.definition(node.op)?.c { return false }
      return true
    }
  }

  /// Running statistics away from their initial values, for every batch norm of `graph`.
  func runningState(_ graph: Graph, offset: Float = 0) throws -> [String: Tensor] {
    var state: [String: Tensor] = [:]
    for declaration in graph.modelStates {
      let name = graph[declaration.value].name
      guard name.hasSuffix("running_mean") || name.hasSuffix("running_var") else { continue }
      let count = graph.type(of: declaration.value).shape[0].staticValue!
      let isVariance = name.hasSuffix("running_var")
      state[name] = Tensor(
        shape: [count],
        scalars: (0..<count).map { index in
          isVariance
            ? 0.4 + Float(index % 5) * 0.3 + offset : Float(index % 7) * 0.2 - 0.5 + offset
        })
    }
    return state
  }

  /// The compiled model's outputs in `mode` against the interpreter's, from the compiled model's
  /// own parameters and state (so that whatever changed them is what the interpreter sees).
  func expectForwardMatches(
    _ model: Model, _ compiled: CompiledModel, inputs: [String: Tensor], output: String,
    mode: ExecutionMode, sourceLocation: Testing.SourceLocation = #_sourceLocation
  ) throws {
    let parameters = try compiled.parameters().merging(try compiled.modelState()) { a, _ in a }
    let expected = try model.interpret(
      inputs: inputs, parameters: parameters, outputs: [output], mode: mode)
    let actual = try compiled.forward(inputs, mode: mode)
    expectBatchNormClose(
      try #require(actual[output]).doubles(), try #require(expected[output]).doubles(), 2e-5,
      sourceLocation: sourceLocation)
  }

  /// A model whose output `z` depends on folded parameters `s` (the scale) and `c` (a scalar):
  /// compiled equals the interpreter at batch 1 and 4, and again after new values of both.
  func expectFoldMatches(
    _ model: Model, scale: Tensor, sourceLocation: Testing.SourceLocation = #_sourceLocation
  ) throws {
    let compiled = try model.compile(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 3))
    for batch in [1, 4] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 5)
      try expectForwardMatches(
        model, compiled, inputs: inputs, output: "z", mode: .inference,
        sourceLocation: sourceLocation)
    }
    // New values of the folded constants are seen by the next call.
    try compiled.setParameter(scale, named: "s")
    try compiled.setParameter(Tensor(shape: [], scalars: [Float(-0.25)]), named: "c")
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 2], seed: 6)
    try expectForwardMatches(
      model, compiled, inputs: inputs, output: "z", mode: .inference,
      sourceLocation: sourceLocation)
  }

  @Test("inference forward runs conv + batch norm + relu as one kernel, and fewer kernels in all")
  func convolutionKernelCount() throws {
    let folded = try forwardKernels(lowered(Self.convolution))
    let unfolded = try forwardKernels(
      lowered(Self.convolution, disabling: [ModeSpecialization.name]))
    // The normalize is in the convolution's weights and bias (`scale-fold`): its kernel computes
    // only the relu in its epilogue.
    let convolutions = folded.filter { node in
      node.op == "conv2d" || node.body.contains { $0.op == "conv2d" }
    }
    let convolution = try #require(convolutions.first)
    #expect(convolutions.count == 1)
    #expect(convolution.attributes[Node.fusedKindAttribute]?.stringValue == "epilogue")
    #expect(Set(convolution.body.map(\.op)) == ["conv2d", "relu"])
    // Without scale-fold, the normalize runs in the epilogue.
    let epilogue = try forwardKernels(lowered(Self.convolution, disabling: [ScaleFolding.name]))
      .filter { node in node.body.contains { $0.op == "conv2d" } }
    #expect(epilogue.count == 1)
    #expect(
      Set(try #require(epilogue.first).body.map(\.op)) == ["conv2d", "sub", "mul", "add", "relu"])
    // Nothing else in forward touches the [batch, 4, 7, 9] activations, and no kernel depends on
    // the mode: the statistics are the running ones, O(C) work.
    let graph = try lowered(Self.convolution)
    let activations = folded.filter { node in
      node.results.contains { graph.type(of: $0).rank == 4 }
    }
    #expect(activations.count == 1)
    #expect(!folded.contains { $0.op == "batch_norm_statistics" })
    // The running statistics' kernel is kept between calls, not run in every one.
    #expect(!folded.contains { $0.op == "batch_norm_running_statistics" })
    // Without the pass: conv, the statistics' kernel over x and the normalize are three passes.
    let unfoldedGraph = try lowered(Self.convolution, disabling: [ModeSpecialization.name])
    let unfoldedActivations = unfolded.filter { node in
      node.operands.contains { unfoldedGraph.type(of: $0).rank == 4 }
        || node.results.contains { unfoldedGraph.type(of: $0).rank == 4 }
    }
    #expect(unfoldedActivations.count == 3)
    #expect(folded.count < unfolded.count)
  }

  @Test(
    "inference keeps the batch norm's scale between calls: one kernel a call, the scale only when the weights or state moved"
  )
  func scaleKeptBetweenCalls() throws {
    let model = try Model(source: Self.convolution, pipeline: Pipeline.training)
    let generated = try model.generateC()
    let launches = Dictionary(
      uniqueKeysWithValues: generated.statistics.map { ($0.name, $0.kernelLaunches) })
    // forward runs the convolution with the normalize and relu in its epilogue, nothing else: the
    // scale from the running statistics is computed in the block guarded by kept_stale.
    #expect(launches["forward"] == 1)
    #expect(launches["evaluate"] == 2)
    #expect(generated.source.contains("if (kept_stale) {"))
    // forward and evaluate keep the same values: one buffer (one slot, one size), not two.
    let keptLines = generated.source.split(separator: "\n").filter {
      $0.contains("&kept_stale);")
    }
    #expect(keptLines.count == 2)
    #expect(Set(keptLines.map { $0.trimmingCharacters(in: .whitespaces) }).count == 1)
    // Training-mode entry points keep nothing: the statistics are the batch's.
    #expect(try #require(launches["forward_training"]) > 1)
    #expect(try #require(launches["train_0"]) > 1)
    // The kept values are exact: compiled against the interpreter after each change (the fold
    // test below changes weights, loaded weights, state and trains between calls).
    let compiled = try model.compile(options: TestCache.options())
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 2], seed: 4)
    try expectForwardMatches(model, compiled, inputs: inputs, output: "y", mode: .inference)
    let graph = try lowered(Self.convolution)
    try compiled.setState(try runningState(graph, offset: 0.25))
    try expectForwardMatches(model, compiled, inputs: inputs, output: "y", mode: .inference)
    // evaluate reads the buffer forward filled, and computes it when it is the first to run.
    let parameters = try compiled.parameters().merging(try compiled.modelState()) { a, _ in a }
    let expected = try model.interpret(
      inputs: inputs, parameters: parameters, outputs: ["y"] + model.graph.losses.map(\.name))
    let (outputs, losses) = try compiled.evaluate(inputs)
    expectBatchNormClose(
      try #require(outputs["y"]).doubles(), try #require(expected["y"]).doubles(), 2e-5)
    for (name, loss) in losses {
      expectBatchNormClose(loss.doubles(), try #require(expected[name]).doubles(), 2e-5)
    }
    try compiled.setState(try runningState(graph, offset: 0.5))
    let (after, _) = try compiled.evaluate(inputs)
    let parametersAfter = try compiled.parameters().merging(try compiled.modelState()) { a, _ in
      a
    }
    let expectedAfter = try model.interpret(
      inputs: inputs, parameters: parametersAfter, outputs: ["y"])
    expectBatchNormClose(
      try #require(after["y"]).doubles(), try #require(expectedAfter["y"]).doubles(), 2e-5)
  }

  @Test(
    "scale-fold: per-channel sub, mul, div, add and c - y after an inference convolution go into its weights and bias"
  )
  func scaleFold() throws {
    let source = """
      model Affine {
        input x: f32[batch, 16, 9, 11]
        param m: f32[32, 1, 1] = uniform(-1, 1)
        param s: f32[1, 32, 1, 1] = uniform(0.5, 2)
        param d: f32[32, 1, 1] = uniform(0.5, 2)
        param c: f32[] = constant(0.75)
        let y = x |> conv2d(filters: 32, kernel: 1)
        output z = relu(c - ((y - m) * s / d + c))
      }
      """
    let model = try Model(source: source, pipeline: Pipeline.training)
    var graph = model.graph
    _ = try PassRunner(passes: Pipeline.codegen).run(&graph)
    let kernels = try forwardKernels(graph)
    // One kernel a call: the convolution of the folded weights, the relu in its epilogue.
    #expect(kernels.count == 1)
    let convolution = try #require(kernels.first)
    #expect(Set(convolution.body.map(\.op)) == ["conv2d", "relu"])
    // Its weights are a value of parameters alone: the GEMM's packed copy is kept per parameter
    // version, as for a parameter.
    let member = try #require(convolution.body.first { $0.op == "conv2d" })
    #expect(graph.param(for: member.operands[1]) == nil)
    #expect(try #require(ConvolutionSchedule(member, in: graph)).packsWeightsOnce)
    #expect(graph.isFixed(member.operands[1]))
    // The memory plan's dump lists them: the scale and the bias kept, the weights only until the
    // convolution has packed them.
    let plans = MemoryPlanPrinter().print(graph)
    #expect(
      plans.contains(
        "kept by forward between calls, outside the arena (values of parameters, state and constants alone, computed again when the parameter version moves): 2 values"
      ))
    #expect(
      plans.contains(
        "computed by forward when the parameter version moves and freed once convolutions have packed them (weights of parameters alone): 1 values"
      ))
    try expectFoldMatches(
      model, scale: Tensor(shape: [1, 32, 1, 1], scalars: [Float](repeating: -1.5, count: 32)))
    // Without the pass the chain stays in the epilogue, and gives the same values.
    var unfolded = model.graph
    _ = try PassRunner(passes: Pipeline.codegen.filter { $0.name != ScaleFolding.name }).run(
      &unfolded)
    let epilogue = try #require(try forwardKernels(unfolded).first)
    #expect(Set(epilogue.body.map(\.op)).isSuperset(of: ["sub", "mul", "div", "add"]))
  }

  /// Three convolutions, each with a batch norm folded into its weights, one per kernel that keeps
  /// its own packed copy of the weights: Winograd, the channel kernel (stride 2) and the GEMM.
  static let threeKernels = """
    model Folds {
      input x: f32[batch, 16, 12, 12]
      input t: f32[batch, 32, 6, 6]
      let a = x |> conv2d(filters: 64, kernel: 3, padding: 1) |> batch_norm |> relu
      let b = a |> conv2d(filters: 64, kernel: 3, stride: 2, padding: 1) |> batch_norm |> relu
      let c = b |> conv2d(filters: 32, kernel: 1) |> batch_norm
      output c
      loss = mse(c, t)
      train with sgd(lr: 0.01)
    }
    """

  @Test(
    "folded convolution weights live only until the convolutions pack them (Winograd, channel kernel, GEMM), and every change is seen"
  )
  func foldedWeightsFreedOncePacked() throws {
    let model = try Model(source: Self.threeKernels, pipeline: Pipeline.training)
    let graph = try lowered(Self.threeKernels)
    let entry = try #require(EntryPoint.all(in: graph).first { $0.name == "forward" })
    let transient = entry.transientValues(in: graph, schedule: entry.schedule(in: graph))
    // The three folded weights, each packed by its own convolution's kernel, one of each kind.
    #expect(transient.count == 3)
    let algorithms = Set(
      transient.values.flatMap { $0 }.compactMap { index -> ConvolutionSchedule.Algorithm? in
        let node = graph.nodes[index]
        let convolution = node.op == Node.fusedOp ? node.epilogueProducer : node
        return convolution.flatMap { ConvolutionSchedule($0, in: graph) }?.algorithm
      })
    #expect(algorithms == [.winograd4, .directChannels, .im2colGemm])
    // Their memory is the kept block's own, freed there; the kept buffer holds the rest.
    let source = try model.generateC().source
    #expect(source.components(separatedBy: "lamina_conv2d_derive_f32(").count - 1 == 6)
    #expect(source.components(separatedBy: "free(transient);").count > 2)

    let compiled = try model.compile(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 21))
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 3], seed: 22)
    func output() throws -> [Double] { try #require(try compiled.forward(inputs)["c"]).doubles() }
    func check() throws {
      try expectForwardMatches(model, compiled, inputs: inputs, output: "c", mode: .inference)
    }
    try check()
    // Again: the packed copies are current, the convolutions read no weights.
    try check()
    var previous = try output()
    try compiled.setState(runningState(model.graph, offset: 0.25))
    try check()
    #expect(try output() != previous)
    previous = try output()
    try compiled.setParameters(try model.initialParameters(seed: 23))
    try check()
    #expect(try output() != previous)
    previous = try output()
    _ = try compiled.trainStep(inputs)
    try check()
    #expect(try output() != previous)
  }

  @Test("training steps keep the batch statistics' kernels: the train step's schedule is unchanged")
  func trainingUnchanged() throws {
    for source in [Self.convolution, Self.dense] {
      let folded = try lowered(source)
      let unfolded = try lowered(source, disabling: [ModeSpecialization.name])
      for name in ["train_0", "forward_training", "evaluate_training"] {
        func ops(_ graph: Graph) throws -> [String] {
          let entry = try #require(EntryPoint.all(in: graph).first { $0.name == name })
          return entry.schedule(in: graph).flatMap { index in
            let node = graph.nodes[index]
            return [node.op] + node.body.map(\.op)
          }
        }
        #expect(try ops(folded) == ops(unfolded), "\(name)")
        #expect(try ops(folded).contains("batch_norm_statistics"), "\(name)")
      }
    }
  }

  @Test(
    "scale-fold: a dense layer's bias and per-feature sub, mul, div and c - y go into its weights (read transposed, or by a 3-D input) and one add"
  )
  func scaleFoldDense() throws {
    func source(_ input: String) -> String {
      """
      model DenseAffine {
        input x: f32[\(input)]
        param w: f32[8, 6] = uniform(-1, 1)
        param b: f32[8] = uniform(-1, 1)
        param m: f32[8] = uniform(-1, 1)
        param s: f32[1, 8] = uniform(0.5, 2)
        param c: f32[] = constant(0.75)
        let y = matmul(x, w, transpose_b: true) + b
        output z = relu(c - (y - m) * s / c)
      }
      """
    }
    for input in ["batch, 6", "batch, 3, 6"] {
      let model = try Model(source: source(input), pipeline: Pipeline.training)
      let graph = try lowered(model.graph)
      let kernels = try forwardKernels(graph)
      let ops = kernels.flatMap { $0.body.isEmpty ? [$0.op] : $0.body.map(\.op) }
      // The chain is in the weights: one add of the shift and the relu are left per element.
      #expect(ops.sorted() == ["add", "matmul", "relu"], "\(input)")
      if input == "batch, 6" { #expect(kernels.count == 1) }
      let matmul = try #require(kernels.flatMap { [$0] + $0.body }.first { $0.op == "matmul" })
      #expect(graph.param(for: matmul.operands[1]) == nil)
      #expect(matmul.attributes["transpose_b"]?.boolValue == true)
      try expectFoldMatches(
        model, scale: Tensor(shape: [1, 8], scalars: (0..<8).map { Float($0) * 0.5 - 2 }))
    }
  }

  @Test(
    "dense + batch norm ([N, C]) folds into the matmul's weights: one add and the relu are left")
  func denseFolds() throws {
    let graph = try lowered(Self.dense)
    let folded = try forwardKernels(graph)
    #expect(folded.count == 1)
    let product = try #require(folded.first)
    #expect(product.body.map(\.op).sorted() == ["add", "matmul", "relu"])
    // The scaled weights are a value of parameters alone, kept between calls.
    let matmul = try #require(product.body.first { $0.op == "matmul" })
    #expect(graph.param(for: matmul.operands[1]) == nil)
    #expect(graph.isFixed(matmul.operands[1]))
    // Without scale-fold the normalize runs in the epilogue.
    let unfolded = try forwardKernels(lowered(Self.dense, disabling: [ScaleFolding.name]))
    #expect(Set(try #require(unfolded.first).body.map(\.op)).isSuperset(of: ["sub", "mul"]))

    let model = try Model(source: Self.dense, pipeline: Pipeline.training)
    let compiled = try model.compile(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 1))
    try compiled.setState(runningState(model.graph))
    for batch in [1, 37] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 2)
      try expectForwardMatches(model, compiled, inputs: inputs, output: "y", mode: .inference)
      if batch > 1 {
        try expectForwardMatches(model, compiled, inputs: inputs, output: "y", mode: .training)
      }
    }
  }

  @Test(
    "digits_cnn and LeNet-5 with batch norm: compiled equals the interpreter at batch 1 and 37, both modes",
    arguments: ["digits_cnn", "lenet5"])
  func examples(name: String) throws {
    let model =
      name == "digits_cnn"
      ? try Model(
        contentsOf: RepositoryPaths.path("examples/digits_cnn.lam"), pipeline: Pipeline.training)
      : try Model(source: Self.lenet5, pipeline: Pipeline.training)
    let output = model.graph.outputs[0].name
    let compiled = try model.compile(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 7))
    try compiled.setState(runningState(model.graph))
    // The inference forward is folded: no batch statistics over an activation.
    let forward = try forwardKernels(lowered(model.graph))
    #expect(!forward.contains { $0.op == "batch_norm_statistics" })
    for batch in [1, 37] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 8)
      try expectForwardMatches(model, compiled, inputs: inputs, output: output, mode: .inference)
      if batch > 1 {
        try expectForwardMatches(model, compiled, inputs: inputs, output: output, mode: .training)
      }
    }
  }

  @Test(
    "no stale fold: new weights, loaded weights, new running statistics and a training step are all seen by the next call"
  )
  func changesAreSeen() throws {
    let model = try Model(source: Self.convolution, pipeline: Pipeline.training)
    let compiled = try model.compile(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 11))
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 5], seed: 12)
    func output() throws -> [Double] { try #require(try compiled.forward(inputs)["y"]).doubles() }
    func check(_ what: String) throws {
      try expectForwardMatches(model, compiled, inputs: inputs, output: "y", mode: .inference)
    }
    try check("initial")
    var previous = try output()

    // New parameters (batch norm's scale and shift, and the convolution's weight).
    var parameters = try compiled.parameters()
    parameters["batch_norm_0.weight"] = Tensor(
      shape: [4], scalars: [1.5, -0.5, 2, 0.25] as [Float])
    parameters["batch_norm_0.bias"] = Tensor(shape: [4], scalars: [0.1, 0.2, -0.3, 0.4] as [Float])
    parameters["conv2d_0.weight"] = try model.initialParameters(seed: 13)["conv2d_0.weight"]
    try compiled.setParameters(parameters)
    try check("set parameters")
    #expect(try output() != previous)
    previous = try output()

    // New running statistics.
    try compiled.setState(runningState(model.graph))
    try check("set state")
    #expect(try output() != previous)
    previous = try output()

    // Weights and state loaded from a file.
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "bnfold-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let path = directory.appendingPathComponent("weights.safetensors").path
    try compiled.saveWeights(to: path)
    try compiled.setParameters(try model.initialParameters(seed: 14))
    try compiled.setState(runningState(model.graph, offset: 0.3))
    try check("other weights")
    #expect(try output() != previous)
    try compiled.loadWeights(from: path)
    try check("loaded weights")
    #expect(try output() == previous)

    // A training step changes the weights and the running statistics.
    let state = try compiled.modelState()
    _ = try compiled.trainStep(inputs)
    #expect(
      try compiled.modelState()["batch_norm_0.running_mean"] != state["batch_norm_0.running_mean"])
    try check("after a training step")
    #expect(try output() != previous)
  }

  @Test("a per-channel operand of a convolution's result is read once per channel plane")
  func perChannelAccess() {
    let domain = [Dim(symbol: "batch"), Dim(16), Dim(7), Dim(9)]
    #expect(
      RowAccess([Dim(16), Dim(1), Dim(1)], in: domain) == .axis(count: Dim(16), inner: Dim(7)))
    #expect(
      RowAccess([Dim(1), Dim(16), Dim(1), Dim(1)], in: domain)
        == .axis(count: Dim(16), inner: Dim(7)))
    #expect(RowAccess([Dim(7), Dim(1)], in: domain) == .axis(count: Dim(7), inner: Dim(1)))
    // Neither one value per channel nor per row, column or element.
    #expect(RowAccess([Dim(16), Dim(1)], in: domain) == nil)
    #expect(RowAccess([Dim(16), Dim(7), Dim(1)], in: domain) == nil)
    #expect(RowAccess([Dim(16)], in: [Dim(4), Dim(16)]) == .column)
  }

  @Test("the inference specialization prints and parses back to the same text")
  func roundTrip() throws {
    let graph = try lowered(Self.convolution, disabling: [Fusion.name, MemoryPlanning.name])
    #expect(!graph.inferenceSpecializations.isEmpty)
    let text = IRPrinter().print(graph)
    #expect(text.contains("inference %y = %y.inference"))
    let parsed = try Model(source: text, pipeline: []).ir()
    #expect(parsed == text)
  }
}
