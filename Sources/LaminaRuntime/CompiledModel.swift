import Foundation
import LaminaSupport

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A compiled model loaded from its shared library, with its own parameters, arena and threads.
///
/// Knows nothing about the IR: everything comes from the library's signature. Tensors go to the C code
/// as they are (no copies); outputs are written straight into the tensors returned.
///
///     let model = try CompiledModel(libraryPath: "libdigits.so")
///     try model.loadWeights(from: "weights.safetensors")
///     let outputs = try model.forward(["x": x])
///
/// ## Threads
///
/// Every method, and every method of the bindings it makes (`BoundForward`, `BoundTrainStep`),
/// may be called from any number of threads at once. The C context runs one call at a time, so
/// each method that reads or writes it (runs, parameters, optimizer state, the bound buffers)
/// holds the model's lock once for its whole work:
/// - `forward`, `evaluate`, `trainStep` and the bound `run()`s are whole calls: a call sees the
///   parameters between two training steps, never during one;
/// - `parameters()`, `state()` and `parametersAndState()` are one consistent snapshot between two
///   calls (the parameters after some whole number of steps); `setParameters`, `setState` and
///   `loadWeights` replace everything they are given at once, or nothing when one tensor is wrong;
/// - `BoundForward.outputs()` copies the outputs of one whole run.
///
/// Calls from several threads take turns; they do not run in parallel. For parallel inference
/// load one `CompiledModel` per thread: each has its own parameters, arena and pool of threads
/// (give each `threads` so that together they do not ask for more cores than there are).
/// Methods that take the lock wait for a running call to finish.
public final class CompiledModel: @unchecked Sendable {
  public let signature: ModelSignature
  public let libraryPath: String
  /// The instruction set this context's kernels use: "x86-64-v4" or "x86-64-v3" for a portable
  /// library (the widest this CPU runs), else "native" or "generic".
  public let instructionSet: String
  private let handle: UnsafeMutableRawPointer
  private let context: OpaquePointer
  private let functions: Functions
  /// One call at a time per context; the C side is not reentrant. Guards the context (its
  /// parameters, state, arena and error message), the bound buffers and `lastBinding`.
  private let lock = NSLock()
  /// The input shapes of the last call with the symbol values they bound (guarded by `lock`).
  private var lastBinding: CallBinding?
  /// The dtypes of the signature's inputs and outputs, parsed once rather than per call.
  private let inputTypes: [DType?]
  private let outputTypes: [DType?]
  /// The pointer arrays a call hands to the C entry points, one slot per signature input or output
  /// (at least one), allocated once and rewritten by every call (guarded by `lock`).
  private let inputPointers: UnsafeMutablePointer<UnsafeRawPointer?>
  private let outputPointers: UnsafeMutablePointer<UnsafeMutableRawPointer?>

  private struct Functions {
    typealias Destroy = @convention(c) (OpaquePointer?) -> Void
    typealias LastError = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    typealias ParamData = @convention(c) (OpaquePointer?, Int64) -> UnsafeMutableRawPointer?
    typealias ParamBytes = @convention(c) (Int64) -> Int64
    typealias Forward =
      @convention(c) (
        OpaquePointer?, UnsafePointer<Int64>?, UnsafePointer<UnsafeRawPointer?>?,
        UnsafePointer<UnsafeMutableRawPointer?>?
      ) -> Int32
    typealias Evaluate =
      @convention(c) (
        OpaquePointer?, UnsafePointer<Int64>?, UnsafePointer<UnsafeRawPointer?>?,
        UnsafePointer<UnsafeMutableRawPointer?>?, UnsafePointer<UnsafeMutableRawPointer?>?
      ) -> Int32

    var destroy: Destroy
    var lastError: LastError
    var paramData: ParamData
    var paramBytes: ParamBytes
    typealias TrainStep =
      @convention(c) (
        OpaquePointer?, Int64, UnsafePointer<Int64>?, UnsafePointer<UnsafeRawPointer?>?,
        UnsafeMutableRawPointer?
      ) -> Int32

    var forward: Forward
    var evaluate: Evaluate
    /// The same in training mode (nil in a library from before modes: it has no mode-dependent op).
    var forwardTraining: Forward?
    var evaluateTraining: Evaluate?
    var trainStep: TrainStep?
    var stateData: ParamData?
    var stateBytes: ParamBytes?
    typealias ArenaBytes = @convention(c) (OpaquePointer?) -> Int64
    var arenaBytes: ArenaBytes?
    typealias Idle = @convention(c) (OpaquePointer?) -> Void
    var idle: Idle?
    /// lamina_get_param: a copy out that, unlike lamina_param_data, is not a write (the library's
    /// derived data, such as packed convolution weights, stays valid).
    typealias GetParam =
      @convention(c) (OpaquePointer?, Int64, UnsafeMutableRawPointer?, Int64) -> Int32
    var getParam: GetParam?
  }

