import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// The `embedding` layer and its ops `gather_rows` and `scatter_add_rows`: values worked by hand,
/// the layer's parameter and initialization, compiled kernels against the interpreter (on one
/// thread and across the pool), and ids outside the table, which both must report (naming the
/// input, the position and the value) instead of reading past the table. Gradients against finite
/// differences are cases of `GradientTests`.
@Suite("Embedding")
struct EmbeddingTests {
  static func interpret(
    _ op: String, _ operands: [Tensor], _ attributes: [String: Attribute] = [:],
    result: (DType, [Int])
  ) throws -> Tensor {
    let definition = try #require(OpRegistry.definition(op))
    let context = InterpretContext(
      operands: operands, attributes: attributes, results: [(dtype: result.0, shape: result.1)])
    return try definition.interpret(context)[0]
  }

  static let source = """
    model Embed {
      input tokens: i32[batch, time]
      input label: i32[batch]
      let e = tokens |> embedding(vocab: 50, dim: 64)
      let logits = mean(e, axes: [1]) |> dense(units: 5)
      output e
      loss = cross_entropy(logits, label)
      train with adam(lr: 3e-3)
    }
    """

  @Test("gather_rows picks whole rows by id; scatter_add_rows adds repeated ids up")
  func valuesByHand() throws {
    let table = Tensor(shape: [3, 2], scalars: [0, 1, 10, 11, 20, 21] as [Double])
    let ids = Tensor(shape: [2, 2], scalars: [2, 0, 2, 1] as [Int32])
    let picked = try Self.interpret("gather_rows", [table, ids], result: (.f64, [2, 2, 2]))
    #expect(picked.doubles() == [20, 21, 0, 1, 20, 21, 10, 11])
    let values = Tensor(shape: [2, 2, 2], scalars: [1, 2, 3, 4, 5, 6, 7, 8] as [Double])
    let sums = try Self.interpret(
      "scatter_add_rows", [values, ids], ["rows": .int(4)], result: (.f64, [4, 2]))
    // Row 2 gets positions 0 and 2, row 0 position 1, row 1 position 3, row 3 nothing.
    #expect(sums.doubles() == [3, 4, 7, 8, 6, 8, 0, 0])
  }

