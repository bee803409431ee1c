import Foundation
import Lamina
import LaminaTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The library cache, compiler errors, and the checks on what callers pass to compiled code.
@Suite("Compiled runtime", .serialized)
struct RuntimeTests {
  /// Options for a model whose large kernels split across a pool of two threads.
  func twoThreadOptions() -> CompileOptions {
    var compileOptions = TestCache.options()
    compileOptions.threads = 2
    return compileOptions
  }

  @Test("a second compile comes from the cache; a corrupt cached library is rebuilt")
  func cache() throws {
    // Its own cache: the first compile must happen here, and the library it truncates must not be
    // one that other tests are loading from the shared cache.
    var options = CompileOptions()
    options.cacheDirectory = try RepositoryPaths.temporaryDirectory()
    let model = try Model(contentsOf: RepositoryPaths.path("examples/regressor.lam"))
    let first = try model.buildLibrary(options: options)
    #expect(first.compiledNow)
    let second = try model.buildLibrary(options: options)
    #expect(!second.compiledNow)
    #expect(second.libraryPath == first.libraryPath)

    // Truncate the cached library, as a crash mid-copy would.
    let handle = try #require(FileHandle(forWritingAtPath: first.libraryPath))
    try handle.truncate(atOffset: 100)
    try handle.close()
    let third = try model.buildLibrary(options: options)
    #expect(third.compiledNow)
    let compiled = try CompiledModel(libraryPath: third.libraryPath)
    #expect(compiled.signature.model == "Regressor")
  }

