import Dispatch
import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// `CompiledModel` used from several threads at once: snapshots are never torn, and concurrent
/// calls give the results they give alone.
///
/// Each test runs a fixed number of calls (no time limits): a writer thread keeps the context
/// busy while others read, and every value a reader sees must be one a whole call could produce.
@Suite("Compiled models on several threads", .serialized)
struct ThreadSafetyTests {
  static func compile(_ model: Model, parameters: [String: Tensor]) throws -> CompiledModel {
    var options = TestCache.options()
    // Two pool threads: the machines running the tests are small and shared.
    options.threads = 2
    return try model.compile(options: options, parameters: parameters)
  }

  static let parameterCount = 8
  static let parameterSize = 2048

  /// Eight parameters whose gradient is 1 everywhere: with `sgd(lr: 1)` every element of every
  /// parameter is exactly -k after k steps (and the step counter is k), so a snapshot that mixes
  /// two steps shows as two different values.
  static func counterModel() throws -> Model {
    let names = (0..<parameterCount).map { "p\($0)" }
    let declarations = names.map { "  param \($0): f64[\(parameterSize)] = zeros()" }
    return try Model(
      source: """
        model Counter {
        \(declarations.joined(separator: "\n"))
          loss = \(names.map { "sum(\($0))" }.joined(separator: " + "))
          train with sgd(lr: 1)
        }
        """, pipeline: Pipeline.training)
  }

  /// The single value every element holds, or nil when they differ.
  static func uniformValue(_ tensor: Tensor) -> Double? {
    switch tensor.dtype {
    case .f32: uniformValue(tensor, as: Float.self).map(Double.init)
    case .f64: uniformValue(tensor, as: Double.self)
    default: nil
    }
  }

  static func uniformValue<Element: BinaryFloatingPoint>(_ tensor: Tensor, as: Element.Type)
    -> Element?
  {
    tensor.withUnsafeBytes { bytes in
      let elements = bytes.bindMemory(to: Element.self)
      guard let first = elements.first, !elements.contains(where: { $0 != first }) else {
        return nil
      }
      return first
    }
  }

  /// The single value every element of every parameter holds, or nil when they differ.
  static func uniformValue(_ parameters: [String: Tensor]) -> Double? {
    guard parameters.count == parameterCount else { return nil }
    let values = Set(parameters.values.map { uniformValue($0) })
    guard values.count == 1, let value = values.first else { return nil }
    return value
  }