  @Test("the layer makes embedding_0.weight [vocab, dim], standard normal as PyTorch")
  func parameterAndInitialization() throws {
    let model = try Model(source: Self.source)
    let weight = try #require(model.graph.params.first)
    #expect(model.graph[weight.value].name == "embedding_0.weight")
    #expect(model.graph.type(of: weight.value).description == "f32[50, 64]")
    #expect(
      model.graph.type(of: model.graph.outputs[0].value).description == "f32[batch, time, 64]")
    let values = try #require(try model.initialParameters(seed: 3)["embedding_0.weight"]).doubles()
    let mean = values.reduce(0, +) / Double(values.count)
    let deviation = sqrt(
      values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count))
    // 3,200 draws: the standard error of the mean is 0.018, of the deviation about 0.0125.
    #expect(abs(mean) < 0.09, "mean \(mean)")
    #expect(abs(deviation - 1) < 0.07, "standard deviation \(deviation)")
  }

  @Test("a float input or a bad size is a located error")
  func badLayerCalls() throws {
    func message(_ input: String, _ call: String) -> String {
      do {
        _ = try Model(
          source: """
            model M {
              input x: \(input)
              output y = x |> \(call)
            }
            """)
        return "no error"
      } catch {
        return "\(error)"
      }
    }
    #expect(
      message("f32[batch, 4]", "embedding(vocab: 8, dim: 3)").contains(
        "embedding needs integer token ids, got f32[batch, 4]"))
    #expect(
      message("i32[batch, 4]", "embedding(vocab: 0, dim: 3)").contains(
        "vocab must be a positive integer"))
    #expect(
      message("i32[batch, 4]", "embedding(vocab: 8, dim: -1)").contains(
        "dim must be a positive integer"))
  }

  @Test(
    "compiled lookups and their gradients equal the interpreter's at batch 1 and 37",
    arguments: TestData.compilers)
  func compiledMatchesInterpreter(_ compiler: String) throws {
    let model = try Model(source: Self.source)
    let parameters = try model.initialParameters(seed: 5)
    for threads in [1, 2] {
      var options = TestCache.options(compiler: compiler)
      options.threads = threads
      let compiled = try model.compile(options: options, parameters: parameters)
      for problem in try TestData.compiledMismatches(
        model, compiled, parameters: parameters, batches: [1, 37])
      {
        Issue.record("\(compiler), \(threads) threads: \(problem)")
      }
    }
    // The weight's gradient (scatter_add_rows) through the training step, compiled and interpreted.
    let trained = try Model(source: Self.source, pipeline: Pipeline.training).withGradientOutputs()
    var options = TestCache.options(compiler: compiler)
    options.threads = 2
    let compiled = try trained.compile(options: options, parameters: parameters)
    for problem in try TestData.compiledMismatches(
      trained, compiled, parameters: parameters, batches: [1, 37])
    {
      Issue.record("\(compiler), training graph: \(problem)")
    }
  }

  /// The message of evaluating `tokens`, compiled and interpreted.
  static func errors(tokens: [Int32], shape: [Int]) throws -> (
    compiled: String, interpreted: String
  ) {
    let model = try Model(source: Self.source)
    let parameters = try model.initialParameters(seed: 1)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    let inputs = [
      "tokens": Tensor(shape: shape, scalars: tokens),
      "label": Tensor(shape: [shape[0]], scalars: [Int32](repeating: 1, count: shape[0])),
    ]
    var result = ("no error", "no error")
    do { _ = try compiled.evaluate(inputs) } catch { result.0 = "\(error)" }
    do {
      _ = try model.interpret(inputs: inputs, parameters: parameters, outputs: ["e"])
    } catch { result.1 = "\(error)" }
    return result
  }

  @Test("an id outside the table is an error naming the input, the position and the value")
  func idsOutOfRange() throws {
    // [2, 3] ids: the bad one at row 1, step 2.
    let high = try Self.errors(tokens: [0, 1, 2, 3, 4, 50], shape: [2, 3])
    for message in [high.compiled, high.interpreted] {
      #expect(
        message.contains("gather_rows: id 50 at position [1, 2] of 'tokens' is outside 0..<50"),
        "\(message)")
    }
    let negative = try Self.errors(tokens: [0, -7, 2, 3, 4, 5], shape: [2, 3])
    for message in [negative.compiled, negative.interpreted] {
      #expect(
        message.contains("id -7 at position [0, 1] of 'tokens' is outside 0..<50"), "\(message)")
    }
    let huge = try Self.errors(tokens: [Int32.max, 1], shape: [1, 2])
    for message in [huge.compiled, huge.interpreted] {
      #expect(message.contains("id 2147483647 at position [0, 0]"), "\(message)")
    }
  }

  @Test("scatter_add_rows rejects an id outside its rows, compiled and interpreted")
  func scatterOutOfRange() throws {
    let model = try Model(
      source: """
        model Scatter {
          input v: f32[batch, 3]
          input ids: i32[batch]
          output y = scatter_add_rows(v, ids, rows: 4)
        }
        """)
    let compiled = try model.compile(options: TestCache.options(), parameters: [:])
    let inputs = [
      "v": Tensor(shape: [3, 3], scalars: [Float](repeating: 1, count: 9)),
      "ids": Tensor(shape: [3], scalars: [0, 3, 4] as [Int32]),
    ]
    var messages: [String] = []
    do { _ = try compiled.evaluate(inputs) } catch { messages.append("\(error)") }
    do { _ = try model.interpret(inputs: inputs, parameters: [:], outputs: ["y"]) } catch {
      messages.append("\(error)")
    }
    #expect(messages.count == 2)
    for message in messages {
      #expect(
        message.contains("scatter_add_rows: id 4 at position [2] of the ids is outside 0..<4"),
        "\(message)")
    }
  }

  @Test("the name in the error reaches the C as a string literal, never as code or format")
  func nameIsEscaped() throws {
    // IR text can carry any string; a quote, a percent sign or the kernel placeholder stay text.
    let model = try Model(
      source: """
        model Scatter {
          input v: f32[batch, 3]
          input ids: i32[batch]
          output y = scatter_add_rows(v, ids, rows: 4, input: "a\\"%s@KERNEL@")
        }
        """)
    let compiled = try model.compile(options: TestCache.options(), parameters: [:])
    let inputs = [
      "v": Tensor(shape: [1, 3], scalars: [Float](repeating: 1, count: 3)),
      "ids": Tensor(shape: [1], scalars: [9] as [Int32]),
    ]
    var message = "no error"
    do { _ = try compiled.evaluate(inputs) } catch { message = "\(error)" }
    #expect(message.contains("of 'a\"%s@KERNEL@' is outside 0..<4"), "\(message)")
  }
}
