import Foundation
import LaminaIR
import LaminaPasses
import LaminaRuntime
import LaminaSupport

/// Finds the pass that changes a model's results (`lamina bisect`).
///
/// The reference is the graph after only the passes that build what the interpreter needs (shape
/// inference, and autodiff and the optimizer's updates for training), interpreted. The pipeline then
/// runs one pass at a time; after each, the graph so far is interpreted on the same inputs, and
/// compiled when it can be, and every value that still exists by name (outputs, losses, and named
/// intermediate values, gradients and updates included) is compared with the reference. The backend
/// passes (fusion, memory planning) are stages too: their graphs are interpreted (a fused node runs its
/// members) and compiled with the backend passes up to that stage.
///
/// The pass list is the caller's: `Pipeline.inference` or `Pipeline.training` as `lamina bisect` runs
/// them, or any list of `GraphPass` values, such as one with a pass of the caller's own.
public struct PipelineBisection: Sendable {
  /// The middle passes, in order (a pipeline such as `Pipeline.inference`).
  public var passes: [any GraphPass]
  /// The backend passes, run after `passes` on the copy the C generator reads.
  public var codegenPasses: [any GraphPass] = Pipeline.codegen
  /// How the stages are compiled; nil: interpreted only.
  public var compileOptions: CompileOptions?
  /// Bound on |got − expected| relative to |expected| and to the tensor's largest magnitude (at least 1):
  /// an element departs when |got − expected| > tolerance · (|expected| + max(1, max |expected|)).
  /// nil: 1e-4 for f32 values, 1e-9 for f64 values, exact for integers.
  public var tolerance: Double?
  /// Compare a training step: interpret in training mode and, compiled, run one step and compare the
  /// updated parameters and state.
  public var training = false

  public init(passes: [any GraphPass]) { self.passes = passes }

  /// One compared value at one stage.
  public struct Comparison: Sendable {
    /// The value's name: an output's or loss's public name, an IR value's name, or
    /// `PARAM after the step` for a compiled training step's update.
    public var name: String
    public var maxAbsoluteError: Double
    public var maxRelativeError: Double
    /// Why it departs (beyond tolerance, a different shape); nil when it agrees.
    public var departure: String?
  }

  /// What one way of running a stage gave.
  public struct Run: Sendable {
    /// Values compared, in the stage graph's topological order.
    public var comparisons: [Comparison]
    /// Why this stage did not run this way (a graph that cannot be compiled yet), if it did not.
    public var skipped: String?
    public var firstDeparture: Comparison? { comparisons.first { $0.departure != nil } }
  }

  /// The results after one pass.
  public struct Stage: Sendable {
    public var pass: String
    public var interpreted: Run
    public var compiled: Run
    /// The first departure of the stage: interpreted first, then compiled.
    public var firstDeparture: (mode: String, comparison: Comparison)? {
      if let found = interpreted.firstDeparture { return ("interpreted", found) }
      if let found = compiled.firstDeparture { return ("compiled", found) }
      return nil
    }
  }

  public struct Report: Sendable {
    public var stages: [Stage]
    /// The first stage with a departure, and it.
    public var firstBadStage: Stage? { stages.first { $0.firstDeparture != nil } }
  }

  /// Runs the bisection on the model file at `path` (see `run(source:...)`).
  public func run(
    contentsOf path: String, modelName: String? = nil, inputs: [String: Tensor],
    parameters: [String: Tensor]? = nil, seed: UInt64 = 0
  ) throws -> Report {
    try run(
      source: try Model.readSource(path), modelName: modelName, inputs: inputs,
      parameters: parameters, seed: seed)
  }

