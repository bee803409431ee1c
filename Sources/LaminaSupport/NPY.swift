import Foundation

/// Reading and writing numpy's `.npy` files, one tensor per file.
///
/// The format: the magic bytes `\x93NUMPY`, a major and minor version byte, the header length (a
/// little-endian u16 in version 1.0, u32 in 2.0 and 3.0), then the header, a Python dict literal such
/// as `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with spaces and ended by a
/// newline, then the raw elements.
///
/// Reading accepts versions 1.0, 2.0 and 3.0, the dtypes float32, float64, int32 and int64 in either byte
/// order, and Fortran-ordered arrays, which are transposed into row-major order. Writing produces the
/// same bytes as `numpy.save`: version 1.0 (2.0 only for headers longer than 64 KiB), little-endian, C
/// order, with the data starting at a multiple of 64 bytes.
public enum NPY {
  /// Reads the tensor stored in the `.npy` file at `path`.
  public static func read(contentsOf path: String) throws -> Tensor {
    try decode(readFile(path), name: path)
  }

  /// Decodes the bytes of a `.npy` file; `name` identifies the file in error messages.
  public static func decode(_ data: Data, name: String) throws -> Tensor {
    try data.withUnsafeBytes { bytes in try Decoder(bytes: bytes, name: name).decode() }
  }

  /// The bytes of a `.npy` file holding `tensor`, exactly as `numpy.save` writes them.
  public static func encode(_ tensor: Tensor) -> Data {
    var data = header(descr: descr(for: tensor.dtype), shape: tensor.shape)
    tensor.withUnsafeBytes { bytes in
      var copy = Array(bytes)
      // The format stores the byte order it was written in; this one always says little-endian.
      if !hostIsLittleEndian { swapBytes(&copy, elementSize: tensor.dtype.byteSize) }
      data.append(contentsOf: copy)
    }
    return data
  }

  /// Writes `tensor` to `path` as a `.npy` file, atomically.
  public static func write(_ tensor: Tensor, to path: String) throws {
    try AtomicFile.write(encode(tensor), to: path)
  }

  // MARK: Writing

  static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"

  /// Data starts at a multiple of this, so the file can be memory-mapped and loaded with vector loads.
  static let alignment = 64

  /// numpy leaves room in the header for the first dimension to grow to this many digits, so that
  /// appending to a file can rewrite the header in place.
  static let growthAxisMaxDigits = 21

  static func descr(for dtype: DType) -> String {
    switch dtype {
    case .f32: "<f4"
    case .f64: "<f8"
    case .i32: "<i4"
    case .i64: "<i8"
    }
  }