  /// Loads a library Lamina compiled, checking its ABI version; `threads <= 0` uses every core.
  ///
  /// `disabledCPUFeatures` (`["avx512f"]`, say) count as missing when the library checks this CPU,
  /// as `LAMINA_CPU_DISABLE` makes them for the whole process: a portable library then runs the
  /// code a CPU without them would run, and a library that needs them refuses to load.
  public init(libraryPath: String, threads: Int = 0, disabledCPUFeatures: [String] = []) throws {
    // dlopen would search the system paths for a bare name and die on a truncated file.
    try LibraryValidation.validate(libraryPath)
    guard let handle = dlopen(LibraryValidation.loadablePath(libraryPath), RTLD_NOW | RTLD_LOCAL)
    else {
      let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
      throw RunError("cannot load \(libraryPath): \(reason)")
    }
    func symbol<T>(_ name: String, _ type: T.Type) throws -> T {
      guard let pointer = dlsym(handle, name) else {
        dlclose(handle)
        throw RunError("\(libraryPath) is not a Lamina model library (no \(name))")
      }
      return unsafeBitCast(pointer, to: type)
    }
    typealias Version = @convention(c) () -> Int32
    typealias SignatureText = @convention(c) () -> UnsafePointer<CChar>?
    typealias Create = @convention(c) (Int32) -> OpaquePointer?
    typealias InstructionSet = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    let version = try symbol("lamina_abi_version", Version.self)()
    guard version == CompiledModel.abiVersion else {
      dlclose(handle)
      throw RunError(
        "\(libraryPath) was generated for Lamina C interface version \(version); this Lamina reads version \(CompiledModel.abiVersion): recompile the model"
      )
    }
    guard let text = try symbol("lamina_model_signature", SignatureText.self)(),
      let signature = try? ModelSignature.decode(String(cString: text))
    else {
      dlclose(handle)
      throw RunError("\(libraryPath) has an unreadable model signature")
    }
    let functions = Functions(
      destroy: try symbol("lamina_destroy", Functions.Destroy.self),
      lastError: try symbol("lamina_last_error", Functions.LastError.self),
      paramData: try symbol("lamina_param_data", Functions.ParamData.self),
      paramBytes: try symbol("lamina_param_bytes", Functions.ParamBytes.self),
      forward: try symbol("lamina_forward", Functions.Forward.self),
      evaluate: try symbol("lamina_evaluate", Functions.Evaluate.self),
      forwardTraining: dlsym(handle, "lamina_forward_training").map {
        unsafeBitCast($0, to: Functions.Forward.self)
      },
      evaluateTraining: dlsym(handle, "lamina_evaluate_training").map {
        unsafeBitCast($0, to: Functions.Evaluate.self)
      },
      trainStep: dlsym(handle, "lamina_train_step").map {
        unsafeBitCast($0, to: Functions.TrainStep.self)
      },
      stateData: dlsym(handle, "lamina_state_data").map {
        unsafeBitCast($0, to: Functions.ParamData.self)
      },
      stateBytes: dlsym(handle, "lamina_state_bytes").map {
        unsafeBitCast($0, to: Functions.ParamBytes.self)
      },
      arenaBytes: dlsym(handle, "lamina_arena_bytes").map {
        unsafeBitCast($0, to: Functions.ArenaBytes.self)
      },
      idle: dlsym(handle, "lamina_idle").map { unsafeBitCast($0, to: Functions.Idle.self) },
      getParam: dlsym(handle, "lamina_get_param").map {
        unsafeBitCast($0, to: Functions.GetParam.self)
      })
    // The check and the choice of kernels read this thread's list, so it is set for this
    // thread only, and cleared before the library can be closed.
    typealias DisableFeatures = @convention(c) (UnsafePointer<CChar>?) -> Void
    var disable: DisableFeatures?
    if !disabledCPUFeatures.isEmpty {
      guard let pointer = dlsym(handle, "lamina_disable_cpu_features") else {
        dlclose(handle)
        throw RunError(
          "\(libraryPath) cannot disable CPU features (no lamina_disable_cpu_features): recompile the model"
        )
      }
      disable = unsafeBitCast(pointer, to: DisableFeatures.self)
    }
    let create = try symbol("lamina_create", Create.self)
    disable?(disabledCPUFeatures.joined(separator: " "))
    // A library whose instructions this CPU lacks must not run a single one: ask first.
    let missing =
      dlsym(handle, "lamina_missing_cpu_features").map {
        unsafeBitCast($0, to: SignatureText.self)
      }?().map { String(cString: $0) } ?? ""
    let created = missing.isEmpty ? create(Int32(clamping: threads)) : nil
    disable?(nil)
    if !missing.isEmpty {
      let target =
        dlsym(handle, "lamina_target").map { unsafeBitCast($0, to: SignatureText.self) }?()
        .map { String(cString: $0) } ?? "?"
      dlclose(handle)
      throw RunError(
        "\(libraryPath) was compiled for --target \(target) and this CPU lacks \(missing.split(separator: " ").joined(separator: ", ")) (or they are disabled: LAMINA_CPU_DISABLE): recompile with --target portable or native"
      )
    }
    guard let context = created else {
      dlclose(handle)
      throw RunError("\(libraryPath): out of memory creating the model context")
    }
    self.instructionSet =
      dlsym(handle, "lamina_instruction_set").map {
        unsafeBitCast($0, to: InstructionSet.self)
      }?(context).map { String(cString: $0) } ?? "unknown"
    self.handle = handle
    self.context = context
    self.functions = functions
    self.signature = signature
    self.libraryPath = libraryPath
    self.inputTypes = signature.inputs.map(\.elementType)
    self.outputTypes = signature.outputs.map(\.elementType)
    self.inputPointers = .allocate(capacity: max(1, signature.inputs.count))
    self.inputPointers.initialize(repeating: nil, count: max(1, signature.inputs.count))
    self.outputPointers = .allocate(capacity: max(1, signature.outputs.count))
    self.outputPointers.initialize(repeating: nil, count: max(1, signature.outputs.count))
  }

  deinit {
    functions.destroy(context)
    dlclose(handle)
    inputPointers.deallocate()
    outputPointers.deallocate()
  }

  /// Bytes of the arena holding intermediates, as large as the largest call so far needed (nil for
  /// libraries from before the function existed).
  public var arenaBytes: Int? {
    lock.lock()
    defer { lock.unlock() }
    return functions.arenaBytes.map { Int($0(context)) }
  }

  /// Lets the model's threads sleep now: after a call they spin for a while, ready for the next
  /// one, which costs a core when another model runs next (the other network of a GAN, a second
  /// model in the process, the other configuration of a benchmark). The next call wakes them.
  public func idle() {
    lock.lock()
    defer { lock.unlock() }
    functions.idle?(context)
  }

  /// The C interface version this runtime speaks.
  public static let abiVersion: Int32 = 3

  // MARK: Running

