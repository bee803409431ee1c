import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// The `scan` loop end to end: gradients against finite differences, compiled code against the
/// interpreter at several batch sizes and sequence lengths, the IR round trip, the loop staying a
/// loop in C, and located errors for bad sequence inputs.
@Suite("Loops", .serialized)
struct LoopTests {
  /// An rnn whose loss reads every step's state and the last one, in f64.
  static let rnnModel = """
    model Recurrent {
      input x: f64[batch, time, 3]
      input r: f64[batch, time, 4]
      input y: f64[batch, 2]
      input h0: f64[batch, 4]
      let h = x |> rnn(units: 4)
      let last = x |> rnn(units: 4, return: "last", activation: "relu", initial: [h0])
      output out = h[:, -1, :] |> dense(units: 2)
      loss = mse(out, y) + mean(h * r) + mean(last * last)
      train with sgd(lr: 0.1)
    }
    """

  /// A hand-written scan in IR: two carried values (one passed through a multiply by an
  /// invariant), two sequences, a per-step output that is not a carried value, run backwards.
  static let scanModel = """
    graph @Scan {
      input %xs : f64[time, 2, 3]
      input %zs : f64[time, 2, 3]
      input %r : f64[time, 2, 3]
      param %w : f64[3, 3] = normal()
      param %v : f64[3] = normal()
      %a0 = constant() {value = 0.5, dtype = f64} : f64[]
      %b0 = broadcast_to(%a0) {shape = [2, 3]}
      %h, %k, %ys = scan(%b0, %b0, %xs, %zs, %w, %v) {carried = 2, sequences = 2, reverse = true} {
        args(%c, %d, %x, %z, %wi, %vi)
        %p = matmul(%c, %wi)
        %q = add(%p, %x)
        %s = tanh(%q)
        %m = mul(%d, %vi)
        %n = mul(%m, %z)
        %e = add(%s, %n)
        %o = mul(%e, %c)
        yield(%s, %n, %o)
      }
      %t = mul(%ys, %r)
      %u = sum(%t)
      %hh = mul(%h, %k)
      %uu = sum(%hh)
      %loss = add(%u, %uu)
      loss loss = %loss
      train train = sgd {lr = 0.1}
    }
    """

  func worstGradientError(_ source: String, symbols: [String: Int]) throws -> (Double, String) {
    let model = try Model(source: source, pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 5)
    let inputs = TestData.inputs(for: model.graph, symbols: symbols, seed: 11)
    let checks = try model.checkGradients(inputs: inputs, parameters: parameters, samples: 64)
    #expect(!checks.isEmpty)
    let worst = checks.max { $0.worstRelativeError < $1.worstRelativeError }!
    return (
      worst.worstRelativeError,
      "\(worst.parameter): analytic \(worst.analytic), numeric \(worst.numeric)"
    )
  }

  @Test("rnn gradients (backpropagation through time) match finite differences")
  func rnnGradcheck() throws {
    let (error, detail) = try worstGradientError(
      Self.rnnModel, symbols: ["batch": 3, "time": 5])
    #expect(error < 1e-6, "\(detail)")
  }

  @Test("a reverse scan with two carried values and two sequences matches finite differences")
  func scanGradcheck() throws {
    let source = Self.scanModel
    let (error, detail) = try worstGradientError(source, symbols: ["time": 6])
    #expect(error < 1e-6, "\(detail)")
  }

