import Foundation
import LaminaSupport

/// What `lamina import` produces: the `.lam` source and the weights by parameter name.
public struct ONNXImport: Sendable {
  public var source: String
  public var weights: [(name: String, tensor: Tensor)]
  /// The `.lam` names of the ONNX graph's inputs and outputs, by ONNX name.
  public var inputNames: [(onnx: String, lam: String)]
  public var outputNames: [(onnx: String, lam: String)]
}

/// Options of an import.
public struct ONNXImportOptions: Sendable {
  /// Adds a loss on this output's logits: only `cross_entropy`.
  public var loss: String?
  /// The label input's name for the loss.
  public var label: String = "label"
  /// The model's name in the `.lam` file (default: from the file name).
  public var modelName: String?

  public init(loss: String? = nil, label: String = "label", modelName: String? = nil) {
    self.loss = loss
    self.label = label
    self.modelName = modelName
  }
}

/// Translates an ONNX model into a `.lam` model and its weights.
public enum ONNXImporter {
  /// Imports the `.onnx` file at `path` (external data is read relative to its folder).
  public static func importModel(contentsOf path: String, options: ONNXImportOptions = .init())
    throws -> ONNXImport
  {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw ONNXError("\(path): cannot read the file")
    }
    let fileName = (path as NSString).lastPathComponent
    var options = options
    if options.modelName == nil {
      options.modelName = (fileName as NSString).deletingPathExtension
    }
    return try importModel(
      bytes: [UInt8](data), directory: (path as NSString).deletingLastPathComponent,
      fileName: fileName, options: options)
  }

  /// Imports a model from the bytes of a `.onnx` file.
  /// - Parameter directory: where external data files are looked up (nil: none allowed).
  public static func importModel(
    bytes: [UInt8], directory: String?, fileName: String = "model.onnx",
    options: ONNXImportOptions = .init()
  ) throws -> ONNXImport {
    let model = try ModelProto(bytes: bytes)
    var importer = GraphImporter(
      model: model, directory: directory.map { $0.isEmpty ? "." : $0 }, fileName: fileName,
      options: options)
    return try importer.run()
  }
}

/// One node being translated: its attributes, its inputs as imported values, and the writer.
public struct ONNXNodeContext {
  public let node: NodeProto
  public let index: Int
  /// The default domain's operator set version.
  public let opset: Int
  let writer: ImportWriter
  private var temporaryCount = 0

  init(node: NodeProto, index: Int, opset: Int, writer: ImportWriter) {
    self.node = node
    self.index = index
    self.opset = opset
    self.writer = writer
  }

  /// `ONNX node 3 "conv1" (Conv)`, for error messages.
  public var description: String {
    "node \(index) \"\(escapedText(node.name))\" (\(escapedText(node.opType)))"
  }

  public func error(_ message: String) -> ONNXError {
    ONNXError("\(description): \(message)")
  }

  // MARK: Attributes

  public func hasAttribute(_ name: String) -> Bool { node.attribute(name) != nil }

  public func int(_ name: String) throws -> Int? {
    guard let attribute = node.attribute(name) else { return nil }
    guard let value = Int(exactly: attribute.int) else {
      throw error("attribute \(name) \(attribute.int) is out of range")
    }
    return value
  }

  public func int(_ name: String, default value: Int) throws -> Int {
    try int(name) ?? value
  }

  public func ints(_ name: String) -> [Int]? {
    guard let attribute = node.attribute(name) else { return nil }
    return attribute.ints.map { Int(clamping: $0) }
  }

  public func float(_ name: String, default value: Float) -> Float {
    node.attribute(name)?.float ?? value
  }

  public func floats(_ name: String) -> [Float]? { node.attribute(name)?.floats }

  public func string(_ name: String) -> String? {
    node.attribute(name).map { String(decoding: $0.string, as: UTF8.self) }
  }

  public func tensorAttribute(_ name: String) throws -> Tensor? {
    guard let tensor = node.attribute(name)?.tensor else { return nil }
    return try tensor.decoded(directory: writer.directory)
  }

  // MARK: Inputs