  /// Computes every output. Inputs only the losses need (labels) may be omitted.
  public func forward(_ inputs: [String: Tensor]) throws -> [String: Tensor] {
    try run(inputs, withLosses: false).outputs
  }

  /// Computes every output into `outputs`, reusing its tensors where they already have the right
  /// dtype and shape (like PyTorch's `out=`). A call with the inputs and outputs of the previous
  /// call's names, dtypes and shapes allocates nothing and hashes no name: it writes into the
  /// tensors of `outputs` in place (copying one first only if it is shared with another tensor).
  public func forward(_ inputs: [String: Tensor], into outputs: inout [String: Tensor]) throws {
    try run(inputs, withLosses: false, outputs: &outputs)
  }

  /// Computes every output, with symbolic dimensions no input determines bound by `dims`
  /// (`["batch": 1000]` for a generator that reads only noise). `mode` as in `forward(_:mode:)`.
  public func forward(
    _ inputs: [String: Tensor], dims: [String: Int], mode: ExecutionMode = .inference
  ) throws -> [String: Tensor] {
    var nothingToReuse: [String: Tensor] = [:]
    return try run(
      inputs, withLosses: false, reusing: &nothingToReuse, mode: mode, dims: dims
    ).outputs
  }

  /// Computes every output and every loss, with `dims` as in `forward(_:dims:mode:)`.
  public func evaluate(
    _ inputs: [String: Tensor], dims: [String: Int], mode: ExecutionMode = .inference
  ) throws -> (outputs: [String: Tensor], losses: [String: Tensor]) {
    var nothingToReuse: [String: Tensor] = [:]
    return try run(inputs, withLosses: true, reusing: &nothingToReuse, mode: mode, dims: dims)
  }

  /// Computes every output and every loss.
  public func evaluate(_ inputs: [String: Tensor]) throws -> (
    outputs: [String: Tensor], losses: [String: Tensor]
  ) {
    try run(inputs, withLosses: true)
  }

  /// Computes every output in `mode`: `.training` computes them as a training step does (batch
  /// norm with the batch's statistics) without writing any state back.
  public func forward(_ inputs: [String: Tensor], mode: ExecutionMode) throws -> [String: Tensor] {
    var nothingToReuse: [String: Tensor] = [:]
    return try run(inputs, withLosses: false, reusing: &nothingToReuse, mode: mode).outputs
  }

  /// Computes every output and every loss in `mode` (see `forward(_:mode:)`).
  public func evaluate(_ inputs: [String: Tensor], mode: ExecutionMode) throws -> (
    outputs: [String: Tensor], losses: [String: Tensor]
  ) {
    var nothingToReuse: [String: Tensor] = [:]
    return try run(inputs, withLosses: true, reusing: &nothingToReuse, mode: mode)
  }

  /// A call's inputs, checked against the signature and ordered as the C entry points take them.
  private struct PreparedInputs {
    /// One per signature input; nil for inputs the call does not need.
    var tensors: [Tensor?]
    /// The inputs given, with their entries, for binding the symbolic dimensions.
    var given: [(ModelSignature.Entry, Tensor)]
    /// Every input's shape; an input the call does not take counts as [-1].
    var shapes: [[Int]]
    /// Whether the call takes every input (evaluate, train step) or only forward's.
    var allInputs: Bool
    /// Symbolic dimensions the caller binds (`dims:`), for those no input determines.
    var explicitDims: [String: Int] = [:]
  }

  /// Checks the inputs against the signature and orders the tensors as the C entry points take
  /// them. Touches nothing shared.
  /// - Parameters:
  ///   - needed: the inputs the call reads (a training step's); nil: every input when `allInputs`,
  ///     else forward's.
  ///   - dims: symbolic dimensions the caller binds, which no given input may contradict.
  private func prepare(
    _ inputs: [String: Tensor], allInputs: Bool, needed: Set<String>? = nil,
    dims: [String: Int] = [:]
  ) throws -> PreparedInputs {
    for (symbol, value) in dims {
      guard signature.symbols.contains(symbol) else {
        throw RunError(
          "the model has no symbolic dimension '\(symbol)' (it has \(signature.symbols.isEmpty ? "none" : signature.symbols.joined(separator: ", ")))"
        )
      }
      guard value > 0 else {
        throw RunError("dimension '\(symbol)' must be at least 1, got \(value)")
      }
    }
    for name in inputs.keys where !signature.inputs.contains(where: { $0.name == name }) {
      let names = signature.inputs.map(\.name)
      throw RunError("the model has no input '\(name)' (inputs: \(names.joined(separator: ", ")))")
    }
    var prepared: [Tensor?] = []
    var entries: [(ModelSignature.Entry, Tensor)] = []
    for entry in signature.inputs {
      // An input the call does not read is not passed, nor does it bind a dimension.
      if let needed, !needed.contains(entry.name) {
        prepared.append(nil)
        continue
      }
      let required = needed != nil || allInputs || entry.forward == true
      guard let tensor = inputs[entry.name] else {
        if required { throw RunError("missing input '\(entry.name)' (\(entry.typeDescription))") }
        prepared.append(nil)
        continue
      }
      let conformed = try conform(tensor, to: entry, kind: "input")
      prepared.append(conformed)
      entries.append((entry, conformed))
    }
    return PreparedInputs(
      tensors: prepared, given: entries, shapes: prepared.map { $0?.shape ?? [-1] },
      allInputs: allInputs, explicitDims: dims)
  }

