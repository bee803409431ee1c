import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

@testable import LaminaONNX

/// `lamina import`: the protobuf reader on hand-made bytes, malformed and truncated files, and the
/// committed ONNX fixtures (Tests/LaminaTests/Fixtures/onnx, made by tools/make_onnx_fixtures.py)
/// imported, compiled and compared with their reference outputs and with the interpreter.
@Suite("ONNXImport")
struct ONNXImportTests {
  // MARK: A protobuf writer for hand-made models

  /// Protobuf wire format, written by hand so tests can build exactly the bytes they need.
  struct Message {
    var bytes: [UInt8] = []

    static func varint(_ value: UInt64) -> [UInt8] {
      var value = value
      var result: [UInt8] = []
      repeat {
        var byte = UInt8(value & 0x7F)
        value >>= 7
        if value != 0 { byte |= 0x80 }
        result.append(byte)
      } while value != 0
      return result
    }

    mutating func key(_ field: Int, _ wireType: Int) {
      bytes += Self.varint(UInt64(field << 3 | wireType))
    }

    mutating func int(_ field: Int, _ value: Int64) {
      key(field, 0)
      bytes += Self.varint(UInt64(bitPattern: value))
    }

    mutating func bytes(_ field: Int, _ payload: [UInt8]) {
      key(field, 2)
      bytes += Self.varint(UInt64(payload.count)) + payload
    }

    mutating func string(_ field: Int, _ text: String) { bytes(field, Array(text.utf8)) }
    mutating func message(_ field: Int, _ message: Message) { bytes(field, message.bytes) }