  /// Magic, version, header length and padded header, mirroring numpy's `_write_array_header`.
  static func header(descr: String, shape: [Int]) -> Data {
    let shapeText: String
    switch shape.count {
    case 0: shapeText = "()"
    case 1: shapeText = "(\(shape[0]),)"
    default: shapeText = "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }
    var text = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
    if let first = shape.first {
      text += String(repeating: " ", count: max(0, growthAxisMaxDigits - String(first).count))
    }
    let dictionary = Array(text.utf8)
    // Version 1.0 stores the header length in a u16; fall back to 2.0's u32 only when it does not fit.
    for (version, lengthSize) in [(UInt8(1), 2), (UInt8(2), 4)] {
      let unpadded = magic.count + 2 + lengthSize + dictionary.count + 1
      let padding = alignment - unpadded % alignment  // numpy pads a full 64 when already aligned
      let headerLength = dictionary.count + padding + 1
      if lengthSize == 2 && headerLength > Int(UInt16.max) { continue }
      var data = Data(magic)
      data.append(contentsOf: [version, 0])
      for index in 0..<lengthSize {
        data.append(UInt8(truncatingIfNeeded: headerLength >> (8 * index)))
      }
      data.append(contentsOf: dictionary)
      data.append(contentsOf: [UInt8](repeating: 0x20, count: padding))
      data.append(0x0A)
      return data
    }
    preconditionFailure("npy header of \(dictionary.count) bytes does not fit version 2.0")
  }

  // MARK: Reading

  /// Byte order of the elements in a file.
  enum ByteOrder {
    case little
    case big
  }

  static let supportedDescriptions =
    "'<f4', '<f8', '<i4', '<i8' and their big-endian forms '>f4', …"

  /// Parses a descr string such as `<f4`, `>i8`, `=f8`, `f4`, `|i4` or `float32` into a dtype and a
  /// byte order, or nil when the dtype is not one Lamina stores.
  static func parseDescr(_ descr: String) -> (DType, ByteOrder)? {
    let named: [String: DType] = [
      "float32": .f32, "float64": .f64, "int32": .i32, "int64": .i64,
    ]
    if let dtype = named[descr] { return (dtype, hostByteOrder) }
    var rest = Substring(descr)
    var order = hostByteOrder
    switch rest.first {
    case "<": order = .little
    case ">": order = .big
    // '=' means native; '|' means "not applicable", which numpy only writes for one-byte types but
    // accepts for any, also meaning native.
    case "=", "|": order = hostByteOrder
    default: break
    }
    if let first = rest.first, "<>=|".contains(first) { rest = rest.dropFirst() }
    // Single-character type codes: 'f' float32, 'd' float64, 'i' int32, 'q' int64. 'l' is left out
    // because its size depends on the platform that wrote the file.
    let codes: [Substring: DType] = [
      "f4": .f32, "f8": .f64, "i4": .i32, "i8": .i64, "f": .f32, "d": .f64, "i": .i32, "q": .i64,
    ]
    guard let dtype = codes[rest] else { return nil }
    return (dtype, order)
  }

  /// A readable name for some common dtypes Lamina does not support, for error messages.
  static func describeUnsupported(_ descr: String) -> String {
    let body = descr.drop { "<>=|".contains($0) }
    let kinds: [(prefix: String, name: String)] = [
      ("f2", "float16"), ("e", "float16"), ("f16", "float128"), ("b1", "bool"), ("?", "bool"),
      ("u", "unsigned integer"), ("B", "unsigned integer"), ("i1", "int8"), ("b", "int8"),
      ("i2", "int16"), ("h", "int16"), ("c", "complex"), ("U", "unicode string"),
      ("S", "byte string"), ("a", "byte string"), ("O", "Python object"), ("V", "void/raw bytes"),
      ("M", "datetime"), ("m", "timedelta"),
    ]
    for kind in kinds where body.hasPrefix(kind.prefix) {
      return "unsupported dtype '\(descr)' (\(kind.name)); supported: \(supportedDescriptions)"
    }
    return "unsupported dtype '\(descr)'; supported: \(supportedDescriptions)"
  }

  /// Decoding state for one file; every read is bounds-checked so no input can trap.
  struct Decoder {
    let bytes: UnsafeRawBufferPointer
    let name: String

    func fail(_ reason: String) -> FileError { FileError(path: name, reason: reason) }

    func decode() throws -> Tensor {
      guard !bytes.isEmpty else { throw fail("empty file, not an npy file") }
      guard bytes.count >= magic.count, bytes.prefix(magic.count).elementsEqual(magic) else {
        throw fail("not an npy file (the file does not start with the magic bytes \\x93NUMPY)")
      }
      guard bytes.count >= magic.count + 2 else {
        throw fail("truncated npy file: it ends inside the version bytes")
      }
      let major = bytes[magic.count]
      let minor = bytes[magic.count + 1]
      let lengthSize: Int
      switch (major, minor) {
      case (1, 0): lengthSize = 2
      case (2, 0), (3, 0): lengthSize = 4
      default:
        throw fail("unsupported npy version \(major).\(minor) (supported: 1.0, 2.0, 3.0)")
      }
      let lengthOffset = magic.count + 2
      guard bytes.count >= lengthOffset + lengthSize else {
        throw fail("truncated npy file: it ends inside the header length")
      }
      var headerLength = 0
      for index in 0..<lengthSize {
        headerLength |= Int(bytes[lengthOffset + index]) << (8 * index)
      }
      let headerStart = lengthOffset + lengthSize
      let available = bytes.count - headerStart
      guard headerLength <= available else {
        throw fail(
          "header length \(headerLength) runs past the end of the file "
            + "(\(available) bytes follow the length field)"
        )
      }
      let headerBytes = bytes[headerStart..<headerStart + headerLength]
      // Versions 1.0 and 2.0 encode the header in latin-1, 3.0 in UTF-8.
      let headerText: String
      if major == 3 {
        guard let text = String(validating: headerBytes, as: UTF8.self) else {
          throw fail("malformed header: not valid UTF-8")
        }
        headerText = text
      } else {
        headerText = String(String.UnicodeScalarView(headerBytes.map { Unicode.Scalar($0) }))
      }
      let header = try parseHeader(headerText)
      return try readData(header, from: headerStart + headerLength)
    }

    struct Header {
      var dtype: DType
      var order: ByteOrder
      var fortranOrder: Bool
      var shape: [Int]
    }

    func parseHeader(_ text: String) throws -> Header {
      let value: PythonLiteral
      do {
        value = try PythonLiteral.parse(text)
      } catch let error as PythonLiteral.ParseError {
        throw fail("malformed header: \(error.message) in \(quoted(text))")
      }
      guard case .dict(let entries) = value else {
        throw fail("malformed header: not a dictionary: \(quoted(text))")
      }
      var fields: [String: PythonLiteral] = [:]
      for (key, entry) in entries {
        guard case .string(let key) = key else {
          throw fail("malformed header: keys must be strings: \(quoted(text))")
        }
        fields[key] = entry
      }
      let expected: Set = ["descr", "fortran_order", "shape"]
      guard Set(fields.keys) == expected else {
        let missing = expected.subtracting(fields.keys).sorted()
        let extra = Set(fields.keys).subtracting(expected).sorted()
        var problems: [String] = []
        if !missing.isEmpty { problems.append("missing \(missing.joined(separator: ", "))") }
        if !extra.isEmpty { problems.append("unexpected \(extra.joined(separator: ", "))") }
        throw fail(
          "malformed header: expected keys 'descr', 'fortran_order' and 'shape' "
            + "(\(problems.joined(separator: "; ")))"
        )
      }

      guard case .string(let descr) = fields["descr"] else {
        if case .list = fields["descr"] {
          throw fail(
            "unsupported dtype: structured arrays (record dtypes) are not supported; "
              + "supported: \(supportedDescriptions)"
          )
        }
        throw fail("malformed header: 'descr' is not a string")
      }
      guard let (dtype, order) = parseDescr(descr) else { throw fail(describeUnsupported(descr)) }

      guard case .bool(let fortranOrder) = fields["fortran_order"] else {
        throw fail("malformed header: 'fortran_order' is not True or False")
      }

      guard case .tuple(let dimensions) = fields["shape"] else {
        throw fail("malformed header: 'shape' is not a tuple")
      }
      var shape: [Int] = []
      for dimension in dimensions {
        guard case .int(let digits, let negative) = dimension else {
          throw fail("malformed header: 'shape' contains a non-integer")
        }
        guard !negative || digits.allSatisfy({ $0 == "0" }) else {
          throw fail("negative dimension -\(digits) in shape")
        }
        guard let size = Int(digits) else {
          throw fail("dimension \(digits) in shape is too large")
        }
        shape.append(size)
      }
      return Header(dtype: dtype, order: order, fortranOrder: fortranOrder, shape: shape)
    }

    func readData(_ header: Header, from dataStart: Int) throws -> Tensor {
      let shapeText = "(" + header.shape.map(String.init).joined(separator: ", ") + ")"
      let typeText = "\(header.dtype)\(shapeText)"
      // Every partial product is checked: Tensor computes the same products without overflow checks.
      var byteCount = header.dtype.byteSize
      for dimension in header.shape {
        let (product, overflow) = byteCount.multipliedReportingOverflow(by: dimension)
        guard !overflow else { throw fail("shape \(shapeText) is too large: its size overflows") }
        byteCount = product
      }
      let elementCount = byteCount / header.dtype.byteSize
      let available = bytes.count - dataStart
      guard available >= byteCount else {
        throw fail(
          "truncated data: expected \(byteCount) bytes of data for \(typeText), file has \(available)"
        )
      }
      guard available == byteCount else {
        throw fail(
          "\(available - byteCount) extra bytes after the data "
            + "(expected \(byteCount) bytes for \(typeText))"
        )
      }
      let data = UnsafeRawBufferPointer(rebasing: bytes[dataStart...])
      var storedShape = header.shape
      // A Fortran-order array of shape S has the same memory layout as a C-order array of reversed S.
      if header.fortranOrder { storedShape.reverse() }
      guard var tensor = Tensor(dtype: header.dtype, shape: storedShape, bytes: data) else {
        throw fail("internal error: \(byteCount) bytes do not fill \(elementCount) elements")
      }
      if header.order != hostByteOrder {
        tensor.withUnsafeMutableBytes { swapBytes($0, elementSize: header.dtype.byteSize) }
      }
      if header.fortranOrder { tensor = reversingAxes(tensor) }
      return tensor
    }

    func quoted(_ text: String) -> String {
      let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
      let shown = trimmed.count > 200 ? String(trimmed.prefix(200)) + "…" : trimmed
      return "\"\(shown)\""
    }
  }

  /// The transpose that reverses all axes: element (i0, …, in) of the result is element (in, …, i0).
  static func reversingAxes(_ tensor: Tensor) -> Tensor {
    let rank = tensor.rank
    guard rank > 1, tensor.count > 0 else { return tensor.reshaped(tensor.shape.reversed())! }
    let shape = Array(tensor.shape.reversed())
    let elementSize = tensor.dtype.byteSize
    // Axis k of the result is axis rank-1-k of the source, whose row-major stride is the product of the
    // source dimensions after it, which are the result's dimensions before k.
    var strides = [Int](repeating: 1, count: rank)
    for axis in 1..<rank { strides[axis] = strides[axis - 1] * shape[axis - 1] }
    var result = Tensor(zeros: tensor.dtype, shape: shape)
    tensor.withUnsafeBytes { source in
      result.withUnsafeMutableBytes { destination in
        var index = [Int](repeating: 0, count: rank)
        var sourceOffset = 0
        for element in 0..<tensor.count {
          destination.baseAddress!.advanced(by: element * elementSize).copyMemory(
            from: source.baseAddress!.advanced(by: sourceOffset * elementSize),
            byteCount: elementSize)
          // Advance the row-major index of the result, last axis fastest.
          var axis = rank - 1
          while axis >= 0 {
            index[axis] += 1
            sourceOffset += strides[axis]
            if index[axis] < shape[axis] { break }
            sourceOffset -= strides[axis] * index[axis]
            index[axis] = 0
            axis -= 1
          }
        }
      }
    }
    return result
  }
}

// MARK: - Shared helpers

let hostIsLittleEndian = 1.littleEndian == 1
let hostByteOrder: NPY.ByteOrder = hostIsLittleEndian ? .little : .big

/// Reads a whole file, turning Foundation's errors into a `FileError` naming the path.
func readFile(_ path: String) throws -> Data {
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
    throw FileError(path: path, reason: "no such file")
  }
  guard !isDirectory.boolValue else { throw FileError(path: path, reason: "is a directory") }
  do {
    return try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
  } catch {
    throw FileError(path: path, reason: "cannot read: \(error.localizedDescription)")
  }
}

