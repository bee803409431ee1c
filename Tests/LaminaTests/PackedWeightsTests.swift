import Foundation
import Lamina
import LaminaTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Convolution weights packed for the GEMM once per parameter version (`lamina_derived`,
/// `ConvolutionSchedule.packsWeightsOnce`): the forward reads a kept copy of the packed weights,
/// so every way of changing a parameter must be seen by the next call. One library per instruction
/// set (AVX-512 where the CPU has it through the portable target, AVX2 through x86-64-v3) with the
/// GEMM-path shapes: a fused 3x3 convolution, a pointwise 1x1 (the input as its own columns) of 40
/// filters (narrow panels), a strided grouped one; at batch 1 (the GEMM writes the result) and 3
/// (images side by side); a Winograd F(4x4) layer (32 channels at 14x14, fused relu), whose kept
/// copy is the weights' packed transform (a training step transforms them per call); and a 3x3
/// stride-2 layer on the channel kernel (64 channels to 14x14), whose kept copy is the weights
/// transposed to vectors of output channels. Each change is followed by a forward compared with the interpreter on
/// the new values: `lamina_set_param`, writes through pointers `lamina_param_data` gave out earlier
/// and `lamina_params_changed`, a training step, and (Swift) `loadWeights` and `setParameter`.
@Suite("Packed weights", .serialized)
struct PackedWeightsTests {
  static let source = """
    model PackedWeights {
      input x: f32[batch, 20, 9, 11]
      input s: f32[batch, 32, 14, 14]
      input u: f32[batch, 64, 28, 28]
      input target: f32[batch, 4]
      let a = x |> conv2d(filters: 24, kernel: 3, padding: 1, activation: "relu")
      let b = a |> conv2d(filters: 40, kernel: 1)
      let c = b |> conv2d(filters: 36, kernel: 3, stride: 2, groups: 2, padding: 1, activation: "tanh")
      let d = s |> conv2d(filters: 32, kernel: 3, padding: 1, activation: "relu")
      let e = u |> conv2d(filters: 48, kernel: 3, stride: 2, padding: 1, activation: "relu")
      let y = (c |> flatten |> dense(units: 4)) + (d |> global_avg_pool2d |> dense(units: 4))
        + (e |> global_avg_pool2d |> dense(units: 4))
      output y
      output c
      output d
      output e
      loss = mse(y, target)
      train with sgd(lr: 0.5)
    }
    """

  /// The library's C interface for one context of its own, by dlsym.
  final class CContext {
    typealias Create = @convention(c) (Int32) -> OpaquePointer?
    typealias Destroy = @convention(c) (OpaquePointer?) -> Void
    typealias Forward =
      @convention(c) (
        OpaquePointer?, UnsafePointer<Int64>?, UnsafePointer<UnsafeRawPointer?>?,
        UnsafePointer<UnsafeMutableRawPointer?>?
      ) -> Int32
    typealias TrainStep =
      @convention(c) (
        OpaquePointer?, Int64, UnsafePointer<Int64>?, UnsafePointer<UnsafeRawPointer?>?,
        UnsafeMutableRawPointer?
      ) -> Int32
    typealias SetParam = @convention(c) (OpaquePointer?, Int64, UnsafeRawPointer?, Int64) -> Int32
    typealias GetParam =
      @convention(c) (OpaquePointer?, Int64, UnsafeMutableRawPointer?, Int64) -> Int32
    typealias ParamData = @convention(c) (OpaquePointer?, Int64) -> UnsafeMutableRawPointer?
    typealias Changed = @convention(c) (OpaquePointer?) -> Void
    typealias InstructionSet = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?

    let handle: UnsafeMutableRawPointer
    let context: OpaquePointer
    let destroy: Destroy
    let forwardFunction: Forward
    let trainStepFunction: TrainStep
    let setParam: SetParam
    let getParam: GetParam
    let paramData: ParamData
    let paramsChanged: Changed
    let instructionSet: String

    init(library: String) throws {
      let handle = try #require(dlopen(library, RTLD_NOW | RTLD_LOCAL))
      func symbol<T>(_ name: String, _ type: T.Type) throws -> T {
        unsafeBitCast(try #require(dlsym(handle, name), "\(name)"), to: type)
      }
      let context = try #require(try symbol("lamina_create", Create.self)(2))
      self.handle = handle
      self.context = context
      destroy = try symbol("lamina_destroy", Destroy.self)
      forwardFunction = try symbol("lamina_forward", Forward.self)
      trainStepFunction = try symbol("lamina_train_step", TrainStep.self)
      setParam = try symbol("lamina_set_param", SetParam.self)
      getParam = try symbol("lamina_get_param", GetParam.self)
      paramData = try symbol("lamina_param_data", ParamData.self)
      paramsChanged = try symbol("lamina_params_changed", Changed.self)
      instructionSet = String(
        cString: try symbol("lamina_instruction_set", InstructionSet.self)(context)!)
    }

    deinit {
      destroy(context)
      dlclose(handle)
    }

    /// lamina_forward at `batch` on `inputs` (in the signature's order), the outputs as tensors.
    func forward(
      batch: Int, inputs: [Tensor], outputs entries: [ModelSignature.Entry]
    ) throws -> [String: Tensor] {
      var results = try entries.map { entry -> Tensor in
        let shape = entry.shape.map { Int($0) ?? batch }
        return Tensor(zeros: try #require(entry.elementType), shape: shape)
      }
      let status = try withPointers(inputs, &results) { inputPointers, outputPointers in
        forwardFunction(context, [Int64(batch)], inputPointers, outputPointers)
      }
      #expect(status == 0, "lamina_forward")
      return Dictionary(uniqueKeysWithValues: zip(entries.map(\.name), results))
    }

    /// One training step (step 0) at `batch`.
    func trainStep(batch: Int, inputs: [Tensor]) throws {
      var loss = [Tensor(zeros: .f32, shape: [])]
      let status = try withPointers(inputs, &loss) { inputPointers, lossPointers in
        trainStepFunction(context, 0, [Int64(batch)], inputPointers, lossPointers[0])
      }
      #expect(status == 0, "lamina_train_step")
    }

    private func withPointers<Result>(
      _ inputs: [Tensor], _ outputs: inout [Tensor],
      _ body: (UnsafePointer<UnsafeRawPointer?>, UnsafePointer<UnsafeMutableRawPointer?>) throws
        -> Result
    ) throws -> Result {
      var inputs = inputs
      var inputPointers: [UnsafeRawPointer?] = []
      var outputPointers: [UnsafeMutableRawPointer?] = []
      // Tensors own their storage; the pointers stay valid while these copies live.
      for index in inputs.indices {
        inputs[index].withUnsafeMutableBytes {
          inputPointers.append(UnsafeRawPointer($0.baseAddress))
        }
      }
      for index in outputs.indices {
        outputs[index].withUnsafeMutableBytes { outputPointers.append($0.baseAddress) }
      }
      return try withExtendedLifetime(inputs) { try body(inputPointers, outputPointers) }
    }
  }

  /// Compiled outputs against the interpreter on `parameters`, within ConvolutionTests' tolerance
  /// for chains of convolutions (a relative 1e-4: `c` is three layers of fp32 sums, and after the
  /// training step one of its elements, 0.0032, differed by 1.08e-6, just past the default 1e-6);
  /// the Winograd layer's output `d` within WinogradTests' (F(4x4)'s rounding is about 20x the
  /// GEMM's). A stale packed copy would be wrong by the size of a weight change, far beyond both.
  static func check(
    _ model: Model, _ outputs: [String: Tensor], inputs: [String: Tensor],
    parameters: [String: Tensor], label: String
  ) throws {
    let names = model.graph.outputs.map(\.name)
    let expected = try model.interpret(inputs: inputs, parameters: parameters, outputs: names)
    let winograd = "d"
    for problem in TestData.compiledMismatches(
      outputs, expected, names: names.filter { $0 != winograd }, relativeTolerance: 1e-4)
    {
      Issue.record("\(label): \(problem)")
    }
    let reference = try #require(expected[winograd])
    let scale = TestData.largestFiniteMagnitude(reference) ?? 1
    if let problem = TestData.mismatch(
      try #require(outputs[winograd]), reference, rtol: 1e-4, atol: 1e-5 * max(scale, 1))
    {
      Issue.record("\(label): \(winograd): \(problem)")
    }
  }

  @Test(
    "a change of weights through every path is seen by the next forward call",
    arguments: [CompileTarget.portable, .x86_64_v3])
  func changesAreSeen(target: CompileTarget) throws {
    if target == .x86_64_v3 && !CompileTarget.hostIsX86 { return }
    let model = try Model(source: Self.source, pipeline: Pipeline.training)
    // The schedule keeps the packed weights of each convolution (their weights are parameters).
    let printed = KernelSchedulePrinter().print(model.graph)
    #expect(
      printed.components(separatedBy: "packed for the GEMM once per parameter version").count - 1
        == 3, "\(printed)")
    #expect(printed.contains("winograd(4)"), "\(printed)")
    #expect(
      printed.components(separatedBy: "transformed and packed once per parameter version").count
        - 1 == 1, "\(printed)")
    #expect(
      printed.components(
        separatedBy: "transposed to vectors of output channels once per parameter version"
      ).count - 1 == 1, "\(printed)")
    var options = TestCache.options()
    options.target = target
    let library = try model.buildLibrary(options: options).libraryPath
    let compiled = try CompiledModel(libraryPath: library, threads: 2)
    let signature = compiled.signature
    let c = try CContext(library: library)
    if target == .x86_64_v3 { #expect(c.instructionSet == "x86-64-v3") }
    let names = signature.params.map(\.name)
    var parameters = try model.initialParameters(seed: 1)
    let alternatives = try (2...4).map { try model.initialParameters(seed: UInt64($0)) }

    func setAll(_ values: [String: Tensor]) throws {
      for (index, name) in names.enumerated() {
        let tensor = try #require(values[name])
        let status = tensor.withUnsafeBytes {
          c.setParam(c.context, Int64(index), $0.baseAddress, Int64($0.count))
        }
        #expect(status == 0)
      }
    }
    func readAll() throws -> [String: Tensor] {
      var values: [String: Tensor] = [:]
      for (index, entry) in signature.params.enumerated() {
        var tensor = Tensor(
          zeros: try #require(entry.elementType), shape: entry.shape.compactMap { Int($0) })
        let status = tensor.withUnsafeMutableBytes {
          c.getParam(c.context, Int64(index), $0.baseAddress, Int64($0.count))
        }
        #expect(status == 0)
        values[entry.name] = tensor
      }
      return values
    }

    for batch in [1, 3] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: 9)
      let ordered = try signature.inputs.map { try #require(inputs[$0.name]) }
      func forwardAndCheck(_ label: String) throws {
        let outputs = try c.forward(batch: batch, inputs: ordered, outputs: signature.outputs)
        try Self.check(
          model, outputs, inputs: inputs, parameters: parameters,
          label: "\(target) batch \(batch), \(label)")
      }

      // lamina_set_param; then the kept copy, twice.
      parameters = alternatives[0]
      try setAll(parameters)
      try forwardAndCheck("after lamina_set_param")
      try forwardAndCheck("the kept packed weights")
      parameters = alternatives[1]
      try setAll(parameters)
      try forwardAndCheck("after lamina_set_param again")

      // Pointers from lamina_param_data kept across a call, written later, then lamina_params_changed.
      let pointers = try names.indices.map { try #require(c.paramData(c.context, Int64($0))) }
      try forwardAndCheck("after lamina_param_data")
      parameters = alternatives[2]
      for (index, name) in names.enumerated() {
        try #require(parameters[name]).withUnsafeBytes {
          pointers[index].copyMemory(from: $0.baseAddress!, byteCount: $0.count)
        }
      }
      c.paramsChanged(c.context)
      try forwardAndCheck("after writes through kept pointers and lamina_params_changed")

      // A training step (its forward packs per call), read back without counting as a write.
      try forwardAndCheck("before the training step")
      try c.trainStep(batch: batch, inputs: ordered)
      let trained = try readAll()
      #expect(trained != parameters, "the training step changed no parameter")
      parameters = trained
      try forwardAndCheck("after a training step")
    }

    // The Swift API: weights loaded from a file, then one parameter set.
    let directory = try RepositoryPaths.temporaryDirectory()
    let path = directory + "/weights.safetensors"
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 1], seed: 5)
    try compiled.setParameters(alternatives[0])
    try Self.check(
      model, try compiled.forward(inputs), inputs: inputs, parameters: alternatives[0],
      label: "\(target) Swift setParameters")
    try SafeTensors.write(
      alternatives[1].sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, to: path)
    try compiled.loadWeights(from: path)
    try Self.check(
      model, try compiled.forward(inputs), inputs: inputs, parameters: alternatives[1],
      label: "\(target) Swift loadWeights")
    var changed = alternatives[1]
    let convolutionWeight = try #require(
      names.first { $0.hasPrefix("conv") && $0.hasSuffix("weight") })
    changed[convolutionWeight] = alternatives[2][convolutionWeight]
    try compiled.setParameter(try #require(changed[convolutionWeight]), named: convolutionWeight)
    try Self.check(
      model, try compiled.forward(inputs), inputs: inputs, parameters: changed,
      label: "\(target) Swift setParameter \(convolutionWeight)")
    _ = try compiled.trainStep(
      inputs.merging(TestData.inputs(for: model.graph, symbols: ["batch": 1], seed: 6)) { a, _ in a
      })
    let trained = try compiled.parameters()
    #expect(trained[convolutionWeight] != changed[convolutionWeight])
    try Self.check(
      model, try compiled.forward(inputs), inputs: inputs, parameters: trained,
      label: "\(target) Swift trainStep")
  }
}
