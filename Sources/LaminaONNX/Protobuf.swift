import Foundation

/// A malformed, truncated or unsupported ONNX file: what could not be read, and where.
public struct ONNXError: Error, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// The protobuf wire types (the low three bits of a field's key).
enum WireType: Int {
  case varint = 0
  case fixed64 = 1
  case lengthDelimited = 2
  case startGroup = 3
  case endGroup = 4
  case fixed32 = 5
}

/// Reads protobuf wire format from a byte range, bounds-checking every read.
///
/// Errors name the message path being read (`ModelProto.graph.node[12]`) and the byte offset in the
/// whole buffer, so a truncated or corrupted file points at the place it breaks.
struct ProtobufReader {
  let bytes: [UInt8]
  private(set) var position: Int
  let end: Int
  /// The message being read, for error messages.
  let path: String

  init(bytes: [UInt8], path: String) {
    self.bytes = bytes
    self.position = 0
    self.end = bytes.count
    self.path = path
  }

  init(bytes: [UInt8], range: Range<Int>, path: String) {
    self.bytes = bytes
    self.position = range.lowerBound
    self.end = range.upperBound
    self.path = path
  }

  var isAtEnd: Bool { position >= end }

  func error(_ what: String, at offset: Int? = nil) -> ONNXError {
    ONNXError("\(path): \(what) at byte \(offset ?? position)")
  }

  /// The next field's number and wire type, or nil at the end of the message.
  mutating func nextField() throws -> (number: Int, wireType: WireType)? {
    if isAtEnd { return nil }
    let start = position
    let key = try readVarint()
    guard let wireType = WireType(rawValue: Int(key & 7)) else {
      throw error("invalid wire type \(key & 7)", at: start)
    }
    let number = key >> 3
    guard number >= 1, number <= 0x1FFF_FFFF else {
      throw error("invalid field number \(number)", at: start)
    }
    return (Int(number), wireType)
  }