/// Reverses the bytes of each `elementSize`-byte element in place.
func swapBytes(_ bytes: UnsafeMutableRawBufferPointer, elementSize: Int) {
  guard elementSize > 1 else { return }
  var start = 0
  while start + elementSize <= bytes.count {
    var low = start
    var high = start + elementSize - 1
    while low < high {
      bytes.swapAt(low, high)
      low += 1
      high -= 1
    }
    start += elementSize
  }
}

func swapBytes(_ bytes: inout [UInt8], elementSize: Int) {
  bytes.withUnsafeMutableBytes { swapBytes($0, elementSize: elementSize) }
}

// MARK: - Python literals

/// The subset of Python literal syntax that appears in `.npy` headers: dicts, tuples, lists, strings,
/// integers, True, False and None.
enum PythonLiteral: Equatable {
  case dict([(PythonLiteral, PythonLiteral)])
  case tuple([PythonLiteral])
  case list([PythonLiteral])
  case string(String)
  /// Digits kept as text so that huge values are reported rather than overflowing.
  case int(digits: String, negative: Bool)
  case bool(Bool)
  case none

  static func == (lhs: PythonLiteral, rhs: PythonLiteral) -> Bool {
    switch (lhs, rhs) {
    case (.dict(let a), .dict(let b)):
      a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    case (.tuple(let a), .tuple(let b)), (.list(let a), .list(let b)): a == b
    case (.string(let a), .string(let b)): a == b
    case (.int(let a, let x), .int(let b, let y)): a == b && x == y
    case (.bool(let a), .bool(let b)): a == b
    case (.none, .none): true
    default: false
    }
  }