  /// Binds the symbolic dimensions of the prepared inputs and sizes the outputs and losses.
  /// Call with `lock` held (it reads and writes `lastBinding`).
  private func bind(_ prepared: PreparedInputs) throws -> CallBinding {
    // Calls usually repeat the last call's shapes: then the symbols' values are known already
    // (binding parses the signature's dimension text, a few microseconds a call).
    let shapes = prepared.shapes
    if let last = lastBinding, last.inputShapes == shapes, last.allInputs == prepared.allInputs,
      last.explicitDims == prepared.explicitDims
    {
      return last
    }
    let allInputs = prepared.allInputs
    var bindings = try ShapeBinding.bind(prepared.given, kind: "input")
    for (symbol, value) in prepared.explicitDims.sorted(by: { $0.key < $1.key }) {
      if let bound = bindings[symbol], bound != value {
        throw RunError(
          "dimension '\(symbol)' is given as \(value), but the inputs make it \(bound)")
      }
      bindings[symbol] = value
    }
    let sized = signature.outputs + (allInputs ? signature.losses : [])
    let dims = try signature.symbols.map { symbol -> Int64 in
      if let value = bindings[symbol] { return Int64(value) }
      // A symbol only inputs this call does not take use (a label's, at inference) sizes nothing it
      // computes; the C code still checks every dimension, so it gets a valid one.
      let mentioned = sized.contains { entry in
        entry.shape.contains { $0.split(separator: "*").contains { $0 == symbol } }
      }
      guard allInputs || mentioned else { return 1 }
      throw RunError(
        "no input determines the dimension '\(symbol)'; bind it (lamina run --dim \(symbol)=N, dims: [\"\(symbol)\": N])"
      )
    }
    func shape(_ entry: ModelSignature.Entry) throws -> [Int] {
      guard let shape = entry.concreteShape(bindings) else {
        throw RunError("cannot size '\(entry.name)' \(entry.typeDescription)")
      }
      // Outputs are allocated here, before the C code runs: a size that cannot be allocated is an
      // error, not an abort.
      try Tensor.checkAllocation(entry.elementType ?? .f64, shape, of: "'\(entry.name)'")
      return shape
    }
    let binding = CallBinding(
      inputShapes: shapes, givenCount: prepared.given.count, allInputs: allInputs,
      explicitDims: prepared.explicitDims, dims: dims,
      outputShapes: try signature.outputs.map(shape),
      lossShapes: try signature.losses.map(shape))
    lastBinding = binding
    return binding
  }

  /// Runs `body` holding the model's lock.
  private func locked<Result>(_ body: () throws -> Result) rethrows -> Result {
    lock.lock()
    defer { lock.unlock() }
    return try body()
  }

  /// One training step in one C call: forward, backward, and the optimizer's update of the
  /// parameters and state. Returns the loss before the update.
  /// - Parameter step: the training step's name; nil: the first.
  ///   The step reads only the inputs its loss needs (`ModelSignature.Step.inputs`); others given
  ///   are ignored.
  /// - Parameter dims: symbolic dimensions no input of the step determines (a GAN generator's
  ///   `batch`, when its step reads no data).
  public func trainStep(_ inputs: [String: Tensor], step: String? = nil) throws -> Double {
    try trainStep(inputs, step: step, dims: [:])
  }

  /// One training step (see `trainStep(_:step:)`).
  public func trainStep(_ inputs: [String: Tensor], step: String?, dims: [String: Int]) throws
    -> Double
  {
    let (train, index) = try trainStepFunction(named: step)
    let prepared = try prepare(
      inputs, allInputs: true, needed: signature.steps[index].inputs.map(Set.init), dims: dims)
    var loss = lossTensor(ofStep: index)
    lock.lock()
    defer { lock.unlock() }
    let dims = try bind(prepared).dims
    let status = try withInputPointers(prepared.tensors) { inputPointers in
      loss.withUnsafeMutableBytes { lossBytes in
        dims.withUnsafeBufferPointer { dims in
          train(context, Int64(index), dims.baseAddress, inputPointers, lossBytes.baseAddress)
        }
      }
    }
    guard status == 0 else { throw failure(status, of: "the training step") }
    return loss.doubles()[0]
  }

  /// The scalar a training step writes its loss into.
  private func lossTensor(ofStep index: Int) -> Tensor {
    let entry = signature.losses.first { $0.name == signature.steps[index].loss }
    return Tensor(zeros: entry?.elementType ?? .f32, shape: [])
  }

  /// A `forward` call with its inputs checked and bound and its output buffers allocated once;
  /// each `run()` is then one C call (like ONNX Runtime's I/O binding). For serving a fixed shape
  /// at the lowest latency, and for benchmarks that time the compiled code alone.
  ///
  /// Every method may be called from several threads at once; each holds the model's lock for its
  /// whole work. The output buffers belong to the binding, not to a thread: `outputs()` copies
  /// those of the last run that finished, whichever thread ran it, and never a mix of two runs. A
  /// thread that needs the outputs of its own run calls `runAndCopyOutputs()`, or binds its own.
  public final class BoundForward: @unchecked Sendable {
    private let model: CompiledModel
    private let inputTensors: [Tensor?]
    private let outputTensors: [Tensor]
    private let dims: [Int64]
    private let inputPointers: [UnsafeRawPointer?]
    private let outputPointers: [UnsafeMutableRawPointer?]

    fileprivate init(model: CompiledModel, inputs: [String: Tensor]) throws {
      let prepared = try model.prepare(inputs, allInputs: false)
      let binding = try model.locked { try model.bind(prepared) }
      var outputs = try zip(model.signature.outputs, binding.outputShapes).map { entry, shape in
        guard let dtype = entry.elementType else {
          throw RunError("cannot size output '\(entry.name)' \(entry.typeDescription)")
        }
        return Tensor(zeros: dtype, shape: shape)
      }
      // The tensors are kept (inputs shared, outputs owned and unique), so their storage stays put.
      var inputPointers = prepared.tensors.map { tensor in
        tensor?.withUnsafeBytes { $0.baseAddress }
      }
      var outputPointers = outputs.indices.map { index in
        outputs[index].withUnsafeMutableBytes { $0.baseAddress }
      }
      if inputPointers.isEmpty { inputPointers.append(nil) }
      if outputPointers.isEmpty { outputPointers.append(nil) }
      self.model = model
      self.inputTensors = prepared.tensors
      self.outputTensors = outputs
      self.dims = binding.dims
      self.inputPointers = inputPointers
      self.outputPointers = outputPointers
    }