  @Test("compiled rnn equals the interpreter at batch 1 and 37, length 1 and 23")
  func compiledMatchesInterpreter() throws {
    let model = try Model(source: Self.rnnModel, pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 2)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    #expect(compiled.signature.symbols.sorted() == ["batch", "time"])
    for batch in [1, 37] {
      for time in [1, 23] {
        let inputs = TestData.inputs(
          for: model.graph, symbols: ["batch": batch, "time": time], seed: UInt64(batch + time))
        let (outputs, losses) = try compiled.evaluate(inputs)
        let expected = try model.interpret(
          inputs: inputs, parameters: parameters, outputs: ["out", "loss"])
        for (name, actual) in [("out", outputs["out"]), ("loss", losses["loss"])] {
          let reference = try #require(expected[name])
          let (rtol, atol) = TestData.compiledTolerance(for: reference)
          let problem = TestData.mismatch(try #require(actual), reference, rtol: rtol, atol: atol)
          #expect(problem == nil, "batch \(batch), time \(time), \(name): \(problem ?? "")")
        }
      }
    }
  }

  /// An rnn in both directions over padded rows, its loss reading every step and the last state.
  static let bidirectionalModel = """
    model Bidirectional {
      input x: f32[batch, time, 3]
      input lengths: i32[batch]
      input target: f32[batch, 4]
      input r: f32[batch, time, 8]
      let h = x |> rnn(units: 4, bidirectional: true, lengths: lengths)
      let last = x |> rnn(units: 2, return: "last", bidirectional: true, lengths: lengths)
      output h
      output last
      loss = mse(last, target) + mean(h * r)
      train with adam(lr: 1e-3)
    }
    """

  @Test(
    "bidirectional rnn over padded rows: compiled equals the interpreter at batch 1 and 37, length 1 and 23, forward and gradients"
  )
  func bidirectionalLengthsCompiledMatchesInterpreter() throws {
    let trained = try Model(source: Self.bidirectionalModel, pipeline: Pipeline.training)
      .withGradientOutputs()
    let types = Dictionary(
      uniqueKeysWithValues: trained.graph.params.map {
        (trained.graph[$0.value].name, trained.graph.type(of: $0.value).description)
      })
    #expect(types["rnn_0.weight_ih_reverse"] == "f32[4, 3]")
    #expect(types["rnn_0.weight_hh_reverse"] == "f32[4, 4]")
    #expect(types["rnn_1.bias_hh_reverse"] == "f32[2]")
    #expect(types.count == 16)
    let parameters = try trained.initialParameters(seed: 4)
    var options = TestCache.options()
    options.threads = 2
    let compiled = try trained.compile(options: options, parameters: parameters)
    let names = compiled.signature.outputs.map(\.name)
    #expect(names.contains { $0.contains("weight_hh_reverse") })
    for (batch, time) in [(1, 1), (1, 23), (37, 1), (37, 23)] {
      let seed = UInt64(batch * 100 + time)
      var inputs = TestData.inputs(
        for: trained.graph, symbols: ["batch": batch, "time": time], seed: seed)
      var generator = SeededGenerator(seed: seed + 100)
      // Lengths from 0 to the time steps; the first row runs every step.
      inputs["lengths"] = Tensor(
        shape: [batch],
        scalars: (0..<batch).map { row in
          row == 0 ? Int32(time) : Int32(generator.next() % UInt64(time + 1))
        })
      let ours = try compiled.evaluate(inputs).outputs
      let reference = try trained.interpret(inputs: inputs, parameters: parameters, outputs: names)
      for problem in TestData.compiledMismatches(ours, reference, names: names) {
        Issue.record("batch \(batch), time \(time), \(problem)")
      }
    }
  }

  @Test("compiled training steps through the loop equal interpreted ones")
  func compiledTrainStep() throws {
    let model = try Model(
      source: Self.rnnModel.replacingOccurrences(of: "sgd(lr: 0.1)", with: "adam(lr: 0.01)"),
      pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 4)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    var values = parameters.merging(try model.graph.initialState()) { a, _ in a }
    for (step, (batch, time)) in [(1, 1), (37, 23), (5, 7)].enumerated() {
      let inputs = TestData.inputs(
        for: model.graph, symbols: ["batch": batch, "time": time], seed: UInt64(step))
      let compiledLoss = try compiled.trainStep(inputs)
      let reference = try model.interpretTrainStep(inputs, values: values)
      values = reference.values
      #expect(
        abs(compiledLoss - reference.loss) <= 1e-10 * max(1, abs(reference.loss)),
        "step \(step): \(compiledLoss) vs \(reference.loss)")
    }
    let compiledValues = try compiled.parameters()
    for (name, tensor) in compiledValues {
      let problem = TestData.mismatch(tensor, values[name]!, rtol: 1e-9, atol: 1e-11)
      #expect(problem == nil, "\(name): \(problem ?? "")")
    }
  }