  public var inputCount: Int { node.inputs.count }

  /// Whether input `index` is given (ONNX leaves optional inputs out or names them "").
  public func hasInput(_ index: Int) -> Bool {
    index < node.inputs.count && !node.inputs[index].isEmpty
  }

  /// Input `index`'s value.
  public func input(_ index: Int) throws -> ImportedValue {
    guard hasInput(index) else { throw error("input \(index) is missing") }
    let name = node.inputs[index]
    guard let value = writer.values[name] else {
      throw error("input \(index) '\(escapedText(name))' is not defined")
    }
    return value
  }

  public func optionalInput(_ index: Int) throws -> ImportedValue? {
    hasInput(index) ? try input(index) : nil
  }

  /// Input `index` as a tensor of the model: a static value becomes a parameter with its full
  /// shape (converted to `dtype` when given), made once per ONNX value.
  public func tensor(_ index: Int, dtype: DType? = nil) throws -> TensorExpression {
    let value = try input(index)
    let name = node.inputs[index]
    let expression = try materialize(value, name: name, dtype: dtype)
    if case .constant(let tensor) = value, dtype == nil || dtype == tensor.dtype {
      writer.values[name] = .tensor(expression)
    }
    return expression
  }

  /// `value` as a tensor of the model: a static value becomes a parameter named after `name`.
  public func materialize(_ value: ImportedValue, name: String, dtype: DType? = nil) throws
    -> TensorExpression
  {
    switch value {
    case .tensor(let expression):
      return expression
    case .constant(let tensor):
      let converted = dtype.map { tensor.converted(to: $0) } ?? tensor
      return try writer.declareParameter(hint: name, converted, onnxName: name)
    case .dims(let dims, _):
      throw error(
        "'\(escapedText(name))' is a shape with symbolic dimensions \(dims) used as data")
    }
  }

  /// Input `index` as a static tensor, or an error naming what needed it.
  public func constant(_ index: Int, _ what: String) throws -> Tensor {
    guard case .constant(let tensor) = try input(index) else {
      throw error(
        "\(what) (input \(index)) must be known at import time (an initializer or constant)")
    }
    return tensor
  }

  /// Input `index` as static integers (axes, pads, a shape without symbols).
  public func integers(_ index: Int, _ what: String) throws -> [Int] {
    guard let values = try input(index).staticIntegers else {
      throw error("\(what) (input \(index)) must be integers known at import time")
    }
    return values
  }

  // MARK: Output

  /// Writes the `let` of output `index` and records it.
  @discardableResult
  public mutating func emit(
    _ expression: String, shape: [ImportedDim], dtype: DType, output index: Int = 0
  ) -> ImportedValue {
    let name = writer.identifier(forValue: node.outputs[index])
    let value = ImportedValue.tensor(
      writer.emit(expression, name: name, shape: shape, dtype: dtype))
    return value
  }

  /// Writes a `let` for an intermediate value of this node.
  public mutating func emitTemporary(_ expression: String, shape: [ImportedDim], dtype: DType)
    -> TensorExpression
  {
    temporaryCount += 1
    let base = node.outputs.first ?? node.name
    let name = writer.uniqueIdentifier("\(base)_\(temporaryCount)")
    return writer.emit(expression, name: name, shape: shape, dtype: dtype)
  }