    /// Runs the model on the bound inputs into the bound outputs.
    public func run() throws {
      model.lock.lock()
      defer { model.lock.unlock() }
      try runLocked()
    }

    /// Runs the model and returns copies of the outputs of this run, in one turn of the lock.
    public func runAndCopyOutputs() throws -> [String: Tensor] {
      model.lock.lock()
      defer { model.lock.unlock() }
      try runLocked()
      return copyOutputsLocked()
    }

    /// Copies of the outputs of the last `run()` that finished (later runs overwrite the bound
    /// buffers); all from the same run.
    public func outputs() -> [String: Tensor] {
      model.lock.lock()
      defer { model.lock.unlock() }
      return copyOutputsLocked()
    }

    private func runLocked() throws {
      let status = inputPointers.withUnsafeBufferPointer { inputs in
        outputPointers.withUnsafeBufferPointer { outputs in
          dims.withUnsafeBufferPointer { dims in
            model.functions.forward(
              model.context, dims.baseAddress, inputs.baseAddress, outputs.baseAddress)
          }
        }
      }
      guard status == 0 else { throw model.failure(status, of: "the compiled model") }
    }

    private func copyOutputsLocked() -> [String: Tensor] {
      var table: [String: Tensor] = [:]
      for (entry, tensor) in zip(model.signature.outputs, outputTensors) {
        table[entry.name] = tensor.withUnsafeBytes {
          Tensor(dtype: tensor.dtype, shape: tensor.shape, bytes: $0)!
        }
      }
      return table
    }
  }

  /// A training step with its inputs checked and bound once; each `run()` is one C call (forward,
  /// backward, update) and returns the loss before the update.
  ///
  /// `run()` may be called from several threads at once: the steps take turns, each whole, and
  /// each returns its own loss.
  public final class BoundTrainStep: @unchecked Sendable {
    private let model: CompiledModel
    private let train: Functions.TrainStep
    private let index: Int64
    private let inputTensors: [Tensor?]
    private let dims: [Int64]
    private let inputPointers: [UnsafeRawPointer?]
    /// Written by every run (guarded by the model's lock).
    private var loss: Tensor

    fileprivate init(model: CompiledModel, inputs: [String: Tensor], step: String?) throws {
      let (train, index) = try model.trainStepFunction(named: step)
      let prepared = try model.prepare(
        inputs, allInputs: true, needed: model.signature.steps[index].inputs.map(Set.init))
      let binding = try model.locked { try model.bind(prepared) }
      var inputPointers = prepared.tensors.map { tensor in
        tensor?.withUnsafeBytes { $0.baseAddress }
      }
      if inputPointers.isEmpty { inputPointers.append(nil) }
      self.model = model
      self.train = train
      self.index = Int64(index)
      self.inputTensors = prepared.tensors
      self.dims = binding.dims
      self.inputPointers = inputPointers
      self.loss = model.lossTensor(ofStep: index)
    }

    /// One training step on the bound inputs; the loss before the update.
    @discardableResult
    public func run() throws -> Double {
      model.lock.lock()
      defer { model.lock.unlock() }
      let status = inputPointers.withUnsafeBufferPointer { inputs in
        loss.withUnsafeMutableBytes { lossBytes in
          dims.withUnsafeBufferPointer { dims in
            train(model.context, index, dims.baseAddress, inputs.baseAddress, lossBytes.baseAddress)
          }
        }
      }
      guard status == 0 else { throw model.failure(status, of: "the training step") }
      return loss.doubles()[0]
    }
  }

  /// Checks and binds `inputs` for repeated training steps (see `BoundTrainStep`).
  public func bindTrainStep(_ inputs: [String: Tensor], step: String? = nil) throws
    -> BoundTrainStep
  {
    try BoundTrainStep(model: self, inputs: inputs, step: step)
  }

  /// Checks and binds `inputs` for repeated `forward` calls (see `BoundForward`).
  public func bindForward(_ inputs: [String: Tensor]) throws -> BoundForward {
    try BoundForward(model: self, inputs: inputs)
  }

  /// The context's message for a failed C call (`status` when it left none).
  private func failure(_ status: Int32, of what: String) -> RunError {
    let message = functions.lastError(context).map { String(cString: $0) } ?? ""
    return RunError(message.isEmpty ? "\(what) failed with code \(status)" : message)
  }

  /// The C training step function and the index of the step named `step` (nil: the first).
  private func trainStepFunction(named step: String?) throws -> (Functions.TrainStep, Int) {
    guard let train = functions.trainStep else {
      throw RunError(
        "\(libraryPath) has no training step: compile the model with the training pipeline")
    }
    guard let step else {
      guard !signature.steps.isEmpty else { throw RunError("the model has no training step") }
      return (train, 0)
    }
    guard let index = signature.steps.firstIndex(where: { $0.name == step }) else {
      throw RunError(
        "the model has no training step '\(step)' (steps: \(signature.steps.map(\.name).joined(separator: ", ")))"
      )
    }
    return (train, index)
  }

  private func run(_ inputs: [String: Tensor], withLosses: Bool) throws -> (
    outputs: [String: Tensor], losses: [String: Tensor]
  ) {
    var nothingToReuse: [String: Tensor] = [:]
    return try run(inputs, withLosses: withLosses, reusing: &nothingToReuse)
  }

  private func run(
    _ inputs: [String: Tensor], withLosses: Bool, reusing reusable: inout [String: Tensor],
    mode: ExecutionMode = .inference, dims explicitDims: [String: Int] = [:]
  ) throws -> (
    outputs: [String: Tensor], losses: [String: Tensor]
  ) {
    // The old tensors move into `outputs` rather than being copied, so each is referenced once and
    // the C code writes into its storage without a copy-on-write of the whole buffer.
    var outputs: [String: Tensor] = [:]
    swap(&outputs, &reusable)
    let losses = try run(
      inputs, withLosses: withLosses, outputs: &outputs, mode: mode, dims: explicitDims)
    return (outputs, losses)
  }

