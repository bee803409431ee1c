import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// The fusion pass and the fused C kernels change no result.
///
/// Every model of `Fixtures/fusion_patterns.lam` and every example, compiled with fusion, against
/// the interpreter (forward, at batch 1 and at batch 300, where [batch, 256] loops cross the kernels'
/// parallel threshold); one compiled training step with fusion against one without it and against
/// the interpreter; the fused IR printing, parsing back and verifying; and the groups the pass is
/// meant to form on the benchmark models.
@Suite("Fusion")
struct FusionTests {
  static let fixture = RepositoryPaths.path("Tests/LaminaTests/Fixtures/fusion_patterns.lam")

  /// A model file and, for files with several, the model's name.
  struct ModelCase: CustomStringConvertible, Sendable {
    var path: String
    var name: String?
    var description: String {
      URL(fileURLWithPath: path).lastPathComponent + (name.map { " (\($0))" } ?? "")
    }
  }

  static let fixtureModels = ["Elementwise", "Epilogues", "Reductions", "Double", "Edges"]

  static let models: [ModelCase] =
    fixtureModels.map { ModelCase(path: fixture, name: $0) }
    + (RepositoryPaths.files(in: "examples", withExtension: "lam")
    + RepositoryPaths.files(in: "examples/bench", withExtension: "lam")).map {
      ModelCase(path: $0, name: nil)
    }

  static let trainable: [ModelCase] = models.filter { model in
    (try? Model(contentsOf: model.path, modelName: model.name, pipeline: Pipeline.training))
      .map { !$0.graph.assignments.isEmpty } ?? false
  }

  struct CompilerCase: CustomStringConvertible, Sendable {
    var model: ModelCase
    var compiler: String
    var description: String { "\(model) with \(compiler)" }
  }

  static let compiledCases: [CompilerCase] = TestData.compilers.flatMap { compiler in
    models.map { CompilerCase(model: $0, compiler: compiler) }
  }

  /// 300 rows of 256: 76800 elements, over the 65536 at which kernels go parallel. The reference
  /// interpreter is slow at that size, so batch 300 compares fused against unfused compiled code
  /// (whose single-op kernels the other suites check against the interpreter), and the interpreter
  /// is the reference at the small batches.
  static let batches = [1, 7, 300]
  static let interpreterBatches: Set<Int> = [1, 7]

  func load(_ model: ModelCase, pipeline: [any GraphPass] = Pipeline.inference) throws -> Model {
    try Model(contentsOf: model.path, modelName: model.name, pipeline: pipeline)
  }

  func options(compiler: String? = nil, fusion: Bool = true) -> CompileOptions {
    var options = TestCache.options(compiler: compiler)
    if !fusion { options.codegenPasses = Pipeline.codegen.filter { $0.name != Fusion.name } }
    return options
  }

  func symbols(_ graph: Graph, batch: Int) -> [String: Int] {
    Dictionary(
      uniqueKeysWithValues: Set(graph.inputs.flatMap { graph.type(of: $0.value).symbols }).map {
        ($0, batch)
      })
  }

  /// How far compiled results may be from a reference: relative, plus a term in the tensor's
  /// largest magnitude (a sum's rounding error grows with its terms, not its result); integers
  /// exactly. `f32` is the bound for f32 tensors, and for f64 tensors computed from f32 ones
  /// (`mixed`: a cast carries the f32 rounding over); pure f64 gets 1e-12.
  func mismatch(_ actual: Tensor, _ expected: Tensor, f32 bound: Double = 1e-5, mixed: Bool = false)
    -> String?
  {
    let scale = max(TestData.largestFiniteMagnitude(expected) ?? 1, 1)
    let (rtol, atol): (Double, Double) =
      switch expected.dtype {
      case .f32: (bound, bound * scale)
      case .f64: mixed ? (bound, bound * scale) : (1e-12, 1e-14 * scale)
      case .i32, .i64: (0, 0)
      }
    return TestData.mismatch(actual, expected, rtol: rtol, atol: atol)
  }

  /// Whether a graph computes with f32 anywhere, so its f64 values may carry f32 rounding.
  func hasF32(_ graph: Graph) -> Bool {
    (graph.inputs.map(\.value) + graph.params.map(\.value)).contains {
      graph.type(of: $0).dtype == .f32
    }
  }

