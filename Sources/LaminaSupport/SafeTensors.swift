import Foundation

/// Reading and writing `.safetensors` files: named tensors with a JSON header.
///
/// The format: an 8-byte little-endian u64 header length N, then N bytes of UTF-8 JSON mapping each
/// tensor name to `{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}` (plus an optional
/// `"__metadata__"` object of string values), then the byte buffer holding every tensor's little-endian
/// elements. Offsets count from the start of the buffer.
///
/// Reading validates the file as strictly as the reference implementation: tensors must exactly tile
/// the buffer, without gaps or overlaps. Lamina stores F32, F64, I32 and I64; other dtypes are reported
/// as unsupported. Writing puts the tensors in name order, contiguous, with the header padded with
/// spaces to a multiple of 8 bytes.
public enum SafeTensors {
  /// The tensors in the file at `path`, sorted by name.
  public static func read(contentsOf path: String) throws -> [(name: String, tensor: Tensor)] {
    try decode(readFile(path), name: path)
  }

  /// The tensors in the file at `path`, keyed by name.
  public static func readDictionary(contentsOf path: String) throws -> [String: Tensor] {
    Dictionary(uniqueKeysWithValues: try read(contentsOf: path).map { ($0.name, $0.tensor) })
  }

  /// The tensors and the `__metadata__` strings in the file at `path`.
  public static func readWithMetadata(contentsOf path: String) throws -> (
    tensors: [(name: String, tensor: Tensor)], metadata: [String: String]
  ) {
    try decodeWithMetadata(readFile(path), name: path)
  }

  /// Decodes the bytes of a `.safetensors` file into tensors sorted by name; `name` identifies the file
  /// in error messages.
  public static func decode(_ data: Data, name: String) throws -> [(name: String, tensor: Tensor)] {
    try decodeWithMetadata(data, name: name).tensors
  }

  /// Decodes the bytes of a `.safetensors` file into tensors sorted by name and its metadata.
  public static func decodeWithMetadata(_ data: Data, name: String) throws -> (
    tensors: [(name: String, tensor: Tensor)], metadata: [String: String]
  ) {
    try data.withUnsafeBytes { bytes in try Decoder(bytes: bytes, name: name).decode() }
  }