  @Test("large elementwise kernels split across threads give the interpreter's results")
  func parallelElementwise() throws {
    let model = try Model(
      source: """
        model Wide {
          input x: f32[batch, 1000]
          param b: f32[1000] = normal(0, 1)
          output y = relu(x * 2 + b) - sigmoid(x)
          output z = x + 1
        }
        """)
    let parameters = try model.initialParameters(seed: 2)
    let compileOptions = twoThreadOptions()
    let compiled = try model.compile(options: compileOptions, parameters: parameters)
    // 123 x 1000 elements: above the threshold, and rows that do not split evenly; 600 x 1000:
    // four tasks per thread.
    for batch in [123, 7, 600] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 4)
      let outputs = try compiled.forward(inputs)
      let expected = try model.interpret(
        inputs: inputs, parameters: parameters, outputs: ["y", "z"])
      for name in ["y", "z"] {
        let problem = TestData.mismatch(outputs[name]!, expected[name]!, rtol: 1e-6, atol: 1e-6)
        #expect(problem == nil, "batch \(batch) \(name): \(problem ?? "")")
      }
    }
  }

  /// idle() sends the pool's workers to sleep instead of spinning: the next parallel call must wake
  /// them (a lost wake-up would hang here), and a model released while they sleep must shut down.
  @Test("a model whose threads were sent to sleep wakes for its next call, and shuts down")
  func idleThreads() throws {
    let model = try Model(
      source: """
        model Wide {
          input x: f32[batch, 1000]
          output y = tanh(x * 3) + x
        }
        """)
    let compileOptions = twoThreadOptions()
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 200], seed: 5)
    let expected = try model.interpret(inputs: inputs, parameters: [:], outputs: ["y"])["y"]!
    do {
      let compiled = try model.compile(options: compileOptions, parameters: [:])
      for round in 0..<40 {
        compiled.idle()
        if round % 3 == 0 { compiled.idle() }
        // Give the workers time to reach their sleep, not just the flag.
        if round % 4 == 0 { usleep(2_000) }
        let problem = TestData.mismatch(
          try compiled.forward(inputs)["y"]!, expected, rtol: 1e-6, atol: 1e-6)
        #expect(problem == nil, "round \(round): \(problem ?? "")")
      }
      compiled.idle()
      usleep(2_000)
    }  // released here with its workers asleep
  }

  @Test("bound forward calls and training steps give what the unbound calls give")
  func boundCalls() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("examples/regressor.lam"), pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 3)
    let compileOptions = TestCache.options()
    let compiled = try model.compile(options: compileOptions, parameters: parameters)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 9], seed: 8)
    let forwardInputs = inputs.filter { name, _ in
      compiled.signature.inputs.first { $0.name == name }?.forward == true
    }
    let bound = try compiled.bindForward(forwardInputs)
    try bound.run()
    #expect(bound.outputs() == (try compiled.forward(forwardInputs)))

    // Two contexts from one library, stepped the two ways, stay equal.
    let other = try model.compile(options: compileOptions, parameters: parameters)
    let boundStep = try other.bindTrainStep(inputs)
    for _ in 0..<3 {
      let loss = try compiled.trainStep(inputs)
      #expect(try boundStep.run() == loss)
    }
    #expect(try other.parameters() == (try compiled.parameters()))
    #expect(throws: RunError.self) { try other.bindTrainStep(inputs, step: "nope") }
  }

  @Test("forward into reused outputs writes them in place, sees new inputs and keeps every check")
  func forwardIntoReusedOutputs() throws {
    let model = try Model(
      contentsOf: RepositoryPaths.path("examples/digits_mlp.lam"), pipeline: Pipeline.training)
    let parameters = try model.initialParameters(seed: 4)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    func inputs(batch: Int, seed: UInt64) -> [String: Tensor] {
      TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: seed)
    }
    func address(_ tensor: Tensor?) -> Int? {
      tensor?.withUnsafeBytes { Int(bitPattern: $0.baseAddress) }
    }
    let (a, b, c) = (
      inputs(batch: 3, seed: 1), inputs(batch: 3, seed: 2), inputs(batch: 5, seed: 3)
    )
    var outputs: [String: Tensor] = [:]
    try compiled.forward(["x": a["x"]!], into: &outputs)
    #expect(outputs == (try compiled.forward(["x": a["x"]!])))
    let storage = address(outputs["probs"])

    // The same shapes again: the same storage, the new inputs' outputs.
    try compiled.forward(["x": b["x"]!], into: &outputs)
    #expect(address(outputs["probs"]) == storage)
    let expected = try model.interpret(
      inputs: ["x": b["x"]!], parameters: parameters, outputs: ["probs"])["probs"]!
    let problem = TestData.mismatch(outputs["probs"]!, expected, rtol: 1e-5, atol: 1e-6)
    #expect(problem == nil, "\(problem ?? "")")

    // A tensor or a dictionary the caller kept keeps its values; the next call writes elsewhere.
    let kept = outputs["probs"]!
    let keptTable = outputs
    let keptValues: [Float] = kept.scalars()
    try compiled.forward(["x": a["x"]!], into: &outputs)
    #expect(kept.scalars() == keptValues)
    #expect(keptTable["probs"]!.scalars() == keptValues)
    #expect(outputs == (try compiled.forward(["x": a["x"]!])))
    #expect(address(outputs["probs"]) != address(kept))

    // Another batch size, then back; an extra tensor in the table is dropped, as before.
    try compiled.forward(["x": c["x"]!], into: &outputs)
    #expect(outputs["probs"]!.shape == [5, 10])
    #expect(outputs == (try compiled.forward(["x": c["x"]!])))
    outputs["extra"] = Tensor(shape: [1], scalars: [1] as [Float])
    try compiled.forward(["x": b["x"]!], into: &outputs)
    #expect(outputs.keys.sorted() == ["probs"])
    #expect(outputs["probs"]!.scalars() == keptValues)

    // After a steady state, wrong inputs are still reported as on a first call.
    func message(_ call: () throws -> Void) -> String {
      do {
        try call()
        return "no error"
      } catch {
        return "\(error)"
      }
    }
    #expect(
      message { try compiled.forward(["x": b["x"]!, "lable": b["label"]!], into: &outputs) }
        .contains("no input 'lable'"))
    #expect(
      message { try compiled.forward(["x": b["x"]!.converted(to: .f64)], into: &outputs) }
        .contains("expected dtype f32, got f64"))
    #expect(
      message { _ = try compiled.evaluate(["x": b["x"]!]) } == "missing input 'label' (i32[batch])")
    // A label of another integer width is converted, then the i32 one takes the steady path.
    let converted = try compiled.evaluate(["x": b["x"]!, "label": b["label"]!.converted(to: .i64)])
    #expect(try compiled.evaluate(b) == converted)
    #expect(try compiled.evaluate(b) == converted)
    try compiled.forward(["x": b["x"]!], into: &outputs)
    #expect(outputs == converted.outputs)
  }

  @Test("compiler failures show the compiler's message")
  func compilerFailure() throws {
    var options = TestCache.options()
    options.flags = [
      "-fPIC", "-shared", "-DLAMINA_FORCE_ERROR", "-Werror=implicit-function-declaration",
      "-include", "/nonexistent/header.h",
    ]
    let model = try Model(contentsOf: RepositoryPaths.path("examples/regressor.lam"))
    #expect {
      try model.buildLibrary(options: options)
    } throws: { error in
      "\(error)".contains("C compilation failed") && "\(error)".contains("nonexistent")
    }
    options.compiler = "/no/such/cc"
    #expect {
      try model.buildLibrary(options: options)
    } throws: { error in
      "\(error)".contains("C compiler '/no/such/cc' not found")
    }
  }

  @Test("wrong inputs to a compiled model are reported by name")
  func inputErrors() throws {
    let model = try Model(contentsOf: RepositoryPaths.path("examples/digits_mlp.lam"))
    let compiled = try model.compile(
      options: TestCache.options(), parameters: try model.initialParameters())
    func message(_ inputs: [String: Tensor]) -> String {
      do {
        _ = try compiled.evaluate(inputs)
        return "no error"
      } catch {
        return "\(error)"
      }
    }
    let x = Tensor(shape: [2, 64], scalars: [Float](repeating: 0.5, count: 128))
    #expect(
      message([
        "x": Tensor(shape: [2, 63], scalars: [Float](repeating: 0, count: 126)),
        "label": Tensor(shape: [2], scalars: [1, 2] as [Int32]),
      ])
        == "input 'x': expected f32[batch, 64], got f32[2, 63] (dimension 1 is 63, expected 64)")
    #expect(message(["x": x]) == "missing input 'label' (i32[batch])")
    #expect(
      message(["x": x, "label": Tensor(shape: [3], scalars: [1, 2, 3] as [Int32])]).contains(
        "batch is 2 from 'x'"))
    #expect(
      message(["x": x, "lable": Tensor(shape: [2], scalars: [1, 2] as [Int32])]).contains(
        "no input 'lable'"))
    #expect(
      message([
        "x": x.converted(to: .f64), "label": Tensor(shape: [2], scalars: [1, 2] as [Int32]),
      ]).contains("expected dtype f32, got f64"))
    // A label outside the classes is caught by the compiled code, not read out of bounds.
    #expect(
      message(["x": x, "label": Tensor(shape: [2], scalars: [1, 12] as [Int32])]).contains(
        "label 12 at position 1 is outside 0..<10"))
    #expect(throws: (any Error).self) {
      try compiled.setParameter(Tensor(shape: [2], scalars: [1, 2] as [Float]), named: "w1")
    }
  }

  @Test("the C entry points reject NULL pointers and dimensions below 1")
  func cArgumentChecks() throws {
    let model = try Model(contentsOf: RepositoryPaths.path("examples/digits_mlp.lam"))
    let library = try model.buildLibrary(options: TestCache.options()).libraryPath
    let handle = try #require(dlopen(library, RTLD_NOW | RTLD_LOCAL))
    defer { dlclose(handle) }
    typealias Create = @convention(c) (Int32) -> OpaquePointer?
    typealias Destroy = @convention(c) (OpaquePointer?) -> Void
    typealias Forward =
      @convention(c) (
        OpaquePointer?, UnsafePointer<Int64>?, UnsafePointer<UnsafeRawPointer?>?,
        UnsafePointer<UnsafeMutableRawPointer?>?
      ) -> Int32
    typealias LastError = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    let create = unsafeBitCast(dlsym(handle, "lamina_create"), to: Create.self)
    let destroy = unsafeBitCast(dlsym(handle, "lamina_destroy"), to: Destroy.self)
    let forward = unsafeBitCast(dlsym(handle, "lamina_forward"), to: Forward.self)
    let lastError = unsafeBitCast(dlsym(handle, "lamina_last_error"), to: LastError.self)
    let context = try #require(create(1))
    defer { destroy(context) }
    var x = [Float](repeating: 0, count: 64)
    var probs = [Float](repeating: 0, count: 10)
    let status: (Int64, Bool, Bool) -> (Int32, String) = { batch, nullInput, nullOutput in
      x.withUnsafeMutableBytes { xBytes in
        probs.withUnsafeMutableBytes { probsBytes in
          let inputs: [UnsafeRawPointer?] = [
            nullInput ? nil : UnsafeRawPointer(xBytes.baseAddress), nil,
          ]
          let outputs: [UnsafeMutableRawPointer?] = [nullOutput ? nil : probsBytes.baseAddress]
          let dims = [batch]
          let code = forward(context, dims, inputs, outputs)
          return (code, String(cString: lastError(context)!))
        }
      }
    }
    #expect(status(1, false, false).0 == 0)
    #expect(
      status(0, false, false) == (1, "dimension batch is 0; it must be between 1 and 2147483648"))
    #expect(status(-5, false, false).0 == 1)
    #expect(status(1, true, false) == (1, "input x is NULL"))
    #expect(status(1, false, true) == (1, "output probs is NULL"))
    #expect(forward(context, nil, nil, nil) == 1)
    #expect(forward(nil, nil, nil, nil) == 1)

    // Contexts made and destroyed at once must not strand their pool's threads.
    for _ in 0..<200 {
      let scratch = try #require(create(2))
      destroy(scratch)
    }
  }
}