  /// The graph the C generator sees with the default backend passes.
  func fused(_ graph: Graph) throws -> Graph { try Model.lower(graph, passes: Pipeline.codegen) }

  func fusedNodes(_ graph: Graph) -> [Node] { graph.nodes.filter { $0.op == Node.fusedOp } }

  func kind(_ node: Node) -> String? { node.attributes["kind"]?.stringValue }

  // MARK: (a) Compiled with fusion against the interpreter

  @Test(
    "compiled with fusion equals the interpreter and the unfused build", arguments: compiledCases)
  func compiledMatchesInterpreter(_ testCase: CompilerCase) throws {
    let model = try load(testCase.model)
    let parameters = try model.initialParameters(seed: 5)
    let compiled = try model.compile(
      options: options(compiler: testCase.compiler), parameters: parameters)
    let unfused = try model.compile(
      options: options(compiler: testCase.compiler, fusion: false), parameters: parameters)
    let names = model.graph.outputs.map(\.name) + model.graph.losses.map(\.name)
    for batch in Self.batches {
      let inputs = TestData.inputs(
        for: model.graph, symbols: symbols(model.graph, batch: batch), seed: UInt64(batch))
      let expected =
        Self.interpreterBatches.contains(batch)
        ? try model.interpret(inputs: inputs, parameters: parameters, outputs: names) : nil
      let (outputs, losses) = try compiled.evaluate(inputs)
      let actual = outputs.merging(losses) { a, _ in a }
      let (unfusedOutputs, unfusedLosses) = try unfused.evaluate(inputs)
      let reference = unfusedOutputs.merging(unfusedLosses) { a, _ in a }
      #expect(Set(actual.keys) == Set(names), "\(testCase)")
      // Fusion must not change what the library asks for: a loss term fused into an output's
      // group would make lamina_forward read the label.
      #expect(compiled.signature == unfused.signature, "\(testCase): signatures differ")
      for name in names {
        guard let tensor = actual[name] else { continue }
        // The same C arithmetic with and without fusion (GEMM blocking included): tight. The
        // interpreter sums matrix products in another order, and deep_mlp's 20 residual layers
        // grow that difference to 2e-4 at batch 300 with or without fusion: 1e-4 relative plus
        // 1e-4 of the largest magnitude there, still far below what a wrong index or a wrong
        // broadcast gives.
        let mixed = hasF32(model.graph)
        let againstUnfused = mismatch(tensor, reference[name]!, mixed: mixed)
        #expect(
          againstUnfused == nil,
          "\(testCase) batch \(batch), \(name) against unfused: \(againstUnfused ?? "")")
        guard let expected else { continue }
        let againstInterpreter = mismatch(tensor, expected[name]!, f32: 1e-4, mixed: mixed)
        #expect(
          againstInterpreter == nil,
          "\(testCase) batch \(batch), \(name): \(againstInterpreter ?? "")")
      }
      // forward runs only the groups the outputs need: the same values.
      let forwardInputs = inputs.filter { name, _ in
        compiled.signature.inputs.first { $0.name == name }?.forward == true
      }
      let free = TestData.freeDimensions(
        symbols(model.graph, batch: batch), given: forwardInputs, signature: compiled.signature)
      for (name, tensor) in try compiled.forward(forwardInputs, dims: free) {
        #expect(tensor == outputs[name], "\(testCase) batch \(batch): forward \(name)")
      }
    }
  }

  // MARK: (b) One training step: fused, unfused, interpreted

  @Test(
    "a compiled training step with fusion equals one without it and the interpreter's",
    arguments: trainable)
  func trainStepMatches(_ testCase: ModelCase) throws {
    // Adam, AdamW, RMSprop and Adagrad move each weight by about lr·g/|g| on the first step: a
    // near-zero gradient that rounding (GEMM order, a row sum's order) moves across zero flips
    // the step, in f32 and f64 alike (deep_mlp: 2·lr apart from the interpreter, with or without
    // fusion). SGD with momentum keeps the step proportional to the gradient, so the comparison
    // measures the kernels, not that conditioning; the optimizers' own updates are elementwise
    // groups that TrainStepTests compares against the interpreter.
    let source = try String(contentsOfFile: testCase.path, encoding: .utf8).replacing(
      #/train with (adam|adamw|rmsprop|adagrad)\([^)]*\)/#,
      with: "train with sgd(lr: 0.01, momentum: 0.9)")
    let model = try Model(
      source: source, path: testCase.path, modelName: testCase.name, pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 7)
    let values = parameters.merging(try model.graph.initialState()) { a, _ in a }
    // Fused and unfused libraries, generated once; each batch steps a fresh instance of each.
    let libraries = try [true, false].map { fusion in
      try model.buildLibrary(options: options(fusion: fusion)).libraryPath
    }
    for batch in Self.batches {
      let inputs = TestData.inputs(
        for: model.graph, symbols: symbols(model.graph, batch: batch), seed: UInt64(40 + batch))
      let reference =
        Self.interpreterBatches.contains(batch)
        ? try model.interpretTrainStep(inputs, values: values) : nil
      var results: [(loss: Double, values: [String: Tensor])] = []
      for library in libraries {
        let compiled = try CompiledModel(libraryPath: library)
        try compiled.setParameters(parameters)
        let loss = try compiled.trainStep(inputs)
        results.append(
          (loss, try compiled.parameters().merging(try compiled.state()) { a, _ in a }))
      }
      let (fusedStep, unfusedStep) = (results[0], results[1])
      let mixed = hasF32(model.graph)
      let label = "\(testCase) batch \(batch)"
      #expect(
        abs(fusedStep.loss - unfusedStep.loss) <= 1e-5 * max(1, abs(unfusedStep.loss)),
        "\(label): loss \(fusedStep.loss), unfused \(unfusedStep.loss)")
      #expect(Set(fusedStep.values.keys) == Set(unfusedStep.values.keys), "\(label)")
      if let reference {
        #expect(
          abs(fusedStep.loss - reference.loss) <= 1e-5 * max(1, abs(reference.loss)),
          "\(label): loss \(fusedStep.loss), interpreted \(reference.loss)")
        #expect(Set(fusedStep.values.keys) == Set(reference.values.keys), "\(label)")
        for (name, expected) in reference.values {
          guard let actual = fusedStep.values[name] else { continue }
          let againstInterpreter = mismatch(actual, expected, f32: 1e-4, mixed: mixed)
          #expect(againstInterpreter == nil, "\(label): \(name): \(againstInterpreter ?? "")")
        }
      }
      for (name, unfused) in unfusedStep.values {
        guard let actual = fusedStep.values[name] else { continue }
        let againstUnfused = mismatch(actual, unfused, f32: 1e-4, mixed: mixed)
        #expect(againstUnfused == nil, "\(label): \(name) against unfused: \(againstUnfused ?? "")")
      }
    }
  }

  // MARK: (c) The fused IR: printing, parsing, verifying, interpreting

  /// Both pipelines' graphs for a model: inference, and training when it has a train step.
  func graphs(_ testCase: ModelCase) throws -> [(String, Model)] {
    var result = [("inference", try load(testCase))]
    let training = try load(testCase, pipeline: Pipeline.training)
    if !training.graph.assignments.isEmpty { result.append(("training", training)) }
    return result
  }

  @Test("the fused IR prints, parses back to the same text and verifies", arguments: models)
  func fusedIRRoundTrips(_ testCase: ModelCase) throws {
    for (pipeline, model) in try graphs(testCase) {
      let lowered = try fused(model.graph)
      let printer = IRPrinter()
      let text = printer.print(lowered)
      let reparsed = try IRParser.parse(text, path: "fused.ir")
      #expect(printer.print(reparsed) == text, "\(testCase) \(pipeline)")
      let problems = Verifier.verify(lowered).filter { $0.severity == .error }
      #expect(problems.isEmpty, "\(testCase) \(pipeline): \(problems)")
      // The parser leaves attributes the printer omits at their defaults for shape inference to
      // fill (RoundTripTests runs it); shape inference does not take fused nodes (see
      // `shapeInferenceReadsFusedIR`), so that one complaint is expected here, and nothing else.
      let reparsedProblems = Verifier.verify(reparsed).filter {
        $0.severity == .error && !$0.message.hasSuffix("does not spell out its default attributes")
      }
      #expect(reparsedProblems.isEmpty, "\(testCase) \(pipeline) reparsed: \(reparsedProblems)")
      // Every group is a real one: two or more members, a kind the backend knows, results that
      // are members' values.
      for node in fusedNodes(lowered) {
        #expect(
          node.body.count >= 2, "\(testCase) \(pipeline): \(printer.print(node, in: lowered))")
        #expect(FusedKind(rawValue: kind(node) ?? "") != nil)
        let defined = Set(node.body.flatMap(\.results))
        #expect(node.results.allSatisfy(defined.contains))
      }
    }
  }

  /// `lamina dump --after fusion` prints IR that `lamina dump` reads back: shape inference types a
  /// fused node's members, and the default pipeline leaves fused nodes whole.
  @Test("the default pipeline reads fused IR back to the same text")
  func shapeInferenceReadsFusedIR() throws {
    for path in ["examples/bench/w6_layer_norm_gelu.lam", "examples/bench/mlp_784.lam"] {
      let model = try Model(contentsOf: RepositoryPaths.path(path), pipeline: Pipeline.training)
      let text = IRPrinter().print(try fused(model.graph))
      let reparsed = try Model(source: text, path: "fused.ir", pipeline: Pipeline.inference)
      #expect(IRPrinter().print(reparsed.graph) == text, "\(path)")
    }
  }

  @Test("interpreting the fused graph gives the unfused graph's results", arguments: models)
  func fusedGraphInterprets(_ testCase: ModelCase) throws {
    for (pipeline, model) in try graphs(testCase) {
      let graph = model.graph
      let lowered = try fused(graph)
      let inputs = TestData.inputs(for: graph, symbols: symbols(graph, batch: 3), seed: 2)
      let values = try model.initialParameters(seed: 3).merging(try graph.initialState()) {
        a, _ in a
      }
      // The training graph's updates are values too: name them like interpretTrainStep does.
      let names =
        (graph.outputs + graph.losses).map(\.name) + graph.assignments.map { graph[$0.value].name }
      let mode: ExecutionMode = pipeline == "training" ? .training : .inference
      let expected = try Interpreter(graph: graph).run(
        inputs: inputs, parameters: values, outputs: names, mode: mode)
      let actual = try Interpreter(graph: lowered).run(
        inputs: inputs, parameters: values, outputs: names, mode: mode)
      for name in names {
        // Same ops in the same order: bit for bit.
        #expect(actual[name] == expected[name], "\(testCase) \(pipeline): \(name)")
      }
    }
  }

  @Test("every fixture model forms fused groups")
  func fixtureFuses() throws {
    for name in Self.fixtureModels {
      for (pipeline, model) in try graphs(ModelCase(path: Self.fixture, name: name)) {
        #expect(!fusedNodes(try fused(model.graph)).isEmpty, "\(name) \(pipeline)")
      }
    }
  }

  // MARK: (d) The groups the benchmarks rely on

  @Test("MLP784's training graph: bias+relu epilogues, updates in the weight-gradient GEMMs")
  func mlpGroups() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("examples/bench/mlp_784.lam"), pipeline: Pipeline.training)
    let graph = try fused(model.graph)
    let matmuls = fusedNodes(graph).filter { kind($0) == "epilogue" }
    let epilogues = matmuls.filter { node in
      let ops = node.body.map(\.op)
      return ops.contains("matmul") && ops.contains("add") && ops.contains("relu")
    }
    #expect(epilogues.count == 2, "the two hidden layers: \(matmuls.map { $0.body.map(\.op) })")
    let updated = Set(graph.assignments.map(\.value))
    let updating = matmuls.filter { $0.results.contains(where: updated.contains) }
    // w1, w2, w3 (their momentum buffers too): every weight gradient is a GEMM whose epilogue
    // applies SGD with momentum.
    #expect(updating.count == 3, "\(updating.map { $0.body.map(\.op) })")
    let weights = Set(
      graph.params.filter { graph.type(of: $0.value).rank == 2 }.map(\.value))
    for assignment in graph.assignments where weights.contains(assignment.target) {
      #expect(
        updating.contains { $0.results.contains(assignment.value) },
        "update of \(graph[assignment.target].name) is not in a matmul group")
    }
    // ReLU's gradient mask lives in the kernels that read it.
    let signs = graph.nodes.filter { $0.op == "sign" }
    #expect(signs.isEmpty, "sign outside a fused node: \(signs.map { graph[$0.result].name })")
    #expect(fusedNodes(graph).contains { $0.body.contains { $0.op == "sign" } })
  }

  /// Row kernels with several loops run them software-pipelined: loop k on row r - k. The first and
  /// last rows of each range run only some loops, so every row count below the pipeline's depth and
  /// past it, and ranges split unevenly over threads, must give the unpipelined results.
  @Test(
    "pipelined row kernels at every small row count and over uneven thread splits",
    arguments: [
      ModelCase(path: RepositoryPaths.path("examples/bench/w6_layer_norm_gelu.lam"), name: nil),
      ModelCase(path: fixture, name: "Double"),
    ])
  func pipelinedRowKernels(_ testCase: ModelCase) throws {
    let model = try load(testCase)
    let parameters = try model.initialParameters(seed: 3)
    let compiled = try model.compile(options: options(), parameters: parameters)
    let unfused = try model.compile(options: options(fusion: false), parameters: parameters)
    let names = model.graph.outputs.map(\.name)
    // 1-9 rows: fewer rows than loops, one full pass, several. W6's 65 and 1029 rows of 1024 go
    // parallel, in 2 and in 8 tasks of uneven length.
    for rows in Array(1...9) + [65, 1029] {
      let inputs = TestData.inputs(
        for: model.graph, symbols: symbols(model.graph, batch: rows), seed: UInt64(rows))
      let forwardInputs = inputs.filter { name, _ in
        compiled.signature.inputs.first { $0.name == name }?.forward == true
      }
      let actual = try compiled.forward(forwardInputs)
      let reference =
        rows <= 9
        ? try model.interpret(inputs: inputs, parameters: parameters, outputs: names)
        : try unfused.forward(forwardInputs)
      for name in names {
        guard let tensor = actual[name], let expected = reference[name] else {
          Issue.record("\(testCase) rows \(rows): no \(name)")
          continue
        }
        let difference = mismatch(
          tensor, expected, f32: rows <= 9 ? 1e-4 : 1e-5, mixed: hasF32(model.graph))
        #expect(difference == nil, "\(testCase) rows \(rows), \(name): \(difference ?? "")")
      }
    }
  }

  @Test("slices of a wider tensor are read in place by the elementwise loop that uses them")
  func windowsReadInPlace() throws {
    for (pipeline, model) in try graphs(ModelCase(path: Self.fixture, name: "Elementwise")) {
      let graph = try fused(model.graph)
      // The forward graph's slices (the backward's slice_backward scatters are not windows).
      let alone = graph.nodes.filter { $0.op == "slice" }
      #expect(
        alone.isEmpty, "\(pipeline): slices left as kernels: \(alone.map { graph[$0.result].name })"
      )
      let windows = fusedNodes(graph).flatMap { node in node.body.filter { $0.op == "slice" } }
      #expect(windows.count == 5, "\(pipeline): \(windows.count) slices inside fused loops")
    }
  }

  @Test("W6 is one reduction kernel")
  func layerNormGeluGroups() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("examples/bench/w6_layer_norm_gelu.lam"))
    let graph = try fused(model.graph)
    let groups = fusedNodes(graph)
    #expect(groups.count == 1)
    #expect(groups.first.flatMap(kind) == "reduction")
    let outside = graph.nodes.filter { $0.op != Node.fusedOp && $0.op != "constant" }
    #expect(outside.isEmpty, "left out: \(outside.map(\.op))")
    let ops = Set(groups.first?.body.map(\.op) ?? [])
    #expect(ops.isSuperset(of: ["gelu", "mean", "sub", "mul", "sqrt", "div"]), "\(ops)")
    #expect(groups.first?.results == graph.outputs.map(\.value))
  }
}