  @Test("the hand-written reverse scan compiles to what the interpreter computes")
  func compiledScan() throws {
    let source = Self.scanModel
    let model = try Model(source: source, pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 1)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    var values = parameters.merging(try model.graph.initialState()) { a, _ in a }
    for step in 0..<2 {
      let inputs = TestData.inputs(
        for: model.graph, symbols: ["time": 1 + 8 * step], seed: UInt64(step))
      let compiledLoss = try compiled.trainStep(inputs)
      let reference = try model.interpretTrainStep(inputs, values: values)
      values = reference.values
      #expect(abs(compiledLoss - reference.loss) <= 1e-10 * max(1, abs(reference.loss)))
    }
    for (name, tensor) in try compiled.parameters() {
      #expect(TestData.mismatch(tensor, values[name]!, rtol: 1e-9, atol: 1e-11) == nil, "\(name)")
    }
  }

  /// A scan whose step yields carried arguments as each other's next values: a three-way
  /// rotation (a ← b ← c ← a) beside a value computed from them, so the end-of-step moves form a
  /// cycle (and the gradient's reverse scan carries the rotated gradients).
  static let rotationModel = """
    graph @Rotation {
      input %xs : f64[time, 2, 3]
      input %a0 : f64[2, 3]
      input %b0 : f64[2, 3]
      input %c0 : f64[2, 3]
      input %r : f64[2, 3]
      param %w : f64[3, 3] = normal()
      %ra, %rb, %rc, %rd, %ys = scan(%a0, %b0, %c0, %a0, %xs, %w) {carried = 4, sequences = 1} {
        args(%a, %b, %c, %d, %x, %wi)
        %p = matmul(%d, %wi)
        %q = add(%p, %x)
        %t = add(%q, %a)
        %s = tanh(%t)
        yield(%b, %c, %a, %s, %s)
      }
      %m = mul(%ra, %r)
      %n = mul(%rd, %rb)
      %o = mul(%rc, %rc)
      %u = sum(%m)
      %v = sum(%n)
      %z = sum(%o)
      %y = sum(%ys)
      %l1 = add(%u, %v)
      %l2 = add(%z, %y)
      %loss = add(%l1, %l2)
      output out = %rb
      loss loss = %loss
      train train = sgd {lr = 0.1}
    }
    """

