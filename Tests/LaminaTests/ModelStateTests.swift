import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// Model state (state no optimizer owns) through the IR, the verifier, the C interface and the
/// command line, and `--mode` on run, gradients and gradcheck.
@Suite("Model state and modes", .serialized)
struct ModelStateTests {
  static let source = """
    model Norm {
      input x: f32[batch, 3, 5]
      input t: f32[batch, 3, 5]
      param s: f32[3, 5] = uniform(lo: 0.5, hi: 1.5)
      let y = (x * s) |> batch_norm |> tanh
      output y
      loss = mse(y, t)
      train with sgd(lr: 0.1)
    }
    """

  func lamina(_ arguments: String...) -> (status: Int32, output: String, errors: String) {
    let console = Console.capturing()
    let status = CommandLineTool.run(arguments, console: console)
    return (status, console.standardOutput, console.standardError)
  }

  func writeModel(in directory: String) throws -> String {
    let path = directory + "/norm.lam"
    try Self.source.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  @Test("the verifier rejects an update rule on a parameter and two rules for one state")
  func verifierRules() throws {
    let text = try Model(source: Self.source, pipeline: []).ir()
    #expect(try Model(source: text, pipeline: []).ir() == text)
    // Shape inference puts back the attributes the text leaves at their defaults; the pass runner
    // then verifies the graph.
    func problems(_ text: String) -> String {
      do {
        _ = try Model(source: text, pipeline: [ShapeInference()])
        return ""
      } catch {
        return "\(error)"
      }
    }
    let clean = problems(text)
    #expect(clean.isEmpty, "\(clean)")
    // An update without a step whose target is a parameter.
    let onParameter = text.replacingOccurrences(
      of: "update %batch_norm_0.running_var =", with: "update %s =")
    #expect(problems(onParameter).contains("%s is not model state"))
    // Two rules for the same state.
    let twice = text.replacingOccurrences(
      of: "update %batch_norm_0.running_var =", with: "update %batch_norm_0.running_mean =")
    #expect(problems(twice).contains("model state %batch_norm_0.running_mean has two update rules"))
  }

  @Test("the C header lists the state with indices, and lamina_create starts running_var at one")
  func cInterface() throws {
    let model = try Model(source: Self.source, pipeline: Pipeline.training)
    let generated = try model.generateC()
    #expect(generated.header.contains("#define NORM_STATE_BATCH_NORM_0_RUNNING_VAR"))
    #expect(generated.header.contains("(model state)"))
    #expect(generated.source.contains("static void lamina_initialize_state"))
    #expect(
      generated.signature.modelStates.map(\.name) == [
        "batch_norm_0.running_mean", "batch_norm_0.running_var",
      ])
    // A library loaded without the Swift front end (only the C initialization) starts there too.
    let compilation = try model.buildLibrary(options: TestCache.options())
    let library = try CompiledModel(libraryPath: compilation.libraryPath)
    #expect(try library.modelState()["batch_norm_0.running_var"]?.doubles() == [1, 1, 1])
    #expect(try library.state()["train.step"]?.doubles() == [0])
  }