  /// A fresh scope name for a layer's weights (`conv1` → weights `conv1.weight`, `conv1.bias`).
  ///
  /// - Parameter weightSuffixes: the layer's weight names by input (`[1: "weight", 2: "bias"]`).
  ///   When the node's ONNX inputs are named that way after one prefix, as PyTorch names them
  ///   (`layer1.0.conv1.weight`, `layer1.0.conv1.bias`), the prefix is the scope, so a PyTorch
  ///   state_dict's names are the imported model's.
  public func layerScope(weightSuffixes: [Int: String] = [:]) -> String {
    if let (firstInput, firstSuffix) = weightSuffixes.min(by: { $0.key < $1.key }),
      hasInput(firstInput), node.inputs[firstInput].hasSuffix("." + firstSuffix)
    {
      let prefix = String(node.inputs[firstInput].dropLast(firstSuffix.count + 1))
      let valid = prefix.unicodeScalars.allSatisfy {
        $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == ".")
      }
      let matches = weightSuffixes.allSatisfy { input, suffix in
        !hasInput(input) || node.inputs[input] == "\(prefix).\(suffix)"
      }
      if valid, matches, !prefix.isEmpty, !prefix.hasPrefix("."), !prefix.hasSuffix("."),
        !prefix.contains(".."), writer.claimScope(prefix)
      {
        return prefix
      }
    }
    let base = node.name.isEmpty ? (node.outputs.first ?? node.opType) : node.name
    return writer.freshScope(base)
  }

  /// Stores a layer's weight under `name`, with a comment naming the ONNX value it comes from
  /// (input `input` of the node).
  public func addWeight(_ name: String, _ tensor: Tensor, fromInput input: Int) throws {
    try writer.addWeight(name, tensor)
    guard name != node.inputs[input] else { return }
    writer.comment("  \(name) is ONNX \"\(escapedText(node.inputs[input]))\"")
  }

  /// `expression` reshaped to `shape`: dims written as numbers or symbols, one product as -1.
  public mutating func reshape(_ value: TensorExpression, to shape: [ImportedDim]) throws
    -> TensorExpression
  {
    if value.shape == shape { return value }
    return emitTemporary(
      "reshape(\(value.name), shape: \(try reshapeText(shape)))", shape: shape, dtype: value.dtype)
  }

  public func reshapeText(_ shape: [ImportedDim]) throws -> String {
    var inferred = false
    var parts: [String] = []
    for dim in shape {
      if let text = dim.lamText {
        parts.append(text)
      } else if !inferred {
        inferred = true
        parts.append("-1")
      } else {
        throw error(
          "cannot write the shape \(shape) with more than one product of symbolic dimensions")
      }
    }
    return "[\(parts.joined(separator: ", "))]"
  }
}

/// A translator: the ONNX op types it handles and how.
public struct ONNXTranslator: Sendable {
  public var opTypes: [String]
  public var translate: @Sendable (inout ONNXNodeContext) throws -> [ImportedValue]

  public init(
    _ opTypes: [String],
    _ translate: @escaping @Sendable (inout ONNXNodeContext) throws -> [ImportedValue]
  ) {
    self.opTypes = opTypes
    self.translate = translate
  }
}

/// Walks one graph: declarations, nodes in topological order, outputs.
struct GraphImporter {
  let model: ModelProto
  let directory: String?
  let fileName: String
  let options: ONNXImportOptions
  let writer = ImportWriter()

  init(model: ModelProto, directory: String?, fileName: String, options: ONNXImportOptions) {
    self.model = model
    self.directory = directory
    self.fileName = fileName
    self.options = options
    writer.directory = directory
  }