  /// Runs the bisection on the model in `source` with `inputs` (values needing an input not given
  /// are skipped) and `parameters` (nil: the initializers, drawn with `seed`).
  public func run(
    source: SourceFile, modelName: String? = nil, inputs: [String: Tensor],
    parameters given: [String: Tensor]? = nil, seed: UInt64 = 0
  ) throws -> Report {
    let (parsed, diagnostics) = Model.frontend(source, modelName: modelName)
    guard let parsed, !diagnostics.contains(where: { $0.severity == .error }) else {
      throw CompileError(diagnostics: diagnostics, source: source.forDisplay)
    }
    func passing(_ graph: inout Graph, _ pass: any GraphPass) throws {
      do {
        _ = try PassRunner(passes: [pass]).run(&graph)
      } catch let error as DiagnosticError {
        throw CompileError(diagnostics: error.diagnostics, source: source.forDisplay)
      }
    }
    // The reference: only the passes the interpreter needs.
    var reference = parsed
    for pass in passes where Pipeline.requiredPasses.contains(pass.name) {
      try passing(&reference, pass)
    }
    // Optimizer state starts from its initializers, and is passed with the parameters.
    let parameters = try (given ?? reference.initialParameters(seed: seed)).merging(
      reference.initialState()
    ) { given, _ in given }
    let mode: ExecutionMode = training ? .training : .inference
    let expected = try interpretNamedValues(reference, inputs, parameters, mode: mode)
    // Compiled outputs and losses come from inference calls; a step's updates from training.
    let expectedInference =
      training
      ? try interpretNamedValues(reference, inputs, parameters, mode: .inference) : expected
    let expectedUpdates = training ? try updatedValues(reference, expected) : [:]

    var stages: [Stage] = []
    var graph = parsed
    var done: Set<String> = []
    for pass in passes {
      try passing(&graph, pass)
      done.insert(pass.name)
      // Types come first: before shape inference nothing runs. The C backend needs the whole
      // step, so a training graph compiles once autodiff and the optimizer's updates are in.
      let missing = passes.map(\.name).filter {
        Pipeline.requiredPasses.contains($0) && !done.contains($0)
      }
      let untyped = !done.contains(ShapeInference.name)
      let interpreted =
        untyped
        ? Run(comparisons: [], skipped: "needs \(ShapeInference.name) first")
        : compare(graph, try interpretNamedValues(graph, inputs, parameters, mode: mode), expected)
      let compiled =
        missing.isEmpty
        ? try compiledRun(
          graph, backend: [], inputs, parameters, expectedInference, expectedUpdates)
        : Run(comparisons: [], skipped: "not compiled before \(missing.joined(separator: ", "))")
      stages.append(Stage(pass: pass.name, interpreted: interpreted, compiled: compiled))
    }
    // The backend's passes, each on the copy the C generator would read.
    var lowered = graph
    for (index, pass) in codegenPasses.enumerated() {
      try passing(&lowered, pass)
      let interpreted = try compare(
        lowered, interpretNamedValues(lowered, inputs, parameters, mode: mode), expected)
      stages.append(
        Stage(
          pass: pass.name, interpreted: interpreted,
          compiled: try compiledRun(
            graph, backend: Array(codegenPasses[...index]), inputs, parameters, expectedInference,
            expectedUpdates)))
    }
    return Report(stages: stages)
  }

  // MARK: Values

  /// Every value of `graph` with a name that can be computed from `inputs`: outputs and losses by
  /// their public names, then named (not numbered) IR values, keyed by name.
  func interpretNamedValues(
    _ graph: Graph, _ inputs: [String: Tensor], _ parameters: [String: Tensor],
    mode: ExecutionMode
  ) throws -> [String: Tensor] {
    let names = namedValues(graph).filter { computable($0.value, in: graph, from: inputs) }
    let available = inputs.filter { name, _ in graph.value(named: name) != nil }
    return try Interpreter(graph: graph).run(
      inputs: available, parameters: parameters, outputs: names.map(\.name), mode: mode)
  }

  /// Outputs and losses (by their public names) and every named IR value, in topological order.
  func namedValues(_ graph: Graph) -> [(name: String, value: ValueID)] {
    let exposed = graph.outputs + graph.losses
    let exposedNames = Set(exposed.map(\.name))
    var result: [(name: String, value: ValueID)] = []
    var placed = Set<String>()
    for node in graph.nodes {
      for member in node.op == Node.fusedOp ? node.body : [node] {
        for value in member.results {
          for entry in exposed where entry.value == value && placed.insert(entry.name).inserted {
            result.append((entry.name, value))
          }
          let name = graph[value].name
          // Numbered temporaries are renumbered by passes: their names mean nothing across stages.
          guard name.first?.isNumber == false, !exposedNames.contains(name) else { continue }
          result.append((name, value))
        }
      }
    }
    // An output that is an input or a parameter comes first: nothing computes it.
    let leaves = exposed.filter { !placed.contains($0.name) }.map { ($0.name, $0.value) }
    return leaves + result
  }

  func computable(_ value: ValueID, in graph: Graph, from inputs: [String: Tensor]) -> Bool {
    let needed = graph.nodesNeeded(for: [value])
    var operands = Set(needed.flatMap { graph.nodes[$0].operands })
    operands.insert(value)
    return graph.inputs.allSatisfy { input in
      !operands.contains(input.value) || inputs[graph[input.value].name] != nil
    }
  }

