import Foundation
import LaminaSupport

// The ONNX messages the importer reads, decoded from onnx.proto3's wire format. Fields the importer
// has no use for (doc strings, metadata, training info, functions) are skipped.

/// An ONNX model file: the graph and the operator sets it uses.
public struct ModelProto: Sendable {
  public var irVersion: Int64 = 0
  public var producerName = ""
  public var producerVersion = ""
  public var opsetImports: [(domain: String, version: Int64)] = []
  public var graph = GraphProto()

  /// The default ("" or "ai.onnx") operator set's version.
  public var opsetVersion: Int {
    for entry in opsetImports where entry.domain.isEmpty || entry.domain == "ai.onnx" {
      return Int(clamping: entry.version)
    }
    return 1
  }

  /// Decodes a model from the bytes of a `.onnx` file.
  public init(bytes: [UInt8]) throws {
    var reader = ProtobufReader(bytes: bytes, path: "ModelProto")
    var sawGraph = false
    try reader.readFields { reader, number, wireType in
      switch number {
      case 1: irVersion = try reader.readInt64(wireType, field: "ir_version")
      case 2: producerName = try reader.readString(wireType, field: "producer_name")
      case 3: producerVersion = try reader.readString(wireType, field: "producer_version")
      case 7:
        var message = try reader.readMessage(wireType, field: "graph", path: "ModelProto.graph")
        graph = try GraphProto(&message)
        sawGraph = true
      case 8:
        var message = try reader.readMessage(
          wireType, field: "opset_import", path: "ModelProto.opset_import[\(opsetImports.count)]")
        var domain = ""
        var version: Int64 = 0
        try message.readFields { message, field, type in
          switch field {
          case 1: domain = try message.readString(type, field: "domain")
          case 2: version = try message.readInt64(type, field: "version")
          default: return false
          }
          return true
        }
        opsetImports.append((domain, version))
      default: return false
      }
      return true
    }
    guard sawGraph else {
      throw ONNXError("ModelProto: the file has no graph (is it an ONNX model?)")
    }
  }
}

/// A computation graph: nodes in topological order (usually), its inputs, outputs and initializers.
public struct GraphProto: Sendable {
  public var name = ""
  public var nodes: [NodeProto] = []
  public var initializers: [TensorProto] = []
  public var inputs: [ValueInfoProto] = []
  public var outputs: [ValueInfoProto] = []
  public var valueInfo: [ValueInfoProto] = []

  init() {}

  init(_ reader: inout ProtobufReader) throws {
    let path = reader.path
    try reader.readFields { reader, number, wireType in
      switch number {
      case 1:
        var message = try reader.readMessage(
          wireType, field: "node", path: "\(path).node[\(nodes.count)]")
        nodes.append(try NodeProto(&message))
      case 2: name = try reader.readString(wireType, field: "name")
      case 5:
        var message = try reader.readMessage(
          wireType, field: "initializer", path: "\(path).initializer[\(initializers.count)]")
        initializers.append(try TensorProto(&message))
      case 11, 12, 13:
        let field = number == 11 ? "input" : number == 12 ? "output" : "value_info"
        let count = number == 11 ? inputs.count : number == 12 ? outputs.count : valueInfo.count
        var message = try reader.readMessage(
          wireType, field: "input/output/value_info", path: "\(path).\(field)[\(count)]")
        let info = try ValueInfoProto(&message)
        switch number {
        case 11: inputs.append(info)
        case 12: outputs.append(info)
        default: valueInfo.append(info)
        }
      case 15:
        throw reader.error("sparse initializers are not supported")
      default: return false
      }
      return true
    }
  }
}

/// One operator application.
public struct NodeProto: Sendable {
  public var inputs: [String] = []
  public var outputs: [String] = []
  public var name = ""
  public var opType = ""
  public var domain = ""
  public var attributes: [AttributeProto] = []

  init(_ reader: inout ProtobufReader) throws {
    let path = reader.path
    try reader.readFields { reader, number, wireType in
      switch number {
      case 1: inputs.append(try reader.readString(wireType, field: "input"))
      case 2: outputs.append(try reader.readString(wireType, field: "output"))
      case 3: name = try reader.readString(wireType, field: "name")
      case 4: opType = try reader.readString(wireType, field: "op_type")
      case 5:
        var message = try reader.readMessage(
          wireType, field: "attribute", path: "\(path).attribute[\(attributes.count)]")
        attributes.append(try AttributeProto(&message))
      case 7: domain = try reader.readString(wireType, field: "domain")
      default: return false
      }
      return true
    }
  }

  public func attribute(_ name: String) -> AttributeProto? {
    attributes.first { $0.name == name }
  }
}