    mutating func float(_ field: Int, _ value: Float) {
      key(field, 5)
      let bits = value.bitPattern
      for index in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt32(index)))) }
    }

    mutating func packedFloats(_ field: Int, _ values: [Float]) {
      var payload: [UInt8] = []
      for value in values {
        let bits = value.bitPattern
        for index in 0..<4 {
          payload.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt32(index))))
        }
      }
      bytes(field, payload)
    }

    mutating func packedInts(_ field: Int, _ values: [Int64]) {
      bytes(field, values.flatMap { Self.varint(UInt64(bitPattern: $0)) })
    }
  }

  /// A ValueInfoProto of a float tensor; nil dims are named `dim_param`s.
  static func valueInfo(_ name: String, _ dims: [Any], elementType: Int64 = 1) -> Message {
    var shape = Message()
    for dim in dims {
      var entry = Message()
      if let size = dim as? Int { entry.int(1, Int64(size)) }
      if let parameter = dim as? String { entry.string(2, parameter) }
      shape.message(1, entry)
    }
    var tensorType = Message()
    tensorType.int(1, elementType)
    tensorType.message(2, shape)
    var type = Message()
    type.message(1, tensorType)
    var info = Message()
    info.string(1, name)
    info.message(2, type)
    return info
  }

  static func node(
    _ opType: String, _ inputs: [String], _ outputs: [String], name: String = "",
    attributes: [Message] = []
  ) -> Message {
    var node = Message()
    for input in inputs { node.string(1, input) }
    for output in outputs { node.string(2, output) }
    if !name.isEmpty { node.string(3, name) }
    node.string(4, opType)
    for attribute in attributes { node.message(5, attribute) }
    return node
  }

  static func floatTensor(_ name: String, _ dims: [Int64], _ values: [Float]) -> Message {
    var tensor = Message()
    tensor.packedInts(1, dims)
    tensor.int(2, 1)
    tensor.packedFloats(4, values)
    tensor.string(8, name)
    return tensor
  }

  static func model(
    nodes: [Message], inputs: [Message], outputs: [Message], initializers: [Message] = [],
    opset: Int64 = 13
  ) -> [UInt8] {
    var graph = Message()
    for node in nodes { graph.message(1, node) }
    graph.string(2, "test")
    for initializer in initializers { graph.message(5, initializer) }
    for input in inputs { graph.message(11, input) }
    for output in outputs { graph.message(12, output) }
    var opsetImport = Message()
    opsetImport.string(1, "")
    opsetImport.int(2, opset)
    var model = Message()
    model.int(1, 7)
    model.string(2, "ONNXImportTests")
    model.message(7, graph)
    model.message(8, opsetImport)
    return model.bytes
  }

  /// x [N, 4] → Relu → y.
  static let reluModel = model(
    nodes: [node("Relu", ["x"], ["y"], name: "relu")], inputs: [valueInfo("x", ["N", 4])],
    outputs: [valueInfo("y", ["N", 4])])

  // MARK: The protobuf reader

  @Test("varints of one to ten bytes decode; an eleventh byte or a truncated one is an error")
  func varints() throws {
    for value: UInt64 in [0, 1, 127, 128, 300, 1 << 35, UInt64.max] {
      var reader = ProtobufReader(bytes: Message.varint(value), path: "Test")
      #expect(try reader.readVarint() == value)
      #expect(reader.isAtEnd)
    }
    #expect(Message.varint(UInt64.max).count == 10)
    // -1 as protobuf's int64 is ten bytes of two's complement.
    var negative = ProtobufReader(bytes: Message.varint(UInt64(bitPattern: -1)), path: "Test")
    #expect(try negative.readInt64() == -1)
    var tooLong = ProtobufReader(bytes: Array(repeating: 0xFF, count: 10) + [0x01], path: "Test")
    #expect(throws: ONNXError.self) { try tooLong.readVarint() }
    var truncated = ProtobufReader(bytes: [0x80, 0x80], path: "ModelProto.graph")
    let error = #expect(throws: ONNXError.self) { try truncated.readVarint() }
    #expect(error?.message == "ModelProto.graph: truncated varint at byte 0")
  }

  @Test("packed and unpacked repeated fields read the same values")
  func packedFields() throws {
    var packed = Message()
    packed.packedFloats(4, [1.5, -2, 0.25])
    packed.packedInts(1, [2, 3])
    var unpacked = Message()
    for value: Float in [1.5, -2, 0.25] { unpacked.float(4, value) }
    unpacked.int(1, 2)
    unpacked.int(1, 3)
    for message in [packed, unpacked] {
      var reader = ProtobufReader(bytes: message.bytes, path: "TensorProto")
      let tensor = try TensorProto(&reader)
      #expect(tensor.floatData == [1.5, -2, 0.25])
      #expect(tensor.dims == [2, 3])
    }
    // A packed float run whose length is not a multiple of 4 is malformed.
    var odd = Message()
    odd.bytes(4, [0, 0, 0, 0, 0])
    var reader = ProtobufReader(bytes: odd.bytes, path: "TensorProto")
    #expect(throws: ONNXError.self) { try TensorProto(&reader) }
  }

  @Test("raw_data, typed fields and a length past the end of the data")
  func tensorData() throws {
    var raw = Message()
    raw.packedInts(1, [2])
    raw.int(2, 7)  // INT64
    raw.bytes(9, [5, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    var reader = ProtobufReader(bytes: raw.bytes, path: "TensorProto")
    let tensor = try TensorProto(&reader).decoded(directory: nil)
    #expect(tensor.dtype == .i64)
    #expect(tensor.scalars(as: Int64.self) == [5, -1])

    var short = Message()
    short.packedInts(1, [3])
    short.int(2, 1)
    short.packedFloats(4, [1, 2])
    reader = ProtobufReader(bytes: short.bytes, path: "TensorProto")
    let error = #expect(throws: ONNXError.self) { try TensorProto(&reader).decoded(directory: nil) }
    #expect(error?.message.contains("has 2 values in float_data, expected 3") == true)

    // A length field claiming more bytes than remain.
    reader = ProtobufReader(bytes: [0x42, 0x7F, 0x41], path: "TensorProto")
    let overrun = #expect(throws: ONNXError.self) { try TensorProto(&reader) }
    #expect(overrun?.message.contains("runs past the end of the data") == true)
  }

  @Test(
    "every truncation and every corrupted byte of a model is an error or a model, never a crash")
  func truncatedAndCorrupted() throws {
    let bytes = try [UInt8](
      Data(contentsOf: URL(fileURLWithPath: Self.fixture("escaped_names") + "/model.onnx")))
    var errors = 0
    for length in 0..<bytes.count {
      do {
        _ = try ONNXImporter.importModel(bytes: Array(bytes[..<length]), directory: nil)
      } catch let error as ONNXError {
        errors += 1
        #expect(!error.message.isEmpty)
      }
    }
    // Most prefixes end inside a field; the whole file minus its last byte certainly does.
    #expect(errors > bytes.count / 2)
    #expect(throws: ONNXError.self) {
      try ONNXImporter.importModel(bytes: Array(bytes.dropLast()), directory: nil)
    }
    for index in bytes.indices {
      for value: UInt8 in [0x00, 0xFF, 0x80] {
        var corrupted = bytes
        corrupted[index] = value
        do {
          _ = try ONNXImporter.importModel(bytes: corrupted, directory: nil)
        } catch is ONNXError {}
      }
    }
  }

  @Test("errors name the message path and the byte offset")
  func errorLocation() throws {
    var bytes = Self.reluModel
    // Cut inside the graph's node: the node's op_type string is the last field written in it.
    let cut = bytes.count - 40
    bytes = Array(bytes[..<cut])
    let error = #expect(throws: ONNXError.self) {
      try ONNXImporter.importModel(bytes: bytes, directory: nil)
    }
    #expect(error?.message.hasPrefix("ModelProto") == true)
    #expect(error?.message.contains("at byte") == true)
  }

  // MARK: Import errors

  @Test("unsupported ops are one error listing each type with its count and first node")
  func unsupportedOps() throws {
    let bytes = Self.model(
      nodes: [
        Self.node("Relu", ["x"], ["a"], name: "relu"),
        Self.node("Frobnicate", ["a"], ["b"], name: "first frob"),
        Self.node("Hardmax", ["b"], ["c"], name: "hard\nmax"),
        Self.node("Frobnicate", ["c"], ["y"], name: "second frob"),
      ], inputs: [Self.valueInfo("x", ["N", 4])], outputs: [Self.valueInfo("y", ["N", 4])])
    let error = #expect(throws: ONNXError.self) {
      try ONNXImporter.importModel(bytes: bytes, directory: nil)
    }
    #expect(
      error?.message
        == #"unsupported ONNX ops: Frobnicate (2 nodes, first node 1 "first frob"), Hardmax (1 node, first node 2 "hard\nmax")"#
    )
  }

  @Test("external data is read from the model's folder; a location outside it is an error")
  func externalData() throws {
    let folder = try RepositoryPaths.temporaryDirectory()
    let values: [Float] = [1, -2, 3, -4]
    var payload: [UInt8] = [9, 9, 9]  // an offset before the tensor's bytes
    for value in values {
      let bits = value.bitPattern
      for index in 0..<4 { payload.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt32(index)))) }
    }
    try Data(payload).write(to: URL(fileURLWithPath: folder + "/weights.bin"))
    func model(location: String) -> [UInt8] {
      var tensor = Message()
      tensor.packedInts(1, [4])
      tensor.int(2, 1)
      tensor.string(8, "scale")
      for (key, value) in [("location", location), ("offset", "3"), ("length", "16")] {
        var entry = Message()
        entry.string(1, key)
        entry.string(2, value)
        tensor.message(13, entry)
      }
      tensor.int(14, 1)
      return Self.model(
        nodes: [Self.node("Mul", ["x", "scale"], ["y"])], inputs: [Self.valueInfo("x", ["N", 4])],
        outputs: [Self.valueInfo("y", ["N", 4])], initializers: [tensor])
    }
    let imported = try ONNXImporter.importModel(
      bytes: model(location: "weights.bin"), directory: folder)
    let scale = try #require(imported.weights.first { $0.name == "scale" }?.tensor)
    #expect(scale.scalars(as: Float.self) == values)
    for escaping in ["../weights.bin", "/etc/passwd", "sub/../../weights.bin"] {
      let error = #expect(throws: ONNXError.self) {
        try ONNXImporter.importModel(bytes: model(location: escaping), directory: folder)
      }
      #expect(error?.message.contains("leaves the model's folder") == true)
    }
  }

  // MARK: Fixtures

  static func fixture(_ name: String) -> String {
    RepositoryPaths.path("Tests/LaminaTests/Fixtures/onnx/\(name)")
  }

  /// Imports a fixture, compiles it and runs its inputs compiled and interpreted.
  static func checkFixture(_ name: String) throws -> ONNXImport {
    let folder = fixture(name)
    let imported = try ONNXImporter.importModel(contentsOf: folder + "/model.onnx")
    let model = try Model(source: imported.source, path: "\(name).lam")
    let parameters = Dictionary(uniqueKeysWithValues: imported.weights.map { ($0.name, $0.tensor) })
    var inputs: [String: Tensor] = [:]
    for (index, names) in imported.inputNames.enumerated() {
      inputs[names.lam] = try NPY.read(contentsOf: folder + "/input_\(index).npy")
    }
    let outputNames = imported.outputNames.map(\.lam)
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    let results = try compiled.forward(inputs)
    let interpreted = try model.interpret(
      inputs: inputs, parameters: parameters, outputs: outputNames)
    for (index, output) in outputNames.enumerated() {
      let expected = try NPY.read(contentsOf: folder + "/output_\(index).npy")
      let result = try #require(results[output])
      let reference = try #require(interpreted[output])
      #expect(
        TestData.mismatch(result, expected, rtol: 1e-3, atol: 1e-5) == nil,
        "\(name) output \(output) against the ONNX reference")
      #expect(
        TestData.mismatch(result, reference, rtol: 1e-4, atol: 1e-6) == nil,
        "\(name) output \(output) compiled against the interpreter")
    }
    return imported
  }

  @Test("a PyTorch CNN with a dynamic batch: the view chain folds to a reshape on the batch symbol")
  func dynamicBatchCNN() throws {
    let imported = try Self.checkFixture("cnn_dynamic_batch")
    #expect(imported.source.contains("input image: f32[N, 3, 17, 17]"))
    #expect(imported.source.contains("reshape(") && imported.source.contains("shape: [N, 32])"))
    // Shape, Gather, Unsqueeze and Concat leave no computation behind.
    for op in ["Shape", "Gather", "Unsqueeze", "Concat"] {
      let lines = imported.source.split(separator: "\n")
      if let comment = lines.firstIndex(where: { $0.contains("\" \(op)") }) {
        #expect(lines[comment + 1].contains("// node"), "\(op) computes at run time")
      }
    }
    // The batch norm is the layer, with the node's statistics as its state.
    #expect(imported.source.contains("batch_norm("))
    #expect(imported.weights.contains { $0.name.hasSuffix(".running_var") })
    // One compiled model serves other batch sizes.
    let model = try Model(source: imported.source)
    let parameters = Dictionary(uniqueKeysWithValues: imported.weights.map { ($0.name, $0.tensor) })
    let compiled = try model.compile(options: TestCache.options(), parameters: parameters)
    let batch = try NPY.read(contentsOf: Self.fixture("cnn_dynamic_batch") + "/input_0.npy")
    let first = try #require(
      Tensor(
        dtype: .f32, shape: [1, 3, 17, 17],
        doubles: Array(batch.doubles()[..<(3 * 17 * 17)])))
    let expected = try NPY.read(contentsOf: Self.fixture("cnn_dynamic_batch") + "/output_0.npy")
    let result = try #require(try compiled.forward(["image": first])["probabilities"])
    #expect(result.shape == [1, 5])
    for column in 0..<5 {
      #expect(abs(result.doubles()[column] - expected.doubles()[column]) < 1e-5)
    }
  }

  @Test("opset 6: legacy broadcast, Softmax's 2-D coercion, attribute axes, splits and slices")
  func legacyOpset6() throws {
    let imported = try Self.checkFixture("legacy_opset6")
    #expect(imported.source.contains("opset 6"))
  }

  @Test("opset 13: the op mix, axes and sizes as inputs, ConstantOfShape of a dynamic shape")
  func opsOpset13() throws {
    _ = try Self.checkFixture("ops_opset13")
  }

  @Test("names that need escaping: an input 0, nodes a/b, model and one with a newline")
  func escapedNames() throws {
    let imported = try Self.checkFixture("escaped_names")
    let source = imported.source
    #expect(imported.inputNames.map(\.lam) == ["input_0"])
    #expect(imported.outputNames.map(\.onnx) == ["model"])
    #expect(imported.outputNames.map(\.lam) != ["model"])
    // Every line is a statement, a comment or the model's braces: no name broke a line.
    for line in source.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
      let trimmed = line.trimmingCharacters(in: .whitespaces)
      let starts = ["//", "model ", "input ", "param ", "let ", "output ", "}"]
      #expect(starts.contains { trimmed.hasPrefix($0) }, "unexpected line: \(line)")
    }
    #expect(source.contains(#"line\nbreak // */"#))
    #expect(source.contains(#"make_onnx_fixtures\nsecond line"#))
  }

  // MARK: The command

  @Test("lamina import writes the .lam file and its weights; --loss adds a training step")
  func command() throws {
    let folder = try RepositoryPaths.temporaryDirectory()
    let output = folder + "/cnn.lam"
    let console = Console.capturing()
    let status = CommandLineTool.run(
      [
        "import", Self.fixture("cnn_dynamic_batch") + "/model.onnx", "-o", output, "--loss",
        "cross_entropy",
      ], console: console)
    #expect(status == 0, "\(console.standardError)")
    let source = try String(contentsOfFile: output, encoding: .utf8)
    #expect(source.contains("input label: i32[N]"))
    #expect(source.contains("train with adam(lr: 1e-4)"))
    // The loss takes the logits, the softmax's input.
    let lossLine = try #require(source.split(separator: "\n").first { $0.contains("loss =") })
    #expect(lossLine.contains("cross_entropy(fc_Gemm_output_0, label)"))
    let weights = try SafeTensors.readDictionary(contentsOf: folder + "/cnn.safetensors")
    // Layers take PyTorch's module names from the weights' ONNX names, as its state_dict has them.
    #expect(weights["conv1.weight"]?.shape == [6, 3, 3, 3])
    #expect(weights["bn1.running_var"]?.shape == [6])
    #expect(source.contains(#"name: "conv1")"#))
    _ = try Model(contentsOf: output, pipeline: Pipeline.training)
  }
}