  /// The value each assignment gives its target, keyed `TARGET after the step`.
  func updatedValues(_ graph: Graph, _ values: [String: Tensor]) throws -> [String: Tensor] {
    var result: [String: Tensor] = [:]
    for assignment in graph.assignments {
      guard let tensor = values[graph[assignment.value].name] else { continue }
      result[Self.updateName(graph[assignment.target].name)] = tensor
    }
    return result
  }

  static func updateName(_ target: String) -> String { "\(target) after the step" }

  // MARK: Comparing

  /// Compares the values `graph` computed with the reference's of the same name, in the graph's
  /// topological order.
  func compare(_ graph: Graph, _ actual: [String: Tensor], _ expected: [String: Tensor]) -> Run {
    let order = namedValues(graph).map(\.name)
    return Run(
      comparisons: order.compactMap { name in
        guard let got = actual[name], let want = expected[name] else { return nil }
        return compare(name, got, want)
      })
  }

  func compare(_ name: String, _ actual: Tensor, _ expected: Tensor) -> Comparison {
    guard actual.shape == expected.shape else {
      return Comparison(
        name: name, maxAbsoluteError: .infinity, maxRelativeError: .infinity,
        departure: "shape \(actual.shape), expected \(expected.shape)")
    }
    let bound =
      tolerance
      ?? (expected.dtype == .f64 ? 1e-9 : expected.dtype.isInteger ? 0 : 1e-4)
    let got = actual.doubles()
    let want = expected.doubles()
    let scale = max(1, want.lazy.filter(\.isFinite).map(abs).max() ?? 1)
    var (worstAbsolute, worstRelative, departs) = (0.0, 0.0, false)
    for index in want.indices {
      let (a, e) = (got[index], want[index])
      if a == e || (a.isNaN && e.isNaN) { continue }
      let difference = abs(a - e)
      let absolute = difference.isNaN ? Double.infinity : difference
      worstAbsolute = max(worstAbsolute, absolute)
      worstRelative = max(worstRelative, absolute / max(abs(e), Double.leastNormalMagnitude))
      if !(difference <= bound * (abs(e) + scale)) { departs = true }
    }
    return Comparison(
      name: name, maxAbsoluteError: worstAbsolute, maxRelativeError: worstRelative,
      departure: departs ? "beyond the tolerance \(bound)" : nil)
  }

  // MARK: Compiling

  /// Compiles `graph` with the backend passes `backend`, runs it, and compares its outputs and
  /// losses (and, training, one step's updates) with the reference.
  func compiledRun(
    _ graph: Graph, backend: [any GraphPass], _ inputs: [String: Tensor],
    _ parameters: [String: Tensor], _ expected: [String: Tensor],
    _ expectedUpdates: [String: Tensor]
  ) throws -> Run {
    guard var options = compileOptions else {
      return Run(comparisons: [], skipped: "not compiled (interpreted only)")
    }
    options.codegenPasses = backend
    let compiled: CompiledModel
    do {
      compiled = try Model.compile(graph: graph, options: options)
    } catch let error as CompilerError {
      throw error
    } catch {
      return Run(comparisons: [], skipped: "cannot be compiled at this stage: \(error)")
    }
    try compiled.setParameters(parameters)
    let signatureInputs = Set(compiled.signature.inputs.map(\.name))
    let given = inputs.filter { signatureInputs.contains($0.key) }
    var actual: [String: Tensor]
    if given.count == signatureInputs.count {
      let (outputs, losses) = try compiled.evaluate(given)
      actual = outputs.merging(losses) { a, _ in a }
    } else {
      let forwardInputs = given.filter { name, _ in
        compiled.signature.inputs.first { $0.name == name }?.forward == true
      }
      actual = try compiled.forward(forwardInputs)
    }
    if training, !compiled.signature.steps.isEmpty, given.count == signatureInputs.count {
      let states = Set(compiled.signature.states.map(\.name))
      try compiled.setState(parameters.filter { states.contains($0.key) })
      _ = try compiled.trainStep(given)
      for (name, tensor) in try compiled.parameters().merging(
        try compiled.state(), uniquingKeysWith: { a, _ in a })
      {
        actual[Self.updateName(name)] = tensor
      }
    }
    let exposed = namedValues(graph).map(\.name).filter { actual[$0] != nil }
    let updates = graph.assignments.map { Self.updateName(graph[$0.target].name) }
    let wanted = expected.merging(expectedUpdates) { a, _ in a }
    return Run(
      comparisons: (exposed + updates).compactMap { name in
        guard let got = actual[name], let want = wanted[name] else { return nil }
        return compare(name, got, want)
      })
  }
}