/// A node attribute: one of a number, a string, a tensor, or lists of them.
public struct AttributeProto: Sendable {
  public var name = ""
  /// onnx.proto's AttributeType: 1 FLOAT, 2 INT, 3 STRING, 4 TENSOR, 5 GRAPH, 6 FLOATS, 7 INTS, ...
  public var type = 0
  public var float: Float = 0
  public var int: Int64 = 0
  public var string: [UInt8] = []
  public var tensor: TensorProto?
  public var floats: [Float] = []
  public var ints: [Int64] = []
  public var strings: [[UInt8]] = []
  public var hasGraph = false

  init(_ reader: inout ProtobufReader) throws {
    let path = reader.path
    try reader.readFields { reader, number, wireType in
      switch number {
      case 1: name = try reader.readString(wireType, field: "name")
      case 2:
        try reader.expect(.fixed32, wireType, field: "f")
        float = Float(bitPattern: try reader.readFixed32())
      case 3: int = try reader.readInt64(wireType, field: "i")
      case 4: string = try reader.readBytes(wireType, field: "s")
      case 5:
        var message = try reader.readMessage(wireType, field: "t", path: "\(path).t")
        tensor = try TensorProto(&message)
      case 6, 11:
        try reader.skip(wireType)
        hasGraph = true
      case 7: try reader.readFloats(wireType, into: &floats, field: "floats")
      case 8: try reader.readVarints(wireType, into: &ints, field: "ints")
      case 9: strings.append(try reader.readBytes(wireType, field: "strings"))
      case 20: type = Int(try reader.readInt32(wireType, field: "type"))
      default: return false
      }
      return true
    }
  }
}

/// A graph input or output: its name, element type and shape (dimensions numbers or names).
public struct ValueInfoProto: Sendable {
  /// One dimension: a size, a name (`N`, `batch_size`), or neither (unknown).
  public enum Dimension: Sendable, Equatable {
    case value(Int64)
    case parameter(String)
    case unknown
  }

  public var name = ""
  /// onnx.proto's TensorProto.DataType of a tensor type; 0 when the type is not a tensor or absent.
  public var elementType = 0
  /// nil when the shape is not given.
  public var shape: [Dimension]?

  init(_ reader: inout ProtobufReader) throws {
    let path = reader.path
    try reader.readFields { reader, number, wireType in
      switch number {
      case 1: name = try reader.readString(wireType, field: "name")
      case 2:
        var typeReader = try reader.readMessage(wireType, field: "type", path: "\(path).type")
        try typeReader.readFields { typeReader, field, type in
          guard field == 1 else { return false }
          var tensorType = try typeReader.readMessage(
            type, field: "tensor_type", path: "\(path).type.tensor_type")
          try readTensorType(&tensorType)
          return true
        }
      default: return false
      }
      return true
    }
  }

  private mutating func readTensorType(_ reader: inout ProtobufReader) throws {
    let path = reader.path
    try reader.readFields { reader, number, wireType in
      switch number {
      case 1: elementType = Int(try reader.readInt32(wireType, field: "elem_type"))
      case 2:
        var shapeReader = try reader.readMessage(wireType, field: "shape", path: "\(path).shape")
        var dims: [Dimension] = []
        try shapeReader.readFields { shapeReader, field, type in
          guard field == 1 else { return false }
          var dimReader = try shapeReader.readMessage(
            type, field: "dim", path: "\(path).shape.dim[\(dims.count)]")
          var dim = Dimension.unknown
          try dimReader.readFields { dimReader, dimField, dimType in
            switch dimField {
            case 1: dim = .value(try dimReader.readInt64(dimType, field: "dim_value"))
            case 2:
              let name = try dimReader.readString(dimType, field: "dim_param")
              dim = name.isEmpty ? .unknown : .parameter(name)
            default: return false
            }
            return true
          }
          dims.append(dim)
          return true
        }
        shape = dims
      default: return false
      }
      return true
    }
  }
}

/// A tensor constant: an initializer, or a `Constant` node's or attribute's value.
public struct TensorProto: Sendable {
  /// onnx.proto's TensorProto.DataType values the importer reads.
  public enum DataType: Int, Sendable {
    case float = 1
    case uint8 = 2
    case int8 = 3
    case uint16 = 4
    case int16 = 5
    case int32 = 6
    case int64 = 7
    case string = 8
    case bool = 9
    case float16 = 10
    case double = 11
    case uint32 = 12
    case uint64 = 13
  }