  @Test("parameters() taken while another thread trains holds one whole step")
  func parameterSnapshotsDuringTraining() throws {
    let model = try Self.counterModel()
    let compiled = try Self.compile(model, parameters: try model.initialParameters(seed: 1))
    let bound = try compiled.bindTrainStep([:])
    let steps = Counter()
    let snapshots = whileWriting {
      _ = try? bound.run()
      steps.increment()
    } read: {
      (try? compiled.parameters()).flatMap(Self.uniformValue)
    }
    let torn = snapshots.filter { $0 == nil }.count
    #expect(
      torn == 0, "\(torn) of \(snapshots.count) snapshots mixed parameters of different steps")
    let stepCount = Double(steps.value)
    for case let value? in snapshots {
      #expect(value <= 0 && value >= -stepCount && value == value.rounded(), "value \(value)")
    }
    // The writer's steps all happened, one at a time.
    #expect(Self.uniformValue(try compiled.parameters()) == -stepCount)
  }

  @Test("parametersAndState() taken during training is the checkpoint of one step")
  func checkpointDuringTraining() throws {
    let model = try Self.counterModel()
    let compiled = try Self.compile(model, parameters: try model.initialParameters(seed: 1))
    let bound = try compiled.bindTrainStep([:])
    let checkpoints = whileWriting {
      _ = try? bound.run()
    } read: {
      try? compiled.parametersAndState()
    }
    var wrong: [String] = []
    for checkpoint in checkpoints {
      // The step counter counts the updates the parameters have had.
      guard let checkpoint else {
        wrong.append("no checkpoint")
        continue
      }
      let value: Double? = Self.uniformValue(checkpoint.parameters)
      let counter: Double? = checkpoint.state["train.step"].flatMap { Self.uniformValue($0) }
      if value == nil || counter == nil || value != counter.map { -$0 } {
        wrong.append("parameters \(String(describing: value)), step \(String(describing: counter))")
      }
    }
    #expect(wrong.isEmpty, "\(wrong.count) of \(checkpoints.count): \(wrong.prefix(5))")
  }

  @Test("training steps from several threads take turns and each returns its own loss")
  func concurrentTrainingSteps() throws {
    let model = try Self.counterModel()
    let compiled = try Self.compile(model, parameters: try model.initialParameters(seed: 1))
    let bound = try compiled.bindTrainStep([:])
    let threads = 4
    let stepsEach = 200
    let losses = Recorder<Double>()
    let failures = Recorder<String>()
    DispatchQueue.concurrentPerform(iterations: threads) { thread in
      for _ in 0..<stepsEach {
        do {
          // Half the threads use the binding, half the unbound call.
          losses.append(thread % 2 == 0 ? try bound.run() : try compiled.trainStep([:]))
        } catch {
          failures.append("\(error)")
        }
      }
    }
    #expect(failures.values.isEmpty, "\(failures.values.prefix(3))")
    let steps = threads * stepsEach
    // Before step k every element is -k, so the loss is -k times the number of elements: each
    // step saw the parameters of a different whole number of steps.
    let elements = Double(Self.parameterCount * Self.parameterSize)
    let expected = (0..<steps).map { -Double($0) * elements }
    #expect(losses.values.sorted(by: >) == expected)
    #expect(Self.uniformValue(try compiled.parameters()) == -Double(steps))
    #expect(try compiled.state()["train.step"].flatMap { Self.uniformValue($0) } == Double(steps))
  }

  @Test("setParameters is all or nothing for a reader on another thread")
  func setParametersIsAtomic() throws {
    let model = try Self.counterModel()
    let compiled = try Self.compile(model, parameters: try model.initialParameters(seed: 1))
    func filled(_ value: Double) -> [String: Tensor] {
      Dictionary(
        uniqueKeysWithValues: (0..<Self.parameterCount).map {
          (
            "p\($0)",
            Tensor(
              shape: [Self.parameterSize],
              scalars: [Double](repeating: value, count: Self.parameterSize))
          )
        })
    }
    let ones = filled(1)
    let twos = filled(2)
    try compiled.setParameters(ones)
    let rounds = Counter()
    let snapshots = whileWriting {
      try? compiled.setParameters(rounds.value % 2 == 0 ? twos : ones)
      rounds.increment()
    } read: {
      (try? compiled.parameters()).flatMap(Self.uniformValue)
    }
    let wrong = snapshots.filter { $0 != 1 && $0 != 2 }.count
    #expect(wrong == 0, "\(wrong) of \(snapshots.count) snapshots were neither all 1 nor all 2")
  }

  static let shiftSize = 1 << 16

  /// y = x + b over 65,536 elements: large enough that copying y takes as long as computing it.
  static func shiftModel() throws -> Model {
    try Model(
      source: """
        model Shift {
          input x: f32[\(shiftSize)]
          param b: f32[\(shiftSize)] = zeros()
          output y = x + b
        }
        """)
  }

  /// The shift model compiled and bound to an input of ones, with its two bias values (1 and 2, so
  /// every output is uniformly 2 or 3) and the first one set.
  static func boundShiftModel() throws -> (CompiledModel, CompiledModel.BoundForward, [Tensor]) {
    let model = try shiftModel()
    let compiled = try compile(model, parameters: try model.initialParameters(seed: 1))
    let x = Tensor(shape: [shiftSize], scalars: [Float](repeating: 1, count: shiftSize))
    let bias = [Float(1), Float(2)].map {
      Tensor(shape: [shiftSize], scalars: [Float](repeating: $0, count: shiftSize))
    }
    let bound = try compiled.bindForward(["x": x])
    try compiled.setParameter(bias[0], named: "b")
    return (compiled, bound, bias)
  }

  @Test("a bound forward's outputs() while another thread runs it are one run's outputs")
  func boundOutputsAreNeverTorn() throws {
    let (compiled, bound, bias) = try Self.boundShiftModel()
    try bound.run()
    let rounds = Counter()
    let outputs = whileWriting {
      try? compiled.setParameter(bias[rounds.value % 2], named: "b")
      try? bound.run()
      rounds.increment()
    } read: {
      Self.uniformValue(bound.outputs()["y"]!)
    }
    let torn = outputs.filter { $0 != 2 && $0 != 3 }.count
    #expect(torn == 0, "\(torn) of \(outputs.count) copies mixed two runs")
  }

  @Test("runAndCopyOutputs() on threads sharing one binding returns each run's own outputs")
  func sharedBindingRunsAndCopies() throws {
    let (compiled, bound, bias) = try Self.boundShiftModel()
    let rounds = Counter()
    // The writer switches the bias between runs; each copy must be of one run, with one bias.
    let outputs = whileWriting {
      try? compiled.setParameter(bias[rounds.value % 2], named: "b")
      rounds.increment()
    } read: {
      (try? bound.runAndCopyOutputs())?["y"].flatMap { Self.uniformValue($0) }
    }
    let wrong = outputs.filter { $0 != 2 && $0 != 3 }.count
    #expect(wrong == 0, "\(wrong) of \(outputs.count) outputs were not those of one run")
  }

  @Test("threads sharing one model get the interpreter's outputs at every batch size")
  func concurrentForwardMatchesInterpreter() throws {
    let model = try Model(contentsOf: RepositoryPaths.path("examples/digits_mlp.lam"))
    let parameters = try model.initialParameters(seed: 3)
    let compiled = try Self.compile(model, parameters: parameters)
    // Different batch sizes, so the threads also race on the cached shape binding.
    let batches = [1, 3, 17, 64]
    var cases: [(inputs: [String: Tensor], expected: Tensor)] = []
    for (index, batch) in batches.enumerated() {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: UInt64(index))
        .filter { $0.key == "x" }
      let expected = try model.interpret(inputs: inputs, parameters: parameters, outputs: ["probs"])
      cases.append((inputs, expected["probs"]!))
    }
    let problems = Recorder<String>()
    let threads = 8
    let calls = 40
    let shared = cases
    DispatchQueue.concurrentPerform(iterations: threads) { thread in
      var reused: [String: Tensor] = [:]
      for call in 0..<calls {
        let testCase = shared[(thread + call) % shared.count]
        do {
          // Half the threads let forward allocate, half reuse their own output tensors.
          let probs: Tensor
          if thread % 2 == 0 {
            probs = try compiled.forward(testCase.inputs)["probs"]!
          } else {
            try compiled.forward(testCase.inputs, into: &reused)
            probs = reused["probs"]!
          }
          if let problem = TestData.mismatch(probs, testCase.expected, rtol: 1e-5, atol: 1e-6) {
            problems.append("thread \(thread), call \(call): \(problem)")
          }
        } catch {
          problems.append("thread \(thread), call \(call): \(error)")
        }
      }
    }
    #expect(problems.values.isEmpty, "\(problems.values.prefix(5))")
  }
}