  /// One forward or evaluate call. Returns the losses (empty without `withLosses`).
  /// - Parameter outputs: on entry, tensors to write the outputs into: when they are exactly the
  ///   outputs of this call (names, dtypes, shapes) they are written in place, else those of the
  ///   right dtype and shape are reused and the others allocated; on return, the outputs.
  @discardableResult
  private func run(
    _ inputs: [String: Tensor], withLosses: Bool, outputs: inout [String: Tensor],
    mode: ExecutionMode = .inference, dims explicitDims: [String: Int] = [:]
  ) throws -> [String: Tensor] {
    let training = mode == .training
    guard
      !training || (withLosses ? functions.evaluateTraining : nil) != nil
        || (!withLosses && functions.forwardTraining != nil)
    else {
      throw RunError("this library has no training-mode entry points: recompile the model")
    }
    // One turn of the lock for the whole call: checking the inputs and allocating the outputs
    // under it costs little, since the C call, which reads and writes every element of them, runs
    // one at a time anyway. The pointer arrays are the model's, reused by every call.
    lock.lock()
    defer { lock.unlock() }
    var prepared: PreparedInputs?
    let binding: CallBinding
    if explicitDims.isEmpty,
      let repeated = pointAtRepeatedInputsLocked(inputs, allInputs: withLosses)
    {
      binding = repeated
    } else {
      let checked = try prepare(inputs, allInputs: withLosses, dims: explicitDims)
      binding = try bind(checked)
      for (index, tensor) in checked.tensors.enumerated() {
        inputPointers[index] = tensor?.withUnsafeBytes { $0.baseAddress }
      }
      prepared = checked
    }
    let inPlace = pointAtOutputsLocked(&outputs, sizedBy: binding)
    var allocated: [Tensor] = []
    if !inPlace {
      var reusable: [String: Tensor] = [:]
      swap(&reusable, &outputs)
      allocated = try allocate(signature.outputs, shapes: binding.outputShapes, reusing: &reusable)
      for index in allocated.indices {
        outputPointers[index] = allocated[index].withUnsafeMutableBytes { $0.baseAddress }
      }
    }
    var nothingToReuse: [String: Tensor] = [:]
    var losses =
      withLosses
      ? try allocate(signature.losses, shapes: binding.lossShapes, reusing: &nothingToReuse) : []
    let status = try binding.dims.withUnsafeBufferPointer { dimsPointer in
      let dims = dimsPointer.baseAddress
      guard withLosses else {
        return (training ? functions.forwardTraining! : functions.forward)(
          context, dims, inputPointers, outputPointers)
      }
      return try withMutablePointers(&losses) { lossPointers in
        (training ? functions.evaluateTraining! : functions.evaluate)(
          context, dims, inputPointers, outputPointers, lossPointers)
      }
    }
    // The C code read the inputs' storage through raw pointers: keep it alive until here.
    withExtendedLifetime(inputs) {}
    withExtendedLifetime(prepared) {}
    guard status == 0 else { throw failure(status, of: "the compiled model") }
    if !inPlace {
      for (entry, tensor) in zip(signature.outputs, allocated) { outputs[entry.name] = tensor }
    }
    var lossTable: [String: Tensor] = [:]
    for (entry, tensor) in zip(signature.losses, losses) { lossTable[entry.name] = tensor }
    return lossTable
  }

  /// Tensors for `entries` of `shapes`: those of `reusable` of the right dtype and shape, taken out
  /// of it (so their storage is uniquely referenced: no copy on write), else new ones.
  private func allocate(
    _ entries: [ModelSignature.Entry], shapes: [[Int]], reusing reusable: inout [String: Tensor]
  ) throws -> [Tensor] {
    try zip(entries, shapes).map { entry, shape in
      guard let dtype = entry.elementType else {
        throw RunError("cannot size output '\(entry.name)' \(entry.typeDescription)")
      }
      if let tensor = reusable.removeValue(forKey: entry.name), tensor.dtype == dtype,
        tensor.shape == shape
      {
        return tensor
      }
      return Tensor(zeros: dtype, shape: shape)
    }
  }

  /// The steady state of a call: when `inputs` are the inputs of the last call's binding (the same
  /// names, dtypes and shapes, nothing to convert, no dimension given apart), points
  /// `inputPointers` at them and returns that binding, having hashed no name and allocated
  /// nothing. nil: the call needs `prepare` and `bind`. Call with `lock` held.
  private func pointAtRepeatedInputsLocked(_ inputs: [String: Tensor], allInputs: Bool)
    -> CallBinding?
  {
    guard let binding = lastBinding, binding.allInputs == allInputs,
      binding.explicitDims.isEmpty, inputs.count == binding.givenCount
    else { return nil }
    let entries = signature.inputs
    for index in entries.indices { inputPointers[index] = nil }
    // Names in a dictionary are distinct and a tensor's shape is never the [-1] of an input not
    // given, so matching `givenCount` names means the same inputs as the binding's.
    for (name, tensor) in inputs {
      guard let index = entries.firstIndex(where: { $0.name == name }),
        let dtype = inputTypes[index], tensor.dtype == dtype,
        tensor.shape == binding.inputShapes[index]
      else { return nil }
      inputPointers[index] = tensor.withUnsafeBytes { $0.baseAddress }
    }
    // The binding may be a training step's, which reads fewer inputs than this call needs.
    for (index, entry) in entries.enumerated()
    where inputPointers[index] == nil && (allInputs || entry.forward == true) {
      return nil
    }
    return binding
  }