  struct ParseError: Error {
    var message: String
  }

  /// Parses one literal followed only by whitespace.
  static func parse(_ text: String) throws -> PythonLiteral {
    var parser = Parser(scalars: Array(text.unicodeScalars))
    let value = try parser.value(depth: 0)
    parser.skipWhitespace()
    guard parser.position == parser.scalars.count else {
      throw ParseError(message: "unexpected text after the dictionary")
    }
    return value
  }

  struct Parser {
    let scalars: [Unicode.Scalar]
    var position = 0

    /// Deeper nesting than any real header; the limit keeps hostile input from exhausting the stack.
    static let maximumDepth = 32

    mutating func skipWhitespace() {
      while position < scalars.count, [" ", "\t", "\n", "\r"].contains(scalars[position]) {
        position += 1
      }
    }

    mutating func value(depth: Int) throws -> PythonLiteral {
      guard depth < Self.maximumDepth else { throw ParseError(message: "nesting too deep") }
      skipWhitespace()
      guard position < scalars.count else { throw ParseError(message: "unexpected end of header") }
      let scalar = scalars[position]
      switch scalar {
      case "{":
        position += 1
        var entries: [(PythonLiteral, PythonLiteral)] = []
        while true {
          skipWhitespace()
          if try consume("}") { return .dict(entries) }
          let key = try value(depth: depth + 1)
          skipWhitespace()
          guard try consume(":") else { throw ParseError(message: "expected ':' after a key") }
          let entry = try value(depth: depth + 1)
          entries.append((key, entry))
          skipWhitespace()
          if try consume("}") { return .dict(entries) }
          guard try consume(",") else { throw ParseError(message: "expected ',' or '}'") }
        }
      case "(", "[":
        position += 1
        let close: Unicode.Scalar = scalar == "(" ? ")" : "]"
        var items: [PythonLiteral] = []
        var sawComma = false
        while true {
          skipWhitespace()
          if try consume(close) { break }
          items.append(try value(depth: depth + 1))
          skipWhitespace()
          if try consume(close) { break }
          guard try consume(",") else { throw ParseError(message: "expected ',' or '\(close)'") }
          sawComma = true
        }
        if close == "]" { return .list(items) }
        // As in Python, "(5)" is just 5 and only "(5,)" is a one-element tuple.
        if items.count == 1 && !sawComma { return items[0] }
        return .tuple(items)
      case "'", "\"":
        return .string(try string(quote: scalar))
      case "-", "+", "0"..."9":
        return try integer()
      default:
        var word = ""
        while position < scalars.count,
          scalars[position].properties.isAlphabetic
            || scalars[position] == "_"
        {
          word.unicodeScalars.append(scalars[position])
          position += 1
        }
        switch word {
        case "True": return .bool(true)
        case "False": return .bool(false)
        case "None": return .none
        case "":
          throw ParseError(message: "unexpected character '\(scalar.escaped(asASCII: true))'")
        default: throw ParseError(message: "unexpected word '\(word)'")
        }
      }
    }