/// Runs `write` over and over on one thread while another thread calls `read` `reads` times
/// (starting after the first write); returns what the reads returned.
private func whileWriting<Value>(
  reads: Int = 300, _ write: @escaping @Sendable () -> Void,
  read: @escaping @Sendable () -> Value
) -> [Value] {
  let readsDone = Flag()
  let firstWrite = DispatchSemaphore(value: 0)
  let observed = Recorder<Value>()
  let group = DispatchGroup()
  DispatchQueue.global().async(group: group) {
    write()
    firstWrite.signal()
    while !readsDone.isSet { write() }
  }
  DispatchQueue.global().async(group: group) {
    firstWrite.wait()
    for _ in 0..<reads { observed.append(read()) }
    readsDone.set()
  }
  group.wait()
  return observed.values
}

/// A value several threads append to.
private final class Recorder<Value>: @unchecked Sendable {
  private let lock = NSLock()
  private var recorded: [Value] = []

  func append(_ value: Value) {
    lock.lock()
    recorded.append(value)
    lock.unlock()
  }

  var values: [Value] {
    lock.lock()
    defer { lock.unlock() }
    return recorded
  }
}

/// A count one thread increments and others read.
private final class Counter: @unchecked Sendable {
  private let lock = NSLock()
  private var count = 0

  func increment() {
    lock.lock()
    count += 1
    lock.unlock()
  }

  var value: Int {
    lock.lock()
    defer { lock.unlock() }
    return count
  }
}

/// Set once by one thread, read by others.
private final class Flag: @unchecked Sendable {
  private let lock = NSLock()
  private var value = false

  func set() {
    lock.lock()
    value = true
    lock.unlock()
  }

  var isSet: Bool {
    lock.lock()
    defer { lock.unlock() }
    return value
  }
}