  @Test("a step that yields carried values as each other's next ones (a rotation) compiles right")
  func carriedRotation() throws {
    let model = try Model(source: Self.rotationModel, pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 3)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    var values = parameters.merging(try model.graph.initialState()) { a, _ in a }
    for (step, time) in [1, 2, 3, 7].enumerated() {
      let inputs = TestData.inputs(for: model.graph, symbols: ["time": time], seed: UInt64(step))
      let forward = try compiled.forward(inputs)
      let interpreted = try model.interpret(inputs: inputs, parameters: values, outputs: ["out"])
      #expect(
        TestData.mismatch(forward["out"]!, interpreted["out"]!, rtol: 1e-12, atol: 1e-12) == nil,
        "time \(time)")
      let compiledLoss = try compiled.trainStep(inputs)
      let reference = try model.interpretTrainStep(inputs, values: values)
      values = reference.values
      #expect(abs(compiledLoss - reference.loss) <= 1e-10 * max(1, abs(reference.loss)))
    }
    for (name, tensor) in try compiled.parameters() {
      #expect(TestData.mismatch(tensor, values[name]!, rtol: 1e-9, atol: 1e-11) == nil, "\(name)")
    }
  }

  @Test("a scan prints and parses back to the same IR, before and after autodiff")
  func roundTrip() throws {
    for pipeline in [Pipeline.inference, Pipeline.training] {
      let model = try Model(source: Self.rnnModel, pipeline: pipeline)
      let text = model.ir()
      #expect(text.contains("scan("))
      #expect(text.contains("args(") && text.contains("yield("))
      let reparsed = try Model(source: text, path: "rnn.ir", pipeline: [])
      #expect(reparsed.ir() == text)
    }
  }

  @Test("the loop is not unrolled: the C is the same size for 4 steps as for 512")
  func notUnrolled() throws {
    func generated(_ time: Int) throws -> (launches: Int, bytes: Int) {
      let source = Self.rnnModel.replacingOccurrences(of: "time", with: String(time))
      let model = try Model(source: source, pipeline: Pipeline.training)
      let c = try model.generateC()
      let launches = c.statistics.reduce(0) { $0 + $1.kernelLaunches }
      return (launches, c.source.count)
    }
    let short = try generated(4)
    let long = try generated(512)
    #expect(short.launches == long.launches)
    // Kernels outside the loop may pick threaded variants for the larger tensors; nothing grows
    // with the number of steps.
    #expect(
      Double(long.bytes) < 1.25 * Double(short.bytes), "\(short.bytes) vs \(long.bytes) bytes")
  }

  @Test(
    "an lstm step: W_hh packed once per loop, outputs written in place, gate gradients one concat"
  )
  func lstmStepCode() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("tools/models/w5_lstm.lam"), pipeline: Pipeline.training)
    // The backward body joins the four gate gradients with one concat, never zero-filled blocks.
    let scans = model.graph.nodes.filter(\.hasRegion)
    #expect(scans.count == 2)
    let backward = try #require(scans.last)
    #expect(backward.body.filter { $0.op == "concat" }.count == 1)
    #expect(!backward.body.contains { $0.body.contains { $0.op == "slice_backward" } })
    #expect(!backward.body.contains { $0.op == "slice_backward" })
    let c = try model.generateC().source
    let train = try #require(c.range(of: "int lamina_train_0(")).lowerBound
    let step = String(c[train...])
    // The weight is packed before each loop (forward: W_hhᵀ, backward: W_hh), never in it.
    #expect(step.components(separatedBy: "lamina_sgemm_pack_b(").count - 1 == 2)
    #expect(step.components(separatedBy: "lamina_sgemm_packed_b").count - 1 == 0)
    #expect(c.components(separatedBy: "lamina_sgemm_packed_b(").count - 1 == 2)
    // Per step, only the two carried values saved at the step's start are copied (the backward
    // reads them); every other output is written into its slot by the kernel computing it, and the
    // carried state moves on by pointer.
    let loops = step.components(separatedBy: "for (int64_t step = 0;").dropFirst()
    #expect(loops.count == 2)
    for body in loops {
      let perStep = body.components(separatedBy: "\n    }\n")[0]
      #expect(!perStep.contains("memmove("), "\(perStep)")
      #expect(perStep.components(separatedBy: "memcpy(").count - 1 <= 2, "\(perStep)")
    }
  }

  @Test("bad sequence inputs are located errors")
  func badInputs() throws {
    let cases: [(String, String)] = [
      ("input x: f32[batch, 3]\n  output h = rnn(x, units: 4)", "rnn needs a sequence input"),
      ("input x: i32[batch, 5, 3]\n  output h = rnn(x, units: 4)", "floating-point input"),
      (
        "input x: f32[batch, 5, 3]\n  input h0: f32[batch, 3]\n  output h = rnn(x, units: 4, initial: [h0])",
        "rnn: initial must be 1 state of type f32[batch, 4], got f32[batch, 3]"
      ),
      (
        "input x: f32[batch, 5, 3]\n  input z: f32[batch, 5, 2]\n  let cell = rnn(units: 4)\n  output a = cell(x)\n  output b = cell(z)",
        "rnn: the input has 2 features, but the layer's weights take 3 (cell.weight_ih is f32[4, 3])"
      ),
    ]
    for (body, message) in cases {
      let source = "model Bad {\n  \(body)\n}\n"
      do {
        _ = try Model(source: source, path: "bad.lam")
        Issue.record("no error for \(body)")
      } catch let error as CompileError {
        let text = error.description
        #expect(text.contains(message), "\(text)")
        #expect(text.contains("bad.lam:"), "not located: \(text)")
      }
    }
  }

  @Test(
    "hoisting moves the input projection and the weight gradients out of the loops, same results")
  func hoisting() throws {
    let hoisted = try Model(source: Self.rnnModel, pipeline: Pipeline.training)
    let plain = try Model(
      source: Self.rnnModel,
      pipeline: Pipeline.training.filter { $0.name != Hoisting.name })
    // Forward: one matrix product over [batch·time, 3] before the loop; no step reads x any more.
    let ir = hoisted.ir()
    #expect(ir.contains("matmul(") && ir.contains(": f64[batch*time, 4]"), "\(ir)")
    let scans = hoisted.graph.nodes.filter { $0.hasRegion }
    #expect(scans.count == 4)  // two rnn layers, forward and backward
    for scan in scans {
      let products = scan.body.filter { $0.is(Ops.matmul) }
      // Forward: only h @ W_hh; backward: only the carried gradient through W_hh.
      #expect(products.count == 1, "\(IRPrinter().print(scan, in: hoisted.graph))")
    }
    let parameters = try hoisted.initialParameters(seed: 8)
    let inputs = TestData.inputs(for: hoisted.graph, symbols: ["batch": 3, "time": 6], seed: 2)
    let a = try hoisted.interpretGradients(inputs: inputs, parameters: parameters)
    let b = try plain.interpretGradients(inputs: inputs, parameters: parameters)
    #expect(Set(a.keys) == Set(b.keys))
    for (name, tensor) in a {
      let problem = TestData.mismatch(tensor, b[name]!, rtol: 1e-10, atol: 1e-12)
      #expect(problem == nil, "\(name): \(problem ?? "")")
    }
  }

  @Test("a hand-written cell (examples/custom_cell.lam) trains through scan")
  func customCellTrains() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("examples/custom_cell.lam"), pipeline: Pipeline.training)
    #expect(model.graph.nodes.contains { $0.hasRegion })
    let compiled = try model.compile(
      options: TestCache.options(), parameters: try model.initialParameters(seed: 1))
    // The target is the mean of the first feature over time: the state must integrate it.
    var generator = SeededGenerator(seed: 3, stream: "custom-cell")
    func batch() -> [String: Tensor] {
      let (rows, steps) = (32, 8)
      var x: [Float] = []
      var y: [Float] = []
      for _ in 0..<rows {
        var sum: Float = 0
        for _ in 0..<steps {
          let a = Float.random(in: -1...1, using: &generator)
          let b = Float.random(in: -1...1, using: &generator)
          x += [a, b]
          sum += a
        }
        y.append(sum / Float(steps))
      }
      return [
        "x": Tensor(shape: [rows, steps, 2], scalars: x),
        "y": Tensor(shape: [rows, 1], scalars: y),
      ]
    }
    let validation = batch()
    let before = try compiled.evaluate(validation).losses["loss"]!.doubles()[0]
    for _ in 0..<300 { _ = try compiled.trainStep(batch()) }
    let after = try compiled.evaluate(validation).losses["loss"]!.doubles()[0]
    #expect(after < 0.1 * before, "validation loss \(before) -> \(after)")
  }

  @Test("fusion keeps a group that computes a square product's operand out of its epilogue")
  func epilogueOperandGroup() throws {
    // Found through a loop body's gradient: tanh(x * y) feeds the matmul and, doubled, its
    // epilogue; merging that group into the epilogue made a kernel that could not be emitted.
    let model = try Model(
      source: """
        model F {
          input x: f64[batch, 16]
          input y: f64[batch, 16]
          param w: f64[16, 16] = glorot_uniform()
          let a = tanh(x * y)
          let b = a @ w
          output z = b + a * 2.0
        }
        """)
    let parameters = try model.initialParameters(seed: 1)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    let problems = try TestData.compiledMismatches(
      model, compiled, parameters: parameters, batches: [1, 5])
    #expect(problems.isEmpty, "\(problems)")
  }
}