  mutating func readVarint() throws -> UInt64 {
    let start = position
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      guard position < end else { throw error("truncated varint", at: start) }
      let byte = bytes[position]
      position += 1
      if shift == 63 && byte > 1 { throw error("varint longer than 64 bits", at: start) }
      result |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { return result }
      shift += 7
      if shift > 63 { throw error("varint longer than 10 bytes", at: start) }
    }
  }

  mutating func readFixed32() throws -> UInt32 {
    guard end - position >= 4 else { throw error("truncated 32-bit value") }
    var value: UInt32 = 0
    for index in 0..<4 { value |= UInt32(bytes[position + index]) << (8 * UInt32(index)) }
    position += 4
    return value
  }

  mutating func readFixed64() throws -> UInt64 {
    guard end - position >= 8 else { throw error("truncated 64-bit value") }
    var value: UInt64 = 0
    for index in 0..<8 { value |= UInt64(bytes[position + index]) << (8 * UInt64(index)) }
    position += 8
    return value
  }

  /// The byte range of a length-delimited field's payload.
  mutating func readLengthDelimited() throws -> Range<Int> {
    let start = position
    let length = try readVarint()
    guard length <= UInt64(end - position) else {
      throw error(
        "length \(length) runs past the end of the data (\(end - position) bytes left)", at: start)
    }
    let range = position..<(position + Int(length))
    position = range.upperBound
    return range
  }

  mutating func readString() throws -> String {
    let range = try readLengthDelimited()
    return String(decoding: bytes[range], as: UTF8.self)
  }

  mutating func readBytes() throws -> [UInt8] {
    Array(bytes[try readLengthDelimited()])
  }

  /// A reader for an embedded message.
  mutating func readMessage(path: String) throws -> ProtobufReader {
    let range = try readLengthDelimited()
    return ProtobufReader(bytes: bytes, range: range, path: path)
  }

  /// A varint field as a signed 64-bit integer (protobuf's int64: two's complement).
  mutating func readInt64() throws -> Int64 { Int64(bitPattern: try readVarint()) }

  /// A varint field as protobuf's int32 (negative values are sign-extended to ten bytes).
  mutating func readInt32() throws -> Int32 {
    let start = position
    let value = Int64(bitPattern: try readVarint())
    guard let narrow = Int32(exactly: value) else {
      throw error("int32 value \(value) out of range", at: start)
    }
    return narrow
  }

  mutating func skip(_ wireType: WireType) throws {
    switch wireType {
    case .varint: _ = try readVarint()
    case .fixed64: _ = try readFixed64()
    case .fixed32: _ = try readFixed32()
    case .lengthDelimited: _ = try readLengthDelimited()
    case .startGroup, .endGroup: throw error("unsupported protobuf group")
    }
  }

  /// Reads every field of the message in order: `body` reads the fields it knows (given this reader,
  /// the field's number and wire type) and returns false for the others, which are skipped.
  mutating func readFields(
    _ body: (inout ProtobufReader, _ number: Int, _ wireType: WireType) throws -> Bool
  ) throws {
    while let (number, wireType) = try nextField() {
      if try !body(&self, number, wireType) { try skip(wireType) }
    }
  }

  /// A length-delimited field as text, its wire type checked.
  mutating func readString(_ wireType: WireType, field: String) throws -> String {
    try expect(.lengthDelimited, wireType, field: field)
    return try readString()
  }

  /// A length-delimited field's bytes, its wire type checked.
  mutating func readBytes(_ wireType: WireType, field: String) throws -> [UInt8] {
    try expect(.lengthDelimited, wireType, field: field)
    return try readBytes()
  }

  /// An embedded message field, its wire type checked.
  mutating func readMessage(_ wireType: WireType, field: String, path: String) throws
    -> ProtobufReader
  {
    try expect(.lengthDelimited, wireType, field: field)
    return try readMessage(path: path)
  }

  /// A varint field as an int64, its wire type checked.
  mutating func readInt64(_ wireType: WireType, field: String) throws -> Int64 {
    try expect(.varint, wireType, field: field)
    return try readInt64()
  }

  /// A varint field as an int32, its wire type checked.
  mutating func readInt32(_ wireType: WireType, field: String) throws -> Int32 {
    try expect(.varint, wireType, field: field)
    return try readInt32()
  }

  /// Checks a field's wire type, naming the field when it is wrong.
  func expect(_ wireType: WireType, _ actual: WireType, field: String) throws {
    guard wireType == actual else {
      throw error("field \(field) has wire type \(actual.rawValue), expected \(wireType.rawValue)")
    }
  }

  /// Repeated varints: packed (one length-delimited run) or one value per key.
  mutating func readVarints(_ wireType: WireType, into values: inout [Int64], field: String) throws
  {
    switch wireType {
    case .varint:
      values.append(try readInt64())
    case .lengthDelimited:
      var packed = try readMessage(path: path)
      while !packed.isAtEnd { values.append(try packed.readInt64()) }
    default:
      throw error("field \(field) has wire type \(wireType.rawValue), expected a varint")
    }
  }

  /// Repeated 32-bit floats: packed or one per key.
  mutating func readFloats(_ wireType: WireType, into values: inout [Float], field: String) throws {
    try readFixedWidth(wireType, .fixed32, into: &values, field: field, what: "32-bit floats") {
      Float(bitPattern: try $0.readFixed32())
    }
  }

  /// Repeated 64-bit doubles: packed or one per key.
  mutating func readDoubles(_ wireType: WireType, into values: inout [Double], field: String) throws
  {
    try readFixedWidth(wireType, .fixed64, into: &values, field: field, what: "64-bit doubles") {
      Double(bitPattern: try $0.readFixed64())
    }
  }

  /// Repeated fixed-width values (`single`: their wire type, fixed32 or fixed64), packed or one per
  /// key, each read by `read`.
  private mutating func readFixedWidth<Value>(
    _ wireType: WireType, _ single: WireType, into values: inout [Value], field: String,
    what: String, _ read: (inout ProtobufReader) throws -> Value
  ) throws {
    let width = single == .fixed32 ? 4 : 8
    switch wireType {
    case single:
      values.append(try read(&self))
    case .lengthDelimited:
      let range = try readLengthDelimited()
      guard range.count % width == 0 else {
        throw error(
          "packed field \(field) has \(range.count) bytes, not a multiple of \(width)",
          at: range.lowerBound)
      }
      var packed = ProtobufReader(bytes: bytes, range: range, path: path)
      values.reserveCapacity(values.count + range.count / width)
      while !packed.isAtEnd { values.append(try read(&packed)) }
    default:
      throw error("field \(field) has wire type \(wireType.rawValue), expected \(what)")
    }
  }
}