  mutating func run() throws -> ONNXImport {
    let graph = model.graph
    let opset = model.opsetVersion
    guard opset >= 6 || graph.nodes.isEmpty else {
      throw ONNXError("the model uses opset \(opset); lamina import reads opset 6 onward")
    }
    let translators = Dictionary(
      ONNXTranslators.all.flatMap { translator in translator.opTypes.map { ($0, translator) } },
      uniquingKeysWith: { first, _ in first })
    try checkSupported(graph, translators: translators)

    // Initializers are values known at import time; one listed in graph.input too is a parameter.
    var initializerNames: Set<String> = []
    for initializer in graph.initializers {
      writer.values[initializer.name] = .constant(try initializer.decoded(directory: directory))
      initializerNames.insert(initializer.name)
    }
    var inputNames: [(onnx: String, lam: String)] = []
    for input in graph.inputs where !initializerNames.contains(input.name) {
      let expression = try declareInput(input)
      writer.values[input.name] = .tensor(expression)
      inputNames.append((input.name, expression.name))
    }

    for (index, node) in try topologicalOrder(graph).map({ ($0, graph.nodes[$0]) }) {
      guard let translator = translators[node.opType] else { continue }
      var context = ONNXNodeContext(node: node, index: index, opset: opset, writer: writer)
      writer.comment("node \(index) \"\(escapedText(node.name))\" \(escapedText(node.opType))")
      let outputs = try translator.translate(&context)
      for (position, value) in outputs.enumerated() where position < node.outputs.count {
        let name = node.outputs[position]
        if !name.isEmpty { writer.values[name] = value }
      }
    }

    var outputNames: [(onnx: String, lam: String)] = []
    var logits: TensorExpression?
    for output in graph.outputs {
      guard let value = writer.values[output.name] else {
        throw ONNXError("graph output '\(escapedText(output.name))' is not computed by any node")
      }
      let expression: TensorExpression
      switch value {
      case .tensor(let tensor): expression = tensor
      case .constant(let tensor):
        // A constant output is a parameter named after it.
        expression = try writer.declareParameter(hint: output.name, tensor, onnxName: output.name)
        if writer.identifiers[output.name] == nil {
          writer.identifiers[output.name] = expression.name
        }
      case .dims:
        throw ONNXError(
          "graph output '\(escapedText(output.name))' is a shape with symbolic dimensions, which lamina import cannot output"
        )
      }
      let lamName: String
      if writer.identifiers[output.name] == expression.name {
        lamName = expression.name
        writer.outputLines.append("  output \(lamName)")
      } else {
        // The ONNX name's identifier may be taken by another value (an Identity's input).
        lamName = writer.uniqueIdentifier(output.name, prefix: "output")
        writer.outputLines.append("  output \(lamName) = \(expression.name)")
      }
      outputNames.append((output.name, lamName))
      if logits == nil { logits = expression }
    }

    var trainingLines: [String] = []
    if let loss = options.loss {
      guard loss == "cross_entropy" else {
        throw ONNXError("--loss \(escapedText(loss)): lamina import writes cross_entropy only")
      }
      guard let output = logits else { throw ONNXError("--loss: the model has no output") }
      trainingLines = try crossEntropyLines(output)
    }

    let producer = [model.producerName, model.producerVersion].filter { !$0.isEmpty }.joined(
      separator: " ")
    let modelName = writer.uniqueIdentifier(
      modelNameCandidate(options.modelName ?? graph.name), prefix: "Model")
    var lines = [
      "// Imported from \(escapedText(fileName)) (producer \(escapedText(producer.isEmpty ? "unknown" : producer)), opset \(opset)) by lamina import.",
      "model \(modelName) {",
    ]
    lines +=
      writer.inputLines + writer.paramLines + writer.bodyLines + writer.outputLines
      + trainingLines
    lines.append("}")
    return ONNXImport(
      source: lines.joined(separator: "\n") + "\n", weights: writer.weights,
      inputNames: inputNames, outputNames: outputNames)
  }

  private func modelNameCandidate(_ name: String) -> String {
    let trimmed = name.trimmingCharacters(in: .whitespaces)
    guard let first = trimmed.first else { return "Imported" }
    return first.uppercased() + trimmed.dropFirst()
  }

  /// The loss and training step on the logits feeding the output (the softmax's input when the
  /// output is a softmax).
  private func crossEntropyLines(_ output: TensorExpression) throws -> [String] {
    var logits = output.name
    if let producer = softmaxInputs[output.name] { logits = producer }
    guard output.rank >= 2, let batch = output.shape.first?.lamText,
      let classes = output.shape[1].lamText
    else {
      throw ONNXError(
        "--loss cross_entropy: the first output \(output.typeText) is not [batch, classes, ...]")
    }
    var lines: [String] = []
    // Classifiers that end in a 1x1 convolution give [N, C, 1, 1]: the loss takes [N, C].
    if output.rank > 2, output.shape[2...].allSatisfy({ $0 == ImportedDim(1) }) {
      let flat = writer.uniqueIdentifier("\(logits)_flat")
      lines.append("  let \(flat) = reshape(\(logits), shape: [\(batch), \(classes)])")
      logits = flat
    }
    let label = writer.uniqueIdentifier(options.label, prefix: "label")
    let labelShape =
      output.rank > 2 && !lines.isEmpty
      ? [batch] : [batch] + output.shape[2...].map { $0.lamText ?? "-1" }
    return [
      "  input \(label): i32[\(labelShape.joined(separator: ", "))]"
    ] + lines + [
      "  loss = cross_entropy(\(logits), \(label))",
      "  train with adam(lr: 1e-4)",
    ]
  }