  /// Points `outputPointers` at the tensors of `outputs` when they are exactly the outputs
  /// `binding` sizes (names, dtypes, shapes), each made uniquely referenced first (a tensor the
  /// caller also holds elsewhere is copied, so that one keeps its values). false: nothing changed.
  /// Call with `lock` held.
  private func pointAtOutputsLocked(
    _ outputs: inout [String: Tensor], sizedBy binding: CallBinding
  ) -> Bool {
    let entries = signature.outputs
    guard outputs.count == entries.count else { return false }
    for (name, tensor) in outputs {
      guard let index = entries.firstIndex(where: { $0.name == name }),
        let dtype = outputTypes[index], tensor.dtype == dtype,
        tensor.shape == binding.outputShapes[index]
      else { return false }
    }
    // A dictionary shared with another variable is copied here, before any index is taken, so
    // the writes through `values` below change neither the indices nor the other variable.
    outputs.reserveCapacity(entries.count)
    var position = outputs.startIndex
    while position != outputs.endIndex {
      let name = outputs.keys[position]
      let index = entries.firstIndex { $0.name == name }!
      outputPointers[index] = outputs.values[position].withUnsafeMutableBytes { $0.baseAddress }
      outputs.formIndex(after: &position)
    }
    return true
  }

  private func withInputPointers<Result>(
    _ tensors: [Tensor?], _ body: (UnsafePointer<UnsafeRawPointer?>) throws -> Result
  ) throws -> Result {
    // Tensors' storage is stable while the tensors are alive; this array keeps them alive.
    var pointers: [UnsafeRawPointer?] = []
    var keepAlive: [Tensor] = []
    for tensor in tensors {
      if let tensor {
        keepAlive.append(tensor)
        pointers.append(tensor.withUnsafeBytes { $0.baseAddress })
      } else {
        pointers.append(nil)
      }
    }
    if pointers.isEmpty { pointers.append(nil) }
    let result = try pointers.withUnsafeBufferPointer { try body($0.baseAddress!) }
    withExtendedLifetime(keepAlive) {}
    return result
  }

  private func withMutablePointers<Result>(
    _ tensors: inout [Tensor], _ body: (UnsafePointer<UnsafeMutableRawPointer?>) throws -> Result
  ) throws -> Result {
    var pointers: [UnsafeMutableRawPointer?] = []
    for index in tensors.indices {
      pointers.append(tensors[index].withUnsafeMutableBytes { $0.baseAddress })
    }
    if pointers.isEmpty { pointers.append(nil) }
    return try pointers.withUnsafeBufferPointer { try body($0.baseAddress!) }
  }

  /// Accepts the declared dtype, or an integer tensor of another width whose values fit.
  private func conform(_ tensor: Tensor, to entry: ModelSignature.Entry, kind: String) throws
    -> Tensor
  {
    guard let dtype = entry.elementType else {
      throw RunError("\(kind) '\(entry.name)' has unknown dtype \(entry.dtype)")
    }
    return try ShapeBinding.conform(tensor, to: dtype, name: entry.name, kind: kind)
  }

  // MARK: Parameters

  /// A copy of a parameter's current value.
  public func parameter(named name: String) throws -> Tensor {
    let (index, _) = try parameterEntry(name)
    return try locked { try copyParameterLocked(index) }
  }

  /// Replaces a parameter's value; the tensor's dtype and shape must match exactly.
  public func setParameter(_ tensor: Tensor, named name: String) throws {
    let (index, _) = try parameterEntry(name)
    try checkParameter(tensor, index: index)
    locked { writeParameterLocked(tensor, index: index) }
  }

  /// Sets every parameter at once (a call on another thread sees all the old values or all the
  /// new ones); each must be present with the right type, else nothing changes. Model state in
  /// `tensors` (a weights file's running statistics, under its name or `state.NAME`) is set with
  /// them; model state it lacks keeps its value.
  public func setParameters(_ tensors: [String: Tensor]) throws {
    var checked: [Tensor] = []
    for (index, entry) in signature.params.enumerated() {
      guard let tensor = tensors[entry.name] else {
        throw RunError("no value for parameter '\(entry.name)' (\(entry.typeDescription))")
      }
      try checkParameter(tensor, index: index)
      checked.append(tensor)
    }
    let state = try checkState(signature.modelStates(in: tensors))
    locked {
      for (index, tensor) in checked.enumerated() { writeParameterLocked(tensor, index: index) }
      for (index, tensor) in state { writeStateLocked(tensor, index: index) }
    }
  }

  /// Every parameter's current value, by name: one snapshot between two calls (after a whole
  /// number of training steps, even while another thread trains).
  public func parameters() throws -> [String: Tensor] {
    try locked { try copyParametersLocked() }
  }

  /// The parameters and the optimizer state of one moment between two calls: a checkpoint that
  /// resumes training exactly, taken while another thread trains.
  public func parametersAndState() throws -> (
    parameters: [String: Tensor], state: [String: Tensor]
  ) {
    try locked { (try copyParametersLocked(), try copyStateLocked()) }
  }

  /// Loads every parameter from a `.safetensors` file keyed by parameter name, and the model state
  /// the file holds (under its own name, as PyTorch's state_dict, or `state.NAME` as a checkpoint
  /// stores it); model state the file lacks keeps its value.
  public func loadWeights(from path: String) throws {
    let weights = try SafeTensors.readDictionary(contentsOf: path)
    for entry in signature.params where weights[entry.name] == nil {
      throw RunError("\(path): no tensor for parameter '\(entry.name)'")
    }
    try setParameters(weights)
  }

  /// Saves every parameter and the model state (running statistics) to a `.safetensors` file,
  /// atomically, each under its own name.
  public func saveWeights(to path: String) throws {
    let (parameters, state) = try parametersAndState()
    let modelState = Set(signature.modelStates.map(\.name))
    let tensors = parameters.merging(state.filter { modelState.contains($0.key) }) { a, _ in a }
      .sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    try SafeTensors.write(tensors, metadata: ["model": signature.model], to: path)
  }