  public var dims: [Int64] = []
  public var dataType = 0
  public var name = ""
  public var rawData: [UInt8]?
  public var floatData: [Float] = []
  public var int32Data: [Int64] = []
  public var int64Data: [Int64] = []
  public var doubleData: [Double] = []
  public var uint64Data: [Int64] = []
  /// `external_data` entries (`location`, `offset`, `length`, `checksum`).
  public var externalData: [String: String] = [:]
  public var isExternal = false
  /// Where the tensor was read, for error messages.
  public var path = ""

  init(_ reader: inout ProtobufReader) throws {
    path = reader.path
    try reader.readFields { reader, number, wireType in
      switch number {
      case 1: try reader.readVarints(wireType, into: &dims, field: "dims")
      case 2: dataType = Int(try reader.readInt32(wireType, field: "data_type"))
      case 3: throw reader.error("segmented tensors are not supported")
      case 4: try reader.readFloats(wireType, into: &floatData, field: "float_data")
      case 5: try reader.readVarints(wireType, into: &int32Data, field: "int32_data")
      case 7: try reader.readVarints(wireType, into: &int64Data, field: "int64_data")
      case 8: name = try reader.readString(wireType, field: "name")
      case 9: rawData = try reader.readBytes(wireType, field: "raw_data")
      case 10: try reader.readDoubles(wireType, into: &doubleData, field: "double_data")
      case 11: try reader.readVarints(wireType, into: &uint64Data, field: "uint64_data")
      case 13:
        var entry = try reader.readMessage(
          wireType, field: "external_data", path: "\(path).external_data")
        var key = ""
        var value = ""
        try entry.readFields { entry, field, type in
          switch field {
          case 1: key = try entry.readString(type, field: "key")
          case 2: value = try entry.readString(type, field: "value")
          default: return false
          }
          return true
        }
        externalData[key] = value
      case 14: isExternal = try reader.readInt32(wireType, field: "data_location") == 1
      default: return false
      }
      return true
    }
  }

  /// The tensor's values as a Lamina tensor: floats as f32, doubles as f64, integers and booleans as
  /// i64 (so shapes and indices keep their values).
  ///
  /// - Parameter directory: the model file's folder, where external data files are looked up.
  public func decoded(directory: String?) throws -> Tensor {
    let shape = try dims.map { dim -> Int in
      guard dim >= 0, dim <= 1 << 40 else { throw ONNXError("\(path): invalid dimension \(dim)") }
      return Int(dim)
    }
    var count = 1
    for dim in shape {
      let (product, overflow) = count.multipliedReportingOverflow(by: dim)
      guard !overflow, product <= 1 << 40 else {
        throw ONNXError("\(path): the tensor's shape \(shape) has too many elements")
      }
      count = product
    }
    guard let type = DataType(rawValue: dataType), type != .string else {
      throw ONNXError(
        "\(path): tensor '\(name)' has element type \(dataTypeName(dataType)), which lamina import does not read"
      )
    }
    var raw = rawData
    if isExternal { raw = try readExternal(directory: directory) }
    if let raw {
      let size = elementSize(type)
      guard raw.count == count * size else {
        throw ONNXError(
          "\(path): tensor '\(name)' of shape \(shape) and type \(dataTypeName(dataType)) needs \(count * size) bytes of raw data, has \(raw.count)"
        )
      }
      return Self.tensor(raw: raw, type: type, shape: shape)
    }
    func check(_ available: Int, _ field: String) throws {
      guard available == count else {
        throw ONNXError(
          "\(path): tensor '\(name)' of shape \(shape) has \(available) values in \(field), expected \(count)"
        )
      }
    }
    switch type {
    case .float:
      try check(floatData.count, "float_data")
      return Tensor(shape: shape, scalars: floatData)
    case .double:
      try check(doubleData.count, "double_data")
      return Tensor(shape: shape, scalars: doubleData)
    case .int64:
      try check(int64Data.count, "int64_data")
      return Tensor(shape: shape, scalars: int64Data)
    case .uint32, .uint64:
      try check(uint64Data.count, "uint64_data")
      return Tensor(shape: shape, scalars: uint64Data)
    case .int32, .int16, .int8, .uint16, .uint8, .bool:
      try check(int32Data.count, "int32_data")
      return Tensor(shape: shape, scalars: int32Data)
    case .float16:
      try check(int32Data.count, "int32_data")
      return Tensor(
        shape: shape, scalars: int32Data.map { halfToFloat(UInt16(truncatingIfNeeded: $0)) })
    case .string:
      fatalError("unreachable: strings are rejected above")
    }
  }