  /// Softmax outputs' inputs, so a loss can take the logits.
  var softmaxInputs: [String: String] { writer.softmaxInputs }

  private func declareInput(_ input: ValueInfoProto) throws -> TensorExpression {
    let dtype: DType
    switch input.elementType {
    case 1: dtype = .f32
    case 11: dtype = .f64
    case 6: dtype = .i32
    case 7: dtype = .i64
    default:
      throw ONNXError(
        "graph input '\(escapedText(input.name))' has element type \(dataTypeName(input.elementType)); lamina import reads FLOAT, DOUBLE, INT32 and INT64 inputs"
      )
    }
    guard let dims = input.shape else {
      throw ONNXError("graph input '\(escapedText(input.name))' has no shape")
    }
    let shape = try dims.enumerated().map { axis, dim -> ImportedDim in
      switch dim {
      case .value(let size):
        guard size > 0, size <= 1 << 40 else {
          throw ONNXError(
            "graph input '\(escapedText(input.name))' has dimension \(size) at axis \(axis)")
        }
        return ImportedDim(Int(size))
      case .parameter(let name):
        return ImportedDim(symbol: writer.symbol(forParameter: name, axis: axis))
      case .unknown:
        return ImportedDim(symbol: writer.symbol(forParameter: nil, axis: axis))
      }
    }
    let name = writer.identifier(forValue: input.name, prefix: "input")
    let expression = TensorExpression(name: name, shape: shape, dtype: dtype)
    var line = "  input \(name): \(expression.typeText)"
    if name != input.name { line += "  // ONNX \"\(escapedText(input.name))\"" }
    writer.inputLines.append(line)
    return expression
  }

  /// Every op type without a translator, with its count and first node, as one error.
  private func checkSupported(_ graph: GraphProto, translators: [String: ONNXTranslator]) throws {
    var counts: [String: (count: Int, first: Int)] = [:]
    var order: [String] = []
    for (index, node) in graph.nodes.enumerated() {
      let known =
        (node.domain.isEmpty || node.domain == "ai.onnx") && translators[node.opType] != nil
      guard !known else { continue }
      let key = node.domain.isEmpty ? node.opType : "\(node.domain).\(node.opType)"
      if let entry = counts[key] {
        counts[key] = (entry.count + 1, entry.first)
      } else {
        counts[key] = (1, index)
        order.append(key)
      }
    }
    guard !order.isEmpty else { return }
    let parts = order.map { key -> String in
      let (count, first) = counts[key]!
      return
        "\(escapedText(key)) (\(count) node\(count == 1 ? "" : "s"), first node \(first) \"\(escapedText(graph.nodes[first].name))\")"
    }
    throw ONNXError("unsupported ONNX ops: \(parts.joined(separator: ", "))")
  }

  /// Node indices in an order where every input is computed before it is used.
  private func topologicalOrder(_ graph: GraphProto) throws -> [Int] {
    var available = Set(writer.values.keys)
    available.insert("")
    var remaining = Array(graph.nodes.indices)
    var order: [Int] = []
    while !remaining.isEmpty {
      var next: [Int] = []
      for index in remaining {
        let node = graph.nodes[index]
        if node.inputs.allSatisfy({ available.contains($0) }) {
          order.append(index)
          available.formUnion(node.outputs)
        } else {
          next.append(index)
        }
      }
      if next.count == remaining.count {
        let node = graph.nodes[next[0]]
        let missing = node.inputs.first { !available.contains($0) } ?? ""
        throw ONNXError(
          "node \(next[0]) \"\(escapedText(node.name))\" (\(escapedText(node.opType))): input '\(escapedText(missing))' is neither a graph input, an initializer nor any node's output (or the graph has a cycle)"
        )
      }
      remaining = next
    }
    return order
  }
}