  /// The bytes of a `.safetensors` file holding `tensors` and `metadata`.
  ///
  /// Throws when a name is empty, repeated, or the reserved `__metadata__`.
  public static func encode(
    _ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:]
  ) throws -> Data {
    var seen: Set<String> = []
    for (name, _) in tensors {
      guard !name.isEmpty else { throw EncodingError(reason: "tensor name is empty") }
      guard name != metadataKey else {
        throw EncodingError(reason: "tensor name '\(metadataKey)' is reserved for metadata")
      }
      guard seen.insert(name).inserted else {
        throw EncodingError(reason: "tensor name '\(name)' appears twice")
      }
    }
    let sorted = tensors.sorted { byteOrderPrecedes($0.name, $1.name) }

    // Compact JSON as the reference writer produces it: metadata first, then tensors in buffer order.
    var entries: [String] = []
    if !metadata.isEmpty {
      let pairs = metadata.sorted { byteOrderPrecedes($0.key, $1.key) }
        .map { "\(jsonString($0.key)):\(jsonString($0.value))" }
      entries.append("\(jsonString(metadataKey)):{\(pairs.joined(separator: ","))}")
    }
    var offset = 0
    for (name, tensor) in sorted {
      let end = offset + tensor.byteCount
      let shape = tensor.shape.map(String.init).joined(separator: ",")
      let fields =
        "\"dtype\":\"\(dtypeName(tensor.dtype))\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]"
      entries.append("\(jsonString(name)):{\(fields)}")
      offset = end
    }
    var header = Array("{\(entries.joined(separator: ","))}".utf8)
    // Padding keeps the buffer 8-byte aligned after the 8-byte length field.
    header.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8))

    var data = Data(capacity: 8 + header.count + offset)
    let length = UInt64(header.count)
    for index in 0..<8 { data.append(UInt8(truncatingIfNeeded: length >> (8 * UInt64(index)))) }
    data.append(contentsOf: header)
    for (_, tensor) in sorted {
      tensor.withUnsafeBytes { bytes in
        if hostIsLittleEndian {
          data.append(contentsOf: bytes)
        } else {
          var copy = Array(bytes)
          swapBytes(&copy, elementSize: tensor.dtype.byteSize)
          data.append(contentsOf: copy)
        }
      }
    }
    return data
  }

  /// Writes `tensors` and `metadata` to `path` as a `.safetensors` file, atomically.
  public static func write(
    _ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String
  ) throws {
    let data: Data
    do {
      data = try encode(tensors, metadata: metadata)
    } catch let error as EncodingError {
      throw FileError(path: path, reason: error.reason)
    }
    try AtomicFile.write(data, to: path)
  }

  /// Tensors that cannot be written, such as two with the same name.
  public struct EncodingError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { "cannot encode safetensors: \(reason)" }
  }

  // MARK: Details

  static let metadataKey = "__metadata__"

  /// The reference implementation's limit; a larger header is treated as a corrupt length field.
  static let maximumHeaderLength = 100_000_000

  static let supportedDTypes = "F32, F64, I32, I64"

  static func dtypeName(_ dtype: DType) -> String {
    switch dtype {
    case .f32: "F32"
    case .f64: "F64"
    case .i32: "I32"
    case .i64: "I64"
    }
  }

  static func dtype(named name: String) -> DType? {
    ["F32": .f32, "F64": .f64, "I32": .i32, "I64": .i64][name]
  }

  /// Orders names by their UTF-8 bytes, as the reference implementation (in Rust) does.
  static func byteOrderPrecedes(_ lhs: String, _ rhs: String) -> Bool {
    lhs.utf8.lexicographicallyPrecedes(rhs.utf8)
  }

  /// A JSON string literal; non-ASCII characters are written as UTF-8, as serde_json does.
  static func jsonString(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": result += "\\\""
      case "\\": result += "\\\\"
      case "\n": result += "\\n"
      case "\r": result += "\\r"
      case "\t": result += "\\t"
      case _ where scalar.value < 0x20:
        let hex = String(scalar.value, radix: 16)
        result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: result.unicodeScalars.append(scalar)
      }
    }
    return result + "\""
  }

  /// The first key that appears twice in one object of the valid JSON text `bytes`, decoded (so
  /// `"a"` and `"\u0061"` are the same key); nil when there is none.
  static func duplicateKey(_ bytes: [UInt8]) -> String? {
    // One entry per open object (its keys so far) or array (nil).
    var open: [Set<String>?] = []
    var index = 0
    while index < bytes.count {
      switch bytes[index] {
      case UInt8(ascii: "{"): open.append([])
      case UInt8(ascii: "["): open.append(nil)
      case UInt8(ascii: "}"), UInt8(ascii: "]"): _ = open.popLast()
      case UInt8(ascii: "\""):
        let start = index
        index += 1
        while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
          index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
        }
        let literal = Data(bytes[start...min(index, bytes.count - 1)])
        var next = index + 1
        while next < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[next]) { next += 1 }
        // A string followed by ':' inside an object is a key.
        if next < bytes.count, bytes[next] == UInt8(ascii: ":"), let keys = open.last, var keys,
          let key = try? JSONSerialization.jsonObject(with: literal, options: .fragmentsAllowed)
            as? String
        {
          if keys.contains(key) { return key }
          keys.insert(key)
          open[open.count - 1] = keys
        }
      default: break
      }
      index += 1
    }
    return nil
  }

  /// Decoding state for one file; every read is bounds-checked so no input can trap.
  struct Decoder {
    let bytes: UnsafeRawBufferPointer
    let name: String

    func fail(_ reason: String) -> FileError { FileError(path: name, reason: reason) }

    struct Entry {
      var name: String
      var dtype: DType
      var shape: [Int]
      var begin: Int
      var end: Int
    }

    func decode() throws -> (tensors: [(name: String, tensor: Tensor)], metadata: [String: String])
    {
      guard !bytes.isEmpty else { throw fail("empty file, not a safetensors file") }
      guard bytes.count >= 8 else {
        throw fail(
          "not a safetensors file: \(bytes.count) bytes is too short for the 8-byte header length")
      }
      var length: UInt64 = 0
      for index in 0..<8 { length |= UInt64(bytes[index]) << (8 * UInt64(index)) }
      guard length <= UInt64(maximumHeaderLength) else {
        throw fail(
          "header length \(length) is larger than the \(maximumHeaderLength)-byte limit "
            + "(not a safetensors file?)"
        )
      }
      let headerLength = Int(length)
      guard headerLength <= bytes.count - 8 else {
        throw fail(
          "header length \(headerLength) runs past the end of the file "
            + "(\(bytes.count - 8) bytes follow the length field)"
        )
      }
      let headerBytes = bytes[8..<8 + headerLength]
      // JSONSerialization would also accept UTF-16 and UTF-32; the format requires UTF-8.
      guard String(validating: headerBytes, as: UTF8.self) != nil else {
        throw fail("header is not valid UTF-8")
      }
      guard headerBytes.first == UInt8(ascii: "{") else {
        throw fail("header does not start with '{' (not a safetensors file?)")
      }
      let json: Any
      do {
        json = try JSONSerialization.jsonObject(with: Data(headerBytes))
      } catch {
        let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String
        throw fail("header is not valid JSON" + (detail.map { ": \($0)" } ?? ""))
      }
      guard let object = json as? [String: Any] else { throw fail("header is not a JSON object") }
      // JSONSerialization keeps the last of two equal keys; which tensor a name means must not
      // depend on that.
      if let key = SafeTensors.duplicateKey(Array(headerBytes)) {
        throw fail("header names \(SafeTensors.jsonString(key)) twice")
      }

      var metadata: [String: String] = [:]
      var entries: [Entry] = []
      for (key, value) in object {
        if key == metadataKey {
          metadata = try parseMetadata(value)
        } else {
          entries.append(try parseEntry(key, value))
        }
      }

      // Tensors must tile the buffer exactly: sorted by offset, each starts where the previous ended.
      let bufferStart = 8 + headerLength
      let bufferLength = bytes.count - bufferStart
      entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
      var covered = 0
      var previous: String? = nil
      for entry in entries {
        let span = "tensor '\(entry.name)': data_offsets [\(entry.begin), \(entry.end)]"
        guard entry.end <= bufferLength else {
          throw fail(
            "\(span) run past the end of the \(bufferLength)-byte data buffer"
          )
        }
        if entry.begin < covered {
          throw fail(
            "\(span) overlap tensor '\(previous ?? "")'"
          )
        }
        if entry.begin > covered {
          throw fail(
            "\(span) leave a gap of unused bytes at \(covered)..<\(entry.begin)"
          )
        }
        covered = entry.end
        previous = entry.name
      }
      guard covered == bufferLength else {
        throw fail(
          "the tensors cover \(covered) bytes of the \(bufferLength)-byte data buffer; "
            + "\(bufferLength - covered) trailing bytes are not used by any tensor"
        )
      }

      var tensors: [(name: String, tensor: Tensor)] = []
      for entry in entries {
        let start = bufferStart + entry.begin
        let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<bufferStart + entry.end])
        guard var tensor = Tensor(dtype: entry.dtype, shape: entry.shape, bytes: slice) else {
          throw fail("tensor '\(entry.name)': internal error: byte count does not match shape")
        }
        if !hostIsLittleEndian {
          tensor.withUnsafeMutableBytes { swapBytes($0, elementSize: entry.dtype.byteSize) }
        }
        tensors.append((entry.name, tensor))
      }
      tensors.sort { byteOrderPrecedes($0.name, $1.name) }
      return (tensors, metadata)
    }

    func parseMetadata(_ value: Any) throws -> [String: String] {
      guard let object = value as? [String: Any] else {
        throw fail("'\(metadataKey)' is not a JSON object of strings")
      }
      var metadata: [String: String] = [:]
      for (key, item) in object {
        guard let text = item as? String else {
          throw fail("'\(metadataKey)' entry '\(key)' is not a string")
        }
        metadata[key] = text
      }
      return metadata
    }

    func parseEntry(_ name: String, _ value: Any) throws -> Entry {
      guard !name.isEmpty else { throw fail("a tensor has an empty name") }
      guard let fields = value as? [String: Any] else {
        throw fail("tensor '\(name)': entry is not a JSON object")
      }
      guard let dtypeName = fields["dtype"] as? String else {
        throw fail("tensor '\(name)': missing or non-string 'dtype'")
      }
      guard let dtype = dtype(named: dtypeName) else {
        throw fail(
          "tensor '\(name)': unsupported dtype '\(dtypeName)' (supported: \(supportedDTypes))")
      }
      guard let shapeItems = fields["shape"] as? [Any] else {
        throw fail("tensor '\(name)': missing 'shape' or it is not an array")
      }
      var shape: [Int] = []
      for item in shapeItems {
        guard let dimension = integer(item), dimension >= 0 else {
          throw fail(
            "tensor '\(name)': shape \(describe(shapeItems)) is not a list of non-negative integers"
          )
        }
        shape.append(dimension)
      }
      guard let offsetItems = fields["data_offsets"] as? [Any] else {
        throw fail("tensor '\(name)': missing 'data_offsets' or it is not an array")
      }
      guard offsetItems.count == 2, let begin = integer(offsetItems[0]),
        let end = integer(offsetItems[1]),
        begin >= 0, begin <= end
      else {
        throw fail(
          "tensor '\(name)': data_offsets \(describe(offsetItems)) must be two non-negative "
            + "integers [begin, end] with begin <= end"
        )
      }
      // Every partial product is checked: Tensor computes the same products without overflow checks.
      var byteCount = dtype.byteSize
      for dimension in shape {
        let (product, overflow) = byteCount.multipliedReportingOverflow(by: dimension)
        guard !overflow else {
          throw fail("tensor '\(name)': shape \(shape) is too large: its size overflows")
        }
        byteCount = product
      }
      guard end - begin == byteCount else {
        throw fail(
          "tensor '\(name)': data_offsets [\(begin), \(end)] hold \(end - begin) bytes, "
            + "but \(dtypeName)\(shape) needs \(byteCount)"
        )
      }
      return Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    /// A JSON integer as an Int, or nil for booleans, fractions and out-of-range values.
    ///
    /// JSONSerialization returns every number and boolean as NSNumber, and `as? Int` also succeeds
    /// for `true` and `1.0`, so the number's type code and text decide instead.
    func integer(_ value: Any) -> Int? {
      guard let number = value as? NSNumber else { return nil }
      let type = String(cString: number.objCType)
      guard type != "c", type != "B", type != "d", type != "f" else { return nil }
      return Int(number.stringValue)
    }

    func describe(_ items: [Any]) -> String {
      let text = "[" + items.map { "\($0)" }.joined(separator: ", ") + "]"
      return text.count > 100 ? String(text.prefix(100)) + "…]" : text
    }
  }
}
