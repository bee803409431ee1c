import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// The op table's traits are the vocabulary of the passes and the C backend: no op is named there
/// by a string, and each trait means the same thing to the interpreter and to compiled code.
@Suite("Op traits", .serialized)
struct OpTraitTests {
  static var cacheDirectory: String { TestCache.directory }

  /// The folders that must ask traits instead of naming ops.
  static let traitOnlyFolders = ["Sources/LaminaPasses", "Sources/LaminaCodegenC"]

  /// The `"name"` literals (attribute keys, C names and comparisons alike) in `text` that equal an
  /// op's name, with their line numbers.
  static func opNameLiterals(in text: String, names: Set<String>) -> [(line: Int, name: String)] {
    var hits: [(line: Int, name: String)] = []
    for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
    {
      // The same scan as `grep -oE '"(op1|op2|...)"'`: every quoted run of op-name characters.
      let characters = Array(line)
      var index = 0
      while index < characters.count {
        guard characters[index] == "\"" else {
          index += 1
          continue
        }
        var end = index + 1
        while end < characters.count,
          characters[end].isLetter || characters[end] == "_"
            || characters[end].isNumber
        {
          end += 1
        }
        if end < characters.count, characters[end] == "\"",
          names.contains(String(characters[(index + 1)..<end]))
        {
          hits.append((number + 1, String(characters[(index + 1)..<end])))
        }
        index = end
      }
    }
    return hits
  }

