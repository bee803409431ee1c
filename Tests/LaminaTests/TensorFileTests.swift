import Foundation
import LaminaSupport
import Testing

/// A fresh directory under the system temporary directory, removed when `body` returns.
private func withTemporaryDirectory<Result>(_ body: (String) throws -> Result) throws -> Result {
  let directory = FileManager.default.temporaryDirectory
    .appendingPathComponent("lamina-tensor-files-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: directory) }
  return try body(directory.path)
}

/// Every dtype in every kind of shape: scalar, 1-D, 3-D, and with an empty dimension.
private let sampleShapes: [[Int]] = [[], [5], [2, 3, 4], [2, 0, 3], [0]]

private func sampleTensor(_ dtype: DType, _ shape: [Int]) -> Tensor {
  let count = shape.reduce(1, *)
  // Negative, fractional and large values, so byte order and precision mistakes show.
  let values = (0..<count).map { index -> Double in
    dtype.isFloatingPoint ? Double(index) * 1.25 - 3.5 : Double(index * 1_000_003 - 7)
  }
  return Tensor(dtype: dtype, shape: shape, doubles: values)
}

private let allSamples: [(name: String, tensor: Tensor)] = DType.allCases.flatMap { dtype in
  sampleShapes.map { shape in
    ("\(dtype)_\(shape.map(String.init).joined(separator: "x"))", sampleTensor(dtype, shape))
  }
}

/// Little-endian bytes of an integer of `size` bytes.
private func littleEndian(_ value: UInt64, size: Int) -> [UInt8] {
  (0..<size).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

/// A `.npy` file from parts, for hand-built and malformed files.
private func npyFile(
  version: (UInt8, UInt8) = (1, 0), header: String, padTo alignment: Int = 64, data: [UInt8] = []
) -> Data {
  let lengthSize = version.0 == 1 ? 2 : 4
  var headerBytes = Array(header.utf8)
  while (10 + (lengthSize - 2) + headerBytes.count + 1) % alignment != 0 {
    headerBytes.append(0x20)
  }
  headerBytes.append(0x0A)
  var file: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version.0, version.1]
  file += littleEndian(UInt64(headerBytes.count), size: lengthSize)
  return Data(file + headerBytes + data)
}

/// A `.safetensors` file from a JSON header and a data buffer.
private func safeTensorsFile(_ json: String, data: [UInt8] = []) -> Data {
  let header = Array(json.utf8)
  return Data(littleEndian(UInt64(header.count), size: 8) + header + data)
}

private func floatBytes(_ values: [Float]) -> [UInt8] {
  values.flatMap { littleEndian(UInt64($0.bitPattern), size: 4) }
}

@Suite("Tensor files")
struct TensorFileTests {
  // MARK: .npy

  @Test("npy round-trips every dtype and shape kind through a file")
  func npyRoundTrip() throws {
    try withTemporaryDirectory { directory in
      for (name, tensor) in allSamples {
        let path = "\(directory)/\(name).npy"
        try NPY.write(tensor, to: path)
        let read = try NPY.read(contentsOf: path)
        #expect(read == tensor, "\(name)")
        // The data starts at a multiple of 64 bytes, as numpy aligns it.
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int
        #expect(((size ?? 0) - tensor.byteCount) % 64 == 0, "\(name)")
      }
    }
  }

  @Test("npy encoding matches numpy.save byte for byte")
  func npyExactBytes() {
    // np.save of np.arange(1, 7, dtype=np.float32).reshape(2, 3): header length 0x76 = 118.
    let tensor = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6] as [Float])
    var expected: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00]
    expected += Array("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".utf8)
    expected += [UInt8](repeating: 0x20, count: 58) + [0x0A]
    expected += [
      0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40,
      0x00, 0x00, 0x80, 0x40, 0x00, 0x00, 0xA0, 0x40, 0x00, 0x00, 0xC0, 0x40,
    ]
    #expect(Array(NPY.encode(tensor)) == expected)
  }

  @Test("npy headers for scalars, vectors and empty arrays match numpy")
  func npyHeaderShapes() {
    // Header texts and total header sizes as numpy 2.4 writes them.
    let cases: [(Tensor, String, Int)] = [
      (
        Tensor(scalar: 1.5, dtype: .f64), "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
        128
      ),
      (
        Tensor(shape: [5], scalars: [0, 1, 2, 3, 4] as [Int64]),
        "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }", 128
      ),
      (
        Tensor(zeros: .i32, shape: [2, 0, 3]),
        "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 0, 3), }", 128
      ),
    ]
    for (tensor, text, headerSize) in cases {
      let encoded = Array(NPY.encode(tensor))
      #expect(encoded.count == headerSize + tensor.byteCount)
      let header = String(decoding: encoded[10..<headerSize], as: UTF8.self)
      #expect(header.hasPrefix(text + " "))
      #expect(header.hasSuffix(" \n"))
      #expect(header.dropLast().allSatisfy { $0 != "\n" })
    }
  }

  @Test("npy reads a hand-built version 2.0 file")
  func npyVersion2() throws {
    let file = npyFile(
      version: (2, 0), header: "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
      data: littleEndian(7, size: 8) + littleEndian(UInt64(bitPattern: -2), size: 8)
        + littleEndian(1 << 40, size: 8))
    let tensor = try NPY.decode(file, name: "v2.npy")
    #expect(tensor.shape == [3])
    #expect(tensor.scalars(as: Int64.self) == [7, -2, 1 << 40])
  }

  @Test("npy reads a version 3.0 file, whose header is UTF-8")
  func npyVersion3() throws {
    let file = npyFile(
      version: (3, 0), header: "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
      data: floatBytes([0.5]))
    #expect(try NPY.decode(file, name: "v3.npy").scalars(as: Float.self) == [0.5])
  }

  @Test("npy byte-swaps big-endian files")
  func npyBigEndian() throws {
    // 1.0 and -2.5 as big-endian float32.
    let float = npyFile(
      header: "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
      data: [0x3F, 0x80, 0x00, 0x00, 0xC0, 0x20, 0x00, 0x00])
    #expect(try NPY.decode(float, name: "big.npy").scalars(as: Float.self) == [1, -2.5])
    let integer = npyFile(
      header: "{'descr': '>i8', 'fortran_order': False, 'shape': (1, 1), }",
      data: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE])
    let decoded = try NPY.decode(integer, name: "big.npy")
    #expect(decoded.shape == [1, 1])
    #expect(decoded.scalars(as: Int64.self) == [-2])
  }

  @Test("npy transposes Fortran-ordered arrays into row-major order")
  func npyFortranOrder() throws {
    // Element (i, j, k) = 100i + 10j + k, stored column-major: the first axis varies fastest.
    let shape = [2, 3, 4]
    var stored = [Int32](repeating: 0, count: 24)
    for i in 0..<2 {
      for j in 0..<3 {
        for k in 0..<4 { stored[i + 2 * j + 6 * k] = Int32(100 * i + 10 * j + k) }
      }
    }
    let file = npyFile(
      header: "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3, 4), }",
      data: stored.flatMap { littleEndian(UInt64(UInt32(bitPattern: $0)), size: 4) })
    let tensor = try NPY.decode(file, name: "fortran.npy")
    #expect(tensor.shape == shape)
    var expected: [Int32] = []
    for i in 0..<2 {
      for j in 0..<3 {
        for k in 0..<4 { expected.append(Int32(100 * i + 10 * j + k)) }
      }
    }
    #expect(tensor.scalars(as: Int32.self) == expected)
  }

  @Test("npy accepts equivalent spellings of the dtype and Python 2 headers")
  func npyHeaderVariants() throws {
    let variants: [(String, DType)] = [
      ("{'descr': 'f4', 'fortran_order': False, 'shape': (2,), }", .f32),
      ("{'descr': '=f8', 'fortran_order': False, 'shape': (2,), }", .f64),
      ("{'descr': '|i4', 'fortran_order': False, 'shape': (2,), }", .i32),
      ("{'descr': '<q', 'fortran_order': False, 'shape': (2,), }", .i64),
      ("{'descr': 'float32', 'fortran_order': False, 'shape': (2,), }", .f32),
      // Python 2 numpy wrote long integers with an L suffix; key order and quotes may vary.
      ("{'shape': (2L,), \"fortran_order\": False, 'descr': '<i4'}", .i32),
    ]
    for (header, dtype) in variants {
      let file = npyFile(header: header, data: [UInt8](repeating: 0, count: 2 * dtype.byteSize))
      let tensor = try NPY.decode(file, name: "variant.npy")
      #expect(tensor.dtype == dtype, "\(header)")
      #expect(tensor.shape == [2], "\(header)")
    }
  }

  // MARK: .safetensors

  @Test("safetensors round-trips every dtype and shape kind through a file")
  func safeTensorsRoundTrip() throws {
    try withTemporaryDirectory { directory in
      let path = "\(directory)/model.safetensors"
      let metadata = ["format": "pt", "note": "quotes \" and \\ and ü"]
      try SafeTensors.write(allSamples.reversed(), metadata: metadata, to: path)
      let (tensors, readMetadata) = try SafeTensors.readWithMetadata(contentsOf: path)
      #expect(readMetadata == metadata)
      #expect(tensors.map(\.name) == allSamples.map(\.name).sorted())
      let dictionary = try SafeTensors.readDictionary(contentsOf: path)
      #expect(dictionary.count == allSamples.count)
      for (name, tensor) in allSamples {
        #expect(dictionary[name] == tensor, "\(name)")
      }
      // The header is padded so the buffer starts 8-byte aligned.
      let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
      let headerLength = bytes[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
      #expect(headerLength % 8 == 0)
    }
  }

  @Test("safetensors encoding is compact JSON in name order, padded with spaces")
  func safeTensorsExactBytes() throws {
    let data = try SafeTensors.encode(
      [
        ("weight", Tensor(shape: [2], scalars: [1, 2] as [Float])),
        ("bias", Tensor(shape: [], scalars: [-1] as [Int32])),
      ], metadata: ["format": "pt"])
    let json =
      #"{"__metadata__":{"format":"pt"},"bias":{"dtype":"I32","shape":[],"data_offsets":[0,4]},"weight":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
    let padded = json + String(repeating: " ", count: (8 - json.utf8.count % 8) % 8)
    let expected =
      littleEndian(UInt64(padded.utf8.count), size: 8) + Array(padded.utf8) + [
        0xFF, 0xFF, 0xFF, 0xFF,
      ]
      + floatBytes([1, 2])
    #expect(Array(data) == expected)
  }

  @Test("safetensors reads a hand-built file, whatever the order of its JSON keys")
  func safeTensorsHandBuilt() throws {
    let json =
      #"{"b": {"shape": [2], "data_offsets": [0, 8], "dtype": "I32"}, "__metadata__": {"k": "v"}, "a": {"dtype": "F64", "shape": [], "data_offsets": [8, 16]}, "c": {"dtype": "F32", "shape": [0, 4], "data_offsets": [16, 16]}}   "#
    let data =
      littleEndian(5, size: 4) + littleEndian(UInt64(UInt32(bitPattern: -6)), size: 4)
      + littleEndian(0.25.bitPattern, size: 8)
    let (tensors, metadata) = try SafeTensors.decodeWithMetadata(
      safeTensorsFile(json, data: data), name: "hand.safetensors")
    #expect(metadata == ["k": "v"])
    #expect(tensors.map(\.name) == ["a", "b", "c"])
    #expect(tensors[0].tensor == Tensor(scalar: 0.25, dtype: .f64))
    #expect(tensors[1].tensor == Tensor(shape: [2], scalars: [5, -6] as [Int32]))
    #expect(tensors[2].tensor == Tensor(zeros: .f32, shape: [0, 4]))
  }

  @Test("safetensors refuses to encode duplicate, empty or reserved names")
  func safeTensorsEncodingErrors() throws {
    let tensor = Tensor(scalar: 1)
    #expect(throws: SafeTensors.EncodingError.self) {
      try SafeTensors.encode([("x", tensor), ("x", tensor)])
    }
    #expect(throws: SafeTensors.EncodingError.self) { try SafeTensors.encode([("", tensor)]) }
    #expect(throws: SafeTensors.EncodingError.self) {
      try SafeTensors.encode([("__metadata__", tensor)])
    }
    try withTemporaryDirectory { directory in
      let path = "\(directory)/dup.safetensors"
      let error = #expect(throws: FileError.self) {
        try SafeTensors.write([("x", tensor), ("x", tensor)], to: path)
      }
      #expect(error?.description.contains("'x' appears twice") == true)
      #expect(!FileManager.default.fileExists(atPath: path))
    }
  }

  // MARK: Bad files

  struct BadFile: CustomTestStringConvertible, Sendable {
    enum Format: Sendable {
      case npy
      case safeTensors
    }
    var label: String
    var format: Format
    var bytes: Data
    var phrase: String
    var testDescription: String { label }
  }

  static let f32Header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"

  static let badFiles: [BadFile] = [
    BadFile(label: "npy: empty file", format: .npy, bytes: Data(), phrase: "empty file"),
    BadFile(
      label: "npy: bad magic", format: .npy, bytes: Data("PK\u{3}\u{4} a zip file".utf8),
      phrase: "not an npy file"),
    BadFile(
      label: "npy: garbage bytes", format: .npy,
      bytes: Data((0..<300).map { UInt8(truncatingIfNeeded: $0 &* 151 &+ 7) }),
      phrase: "not an npy file"),
    BadFile(
      label: "npy: unsupported version", format: .npy,
      bytes: Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 4, 0, 0, 0]),
      phrase: "unsupported npy version 4.0"),
    BadFile(
      label: "npy: ends inside the header length", format: .npy,
      bytes: Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, 0x76]), phrase: "truncated npy file"),
    BadFile(
      label: "npy: header length past the end", format: .npy,
      bytes: Data(
        [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 2, 0, 0xFF, 0xFF, 0xFF, 0xFF] + Array("{}".utf8)),
      phrase: "header length 4294967295 runs past the end of the file"),
    BadFile(
      label: "npy: header is not a dict", format: .npy, bytes: npyFile(header: "[1, 2]"),
      phrase: "malformed header: not a dictionary"),
    BadFile(
      label: "npy: unterminated dict", format: .npy,
      bytes: npyFile(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)"),
      phrase: "malformed header"),
    BadFile(
      label: "npy: missing key", format: .npy,
      bytes: npyFile(header: "{'descr': '<f4', 'fortran_order': False}"), phrase: "missing shape"),
    BadFile(
      label: "npy: unicode strings", format: .npy,
      bytes: npyFile(header: "{'descr': '<U5', 'fortran_order': False, 'shape': (2,), }"),
      phrase: "unsupported dtype '<U5' (unicode string); supported: '<f4', '<f8', '<i4', '<i8'"),
    BadFile(
      label: "npy: float16", format: .npy,
      bytes: npyFile(header: "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }"),
      phrase: "unsupported dtype '<f2' (float16)"),
    BadFile(
      label: "npy: object array", format: .npy,
      bytes: npyFile(header: "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }"),
      phrase: "unsupported dtype '|O' (Python object)"),
    BadFile(
      label: "npy: structured array", format: .npy,
      bytes: npyFile(
        header: "{'descr': [('x', '<f4'), ('y', '<i4')], 'fortran_order': False, 'shape': (2,), }"),
      phrase: "structured arrays"),
    BadFile(
      label: "npy: truncated data", format: .npy,
      bytes: npyFile(header: f32Header, data: [UInt8](repeating: 0, count: 20)),
      phrase: "truncated data: expected 24 bytes of data for f32(2, 3), file has 20"),
    BadFile(
      label: "npy: trailing bytes", format: .npy,
      bytes: npyFile(header: f32Header, data: [UInt8](repeating: 0, count: 28)),
      phrase: "4 extra bytes after the data"),
    BadFile(
      label: "npy: negative dimension", format: .npy,
      bytes: npyFile(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }"),
      phrase: "negative dimension -2"),
    BadFile(
      label: "npy: overflowing shape", format: .npy,
      bytes: npyFile(
        header:
          "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776, 0), }"),
      phrase: "its size overflows"),
    BadFile(
      label: "npy: dimension beyond Int", format: .npy,
      bytes: npyFile(
        header: "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }"),
      phrase: "dimension 99999999999999999999999 in shape is too large"),
    BadFile(
      label: "npy: fortran_order not a bool", format: .npy,
      bytes: npyFile(header: "{'descr': '<f4', 'fortran_order': 'yes', 'shape': (2,), }"),
      phrase: "'fortran_order' is not True or False"),
    BadFile(
      label: "npy: shape not a tuple", format: .npy,
      bytes: npyFile(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2), }"),
      phrase: "'shape' is not a tuple"),
    BadFile(
      label: "npy: deep nesting", format: .npy,
      bytes: npyFile(header: String(repeating: "(", count: 5000)), phrase: "nesting too deep"),

    BadFile(
      label: "safetensors: empty file", format: .safeTensors, bytes: Data(), phrase: "empty file"),
    BadFile(
      label: "safetensors: too short", format: .safeTensors, bytes: Data([1, 2, 3]),
      phrase: "too short for the 8-byte header length"),
    BadFile(
      label: "safetensors: header length larger than file", format: .safeTensors,
      bytes: Data(littleEndian(64, size: 8) + Array("{}".utf8)),
      phrase: "header length 64 runs past the end of the file (2 bytes follow"),
    BadFile(
      label: "safetensors: absurd header length", format: .safeTensors,
      bytes: Data(littleEndian(1 << 63, size: 8) + Array("{}".utf8)),
      phrase: "larger than the 100000000-byte limit"),
    BadFile(
      label: "safetensors: garbage bytes", format: .safeTensors,
      bytes: Data([0x10, 0, 0, 0, 0, 0, 0, 0] + (0..<16).map { UInt8(200 + $0) }),
      phrase: "header is not valid UTF-8"),
    BadFile(
      label: "safetensors: bad JSON", format: .safeTensors,
      bytes: safeTensorsFile(#"{"a": {"dtype": "F32", "#), phrase: "header is not valid JSON"),
    BadFile(
      label: "safetensors: not an object", format: .safeTensors, bytes: safeTensorsFile("[1, 2]"),
      phrase: "does not start with '{'"),
    BadFile(
      label: "safetensors: offsets out of range", format: .safeTensors,
      bytes: safeTensorsFile(
        #"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#, data: [0, 0, 0, 0]),
      phrase: "tensor 'w': data_offsets [0, 8] run past the end of the 4-byte data buffer"),
    BadFile(
      label: "safetensors: wrong byte count", format: .safeTensors,
      bytes: safeTensorsFile(
        #"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#,
        data: [UInt8](repeating: 0, count: 8)),
      phrase: "tensor 'w': data_offsets [0, 8] hold 8 bytes, but F32[3] needs 12"),
    BadFile(
      label: "safetensors: float16", format: .safeTensors,
      bytes: safeTensorsFile(
        #"{"emb": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}"#,
        data: [0, 0, 0, 0]),
      phrase: "tensor 'emb': unsupported dtype 'F16' (supported: F32, F64, I32, I64)"),
    BadFile(
      label: "safetensors: bfloat16", format: .safeTensors,
      bytes: safeTensorsFile(#"{"x": {"dtype": "BF16", "shape": [], "data_offsets": [0, 2]}}"#),
      phrase: "tensor 'x': unsupported dtype 'BF16'"),
    BadFile(
      label: "safetensors: bool", format: .safeTensors,
      bytes: safeTensorsFile(#"{"mask": {"dtype": "BOOL", "shape": [], "data_offsets": [0, 1]}}"#),
      phrase: "tensor 'mask': unsupported dtype 'BOOL'"),
    BadFile(
      label: "safetensors: uint8", format: .safeTensors,
      bytes: safeTensorsFile(#"{"ids": {"dtype": "U8", "shape": [], "data_offsets": [0, 1]}}"#),
      phrase: "tensor 'ids': unsupported dtype 'U8'"),
    BadFile(
      label: "safetensors: overlapping tensors", format: .safeTensors,
      bytes: safeTensorsFile(
        #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#,
        data: [UInt8](repeating: 0, count: 8)),
      phrase: "tensor 'b': data_offsets [4, 8] overlap tensor 'a'"),
    BadFile(
      label: "safetensors: gap between tensors", format: .safeTensors,
      bytes: safeTensorsFile(
        #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#,
        data: [UInt8](repeating: 0, count: 8)),
      phrase: "leave a gap of unused bytes at 0..<4"),
    BadFile(
      label: "safetensors: uncovered trailing bytes", format: .safeTensors,
      bytes: safeTensorsFile(
        #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#,
        data: [UInt8](repeating: 0, count: 12)),
      phrase: "8 trailing bytes are not used by any tensor"),
    BadFile(
      label: "safetensors: boolean in shape", format: .safeTensors,
      bytes: safeTensorsFile(#"{"a": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}"#),
      phrase: "tensor 'a': shape"),
    BadFile(
      label: "safetensors: fraction in shape", format: .safeTensors,
      bytes: safeTensorsFile(#"{"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}"#),
      phrase: "is not a list of non-negative integers"),
    BadFile(
      label: "safetensors: negative dimension", format: .safeTensors,
      bytes: safeTensorsFile(#"{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#),
      phrase: "is not a list of non-negative integers"),
    BadFile(
      label: "safetensors: overflowing shape", format: .safeTensors,
      bytes: safeTensorsFile(
        #"{"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 0], "data_offsets": [0, 0]}}"#),
      phrase: "its size overflows"),
    BadFile(
      label: "safetensors: three offsets", format: .safeTensors,
      bytes: safeTensorsFile(#"{"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4, 8]}}"#),
      phrase: "must be two non-negative integers"),
    BadFile(
      label: "safetensors: huge offset", format: .safeTensors,
      bytes: safeTensorsFile(
        #"{"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 18446744073709551615]}}"#),
      phrase: "must be two non-negative integers"),
    BadFile(
      label: "safetensors: reversed offsets", format: .safeTensors,
      bytes: safeTensorsFile(#"{"a": {"dtype": "F32", "shape": [], "data_offsets": [4, 0]}}"#),
      phrase: "with begin <= end"),
    BadFile(
      label: "safetensors: missing dtype", format: .safeTensors,
      bytes: safeTensorsFile(#"{"a": {"shape": [], "data_offsets": [0, 4]}}"#),
      phrase: "tensor 'a': missing or non-string 'dtype'"),
    BadFile(
      label: "safetensors: entry not an object", format: .safeTensors,
      bytes: safeTensorsFile(#"{"a": 3}"#), phrase: "tensor 'a': entry is not a JSON object"),
    BadFile(
      label: "safetensors: empty name", format: .safeTensors,
      bytes: safeTensorsFile(#"{"": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}"#),
      phrase: "a tensor has an empty name"),
    BadFile(
      label: "safetensors: metadata not strings", format: .safeTensors,
      bytes: safeTensorsFile(#"{"__metadata__": {"epoch": 3}}"#),
      phrase: "'__metadata__' entry 'epoch' is not a string"),
  ]

  @Test("bad files give errors naming the file and the problem", arguments: badFiles)
  func badFile(_ file: BadFile) {
    let name = "bad/\(file.label).bin"
    let error = #expect(throws: FileError.self) {
      switch file.format {
      case .npy: _ = try NPY.decode(file.bytes, name: name)
      case .safeTensors: _ = try SafeTensors.decode(file.bytes, name: name)
      }
    }
    let message = error?.description ?? ""
    #expect(message.hasPrefix("\(name): "), "\(message)")
    #expect(message.contains(file.phrase), "\(message)")
  }

  @Test("reading a missing file says so")
  func missingFile() throws {
    try withTemporaryDirectory { directory in
      let path = "\(directory)/absent.npy"
      let npyError = #expect(throws: FileError.self) { try NPY.read(contentsOf: path) }
      #expect(npyError?.description == "\(path): no such file")
      let safeError = #expect(throws: FileError.self) { try SafeTensors.read(contentsOf: path) }
      #expect(safeError?.description == "\(path): no such file")
    }
  }

  @Test("corrupting bytes of valid files never traps")
  func corruptedFilesDoNotTrap() throws {
    var generator = SeededGenerator(seed: 42)
    let npy = Array(NPY.encode(sampleTensor(.f32, [2, 3, 4])))
    let safeTensors = Array(try SafeTensors.encode(Array(allSamples.prefix(6))))
    for original in [npy, safeTensors] {
      for _ in 0..<500 {
        var bytes = original
        // Flip a few bytes, mostly in the header, and sometimes truncate.
        for _ in 0..<Int.random(in: 1...4, using: &generator) {
          let limit = Bool.random(using: &generator) ? min(bytes.count, 140) : bytes.count
          bytes[Int.random(in: 0..<limit, using: &generator)] = UInt8.random(
            in: 0...255, using: &generator)
        }
        if Int.random(in: 0..<4, using: &generator) == 0 {
          bytes.removeLast(Int.random(in: 0...bytes.count, using: &generator))
        }
        _ = try? NPY.decode(Data(bytes), name: "fuzz")
        _ = try? SafeTensors.decode(Data(bytes), name: "fuzz")
      }
    }
  }
}