    mutating func consume(_ scalar: Unicode.Scalar) throws -> Bool {
      guard position < scalars.count else { throw ParseError(message: "unexpected end of header") }
      if scalars[position] == scalar {
        position += 1
        return true
      }
      return false
    }

    mutating func string(quote: Unicode.Scalar) throws -> String {
      position += 1
      var result = String.UnicodeScalarView()
      while position < scalars.count {
        let scalar = scalars[position]
        position += 1
        if scalar == quote { return String(result) }
        if scalar == "\n" { break }
        if scalar == "\\" {
          guard position < scalars.count else { break }
          // Only the escapes a dtype string could need; others keep their backslash, as in Python.
          let escaped = scalars[position]
          position += 1
          switch escaped {
          case "\\", "'", "\"": result.append(escaped)
          case "n": result.append("\n")
          case "t": result.append("\t")
          default:
            result.append("\\")
            result.append(escaped)
          }
          continue
        }
        result.append(scalar)
      }
      throw ParseError(message: "unterminated string")
    }

    mutating func integer() throws -> PythonLiteral {
      var negative = false
      if scalars[position] == "-" || scalars[position] == "+" {
        negative = scalars[position] == "-"
        position += 1
        skipWhitespace()
      }
      var digits = ""
      while position < scalars.count, ("0"..."9").contains(scalars[position]) {
        digits.unicodeScalars.append(scalars[position])
        position += 1
      }
      guard !digits.isEmpty else { throw ParseError(message: "expected digits") }
      // Python 2 wrote long integers with an 'L' suffix, as in (3L, 4L).
      if position < scalars.count, scalars[position] == "L" || scalars[position] == "l" {
        position += 1
      }
      if position < scalars.count, [".", "e", "E", "j", "J"].contains(scalars[position]) {
        throw ParseError(message: "expected an integer")
      }
      // Strip leading zeros so "00012" and "12" compare and convert the same way.
      let trimmed = digits.drop { $0 == "0" }
      return .int(digits: trimmed.isEmpty ? "0" : String(trimmed), negative: negative)
    }
  }
}