  @Test("no string literal in the passes or the C backend equals an op's name")
  func noOpNamesInPassesOrBackend() throws {
    let names = Set(OpRegistry.names)
    var files: [String] = []
    for folder in Self.traitOnlyFolders {
      let root = RepositoryPaths.path(folder)
      let enumerator = FileManager.default.enumerator(atPath: root)
      while let relative = enumerator?.nextObject() as? String {
        if relative.hasSuffix(".swift") { files.append(root + "/" + relative) }
      }
    }
    #expect(
      files.count >= 20, "found only \(files.count) source files under \(Self.traitOnlyFolders)")
    var hits: [String] = []
    for file in files {
      let text = try String(contentsOfFile: file, encoding: .utf8)
      for hit in Self.opNameLiterals(in: text, names: names) {
        hits.append("\(file):\(hit.line): \"\(hit.name)\"")
      }
    }
    #expect(hits.isEmpty, "op names spelled as strings:\n\(hits.joined(separator: "\n"))")
  }

  @Test("the scan finds an op name in a literal, and only whole literals")
  func scanFindsLiterals() {
    let names: Set = ["sum", "matmul"]
    let text = """
      let a = node.op == "matmul"
      let b = "sum_of_squares" + "summary" + "(sum)"
      let c = ["sum": 1]
      """
    let hits = Self.opNameLiterals(in: text, names: names)
    #expect(hits.map(\.line) == [1, 3])
    #expect(hits.map(\.name) == ["matmul", "sum"])
  }

  @Test("every op has exactly one handle, and every handle names an op")
  func handlesMatchTheTable() {
    #expect(Ops.all.map(\.name) == OpRegistry.names)
    for handle in Ops.all { #expect(handle.definition.name == handle.name) }
  }

  // MARK: Reductions

  @Test("the interpreter reduces as the reduction description says, NaN and empty axes included")
  func interpreterFollowsTheDescription() throws {
    let rows: [[Double]] = [
      [1, 2, 3], [.nan, 1, 2], [1, .nan, 2], [2, 1, .nan], [-.infinity, -.infinity, -.infinity],
      [.infinity, -.infinity, 1], [-0.0, 0, -0.0],
    ]
    let reductions = OpRegistry.all.filter { $0.reduction != nil }
    #expect(Set(reductions.map(\.name)) == ["sum", "mean", "max"])
    for op in reductions {
      let description = op.reduction!
      let input = Tensor(
        dtype: .f64, shape: [rows.count, 3], doubles: rows.flatMap { $0 })
      let output = try op.interpret(
        InterpretContext(
          operands: [input], attributes: ["axes": .ints([1]), "keepdims": .bool(false)],
          results: [(.f64, [rows.count])]))[0].doubles()
      for (row, values) in rows.enumerated() {
        let expected = description.reduce(values)
        #expect(
          output[row] == expected || (output[row].isNaN && expected.isNaN),
          "\(op.name)(\(values)) = \(output[row]), the description gives \(expected)")
      }
      // A NaN anywhere in the row reaches the result, whichever rule carries it.
      for values in rows where values.contains(where: \.isNaN) {
        #expect(description.reduce(values).isNaN, "\(op.name) dropped a NaN in \(values)")
      }
      // An empty axis: the finalized identity, or an error.
      let empty = Tensor(dtype: .f64, shape: [2, 0], doubles: [])
      let context = InterpretContext(
        operands: [empty], attributes: ["axes": .ints([1]), "keepdims": .bool(false)],
        results: [(.f64, [2])])
      switch description.emptyAxis {
      case .identity:
        let values = try op.interpret(context)[0].doubles()
        let expected = description.finalized(description.identity, count: 0)
        #expect(
          values.allSatisfy { $0 == expected || ($0.isNaN && expected.isNaN) },
          "\(op.name) of an empty axis gave \(values), the description gives \(expected)")
      case .error:
        #expect(throws: (any Error).self) { try op.interpret(context) }
      }
    }
    #expect(OpRegistry.definition("mean")!.reduction!.reduce([]).isNaN)
    #expect(OpRegistry.definition("sum")!.reduction!.reduce([]) == 0)
  }

  /// NaN and infinities through every C form of a reduction: the unfused kernel along the last
  /// axis and along a leading axis (the column form), a fused row kernel (one loop, and the
  /// software-pipelined form of several), and the column sums inside a fused elementwise loop.
  @Test("compiled reductions agree with the interpreter on NaN and infinities in every kernel form")
  func compiledReductionsFollowTheDescription() throws {
    let source = """
      model Reductions {
        input x: f32[rows, 8]
        output row_sum = sum(x, axes: [1])
        output row_mean = mean(x, axes: [-1])
        output row_max = max(x, axes: [1])
        output column_sum = sum(x, axes: [0])
        output column_mean = mean(x, axes: [0])
        output column_max = max(x, axes: [0])
        output fused_sum = sum(x * 2.0, axes: [-1], keepdims: true)
        output fused_max = max(x + 1.0, axes: [-1], keepdims: true)
        output fused_column_sum = sum(x * 3.0, axes: [0])
        output centered = (x - mean(x, axes: [-1], keepdims: true)) / (mean(x * x, axes: [-1], keepdims: true) + 1.0)
      }
      """
    let model = try Model(source: source)
    let nan = Float.nan
    let inf = Float.infinity
    let rows: [[Float]] = [
      [1, 2, 3, 4, 5, 6, 7, 8],
      [nan, 1, 2, 3, 4, 5, 6, 7],
      [1, 2, 3, 4, 5, 6, 7, nan],
      [-inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf],
      [inf, -inf, 1, 2, 3, 4, 5, 6],
      [-1, -2, -3, -4, -5, -6, -7, -8],
      [0.5, -0.25, 1e30, -1e30, 3, 2, 1, 0],
    ]
    let inputs = ["x": Tensor(shape: [rows.count, 8], scalars: rows.flatMap { $0 })]
    let names = model.graph.outputs.map(\.name)
    let expected = try model.interpret(inputs: inputs, parameters: [:], outputs: names)
    var options = CompileOptions()
    options.cacheDirectory = Self.cacheDirectory
    for compiler in TestData.compilers {
      options.compiler = compiler
      let outputs = try model.compile(options: options, parameters: [:]).forward(inputs)
      for name in names {
        let problem = TestData.mismatch(
          outputs[name]!, expected[name]!, rtol: 1e-5, atol: 1e-5)
        #expect(problem == nil, "\(compiler), \(name): \(problem ?? "")")
      }
    }
  }

  // MARK: Memory effects and epilogues

  @Test("in-place candidates follow the operand effects of the op table")
  func inPlaceFollowsOperandEffects() throws {
    let model = try Model(
      source: """
        model Effects {
          input x: f32[n, 4]
          input y: f32[n, 4]
          output a = exp(x)
          output b = softmax(y)
        }
        """, pipeline: [ShapeInference()])
    let graph = model.graph
    for node in graph.nodes where node.definition != nil {
      let definition = node.definition!
      let candidates = InPlace.candidates(node, in: graph)
      for position in node.operands.indices {
        let mayAlias = definition.effect(ofOperand: position).resultMayAlias
        let sameType = graph.type(of: node.operands[position]) == graph.type(of: node.result)
        #expect(
          candidates.contains { $0.operand == position } == (mayAlias && sameType),
          "\(node.op) operand \(position)")
      }
    }
    #expect(OpRegistry.definition("exp")!.effect(ofOperand: 0).resultMayAlias)
    #expect(!OpRegistry.definition("softmax")!.effect(ofOperand: 0).resultMayAlias)
    #expect(!OpRegistry.definition("matmul")!.effect(ofOperand: 1).resultMayAlias)
  }

  @Test("only producers whose trait accepts the node start an epilogue group")
  func epilogueProducersComeFromTheTable() throws {
    let model = try Model(
      source: """
        model Epilogues {
          input x: f32[n, 4]
          input batched: f32[2, n, 4]
          param w: f32[4, 3] = he_normal()
          param b: f32[3] = zeros()
          output flat = relu(x @ w + b)
          output stacked = relu(batched @ w + b)
        }
        """)
    let graph = try Model.lower(model.graph, passes: Pipeline.codegen)
    let epilogues = graph.nodes.filter { $0.fusedKind == .epilogue }
    // The 2-D product takes its bias and activation; the batched one is not a blocked 2-D product.
    #expect(epilogues.count == 1)
    #expect(epilogues.first?.epilogueProducer?.is(Ops.matmul) == true)
    #expect(epilogues.first?.body.map(\.op) == ["matmul", "add", "relu"])
    let producers = OpRegistry.all.filter { $0.epilogue != nil }.map(\.name)
    #expect(producers == ["matmul", "conv2d", "conv_transpose2d"])
  }

  @Test("ops with effects are neither folded, deduplicated nor simplified")
  func effectsKeepOpsApart() {
    for op in OpRegistry.all {
      // Impure: what a training step computes differently, and what draws random numbers.
      let drawsRandomNumbers = op.effects.contains(.drawsRandomNumbers)
      #expect(op.effects.isPure == !(op.dependsOnMode || drawsRandomNumbers), "\(op.name)")
      #expect(
        !op.effects.contains(.readsModelGenerator) || drawsRandomNumbers,
        "\(op.name) reads the model's generator, so it draws random numbers")
    }
    var effects: OpEffects = [.drawsRandomNumbers]
    #expect(!effects.isPure)
    effects = []
    #expect(effects.isPure)
  }
}