  /// The model state (state no optimizer owns: batch norm's running statistics), by name.
  public func modelState() throws -> [String: Tensor] {
    let names = Set(signature.modelStates.map(\.name))
    return try state().filter { names.contains($0.key) }
  }

  private func checkParameter(_ tensor: Tensor, index: Int) throws {
    let entry = signature.params[index]
    guard tensor.dtype.rawValue == entry.dtype, tensor.shape == entry.concreteShape([:]),
      functions.paramBytes(Int64(index)) == Int64(tensor.byteCount)
    else {
      throw RunError(
        "parameter '\(entry.name)': expected \(entry.typeDescription), got \(tensor.typeDescription)"
      )
    }
  }

  /// Call with `lock` held, `tensor` checked by `checkParameter`.
  private func writeParameterLocked(_ tensor: Tensor, index: Int) {
    // lamina_param_data counts as a write (the library derives its packed weights again at the
    // next call); the pointer is not kept past this copy, so lamina_params_changed is not needed.
    // paramData is nil only for an index past the signature's parameters, which checking excludes.
    guard let data = functions.paramData(context, Int64(index)) else { return }
    tensor.withUnsafeBytes { source in
      if let base = source.baseAddress { data.copyMemory(from: base, byteCount: source.count) }
    }
  }

  /// Call with `lock` held.
  private func copyParameterLocked(_ index: Int) throws -> Tensor {
    let entry = signature.params[index]
    guard let dtype = entry.elementType, let shape = entry.concreteShape([:]) else {
      throw RunError("parameter '\(entry.name)' has an unsupported type \(entry.typeDescription)")
    }
    if let getParam = functions.getParam {
      // A read through lamina_get_param does not count as a write, so the next call keeps the
      // library's derived data (packed convolution weights).
      var tensor = Tensor(zeros: dtype, shape: shape)
      let status = tensor.withUnsafeMutableBytes {
        getParam(context, Int64(index), $0.baseAddress, Int64($0.count))
      }
      guard status == 0 else { throw RunError("parameter '\(entry.name)' has no storage") }
      return tensor
    }
    guard let data = functions.paramData(context, Int64(index)) else {
      throw RunError("parameter '\(entry.name)' has no storage")
    }
    return Tensor(
      dtype: dtype, shape: shape,
      bytes: UnsafeRawBufferPointer(start: data, count: Int(functions.paramBytes(Int64(index)))))!
  }

  /// Call with `lock` held.
  private func copyParametersLocked() throws -> [String: Tensor] {
    var result: [String: Tensor] = [:]
    for (index, entry) in signature.params.enumerated() {
      result[entry.name] = try copyParameterLocked(index)
    }
    return result
  }

  // MARK: Optimizer state

  /// Every state tensor by name: optimizer state (momentum, moment estimates, step counters) and
  /// model state (running statistics, `modelState()`); one snapshot between two calls.
  public func state() throws -> [String: Tensor] {
    try locked { try copyStateLocked() }
  }

  /// Replaces state (optimizer or model state) at once; every tensor given must match its entry exactly (else
  /// nothing changes), and names it lacks keep their values.
  public func setState(_ tensors: [String: Tensor]) throws {
    let checked = try checkState(tensors)
    locked {
      for (index, tensor) in checked { writeStateLocked(tensor, index: index) }
    }
  }

  /// Call with `lock` held, `tensor` checked by `checkState`.
  private func writeStateLocked(_ tensor: Tensor, index: Int) {
    guard let data = functions.stateData?(context, Int64(index)) else { return }
    tensor.withUnsafeBytes { source in
      if let base = source.baseAddress { data.copyMemory(from: base, byteCount: source.count) }
    }
  }

  /// Each tensor's state index, once its name, dtype and shape are checked.
  @discardableResult
  private func checkState(_ tensors: [String: Tensor]) throws -> [(Int, Tensor)] {
    var checked: [(Int, Tensor)] = []
    for (name, tensor) in tensors {
      guard let index = signature.states.firstIndex(where: { $0.name == name }) else {
        throw RunError("the model has no state '\(name)'")
      }
      let entry = signature.states[index]
      guard tensor.dtype.rawValue == entry.dtype, tensor.shape == entry.concreteShape([:]),
        functions.stateData != nil,
        functions.stateBytes?(Int64(index)) == Int64(tensor.byteCount)
      else {
        throw RunError(
          "state '\(name)': expected \(entry.typeDescription), got \(tensor.typeDescription)")
      }
      checked.append((index, tensor))
    }
    return checked
  }

  /// Call with `lock` held.
  private func copyStateLocked() throws -> [String: Tensor] {
    var result: [String: Tensor] = [:]
    for (index, entry) in signature.states.enumerated() {
      guard let dtype = entry.elementType, let shape = entry.concreteShape([:]),
        let data = functions.stateData?(context, Int64(index)),
        let bytes = functions.stateBytes?(Int64(index))
      else { throw RunError("state '\(entry.name)' has no storage") }
      result[entry.name] = Tensor(
        dtype: dtype, shape: shape, bytes: UnsafeRawBufferPointer(start: data, count: Int(bytes)))!
    }
    return result
  }

  private func parameterEntry(_ name: String) throws -> (Int, ModelSignature.Entry) {
    guard let index = signature.params.firstIndex(where: { $0.name == name }) else {
      throw RunError("the model has no parameter '\(name)'")
    }
    return (index, signature.params[index])
  }
}

/// What a call's input shapes determine: the symbols' values (`dims`, in the signature's order) and
/// the outputs' and losses' shapes.
struct CallBinding {
  var inputShapes: [[Int]]
  /// How many inputs the call was given (those of `inputShapes` other than [-1]).
  var givenCount: Int
  /// Whether the call took every input (evaluate, a training step) or forward's.
  var allInputs: Bool
  /// The dimensions the caller bound itself (`dims:`), part of the call's key.
  var explicitDims: [String: Int] = [:]
  var dims: [Int64]
  var outputShapes: [[Int]]
  var lossShapes: [[Int]]
}