  @Test("dump --params lists the model state, marked state")
  func dumpParams() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let path = try writeModel(in: directory)
    let result = lamina("dump", path, "--params")
    #expect(result.status == 0, "\(result.errors)")
    let lines = result.output.split(separator: "\n").map(String.init)
    #expect(lines.contains { $0.hasPrefix("batch_norm_0.running_mean") && $0.hasSuffix("state") })
    #expect(lines.contains { $0.hasPrefix("batch_norm_0.running_var") && $0.contains("ones()") })
    #expect(lines.contains { $0.hasPrefix("batch_norm_0.weight") && $0.hasSuffix("yes") })
    #expect(result.output.contains("2 model state tensors"))
  }

  @Test("init writes the model state at its initial value beside the parameters")
  func initWritesModelState() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let path = try writeModel(in: directory)
    let weights = directory + "/w.safetensors"
    let result = lamina("init", path, "-o", weights, "--seed", "4")
    #expect(result.status == 0, "\(result.errors)")
    #expect(result.output.contains("and 2 model state tensors"), "\(result.output)")
    let tensors = try SafeTensors.readDictionary(contentsOf: weights)
    #expect(tensors["batch_norm_0.running_mean"]?.doubles() == [0, 0, 0])
    #expect(tensors["batch_norm_0.running_var"]?.doubles() == [1, 1, 1])
    #expect(tensors["s"] != nil && tensors["batch_norm_0.weight"] != nil)
  }

  @Test(
    "run --mode: training uses the batch's statistics, inference the running ones from --weights")
  func runMode() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let path = try writeModel(in: directory)
    let model = try Model(contentsOf: path)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 6], seed: 2)
    try NPY.write(inputs["x"]!, to: directory + "/x.npy")
    var weights = try model.initialParameters(seed: 1)
    weights["batch_norm_0.running_mean"] = Tensor(shape: [3], scalars: [0.5, -0.25, 1] as [Float])
    weights["batch_norm_0.running_var"] = Tensor(shape: [3], scalars: [2, 0.5, 1.5] as [Float])
    try SafeTensors.write(
      weights.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, metadata: [:],
      to: directory + "/w.safetensors")
    for mode in ["inference", "training"] {
      for interpret in [false, true] {
        let output = directory + "/y-\(mode)-\(interpret).npy"
        var arguments = [
          "run", path, "--weights", directory + "/w.safetensors", "--input",
          "x=\(directory)/x.npy", "--output", "y=\(output)", "--mode", mode, "--cache-dir",
          TestCache.directory,
        ]
        if interpret { arguments.append("--interpret") }
        let console = Console.capturing()
        let status = CommandLineTool.run(arguments, console: console)
        #expect(status == 0, "\(console.standardError)")
        let expected = try model.interpret(
          inputs: inputs, parameters: weights, outputs: ["y"],
          mode: mode == "training" ? .training : .inference)
        expectBatchNormClose(
          try NPY.read(contentsOf: output).doubles(), try #require(expected["y"]).doubles(), 1e-5)
      }
    }
    #expect(
      try NPY.read(contentsOf: directory + "/y-inference-false.npy").doubles()
        != (try NPY.read(contentsOf: directory + "/y-training-false.npy").doubles()))
    let bad = lamina("run", path, "--input", "x=\(directory)/x.npy", "--mode", "train")
    #expect(bad.status != 0)
    #expect(bad.errors.contains("--mode takes inference or training, got 'train'"))
  }

  @Test("gradients and gradcheck --mode: training by default, inference on request")
  func gradientModes() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let path = try writeModel(in: directory)
    let model = try Model(contentsOf: path, pipeline: Pipeline.training)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 4], seed: 3)
    try NPY.write(inputs["x"]!, to: directory + "/x.npy")
    try NPY.write(inputs["t"]!, to: directory + "/t.npy")
    let parameters = try model.initialParameters(seed: 0)
    for mode in [ExecutionMode.training, .inference] {
      let output = directory + "/g-\(mode.rawValue).safetensors"
      var arguments = [
        "gradients", path, "--input", "x=\(directory)/x.npy", "--input", "t=\(directory)/t.npy",
        "-o", output,
      ]
      if mode == .inference { arguments += ["--mode", "inference"] }
      let console = Console.capturing()
      #expect(CommandLineTool.run(arguments, console: console) == 0, "\(console.standardError)")
      let written = try SafeTensors.readDictionary(contentsOf: output)
      let expected = try model.interpretGradients(
        inputs: inputs, parameters: parameters, mode: mode)
      for (name, tensor) in expected {
        #expect(try #require(written[name]).doubles() == tensor.doubles(), "\(name) \(mode)")
      }
    }
    let training = try SafeTensors.readDictionary(contentsOf: directory + "/g-training.safetensors")
    let inference = try SafeTensors.readDictionary(
      contentsOf: directory + "/g-inference.safetensors")
    #expect(training["s"]?.doubles() != inference["s"]?.doubles())
    for mode in ["training", "inference"] {
      let result = lamina(
        "gradcheck", path, "--mode", mode, "--samples", "4", "--cache-dir", TestCache.directory)
      #expect(result.status == 0, "\(mode): \(result.output) \(result.errors)")
    }
  }

  @Test("a change of the batch norm's weights or running statistics is seen by the next call")
  func changesAreSeen() throws {
    let model = try Model(
      source: """
        model DenseNorm {
          input x: f32[batch, 6]
          let y = x |> dense(units: 4) |> batch_norm |> relu
          output y
        }
        """)
    var parameters = try model.initialParameters(seed: 4)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 5], seed: 4)
    let before = try compiled.forward(inputs)["y"]!.doubles()
    parameters["batch_norm_0.weight"] = Tensor(shape: [4], scalars: [2, -1, 0.5, 3] as [Float])
    parameters["dense_0.bias"] = Tensor(shape: [4], scalars: [0.1, 0.2, -0.3, 0.4] as [Float])
    try compiled.setParameters(parameters)
    let state: [String: Tensor] = [
      "batch_norm_0.running_mean": Tensor(shape: [4], scalars: [0.1, -0.2, 0.3, 0] as [Float]),
      "batch_norm_0.running_var": Tensor(shape: [4], scalars: [0.5, 2, 1, 4] as [Float]),
    ]
    try compiled.setState(state)
    let after = try compiled.forward(inputs)["y"]!.doubles()
    #expect(after != before)
    let expected = try model.interpret(
      inputs: inputs, parameters: parameters.merging(state) { a, _ in a }, outputs: ["y"])
    expectBatchNormClose(after, try #require(expected["y"]).doubles(), 1e-5)
  }
}
