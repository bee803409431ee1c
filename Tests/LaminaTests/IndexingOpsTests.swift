import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// The ops ONNX models need beside the common ones (gather along an axis, pad, tile, elu, selu,
/// softsign, clip, hard_sigmoid, prelu) and i64 in the language: values worked by hand, compiled
/// kernels against the interpreter in f32 and f64 on odd sizes (one thread and the pool), indices
/// out of range reported by both, and i64 inputs. Gradients against finite differences are cases
/// of `GradientTests`; every_op.lam uses each op.
@Suite("Indexing and ONNX activation ops")
struct IndexingOpsTests {
  static func interpret(
    _ op: String, _ operands: [Tensor], _ attributes: [String: Attribute] = [:],
    result: (DType, [Int])
  ) throws -> Tensor {
    let definition = try #require(OpRegistry.definition(op))
    let context = InterpretContext(
      operands: operands, attributes: attributes, results: [(dtype: result.0, shape: result.1)])
    return try definition.interpret(context)[0]
  }

  @Test("gather wraps negative indices and puts the indices' shape at the axis")
  func gatherByHand() throws {
    // x [2, 3]: gather along axis 1 with indices [[2, -3], [-1, 1]] gives [2, 2, 2].
    let x = Tensor(shape: [2, 3], scalars: [0, 1, 2, 10, 11, 12] as [Double])
    let indices = Tensor(shape: [2, 2], scalars: [2, -3, -1, 1] as [Int64])
    let picked = try Self.interpret(
      "gather", [x, indices], ["axis": .int(1)], result: (.f64, [2, 2, 2]))
    #expect(picked.doubles() == [2, 0, 2, 1, 12, 10, 12, 11])
    // A scalar index drops the axis (ONNX Gather of a rank-0 index).
    let scalar = try Self.interpret(
      "gather", [x, Tensor(shape: [], scalars: [-1] as [Int64])], ["axis": .int(0)],
      result: (.f64, [3]))
    #expect(scalar.doubles() == [10, 11, 12])
    // scatter_add: the adjoint; repeated indices add up.
    let values = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4] as [Double])
    let sums = try Self.interpret(
      "scatter_add", [values, Tensor(shape: [2], scalars: [-1, 2] as [Int32])],
      ["axis": .int(1), "size": .int(3)], result: (.f64, [2, 3]))
    #expect(sums.doubles() == [0, 0, 3, 0, 0, 7])
  }

  @Test("pad in each mode and tile agree with numpy's pad and tile")
  func padAndTileByHand() throws {
    let x = Tensor(shape: [3], scalars: [1, 2, 3] as [Double])
    func pad(_ pads: [Int], _ mode: String, _ count: Int) throws -> [Double] {
      try Self.interpret(
        "pad", [x], ["pads": .ints(pads), "mode": .string(mode), "value": .float(9)],
        result: (.f64, [count])
      ).doubles()
    }
    // numpy.pad([1, 2, 3], (5, 2), mode) for reflect (mirrored repeatedly) and edge.
    #expect(try pad([5, 2], "reflect", 10) == [2, 1, 2, 3, 2, 1, 2, 3, 2, 1])
    #expect(try pad([2, 1], "edge", 6) == [1, 1, 1, 2, 3, 3])
    #expect(try pad([1, -1], "constant", 3) == [9, 1, 2])
    #expect(try pad([-2, 1], "reflect", 2) == [3, 2])
    let tiled = try Self.interpret(
      "tile", [Tensor(shape: [1, 2], scalars: [1, 2] as [Int32])], ["repeats": .ints([2, 2])],
      result: (.i32, [2, 4]))
    #expect(tiled.scalars(as: Int32.self) == [1, 2, 1, 2, 1, 2, 1, 2])
  }

  static let source = """
    model Indexing {
      input x: f32[batch, 5, 7]
      input z: f64[batch, 5, 7]
      input ids: i64[3, 2]
      input slope: f32[5, 1]
      output gathered = gather(x, ids - 2, axis: 2)
      output gatheredMiddle = gather(z, ids, axis: 1)
      output scattered = scatter_add(z[:, :, 0:2], ids[0] - 1, axis: 2, size: 9)
      output reflected = pad(x, pads: [0, 3, 6, 0, 2, 9], mode: "reflect")
      output edged = pad(z, pads: [0, -1, 2, 0, 3, -2], mode: "edge")
      output filled = pad(x, pads: [0, 2, -3, 0, 1, 4], value: -2.5)
      output unpadded = pad_backward(z, pads: [0, 1, 2, 0, 1, -1], mode: "reflect")
      output tiled = tile(z, repeats: [3, 1, 2])
      output activated = elu(x, alpha: 0.5) + selu(x) + softsign(x) + clip(x, min: -0.3) + hard_sigmoid(x) + prelu(x, slope)
      output activated64 = elu(z) + selu(z) + softsign(z) + clip(z, min: -0.3, max: 0.6) + hard_sigmoid(z) + prelu(z, z[0] * 0.1)
    }
    """

  /// Compiles `model` with `compiler` on 1 and 2 threads and records every output that differs
  /// from the interpreter's at batch 1 and 13.
  static func expectCompiledMatchesInterpreter(_ model: Model, compiler: String) throws {
    for threads in [1, 2] {
      var options = TestCache.options(compiler: compiler)
      options.threads = threads
      let compiled = try model.compile(options: options, parameters: [:])
      for problem in try TestData.compiledMismatches(
        model, compiled, parameters: [:], batches: [1, 13])
      {
        Issue.record("\(compiler), \(threads) threads: \(problem)")
      }
    }
  }

  @Test(
    "compiled gather, scatter_add, pad, tile and the activations equal the interpreter (f32, f64, odd sizes)",
    arguments: TestData.compilers)
  func compiledMatchesInterpreter(_ compiler: String) throws {
    let model = try Model(source: Self.source)
    try Self.expectCompiledMatchesInterpreter(model, compiler: compiler)
  }

  /// `permute` is split over the threads by rows of its result and copies the trailing axes it keeps
  /// in place as blocks: each shape here is big enough to split (over 65536 elements at batch 13)
  /// and has a different tail: ShuffleNet's channel shuffle (a block of h * w), a plain transpose of
  /// the last two axes (single elements), the batch axis moved inwards, and the identity.
  @Test(
    "compiled permutes (channel shuffle, transposes, the identity) equal the interpreter on 1 and 2 threads",
    arguments: TestData.compilers)
  func compiledPermutesMatchInterpreter(_ compiler: String) throws {
    let model = try Model(
      source: """
        model Permutes {
          input x: f32[batch, 4, 17, 11, 9]
          input z: f64[batch, 37, 161]
          output shuffled = permute(x, perm: [0, 2, 1, 3, 4])
          output transposed = permute(z, perm: [0, 2, 1])
          output batchInside = permute(x, perm: [1, 0, 3, 2, 4])
          output same = permute(z, perm: [0, 1, 2]) * 2.0
        }
        """)
    try Self.expectCompiledMatchesInterpreter(model, compiler: compiler)
  }

  /// Gradients through gather, pad and tile (scatter_add, pad_backward, reshape and sum) and the
  /// activations, compiled against interpreted, in a training step.
  @Test("compiled gradients of the new ops equal the interpreter's", arguments: TestData.compilers)
  func compiledGradientsMatchInterpreter(_ compiler: String) throws {
    let source = """
      model Trained {
        input x: f64[batch, 5]
        input ids: i64[4]
        param w: f64[5, 6] = normal(0, 1)
        param s: f64[6] = normal(0, 1)
        let h = pad(x @ w, pads: [0, 1, 0, 3], mode: "reflect") |> gather(ids - 2, axis: 1) |> tile(repeats: [1, 3])
        let k = pad(x @ w, pads: [0, 2, 0, -1], mode: "edge") + pad(x @ w, pads: [0, -1, 0, 2])
        let y = prelu(x @ w, s) + elu(x @ w) + selu(x @ w) + softsign(x @ w) + clip(x @ w, min: -0.2, max: 0.5) + hard_sigmoid(x @ w)
        output h
        loss = mean(h * h) + mean(k * k) + mean(y * y)
        train with sgd(lr: 0.1)
      }
      """
    let model = try Model(source: source, pipeline: Pipeline.training).withGradientOutputs()
    let parameters = try model.initialParameters(seed: 3)
    var options = TestCache.options(compiler: compiler)
    options.threads = 2
    let compiled = try model.compile(options: options, parameters: parameters)
    for problem in try TestData.compiledMismatches(
      model, compiled, parameters: parameters, batches: [1, 9])
    {
      Issue.record("\(compiler): \(problem)")
    }
    let ops = Set(model.graph.nodes.map(\.op))
    #expect(ops.isSuperset(of: ["scatter_add", "pad_backward"]), "\(ops.sorted())")
  }

  @Test("an index outside -n..<n is an error naming the input, the position and the value")
  func indicesOutOfRange() throws {
    let x = Tensor(shape: [2, 4], scalars: [Float](repeating: 1, count: 8))
    /// The messages of the compiled and the interpreted model on `ids`.
    func messages(_ expression: String, _ ids: Tensor) throws -> [String] {
      let model = try Model(
        source: """
          model Gather {
            input x: f32[batch, 4]
            input ids: i64[\(ids.shape.map(String.init).joined(separator: ", "))]
            output y = \(expression)
          }
          """)
      let compiled = try model.compile(options: TestCache.options(), parameters: [:])
      let inputs = ["x": x, "ids": ids]
      var result: [String] = []
      do { _ = try compiled.forward(inputs) } catch { result.append("\(error)") }
      do { _ = try model.interpret(inputs: inputs, parameters: [:], outputs: ["y"]) } catch {
        result.append("\(error)")
      }
      return result
    }
    for (ids, expected) in [
      (
        [0, 1, 2, 3, 4, 0] as [Int64],
        "gather: index 4 at position [1, 1] of 'ids' is outside -4..<4"
      ),
      ([0, -5, 2, 3, 1, 0], "index -5 at position [0, 1] of 'ids' is outside -4..<4"),
      ([0, 1, 2, Int64.min, 1, 0], "index -9223372036854775808 at position [1, 0]"),
    ] {
      let found = try messages(
        "gather(x, ids, axis: 1, input: \"ids\")", Tensor(shape: [2, 3], scalars: ids))
      #expect(found.count == 2)
      for message in found { #expect(message.contains(expected), "\(message)") }
    }
    let found = try messages(
      "scatter_add(x[:, 0:3], ids, axis: 1, size: 4)",
      Tensor(shape: [3], scalars: [0, 1, 4] as [Int64]))
    #expect(found.count == 2)
    for message in found {
      #expect(
        message.contains("scatter_add: index 4 at position [2] of the indices is outside -4..<4"),
        "\(message)")
    }
  }

  @Test("bad pads, repeats and slopes are shape errors")
  func badAttributes() throws {
    func error(_ expression: String, _ type: String = "f32[2, 3]") -> String {
      do {
        _ = try Model(
          source:
            "model Bad {\n  input x: \(type)\n  input s: f32[4, 1, 3]\n  output y = \(expression)\n}"
        )
        return "no error"
      } catch let error as CompileError {
        return error.rendered
      } catch { return "\(error)" }
    }
    #expect(error("pad(x, pads: [1, 1])").contains("pads [1, 1] must give 4 values"))
    #expect(
      error("pad(x, pads: [0, -2, 0, -1])").contains("leave axis 1 of size 3 with 0 elements"))
    #expect(error("pad(x, pads: [0, 0, 0, 1], mode: \"wrap\")").contains("mode must be"))
    #expect(
      error("pad(x, pads: [1, 0, 0, 0])", "f32[n, 3]").contains("cannot be padded or cropped"))
    #expect(error("tile(x, repeats: [2])").contains("one count per axis"))
    #expect(error("tile(x, repeats: [0, 1])").contains("between 1 and 2^40"))
    #expect(error("prelu(x, s)").contains("does not broadcast to x"))
    #expect(error("gather(x, x)").contains("must be integers"))
  }

  @Test("i64 inputs, casts and labels: values past 2^53 stay exact, no silent narrowing")
  func i64Values() throws {
    let model = try Model(
      source: """
        model Wide {
          input ids: i64[batch]
          input x: f32[batch, 3]
          input label: i64[batch]
          param w: f32[3, 4] = normal(0, 1)
          output doubled = ids * 2
          output narrowed = cast(ids, dtype: i32)
          output widened = cast(cast(ids, dtype: i32), dtype: i64)
          output floats = cast(ids, dtype: f64)
          loss = cross_entropy(x @ w, label)
          train with sgd(lr: 0.1)
        }
        """)
    let big: Int64 = (1 << 53) + 1
    let inputs = [
      "ids": Tensor(shape: [3], scalars: [big, -3, 1 << 40] as [Int64]),
      "x": Tensor(shape: [3, 3], scalars: [Float](repeating: 0.5, count: 9)),
      "label": Tensor(shape: [3], scalars: [0, 3, 2] as [Int64]),
    ]
    let parameters = try model.initialParameters(seed: 1)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    let outputs = try compiled.evaluate(inputs).outputs
    let interpreted = try model.interpret(
      inputs: inputs, parameters: parameters, outputs: ["doubled", "narrowed", "loss"])
    #expect(outputs["doubled"]?.scalars(as: Int64.self) == [2 * big, -6, 1 << 41])
    #expect(interpreted["doubled"]?.scalars(as: Int64.self) == [2 * big, -6, 1 << 41])
    // cast to i32 keeps the low bits, as numpy's astype (the cast is explicit, not silent).
    #expect(outputs["narrowed"] == interpreted["narrowed"])
    #expect(outputs["narrowed"]?.scalars(as: Int32.self) == [1, -3, 0])
    let losses = try compiled.evaluate(inputs).losses
    #expect(losses["loss"] != nil && interpreted["loss"] != nil)
    if let compiledLoss = losses["loss"], let interpretedLoss = interpreted["loss"] {
      #expect(TestData.mismatch(compiledLoss, interpretedLoss, rtol: 1e-5, atol: 1e-6) == nil)
    }
    #expect(model.graph.inputs.map { model.graph.type(of: $0.value).dtype }.contains(.i64))
  }

  @Test("lamina run takes an int64 .npy for an i64 input, compiled and interpreted")
  func i64FromTheCommandLine() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let modelPath = directory + "/pick.lam"
    try """
    model Pick {
      input x: f32[batch, 6]
      input ids: i64[batch, 2]
      input wide: i64[batch]
      output picked = gather(x, ids, axis: 1) * 2   // [batch, batch, 2]: numpy's take
      output next = wide + 1
    }
    """.write(toFile: modelPath, atomically: true, encoding: .utf8)
    try NPY.write(
      Tensor(shape: [2, 6], scalars: (0..<12).map { Float($0) }), to: directory + "/x.npy")
    try NPY.write(
      Tensor(shape: [2, 2], scalars: [5, -6, 3, 0] as [Int64]), to: directory + "/ids.npy")
    try NPY.write(
      Tensor(shape: [2], scalars: [(1 << 53) + 1, -7] as [Int64]), to: directory + "/wide.npy")
    for interpret in [false, true] {
      let console = Console.capturing()
      let status = CommandLineTool.run(
        [
          "run", modelPath, "--input", "x=\(directory)/x.npy", "--input",
          "ids=\(directory)/ids.npy", "--input", "wide=\(directory)/wide.npy", "--output",
          "next=\(directory)/next.npy", "--output", "picked=\(directory)/picked.npy",
        ] + (interpret ? ["--interpret"] : []), console: console)
      #expect(status == 0, "\(console.standardError)")
      let next = try NPY.read(contentsOf: directory + "/next.npy")
      #expect(next.dtype == .i64)
      #expect(next.scalars(as: Int64.self) == [(1 << 53) + 2, -6])
      #expect(
        try NPY.read(contentsOf: directory + "/picked.npy").scalars(as: Float.self)
          == [10, 0, 6, 0, 22, 12, 18, 12])
    }
  }

  @Test(
    "an integer parameter (gather indices) is a constant: training leaves it and trains the rest")
  func integerParametersAreNotTrained() throws {
    let model = try Model(
      source: """
        model Picks {
          input x: f32[batch, 5]
          param table: f32[7, 5] = normal(0, 1)
          param picks: i64[3] = zeros()
          let h = gather(table, picks) @ transpose(x)
          output h
          loss = mean(h * h)
          train with adam(lr: 0.1)
        }
        """, pipeline: Pipeline.training)
    let trained = Set(model.graph.gradients.map { model.graph[$0.parameter].name })
    #expect(trained == ["table"])
  }
}