  private func readExternal(directory: String?) throws -> [UInt8] {
    guard let location = externalData["location"], !location.isEmpty else {
      throw ONNXError("\(path): tensor '\(name)' has external data without a location")
    }
    guard let directory else {
      throw ONNXError("\(path): tensor '\(name)' has external data but the model has no folder")
    }
    let components = location.split(separator: "/", omittingEmptySubsequences: true)
    guard !location.hasPrefix("/"), !components.contains(".."), !location.contains("\\"),
      !location.contains("\0")
    else {
      throw ONNXError(
        "\(path): tensor '\(name)': external data location '\(location)' leaves the model's folder")
    }
    func number(_ key: String) throws -> Int? {
      guard let text = externalData[key] else { return nil }
      guard let value = Int(text), value >= 0 else {
        throw ONNXError("\(path): tensor '\(name)': external data \(key) '\(text)' is not a size")
      }
      return value
    }
    let offset = try number("offset") ?? 0
    let length = try number("length")
    let file = (directory as NSString).appendingPathComponent(location)
    guard let handle = FileHandle(forReadingAtPath: file) else {
      throw ONNXError("\(path): tensor '\(name)': cannot open external data file '\(file)'")
    }
    defer { try? handle.close() }
    let size = (try? handle.seekToEnd()) ?? 0
    guard UInt64(offset) <= size else {
      throw ONNXError(
        "\(path): tensor '\(name)': external data offset \(offset) is past the end of '\(file)' (\(size) bytes)"
      )
    }
    let available = Int(size) - offset
    let wanted = length ?? available
    guard wanted <= available else {
      throw ONNXError(
        "\(path): tensor '\(name)': external data '\(file)' has \(available) bytes after offset \(offset), needs \(wanted)"
      )
    }
    try handle.seek(toOffset: UInt64(offset))
    let data = try handle.read(upToCount: wanted) ?? Data()
    guard data.count == wanted else {
      throw ONNXError("\(path): tensor '\(name)': short read of external data '\(file)'")
    }
    return [UInt8](data)
  }

  private func elementSize(_ type: DataType) -> Int {
    switch type {
    case .bool, .int8, .uint8: 1
    case .int16, .uint16, .float16: 2
    case .float, .int32, .uint32: 4
    case .double, .int64, .uint64: 8
    case .string: 0
    }
  }

  private static func tensor(raw: [UInt8], type: DataType, shape: [Int]) -> Tensor {
    func word(_ index: Int, _ size: Int) -> UInt64 {
      var value: UInt64 = 0
      for byte in 0..<size { value |= UInt64(raw[index * size + byte]) << (8 * UInt64(byte)) }
      return value
    }
    let count = shape.reduce(1, *)
    switch type {
    case .float:
      return Tensor(
        shape: shape, scalars: (0..<count).map { Float(bitPattern: UInt32(word($0, 4))) })
    case .double:
      return Tensor(shape: shape, scalars: (0..<count).map { Double(bitPattern: word($0, 8)) })
    case .float16:
      return Tensor(shape: shape, scalars: (0..<count).map { halfToFloat(UInt16(word($0, 2))) })
    case .int64, .uint64:
      return Tensor(shape: shape, scalars: (0..<count).map { Int64(bitPattern: word($0, 8)) })
    case .int32:
      return Tensor(
        shape: shape, scalars: (0..<count).map { Int64(Int32(bitPattern: UInt32(word($0, 4)))) })
    case .uint32:
      return Tensor(shape: shape, scalars: (0..<count).map { Int64(word($0, 4)) })
    case .int16:
      return Tensor(
        shape: shape, scalars: (0..<count).map { Int64(Int16(bitPattern: UInt16(word($0, 2)))) })
    case .uint16:
      return Tensor(shape: shape, scalars: (0..<count).map { Int64(word($0, 2)) })
    case .int8:
      return Tensor(shape: shape, scalars: raw.map { Int64(Int8(bitPattern: $0)) })
    case .uint8, .bool:
      return Tensor(shape: shape, scalars: raw.map { Int64($0) })
    case .string:
      return Tensor(zeros: .f32, shape: shape)
    }
  }
}

/// IEEE half precision bits to Float.
func halfToFloat(_ bits: UInt16) -> Float {
  let sign = UInt32(bits >> 15) << 31
  let exponent = Int(bits >> 10) & 0x1F
  let fraction = UInt32(bits & 0x3FF)
  if exponent == 0 {
    let value = Float(fraction) * 0x1p-24
    return sign != 0 ? -value : value
  }
  if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (fraction << 13)) }
  return Float(bitPattern: sign | UInt32(exponent + 112) << 23 | (fraction << 13))
}

/// onnx.proto's name for an element type number.
public func dataTypeName(_ type: Int) -> String {
  let names = [
    0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32",
    7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64",
    14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16",
  ]
  return names[type] ?? "type \(type)"
}
